//! Finding a call by the id a person has at hand: ours, or the sender's (the one every list
//! shows and every sender logs).

use callgrade_store::CallFilter;

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
