use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callgrade_core::ScenarioDraft;
use callgrade_store::Scenario;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{parse_id, ApiJson, ApiPath, ApiQuery};
use crate::auth::ApiProject;
use crate::{ApiError, AppState};

/// Creates a test scenario for one of the project's agents.
#[utoipa::path(post, path = "/api/v1/scenarios", tag = "test runs", request_body = ScenarioDraft,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = Scenario),
              (status = 400, body = crate::error::ErrorBody),
              (status = 404, description = "No such agent in this project", body = crate::error::ErrorBody)))]
pub async fn create_scenario(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiJson(draft): ApiJson<ScenarioDraft>,
) -> Result<(StatusCode, Json<Scenario>), ApiError> {
    let created = callgrade_app::runs::create_scenario(&state.app, project.id, draft).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScenariosQuery {
    /// Only this agent's scenarios.
    agent_id: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ScenarioList {
    data: Vec<Scenario>,
}

/// Lists the project's scenarios.
#[utoipa::path(get, path = "/api/v1/scenarios", tag = "test runs", params(ScenariosQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ScenarioList)))]
pub async fn list_scenarios(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiQuery(q): ApiQuery<ScenariosQuery>,
) -> Result<Json<ScenarioList>, ApiError> {
    let data = state
        .app
        .store
        .list_scenarios(project.id, q.agent_id)
        .await?;
    Ok(Json(ScenarioList { data }))
}

/// One scenario.
#[utoipa::path(get, path = "/api/v1/scenarios/{id}", tag = "test runs",
    params(("id" = i64, Path, description = "The scenario id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Scenario), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_scenario(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Scenario>, ApiError> {
    let missing = || ApiError::not_found(format!("no scenario {id:?} in this project"));
    let numeric = parse_id(&id).ok_or_else(missing)?;
    state
        .app
        .store
        .scenario(project.id, numeric)
        .await?
        .map(Json)
        .ok_or_else(missing)
}
