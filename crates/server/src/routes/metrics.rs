//! Metrics, the rubric, the judge endpoint, evaluation on demand, and the summary.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callgrade_app::{evaluation, metrics, AppError};
use callgrade_core::{MetricDraft, MetricsFile, Rfc3339, RubricRule};
use callgrade_store::{
    ApplySummary, Evaluation, JobCounts, JudgeSettings, JudgeSettingsPatch, Metric, MetricSummary,
    ReevaluateFilter,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{parse_id, ApiJson, ApiPath, ApiQuery};
use crate::auth::ApiProject;
use crate::{ApiError, AppState};

fn metric_id(id: &str) -> Result<i64, ApiError> {
    parse_id(id).ok_or_else(|| ApiError::not_found(format!("no metric {id:?} in this project")))
}

#[derive(Serialize, ToSchema)]
pub struct MetricList {
    data: Vec<Metric>,
}

/// The project's metrics.
#[utoipa::path(get, path = "/api/v1/metrics", tag = "metrics",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = MetricList)))]
pub async fn list_metrics(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
) -> Result<Json<MetricList>, ApiError> {
    let data = state.app.store.list_metrics(project.id).await?;
    Ok(Json(MetricList { data }))
}

/// Creates a metric.
#[utoipa::path(post, path = "/api/v1/metrics", tag = "metrics", request_body = MetricDraft,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = Metric), (status = 400, body = crate::error::ErrorBody),
              (status = 409, description = "A metric has that name", body = crate::error::ErrorBody)))]
pub async fn create_metric(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiJson(draft): ApiJson<MetricDraft>,
) -> Result<(StatusCode, Json<Metric>), ApiError> {
    let metric = metrics::create(&state.app, project.id, draft).await?;
    Ok((StatusCode::CREATED, Json(metric)))
}

