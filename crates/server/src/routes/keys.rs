//! A project's API keys: several, named, each with its scopes (`admin` manages them).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callgrade_app::keys;
use callgrade_core::access::{Scope, KEY_NAME_MAX_CHARS, MAX_ROTATION_OVERLAP_MINUTES};
use callgrade_store::{ApiKey, ProjectKey};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{parse_id, ApiJson, ApiPath, ApiQuery};
use crate::auth::ApiProject;
use crate::{ApiError, AppState};

/// A key to create.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    /// What the key is for, e.g. "production sender".
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    name: String,
    /// `ingest` (send calls, nothing else), `read`, `write` (includes `read`), `admin`
    /// (includes every scope, and manages keys).
    #[schema(schema_with = scopes)]
    scopes: Vec<String>,
    /// When the key stops working; null or left out: never. Must lie in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<DateTime<Utc>>,
}

fn scopes() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(Scope::ALL.map(Scope::as_str))),
        )
        .min_items(Some(1))
        .unique_items(true)
        .build()
}

const _: () = assert!(KEY_NAME_MAX_CHARS == 100, "KeyBody's schema states 100");

/// A key with its secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct KeyWithSecret {
    #[serde(flatten)]
    key: ProjectKey,
    /// `cg_…`: send it in `X-CEKURA-API-KEY` or `Authorization: Bearer`.
    #[serde(rename = "key")]
    secret: String,
}

impl KeyWithSecret {
    fn new((key, secret): (ProjectKey, ApiKey)) -> Self {
        Self {
            key,
            secret: secret.expose().to_owned(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    data: Vec<ProjectKey>,
}

fn key_id(id: &str) -> Result<i64, ApiError> {
    parse_id(id).ok_or_else(|| ApiError::not_found(format!("key {id:?} not found in this project")))
}

/// Creates a key; the answer carries it, shown this once.
#[utoipa::path(post, path = "/api/v1/keys", tag = "project", request_body = KeyBody,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = KeyWithSecret), (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiJson(body): ApiJson<KeyBody>,
) -> Result<(StatusCode, Json<KeyWithSecret>), ApiError> {
    let body = serde_json::to_value(&body).map_err(|_| callgrade_app::AppError::Internal)?;
    let created = keys::create(&state.app, project.id, &body).await?;
    Ok((StatusCode::CREATED, Json(KeyWithSecret::new(created))))
}

/// The project's keys, newest first, revoked and expired ones too (never the keys themselves).
#[utoipa::path(get, path = "/api/v1/keys", tag = "project",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = KeyList)))]
pub async fn list_keys(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
) -> Result<Json<KeyList>, ApiError> {
    let data = keys::list(&state.app, project.id).await?;
    Ok(Json(KeyList { data }))
}

/// One key.
#[utoipa::path(get, path = "/api/v1/keys/{id}", tag = "project",
    params(("id" = i64, Path, description = "The key's id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ProjectKey), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_key(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ProjectKey>, ApiError> {
    Ok(Json(keys::key(&state.app, project.id, key_id(&id)?).await?))
}

/// Revokes a key: it stops working at once (revoking it again changes nothing).
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "project",
    params(("id" = i64, Path, description = "The key's id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The key, revoked", body = ProjectKey),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ProjectKey>, ApiError> {
    Ok(Json(
        keys::revoke(&state.app, project.id, key_id(&id)?).await?,
    ))
}

/// How long the old key keeps working.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyRotateQuery {
    /// Minutes the old key keeps working beside the new one (default 0: it stops at once).
    #[param(minimum = 0, maximum = 10080)]
    overlap_minutes: Option<i64>,
}

const _: () = assert!(
    MAX_ROTATION_OVERLAP_MINUTES == 10080,
    "the query states 10080"
);

/// A new key with the old one's name, scopes and expiry, shown this once; the old key stops
/// working at once, or after `overlap_minutes` so a sender can switch without dropping calls.
#[utoipa::path(post, path = "/api/v1/keys/{id}/rotate", tag = "project",
    params(("id" = i64, Path, description = "The key's id"), KeyRotateQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = KeyWithSecret), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "The key is revoked or expired", body = crate::error::ErrorBody)))]
pub async fn rotate_key(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<KeyRotateQuery>,
) -> Result<(StatusCode, Json<KeyWithSecret>), ApiError> {
    let id = key_id(&id)?;
    let rotated = keys::rotate(&state.app, project.id, id, q.overlap_minutes.unwrap_or(0)).await?;
    Ok((StatusCode::CREATED, Json(KeyWithSecret::new(rotated))))
}
