//! Results (batches of test runs) and runs: create, read, the harness's reports, manual attach.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callgrade_app::runs;
use callgrade_core::{ResultDraft, Rfc3339, RunStatus};
use callgrade_store::{Page, Run, RunEvent, RunFilter, TestResult};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{parse_id, ApiJson, ApiPath, ApiQuery, PageLimit};
use crate::auth::ApiProject;
use crate::{ApiError, AppState};

/// Creates a result: one pending run per scenario × frequency. Each run's `id` is the `run_id`
/// a sender may put in the webhook payload; its tester number is what phone matching looks for.
#[utoipa::path(post, path = "/api/v1/results", tag = "test runs", request_body = ResultDraft,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = TestResult),
              (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_result(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiJson(draft): ApiJson<ResultDraft>,
) -> Result<(StatusCode, Json<TestResult>), ApiError> {
    let result = runs::create_result(&state.app, project.id, draft).await?;
    Ok((StatusCode::CREATED, Json(result)))
}

/// A result with its runs and how many are in each state.
#[utoipa::path(get, path = "/api/v1/results/{id}", tag = "test runs",
    params(("id" = i64, Path, description = "The result id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = TestResult), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_result(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TestResult>, ApiError> {
    let missing = || ApiError::not_found(format!("no result {id:?} in this project"));
    let numeric = parse_id(&id).ok_or_else(missing)?;
    state
        .app
        .store
        .result(project.id, numeric)
        .await?
        .map(Json)
        .ok_or_else(missing)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only runs in this state.
    #[param(inline)]
    status: Option<RunStatus>,
    agent_id: Option<i64>,
    result_id: Option<i64>,
    /// Page size.
    #[param(inline)]
    limit: Option<PageLimit>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Lists runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "test runs", params(RunsQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<Run>), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list_runs(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> Result<Json<Page<Run>>, ApiError> {
    let filter = RunFilter {
        status: q.status,
        agent_id: q.agent_id,
        result_id: q.result_id,
        cursor: q.cursor,
        limit: PageLimit::or_default(q.limit),
    };
    Ok(Json(state.app.store.list_runs(project.id, &filter).await?))
}

/// One run: its state, its call, how it was matched, and why it failed if it did.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "test runs",
    params(("id" = i64, Path, description = "The run id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Run), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_run(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Run>, ApiError> {
    let run_id = run_id(&id)?;
    state
        .app
        .store
        .run(project.id, run_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no run {id:?} in this project")))
}

fn run_id(id: &str) -> Result<i64, ApiError> {
    parse_id(id).ok_or_else(|| ApiError::not_found(format!("no run {id:?} in this project")))
}

/// When the harness saw it happen; now when omitted.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RunTime {
    /// Defaults to the time the server receives the report.
    #[schema(value_type = Option<Rfc3339>)]
    at: Option<DateTime<Utc>>,
}

async fn report(
    state: &AppState,
    project_id: i64,
    id: &str,
    event: impl FnOnce(DateTime<Utc>) -> RunEvent,
) -> Result<Json<Run>, ApiError> {
    let event = event(state.app.now());
    Ok(Json(
        runs::report(&state.app, project_id, run_id(id)?, event).await?,
    ))
}

/// The harness reports that the run's call started (run → in_progress).
#[utoipa::path(post, path = "/api/v1/runs/{id}/call-started", tag = "test runs",
    params(("id" = i64, Path, description = "The run id")), request_body(content = Option<RunTime>),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Run), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "The run is past that point", body = crate::error::ErrorBody)))]
pub async fn call_started(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
    body: Option<ApiJson<RunTime>>,
) -> Result<Json<Run>, ApiError> {
    let at = body.and_then(|ApiJson(b)| b.at);
    report(&state, project.id, &id, |now| {
        RunEvent::CallStarted(at.unwrap_or(now))
    })
    .await
}

/// The harness reports that the run's call ended (run → awaiting_transcript); the listening
/// window starts at this time.
#[utoipa::path(post, path = "/api/v1/runs/{id}/call-ended", tag = "test runs",
    params(("id" = i64, Path, description = "The run id")), request_body(content = Option<RunTime>),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Run), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "The run is past that point", body = crate::error::ErrorBody)))]
