//! Finding a call by the id a person has at hand: ours, or the sender's (the one every list
//! shows and every sender logs).

use callgrade_core::FieldError;
use callgrade_store::{CallFilter, StoreError};

use crate::{App, AppError, Result};

/// Our id of the project's call that `given` names, as our id or as the sender's.
pub async fn resolve(app: &App, project_id: i64, given: &str) -> Result<String> {
    let given = given.trim();
    if app.store.call(project_id, given).await?.is_some() {
        return Ok(given.to_owned());
    }
    let filter = CallFilter {
        external_id: Some(given.to_owned()),
        limit: 1,
        ..Default::default()
    };
    let found = app.store.list_calls(project_id, &filter).await?;
    match found.data.into_iter().next() {
        Some(call) => Ok(call.call_id),
        None => Err(AppError::not_found(format!(
            "no call {given:?} in this project, by our id or the sender's"
        ))),
    }
}

/// Whether the project has received a call yet (its pages teach the first one until then).
pub async fn any(app: &App, project_id: i64) -> Result<bool> {
    let filter = CallFilter {
        limit: 1,
        ..Default::default()
    };
    Ok(!app
        .store
        .list_calls(project_id, &filter)
        .await?
        .data
        .is_empty())
}

/// Changes a call's metadata and end reason (the call by our id or the sender's), queueing its
/// evaluation again when the patch asks; our id of it, and whether anything changed.
pub async fn patch(
    app: &App,
    project_id: i64,
    given: &str,
    patch: &callgrade_core::CallPatch,
) -> Result<(String, bool)> {
    let id = resolve(app, project_id, given).await?;
    let max = app.settings.limits.max_metadata_bytes;
    let patched = app
        .store
        .patch_call(project_id, &id, patch, max, app.now())
        .await
        .map_err(|e| match e {
            StoreError::InvalidInput(why) => {
                AppError::Invalid(vec![FieldError::new("metadata", why)])
            }
            other => other.into(),
        })?;
    match patched {
        Some(changed) => {
            tracing::info!(project_id, call_id = %id, changed, reevaluate = patch.reevaluate, "call patched");
            Ok((id, changed))
        }
        // Deleted between the two reads.
        None => Err(AppError::not_found(format!(
            "no call {given:?} in this project"
        ))),
    }
}
