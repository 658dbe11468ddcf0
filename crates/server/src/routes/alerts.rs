//! Alert rules and the alerts they opened.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callgrade_app::alerts;
use callgrade_store::{Alert, AlertRuleRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{parse_id, ApiJson, ApiPath, ApiQuery};
use crate::auth::ApiProject;
use crate::{ApiError, AppState};

/// A rule: `{name, kind: failure | threshold | trend | no_calls, metric?, agent_id?, calls?
/// (both, test, production), cooldown_minutes? (default 60), slack_webhook_url?, enabled?}` and
/// the kind's parameters: threshold `operator` (gt, lt, outside), `value` or `low`/`high`,
/// `window` (default 50), `min_breaches` (default 1); trend `preset` (conservative, balanced,
/// aggressive) or `window`, `k`, `alpha`, and `direction` (either, increase, decrease);
/// no_calls `min_calls` (default 1), `minutes` (default 60). See docs/alerts.md.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(value_type = Object)]
pub struct RuleBody(Value);

#[derive(Serialize, ToSchema)]
pub struct RuleList {
    data: Vec<AlertRuleRow>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertList {
    data: Vec<Alert>,
}

fn rule_id(id: &str) -> Result<i64, ApiError> {
    parse_id(id)
        .ok_or_else(|| ApiError::not_found(format!("alert rule {id:?} not found in this project")))
}

/// Creates an alert rule.
#[utoipa::path(post, path = "/api/v1/alert-rules", tag = "alerts", request_body = RuleBody,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = AlertRuleRow), (status = 400, body = crate::error::ErrorBody),
              (status = 409, description = "A rule has that name", body = crate::error::ErrorBody)))]
pub async fn create_rule(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiJson(RuleBody(body)): ApiJson<RuleBody>,
) -> Result<(StatusCode, Json<AlertRuleRow>), ApiError> {
    let rule = alerts::create_rule(&state.app, project.id, &body).await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

/// The project's alert rules with their state.
#[utoipa::path(get, path = "/api/v1/alert-rules", tag = "alerts",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = RuleList)))]
pub async fn list_rules(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
) -> Result<Json<RuleList>, ApiError> {
    let data = state.app.store.list_rules(project.id).await?;
    Ok(Json(RuleList { data }))
}

/// One alert rule.
#[utoipa::path(get, path = "/api/v1/alert-rules/{id}", tag = "alerts",
    params(("id" = i64, Path, description = "The rule id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AlertRuleRow), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_rule(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AlertRuleRow>, ApiError> {
    let id = rule_id(&id)?;
    Ok(Json(alerts::rule(&state.app, project.id, id).await?))
}

/// Replaces a rule's definition; its state and alerts stay.
#[utoipa::path(put, path = "/api/v1/alert-rules/{id}", tag = "alerts", request_body = RuleBody,
    params(("id" = i64, Path, description = "The rule id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AlertRuleRow), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "Another rule has that name", body = crate::error::ErrorBody)))]
pub async fn replace_rule(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
    ApiJson(RuleBody(body)): ApiJson<RuleBody>,
) -> Result<Json<AlertRuleRow>, ApiError> {
    let id = rule_id(&id)?;
    Ok(Json(
        alerts::replace_rule(&state.app, project.id, id, &body).await?,
    ))
}

/// Deletes a rule with its alerts.
#[utoipa::path(delete, path = "/api/v1/alert-rules/{id}", tag = "alerts",
    params(("id" = i64, Path, description = "The rule id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_rule(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = rule_id(&id)?;
    alerts::delete_rule(&state.app, project.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    All,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Only this rule's alerts.
    rule_id: Option<i64>,
    /// `firing` for the open ones only (default all).
    #[param(inline)]
    state: Option<AlertState>,
}

/// Alerts, newest first (the last 100): when each opened and resolved, why, and the calls that
/// caused it.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertsQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AlertList), (status = 400, body = crate::error::ErrorBody),
              (status = 404, description = "No such rule", body = crate::error::ErrorBody)))]
pub async fn list_alerts(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiQuery(q): ApiQuery<AlertsQuery>,
) -> Result<Json<AlertList>, ApiError> {
    let firing = matches!(q.state, Some(AlertState::Firing));
    let data = alerts::alerts(&state.app, project.id, q.rule_id, firing).await?;
    Ok(Json(AlertList { data }))
}
