use axum::extract::State;
use axum::Json;
use callgrade_app::calls;
use callgrade_core::{json_len, CallPatch, Rfc3339};
use callgrade_store::{CallDetail, CallFilter, CallKind, CallSummary, Page};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, ApiPath, ApiQuery, PageLimit};
use crate::auth::ApiProject;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallsQuery {
    /// Only calls of this agent.
    agent_id: Option<i64>,
    /// Only the call with this sender's id (the `id` field of the webhook).
    external_id: Option<String>,
    /// Calls that started at or after this ISO 8601 time.
    #[param(inline, value_type = Option<Rfc3339>)]
    started_from: Option<DateTime<Utc>>,
    /// Calls that started before this ISO 8601 time.
    #[param(inline, value_type = Option<Rfc3339>)]
    started_before: Option<DateTime<Utc>>,
    /// Only calls that ended with this reason.
    ended_reason: Option<String>,
    /// Only calls the rubric passed (true) or failed (false).
    success: Option<bool>,
    /// `test` (attached to a run) or `production`.
    #[param(inline)]
    kind: Option<CallKind>,
    /// Only calls on which this metric failed: its pass condition, or the rubric's rule on it.
    failing_metric: Option<String>,
    /// Text anywhere in the transcript (case-insensitive).
    q: Option<String>,
    /// Page size.
    #[param(inline)]
    limit: Option<PageLimit>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Lists the project's calls, newest first (by start time).
#[utoipa::path(get, path = "/api/v1/calls", tag = "calls", params(CallsQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<CallSummary>),
              (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)))]
pub async fn list_calls(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiQuery(q): ApiQuery<CallsQuery>,
) -> Result<Json<Page<CallSummary>>, ApiError> {
    let filter = CallFilter {
        agent_id: q.agent_id,
        external_id: q.external_id,
        started_from_ms: q.started_from.map(|t| t.timestamp_millis()),
        started_before_ms: q.started_before.map(|t| t.timestamp_millis()),
        ended_reason: q.ended_reason,
        success: q.success,
        kind: q.kind,
        failing_metric: q.failing_metric,
        text: q.q.filter(|t| !t.trim().is_empty()),
        cursor: q.cursor,
        limit: PageLimit::or_default(q.limit),
    };
    Ok(Json(state.app.store.list_calls(project.id, &filter).await?))
}

/// Raw payloads larger than this (as compact JSON) are left out of a call's detail and served
/// on their own, so reading a call never costs tens of megabytes.
pub(crate) const RAW_INLINE_MAX_BYTES: usize = 256 * 1024;

/// A call as the API shows it: the stored call, with its raw payload left out when large.
#[derive(Serialize, ToSchema)]
pub struct CallResponse {
    #[serde(flatten)]
    call: CallDetail,
    /// True when `raw` is null because the payload is over 256 KiB; `raw_url` serves it.
    raw_truncated: bool,
    /// Where the whole raw payload is, always.
    raw_url: String,
}

/// One call with its normalised messages, metadata, times and raw payload (the payload only
/// up to 256 KiB; larger ones are at `raw_url`).
#[utoipa::path(get, path = "/api/v1/calls/{call_id}", tag = "calls",
    params(("call_id" = String, Path, description = "Our call id (the receipt's `call_id`)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = CallResponse),
              (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_call(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(call_id): ApiPath<String>,
) -> Result<Json<CallResponse>, ApiError> {
    Ok(Json(call_response(&state, project.id, &call_id).await?))
}

async fn call_response(
    state: &AppState,
    project_id: i64,
    call_id: &str,
) -> Result<CallResponse, ApiError> {
    let mut call = stored_call(state, project_id, call_id).await?;
    let raw_truncated = json_len(&call.raw) > RAW_INLINE_MAX_BYTES;
    if raw_truncated {
        call.raw = Value::Null;
    }
    Ok(CallResponse {
        raw_url: format!("/api/v1/calls/{}/raw", call.summary.call_id),
        call,
        raw_truncated,
    })
}

/// What `PATCH /api/v1/calls/{call_id}` changes; a field left out (or null) is kept.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Read by `CallPatch::parse`, which names every problem; here for the document.
pub struct CallPatchBody {
    /// Merged into the call's metadata key by key; a null value removes its key. The result
    /// stays within the metadata limit (64 KiB by default).
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// The call's end reason (`end_reason` metric, filters).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    ended_reason: Option<String>,
    /// Queue the call's evaluation again (default false).
    reevaluate: Option<bool>,
}

/// Changes a stored call's metadata or end reason, and evaluates it again when asked. Its
/// transcript, times and raw payload stay as received.
#[utoipa::path(patch, path = "/api/v1/calls/{call_id}", tag = "calls",
    request_body = CallPatchBody,
    params(("call_id" = String, Path, description = "Our call id, or the sender's")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The call as changed", body = CallResponse),
              (status = 400, description = "An unknown field, a wrong type, or metadata over the limit once merged", body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn patch_call(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(call_id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<CallResponse>, ApiError> {
    let patch = CallPatch::parse(&body).map_err(invalid)?;
    let (id, _) = calls::patch(&state.app, project.id, &call_id, &patch).await?;
    Ok(Json(call_response(&state, project.id, &id).await?))
}

/// Cekura's `PatchCallLog` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Read by `CallPatch::parse_cekura`; here for the document.
pub struct CallLogPatchBody {
    /// Merged into the call's metadata key by key (null removes a key).
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// Merged into `metadata.dynamic_variables` the same way.
    #[schema(value_type = Option<Object>)]
    dynamic_variables: Option<Value>,
    /// Kept in the metadata as `feedback`.
    feedback: Option<String>,
    /// The call's end reason.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    call_ended_reason: Option<String>,
    /// Queue the call's evaluation again.
    reevaluate_metrics: Option<bool>,
}

/// Cekura's PATCH of a call log, on its path: the metadata (a top-level merge), dynamic
/// variables, feedback and end reason, and `reevaluate_metrics`. The fields Cekura also
/// changes there (the transcript, the times) are refused by name: callgrade keeps a call as
/// received.
#[utoipa::path(patch, path = "/observability/v1/call-logs/{id}/", tag = "calls",
    request_body = CallLogPatchBody,
    params(("id" = String, Path, description = "The call log's `id` (ours) or its `call_id` (the sender's)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The call as changed", body = CallResponse),
              (status = 400, description = "A field callgrade does not change, a wrong type, or metadata over the limit once merged", body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn patch_call_log(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<CallResponse>, ApiError> {
    let patch = CallPatch::parse_cekura(&body).map_err(invalid)?;
    let (id, _) = calls::patch(&state.app, project.id, &id, &patch).await?;
    Ok(Json(call_response(&state, project.id, &id).await?))
}

fn invalid(errors: Vec<callgrade_core::FieldError>) -> ApiError {
    ApiError::from(callgrade_app::AppError::Invalid(errors))
}

/// A call's payload exactly as received, whatever its size.
#[utoipa::path(get, path = "/api/v1/calls/{call_id}/raw", tag = "calls",
    params(("call_id" = String, Path, description = "Our call id (the receipt's `call_id`)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The call object as it was posted", body = Object),
              (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_call_raw(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(call_id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(stored_call(&state, project.id, &call_id).await?.raw))
}

async fn stored_call(
    state: &AppState,
    project_id: i64,
    call_id: &str,
) -> Result<CallDetail, ApiError> {
    state
        .app
        .store
        .call(project_id, call_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no call {call_id:?} in this project")))
}
