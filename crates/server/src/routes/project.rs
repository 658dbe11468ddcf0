use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callgrade_app::admin;
use callgrade_store::{Project, ProjectSettings, VendorSecretView};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiJson, ApiPath};
use crate::auth::ApiProject;
use crate::{ApiError, AppState};

/// The project the key belongs to, with its settings.
#[utoipa::path(get, path = "/api/v1/project", tag = "project",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Project), (status = 401, body = crate::error::ErrorBody)))]
pub async fn get_project(ApiProject(project): ApiProject) -> Json<Project> {
    Json(project)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectSettingsBody {
    /// Seconds after a test call ends during which its transcript still matches.
    #[schema(minimum = 1, maximum = 86400)]
    listening_window_seconds: Option<i64>,
    /// Seconds after creation when a run with no reported call end times out.
    #[schema(minimum = 60, maximum = 604800)]
    run_deadline_seconds: Option<i64>,
    /// What is redacted from calls before they are stored (docs/privacy.md); a field left out
    /// of it takes its default (`off`, `keep`).
    redaction: Option<callgrade_core::privacy::RedactionPolicy>,
}

/// Changes the project's settings; omitted fields keep their value.
#[utoipa::path(patch, path = "/api/v1/project", tag = "project", request_body = ProjectSettingsBody,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Project), (status = 400, body = crate::error::ErrorBody)))]
pub async fn update_project(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiJson(body): ApiJson<ProjectSettingsBody>,
) -> Result<Json<Project>, ApiError> {
    let settings = ProjectSettings {
        listening_window_seconds: body.listening_window_seconds,
        run_deadline_seconds: body.run_deadline_seconds,
        redaction: body.redaction,
    };
    Ok(Json(
        callgrade_app::admin::configure_project(&state.app, project.id, &settings).await?,
    ))
}

/// Which vendors' signing secrets are saved (never the secrets).
#[derive(Serialize, ToSchema)]
pub struct VendorSecretList {
    data: Vec<VendorSecretView>,
}

/// Lists the vendors whose webhook secrets the project keeps.
#[utoipa::path(get, path = "/api/v1/vendor-secrets", tag = "project",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = VendorSecretList)))]
pub async fn list_vendor_secrets(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
) -> Result<Json<VendorSecretList>, ApiError> {
    let data = state.app.store.vendor_secrets(project.id).await?;
    Ok(Json(VendorSecretList { data }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VendorSecretBody {
    /// Vapi: the server URL secret; Retell: the API key with the webhook badge; ElevenLabs:
    /// the webhook's HMAC secret.
    #[schema(min_length = 1, max_length = 512, pattern = r"\S")]
    secret: String,
}

/// Saves the secret a vendor signs this project's webhooks with; it is never shown again.
#[utoipa::path(put, path = "/api/v1/vendor-secrets/{vendor}", tag = "project",
    request_body = VendorSecretBody,
    params(("vendor" = String, Path, description = "`vapi`, `retell` or `elevenlabs`")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204, description = "Saved"), (status = 400, body = crate::error::ErrorBody),
              (status = 404, description = "No such vendor", body = crate::error::ErrorBody)))]
pub async fn put_vendor_secret(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(vendor): ApiPath<String>,
    ApiJson(body): ApiJson<VendorSecretBody>,
) -> Result<StatusCode, ApiError> {
    let vendor = admin::vendor(&vendor)?;
    admin::save_vendor_secret(&state.app, project.id, vendor, &body.secret).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Forgets a vendor's secret: its per-project webhook URL then refuses every request.
#[utoipa::path(delete, path = "/api/v1/vendor-secrets/{vendor}", tag = "project",
    params(("vendor" = String, Path, description = "`vapi`, `retell` or `elevenlabs`")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204, description = "Removed"),
              (status = 404, description = "No such vendor, or no secret saved", body = crate::error::ErrorBody)))]
pub async fn delete_vendor_secret(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(vendor): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let vendor = admin::vendor(&vendor)?;
    admin::remove_vendor_secret(&state.app, project.id, vendor).await?;
    Ok(StatusCode::NO_CONTENT)
}
