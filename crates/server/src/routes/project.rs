use axum::extract::State;
use axum::Json;
use callgrade_store::{Project, ProjectSettings};
use serde::Deserialize;
use utoipa::ToSchema;

use super::ApiJson;
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
pub struct ProjectSettingsBody {
    /// Seconds after a test call ends during which its transcript still matches.
    #[schema(minimum = 1, maximum = 86400)]
    listening_window_seconds: Option<i64>,
    /// Seconds after creation when a run with no reported call end times out.
    #[schema(minimum = 60, maximum = 604800)]
    run_deadline_seconds: Option<i64>,
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
    };
    Ok(Json(
        callgrade_app::admin::configure_project(&state.app, project.id, &settings).await?,
    ))
}