/// One metric.
#[utoipa::path(get, path = "/api/v1/metrics/{id}", tag = "metrics",
    params(("id" = i64, Path, description = "The metric id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Metric), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_metric(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Metric>, ApiError> {
    let numeric = metric_id(&id)?;
    state
        .app
        .store
        .metric(project.id, numeric)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no metric {id:?} in this project")))
}

/// Replaces a metric's definition. Old results keep the version they were computed with; call
/// the re-evaluation endpoints to recompute them.
#[utoipa::path(put, path = "/api/v1/metrics/{id}", tag = "metrics", request_body = MetricDraft,
    params(("id" = i64, Path, description = "The metric id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Metric), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "Another metric has that name", body = crate::error::ErrorBody)))]
pub async fn update_metric(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
    ApiJson(draft): ApiJson<MetricDraft>,
) -> Result<Json<Metric>, ApiError> {
    let numeric = metric_id(&id)?;
    Ok(Json(
        metrics::update(&state.app, project.id, numeric, draft).await?,
    ))
}

/// Deletes a metric; its old results stay with the calls they describe.
#[utoipa::path(delete, path = "/api/v1/metrics/{id}", tag = "metrics",
    params(("id" = i64, Path, description = "The metric id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_metric(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state
        .app
        .store
        .delete_metric(project.id, metric_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Applies a set of metric definitions (and optionally the rubric), as `callgrade metrics apply` does.
#[utoipa::path(post, path = "/api/v1/metrics/apply", tag = "metrics", request_body = MetricsFile,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ApplySummary), (status = 400, body = crate::error::ErrorBody)))]
pub async fn apply_metrics(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiJson(file): ApiJson<MetricsFile>,
) -> Result<Json<ApplySummary>, ApiError> {
    Ok(Json(
        metrics::apply_file(&state.app, project.id, file).await?,
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Rubric {
    /// Rules joined by AND; a rule whose metric produced no value is skipped.
    pub rules: Vec<RubricRule>,
}

/// The project's rubric.
#[utoipa::path(get, path = "/api/v1/rubric", tag = "metrics",
    security(("api_key" = []), ("bearer" = [])), responses((status = 200, body = Rubric)))]
pub async fn get_rubric(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
) -> Result<Json<Rubric>, ApiError> {
    Ok(Json(Rubric {
        rules: state.app.store.rubric(project.id).await?,
    }))
}

/// Replaces the project's rubric.
#[utoipa::path(put, path = "/api/v1/rubric", tag = "metrics", request_body = Rubric,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Rubric), (status = 400, body = crate::error::ErrorBody)))]
pub async fn put_rubric(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiJson(rubric): ApiJson<Rubric>,
) -> Result<Json<Rubric>, ApiError> {
    metrics::set_rubric(&state.app, project.id, &rubric.rules).await?;
    Ok(Json(rubric))
}

/// The project's judge endpoint (the key is never shown).
#[utoipa::path(get, path = "/api/v1/judge", tag = "metrics",
    security(("api_key" = []), ("bearer" = [])), responses((status = 200, body = JudgeSettings)))]
pub async fn get_judge(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
) -> Result<Json<JudgeSettings>, ApiError> {
    Ok(Json(state.app.store.judge_settings(project.id).await?))
}

/// Changes the project's judge endpoint: an OpenAI-compatible base URL (…/v1), a model, a key,
/// and how many requests may be in flight. Omitted fields are kept; "" clears one.
#[utoipa::path(put, path = "/api/v1/judge", tag = "metrics", request_body = JudgeSettingsPatch,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = JudgeSettings), (status = 400, body = crate::error::ErrorBody)))]
pub async fn put_judge(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiJson(patch): ApiJson<JudgeSettingsPatch>,
) -> Result<Json<JudgeSettings>, ApiError> {
    Ok(Json(
        metrics::set_judge(&state.app, project.id, &patch).await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    /// Calls queued for evaluation (a call already waiting is not queued twice).
    pub queued: usize,
}

/// Evaluates a stored call again with the current metrics.
#[utoipa::path(post, path = "/api/v1/calls/{call_id}/evaluate", tag = "metrics",
    params(("call_id" = String, Path, description = "Our call id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 202, body = Queued), (status = 404, body = crate::error::ErrorBody)))]
pub async fn evaluate_call(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(call_id): ApiPath<String>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let queued = evaluation::enqueue(&state.app, project.id, &call_id).await?;
    Ok((StatusCode::ACCEPTED, Json(Queued { queued })))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ReevaluateBody {
    agent_id: Option<i64>,
    /// Calls that started at or after this time.
    #[schema(value_type = Option<Rfc3339>)]
    started_from: Option<DateTime<Utc>>,
    /// Calls that started before this time.
    #[schema(value_type = Option<Rfc3339>)]
    started_before: Option<DateTime<Utc>>,
}

/// Re-evaluates every stored call that matches (all of the project's when the body is empty).
#[utoipa::path(post, path = "/api/v1/evaluations/rerun", tag = "metrics", request_body = Option<ReevaluateBody>,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 202, body = Queued)))]
pub async fn rerun(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    body: Option<ApiJson<ReevaluateBody>>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let body = body.map(|ApiJson(b)| b).unwrap_or_default();
    let filter = ReevaluateFilter {
        agent_id: body.agent_id,
        started_from_ms: body.started_from.map(|t| t.timestamp_millis()),
        started_before_ms: body.started_before.map(|t| t.timestamp_millis()),
    };
    let queued = evaluation::rerun(&state.app, project.id, &filter).await?;
    Ok((StatusCode::ACCEPTED, Json(Queued { queued })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TryBody {
    pub metric: MetricDraft,
    /// Our call id.
    pub call_id: String,
}

/// Runs a metric definition on a stored call and returns its result, storing nothing.
#[utoipa::path(post, path = "/api/v1/metrics/try", tag = "metrics", request_body = TryBody,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Evaluation), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn try_metric(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiJson(body): ApiJson<TryBody>,
) -> Result<Json<Evaluation>, ApiError> {
    let evaluation = metrics::try_metric(&state.app, project.id, body.metric, &body.call_id)
        .await
        .map_err(|e| match e {
            // The definition sits under `metric` in this body.
            AppError::Invalid(errors) => AppError::invalid_at("metric.", errors),
            other => other,
        })?;
    Ok(Json(evaluation))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    agent_id: Option<i64>,
    /// Calls that started at or after this ISO 8601 time.
    #[param(inline, value_type = Option<Rfc3339>)]
    started_from: Option<DateTime<Utc>>,
    /// Calls that started before this ISO 8601 time.
    #[param(inline, value_type = Option<Rfc3339>)]
    started_before: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct SummaryList {
    data: Vec<MetricSummary>,
}

/// Per metric over a time range: how many results, the pass rate, avg, p50 and p90.
#[utoipa::path(get, path = "/api/v1/metrics/summary", tag = "metrics", params(SummaryQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = SummaryList)))]
pub async fn summary(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiQuery(q): ApiQuery<SummaryQuery>,
) -> Result<Json<SummaryList>, ApiError> {
    let data = state
        .app
        .store
        .metrics_summary(
            project.id,
            q.agent_id,
            q.started_from.map(|t| t.timestamp_millis()),
            q.started_before.map(|t| t.timestamp_millis()),
        )
        .await?;
    Ok(Json(SummaryList { data }))
}

/// How the evaluation queue stands for this project.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "metrics",
    security(("api_key" = []), ("bearer" = [])), responses((status = 200, body = JobCounts)))]
pub async fn jobs(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
) -> Result<Json<JobCounts>, ApiError> {
    Ok(Json(state.app.store.job_counts(Some(project.id)).await?))
}
