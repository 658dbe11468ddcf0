//! A project's API keys: created with scopes, listed without secrets, rotated with an optional
//! overlap, revoked; and the key a request presents, checked on the server's clock.

use callgrade_core::access::{KeyDraft, MAX_ROTATION_OVERLAP_MINUTES};
use callgrade_core::FieldError;
use callgrade_store::{ApiKey, KeyGrant, ProjectKey};
use chrono::TimeDelta;
use serde_json::Value;

use crate::{App, AppError, Result};

/// How stale `last_used_at` may be before a request writes it again: to the minute, so a busy
/// sender costs one write a minute, not one per call.
const LAST_USED_RESOLUTION: TimeDelta = TimeDelta::minutes(1);

/// `{name, scopes, expires_at?}` → the key's row and the key itself, shown once.
pub async fn create(app: &App, project_id: i64, body: &Value) -> Result<(ProjectKey, ApiKey)> {
    let draft = KeyDraft::parse(body, app.now()).map_err(AppError::Invalid)?;
    let created = app.store.create_key(project_id, &draft, app.now()).await?;
    tracing::info!(project_id, key = created.0.id, scopes = ?created.0.scopes.names(), "API key created");
    Ok(created)
}

pub async fn list(app: &App, project_id: i64) -> Result<Vec<ProjectKey>> {
    Ok(app.store.list_keys(project_id).await?)
}

pub async fn key(app: &App, project_id: i64, key_id: i64) -> Result<ProjectKey> {
    app.store
        .project_key(project_id, key_id)
        .await?
        .ok_or_else(|| no_key(key_id))
}

/// Revokes a key at once; revoking it again changes nothing.
pub async fn revoke(app: &App, project_id: i64, key_id: i64) -> Result<ProjectKey> {
    let revoked = app
        .store
        .revoke_key(project_id, key_id, app.now())
        .await?
        .ok_or_else(|| no_key(key_id))?;
    tracing::info!(project_id, key = key_id, "API key revoked");
    Ok(revoked)
}

/// A new key with the old one's name and scopes; the old one keeps working for
/// `overlap_minutes` (0: it stops at once), so a sender can switch without dropping calls.
pub async fn rotate(
    app: &App,
    project_id: i64,
    key_id: i64,
    overlap_minutes: i64,
) -> Result<(ProjectKey, ApiKey)> {
    if !(0..=MAX_ROTATION_OVERLAP_MINUTES).contains(&overlap_minutes) {
        return Err(AppError::Invalid(vec![FieldError::new(
            "overlap_minutes",
            format!("must be between 0 and {MAX_ROTATION_OVERLAP_MINUTES} (a week)"),
        )]));
    }
    let now = app.now();
    let until = now + TimeDelta::minutes(overlap_minutes);
    match app.store.rotate_key(project_id, key_id, until, now).await? {
        Some(rotated) => {
            tracing::info!(
                project_id,
                old = key_id,
                new = rotated.0.id,
                overlap_minutes,
                "API key rotated"
            );
            Ok(rotated)
        }
        None => match app.store.project_key(project_id, key_id).await? {
            Some(_) => Err(AppError::Conflict(format!(
                "key {key_id} is revoked or expired; create a new key instead"
            ))),
            None => Err(no_key(key_id)),
        },
    }
}

/// The grant of a presented key that is neither revoked nor expired (on the server's clock);
/// its use is recorded to the minute, in the background, so the request does not wait on it.
pub async fn authenticate(app: &App, presented: &str) -> Result<Option<KeyGrant>> {
    let now = app.now();
    let Some(grant) = app.store.authenticate(presented).await? else {
        return Ok(None);
    };
    if !grant.key.active_at(now) {
        return Ok(None);
    }
    if grant
        .key
        .last_used_at
        .is_none_or(|at| now - at >= LAST_USED_RESOLUTION)
    {
        let (store, key_id) = (app.store.clone(), grant.key.id);
        tokio::spawn(async move {
            if let Err(e) = store.touch_key(key_id, now).await {
                tracing::debug!(error = %e, key = key_id, "could not record a key's use");
            }
        });
    }
    Ok(Some(grant))
}

fn no_key(key_id: i64) -> AppError {
    AppError::not_found(format!("key {key_id} not found in this project"))
}