pub async fn call_ended(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
    body: Option<ApiJson<RunTime>>,
) -> Result<Json<Run>, ApiError> {
    let at = body.and_then(|ApiJson(b)| b.at);
    report(&state, project.id, &id, |now| {
        RunEvent::CallEnded(at.unwrap_or(now))
    })
    .await
}

/// Cancels a run that is still waiting.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "test runs",
    params(("id" = i64, Path, description = "The run id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Run), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "The run is already final", body = crate::error::ErrorBody)))]
pub async fn cancel_run(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Run>, ApiError> {
    report(&state, project.id, &id, |_| RunEvent::Cancel).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AttachBody {
    /// Our call id (the receipt's `call_id`).
    call_id: String,
}

/// Attaches a stored call to a run by hand: for ambiguous matches and late transcripts.
#[utoipa::path(post, path = "/api/v1/runs/{id}/attach", tag = "test runs",
    params(("id" = i64, Path, description = "The run id")), request_body = AttachBody,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Run),
              (status = 400, description = "No such call, or another agent's", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "The run or the call is already attached elsewhere", body = crate::error::ErrorBody)))]
pub async fn attach(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AttachBody>,
) -> Result<Json<Run>, ApiError> {
    let run = runs::attach(&state.app, project.id, run_id(&id)?, &body.call_id).await?;
    Ok(Json(run))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GateQuery {
    /// Compare with this result.
    baseline_id: Option<i64>,
    /// Compare with the newest finished result carrying this label (e.g. `main`), other than this one.
    baseline_label: Option<String>,
    /// Fail when the overall pass rate is below this (0 to 1).
    #[param(minimum = 0, maximum = 1)]
    min_pass_rate: Option<f64>,
}

/// The CI gate over a result: per scenario the pass count, pass^k (all k passed) and the pass
/// rate with its 95 % Wilson interval; against a baseline, each scenario's change by a
/// one-sided Fisher exact test at α = 0.05; and the verdict: `pass`, `fail` or `undecided`.
#[utoipa::path(get, path = "/api/v1/results/{id}/gate", tag = "test runs", params(
        ("id" = i64, Path, description = "The result id"), GateQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = callgrade_core::GateReport),
              (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_gate(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<GateQuery>,
) -> Result<Json<callgrade_core::GateReport>, ApiError> {
    let numeric = parse_id(&id)
        .ok_or_else(|| ApiError::not_found(format!("no result {id:?} in this project")))?;
    if let Some(rate) = q.min_pass_rate.filter(|r| !(0.0..=1.0).contains(r)) {
        return Err(ApiError::bad_request(format!(
            "min_pass_rate must be between 0 and 1 (got {rate})"
        )));
    }
    // A query cannot say "one of these" in OpenAPI; the id, the more precise, wins.
    let baseline = match (q.baseline_id, q.baseline_label.as_deref()) {
        (Some(id), _) => Some(runs::Baseline::Result(id)),
        (None, Some(label)) => Some(runs::Baseline::Label(label)),
        (None, None) => None,
    };
    let options = callgrade_core::GateOptions {
        min_pass_rate: q.min_pass_rate,
        ..Default::default()
    };
    Ok(Json(
        runs::gate(&state.app, project.id, numeric, baseline, &options).await?,
    ))
}

/// Runs the scenarios of a result's failed and undecided runs again, as a new result.
#[utoipa::path(post, path = "/api/v1/results/{id}/rerun-failed", tag = "test runs",
    params(("id" = i64, Path, description = "The result id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = TestResult), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "No run of it failed", body = crate::error::ErrorBody)))]
pub async fn rerun_failed(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<TestResult>), ApiError> {
    let numeric = parse_id(&id)
        .ok_or_else(|| ApiError::not_found(format!("no result {id:?} in this project")))?;
    let result = runs::rerun_failed(&state.app, project.id, numeric).await?;
    Ok((StatusCode::CREATED, Json(result)))
}
