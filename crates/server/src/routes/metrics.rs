//! Metrics, the rubric, the judge endpoint, evaluation on demand, and the summary.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use callgrade_core::{validate_rubric, FieldError, MetricDraft, MetricSpec, RubricRule};
use callgrade_eval::validate_metric;
use callgrade_store::{
    ApplySummary, Evaluation, JobCounts, JudgeSettings, JudgeSettingsPatch, Metric, MetricSummary,
    ReevaluateFilter,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{parse_id, ApiJson, ApiQuery};
use crate::auth::ApiProject;
use crate::{ApiError, AppState};

fn invalid_at(prefix: &str, errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid(
        errors
            .into_iter()
            .map(|e| FieldError::new(format!("{prefix}{}", e.path), e.message))
            .collect(),
    )
}

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
    let data = state.store.list_metrics(project.id).await?;
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
    let spec = validate_metric(draft).map_err(ApiError::invalid)?;
    let metric = state.store.create_metric(project.id, &spec).await?;
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
    Path(id): Path<String>,
) -> Result<Json<Metric>, ApiError> {
    let numeric = metric_id(&id)?;
    state
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
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn update_metric(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    Path(id): Path<String>,
    ApiJson(draft): ApiJson<MetricDraft>,
) -> Result<Json<Metric>, ApiError> {
    let numeric = metric_id(&id)?;
    let spec = validate_metric(draft).map_err(ApiError::invalid)?;
    Ok(Json(
        state
            .store
            .update_metric(project.id, numeric, &spec)
            .await?,
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
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete_metric(project.id, metric_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Metric definitions kept in a team's repository, applied as a whole.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MetricsFile {
    #[serde(default)]
    pub metrics: Vec<MetricDraft>,
    /// Replaces the rubric when present.
    pub rubric: Option<Vec<RubricRule>>,
}

/// Validates every metric and rule, then creates or updates metrics by name (and replaces the
/// rubric when given), all or nothing.
pub async fn apply_file(
    state: &AppState,
    project_id: i64,
    file: MetricsFile,
) -> Result<ApplySummary, ApiError> {
    let mut specs: Vec<MetricSpec> = Vec::new();
    let mut errors = Vec::new();
    for (i, draft) in file.metrics.into_iter().enumerate() {
        match validate_metric(draft) {
            Ok(spec) if specs.iter().any(|s| s.name == spec.name) => errors.push(FieldError::new(
                format!("metrics[{i}].name"),
                format!("{:?} appears twice", spec.name),
            )),
            Ok(spec) => specs.push(spec),
            Err(e) => errors.extend(
                e.into_iter()
                    .map(|e| FieldError::new(format!("metrics[{i}].{}", e.path), e.message)),
            ),
        }
    }
    if let Some(rules) = &file.rubric {
        let existing = state.store.list_metrics(project_id).await?;
        let output_of = |name: &str| {
            specs
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.output)
                .or_else(|| {
                    existing
                        .iter()
                        .find(|m| m.spec.name == name)
                        .map(|m| m.spec.output)
                })
        };
        if let Err(e) = validate_rubric(rules, output_of) {
            errors.extend(
                e.into_iter()
                    .map(|e| FieldError::new(format!("rubric.{}", e.path), e.message)),
            );
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let summary = state.store.apply_metrics(project_id, &specs).await?;
    if let Some(rules) = &file.rubric {
        state.store.set_rubric(project_id, rules).await?;
    }
    Ok(summary)
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
    Ok(Json(apply_file(&state, project.id, file).await?))
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
        rules: state.store.rubric(project.id).await?,
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
    let metrics = state.store.list_metrics(project.id).await?;
    validate_rubric(&rubric.rules, |name| {
        metrics
            .iter()
            .find(|m| m.spec.name == name)
            .map(|m| m.spec.output)
    })
    .map_err(ApiError::invalid)?;
    state.store.set_rubric(project.id, &rubric.rules).await?;
    Ok(Json(rubric))
}

/// The project's judge endpoint (the key is never shown).
#[utoipa::path(get, path = "/api/v1/judge", tag = "metrics",
    security(("api_key" = []), ("bearer" = [])), responses((status = 200, body = JudgeSettings)))]
pub async fn get_judge(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
) -> Result<Json<JudgeSettings>, ApiError> {
    Ok(Json(state.store.judge_settings(project.id).await?))
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
    let mut errors = Vec::new();
    if let Some(url) = patch.base_url.as_deref().filter(|u| !u.is_empty()) {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(FieldError::new(
                "base_url",
                "must be an http:// or https:// URL, e.g. https://api.openai.com/v1",
            ));
        }
    }
    if patch.concurrency.is_some_and(|c| !(1..=256).contains(&c)) {
        errors.push(FieldError::new("concurrency", "must be between 1 and 256"));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    state.store.set_judge_settings(project.id, &patch).await?;
    Ok(Json(state.store.judge_settings(project.id).await?))
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
    Path(call_id): Path<String>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let queued = state
        .store
        .enqueue_evaluations(
            project.id,
            &ReevaluateFilter::default(),
            Some(&call_id),
            state.clock.now(),
        )
        .await?;
    state.jobs_ready.notify_waiters();
    Ok((StatusCode::ACCEPTED, Json(Queued { queued })))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ReevaluateBody {
    agent_id: Option<i64>,
    /// Calls that started at or after this time.
    started_from: Option<DateTime<Utc>>,
    /// Calls that started before this time.
    started_before: Option<DateTime<Utc>>,
}

/// Re-evaluates every stored call that matches (all of the project's when the body is empty).
#[utoipa::path(post, path = "/api/v1/evaluations/rerun", tag = "metrics", request_body = ReevaluateBody,
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
    let queued = state
        .store
        .enqueue_evaluations(project.id, &filter, None, state.clock.now())
        .await?;
    state.jobs_ready.notify_waiters();
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
    let spec = validate_metric(body.metric).map_err(|e| invalid_at("metric.", e))?;
    let input = state
        .store
        .evaluation_input(project.id, &body.call_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no call {:?} in this project", body.call_id))
        })?;
    let evaluation = state
        .evaluator
        .try_metric(&input, project.id, spec, state.clock.now())
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "judge_unavailable", e.0))?;
    Ok(Json(evaluation))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    agent_id: Option<i64>,
    /// Calls that started at or after this ISO 8601 time.
    started_from: Option<DateTime<Utc>>,
    /// Calls that started before this ISO 8601 time.
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
    Ok(Json(state.store.job_counts(Some(project.id)).await?))
}
