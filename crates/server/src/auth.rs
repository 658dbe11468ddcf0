//! API-key authentication and scopes. The key names the project and what it may do; handlers
//! receive the project, never the key. Which scope a route needs is decided in one place,
//! [`required_scope`], which the extractor enforces and the OpenAPI document states.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use callgrade_core::access::Scope;
use callgrade_store::{KeyGrant, Project};

use crate::routes::{observe, traces, vendors, webhook};
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

/// The routes a sender posts calls to: an `ingest` key reaches these and nothing else.
const INGEST_ROUTES: &[&str] = &[
    webhook::CEKURA_PATH,
    webhook::PROJECT_PATH,
    observe::OBSERVE_PATH,
    vendors::VAPI_PATH,
    vendors::RETELL_PATH,
    vendors::ELEVENLABS_PATH,
    traces::TRACES_PATH,
];

/// The scope a request to `route` (its template, as routed) with `method` needs: sending calls
/// needs `ingest`; keys and vendor secrets `admin`; any other change `write`; reading `read`.
pub fn required_scope(method: &Method, route: &str) -> Scope {
    let route = route.trim_end_matches('/');
    if INGEST_ROUTES
        .iter()
        .any(|r| r.trim_end_matches('/') == route)
    {
        Scope::Ingest
    } else if route.starts_with("/api/v1/keys") || route.starts_with("/api/v1/vendor-secrets/") {
        Scope::Admin
    } else if method == Method::GET || method == Method::HEAD {
        Scope::Read
    } else {
        Scope::Write
    }
}

/// The key's grant when it holds `needed`, within its project's rate limit.
pub async fn grant_for_key(
    state: &AppState,
    key: &str,
    needed: Scope,
) -> Result<KeyGrant, ApiError> {
    let grant = callgrade_app::keys::authenticate(&state.app, key)
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid, revoked or expired API key"))?;
    if !grant.key.scopes.allow(needed) {
        return Err(missing_scope(&grant, needed));
    }
    state
        .rate_limiter
        .check(grant.project.id)
        .map_err(ApiError::rate_limited)?;
    Ok(grant)
}

/// The project of a key that may send calls.
pub async fn project_for_key(state: &AppState, key: &str) -> Result<Project, ApiError> {
    Ok(grant_for_key(state, key, Scope::Ingest).await?.project)
}

fn missing_scope(grant: &KeyGrant, needed: Scope) -> ApiError {
    let held = grant.key.scopes.names().join(", ");
    ApiError::new(
        StatusCode::FORBIDDEN,
        "missing_scope",
        format!(
            "key \"{}\" lacks the `{needed}` scope this route needs (it has: {held}); create a \
             key with `{needed}` (POST /api/v1/keys, or `callgrade key create`)",
            grant.key.name
        ),
    )
}

/// The project whose key authenticated this API request, holding the scope its route needs.
pub struct ApiProject(pub Project);

impl FromRequestParts<AppState> for ApiProject {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = api_key(&parts.headers)?;
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(MatchedPath::as_str)
            .unwrap_or_else(|| parts.uri.path());
        let needed = required_scope(&parts.method, route);
        Ok(ApiProject(grant_for_key(state, key, needed).await?.project))
    }
}
