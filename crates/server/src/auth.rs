//! API-key authentication. The key names the project; handlers receive the project, never the
//! key.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use callgrade_store::Project;

use crate::{ApiError, AppState};

pub const KEY_HEADER: &str = "x-cekura-api-key";

/// The key from `X-CEKURA-API-KEY` (any casing, as HTTP header names are case-insensitive).
pub fn webhook_key(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(KEY_HEADER)
        .ok_or_else(|| ApiError::unauthorized("missing X-CEKURA-API-KEY header"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("invalid API key"))
}

/// The key from `X-CEKURA-API-KEY` or `Authorization: Bearer …`.
pub(crate) fn api_key(headers: &HeaderMap) -> Result<&str, ApiError> {
    if headers.contains_key(KEY_HEADER) {
        return webhook_key(headers);
    }
    let value = headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("missing X-CEKURA-API-KEY or Authorization: Bearer header")
    })?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or(v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("Authorization must be \"Bearer <project key>\""))
}

/// The key's project, within its rate limit.
pub async fn project_for_key(state: &AppState, key: &str) -> Result<Project, ApiError> {
    let project = state
        .app
        .store
        .authenticate(key)
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid API key"))?;
    state
        .rate_limiter
        .check(project.id)
        .map_err(ApiError::rate_limited)?;
    Ok(project)
}

/// The project whose key authenticated this API request.
pub struct ApiProject(pub Project);

impl FromRequestParts<AppState> for ApiProject {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = api_key(&parts.headers)?;
        project_for_key(state, key).await.map(ApiProject)
    }
}
