use axum::extract::State;
use axum::Json;
use callgrade_core::{json_len, Rfc3339};
use callgrade_store::{CallDetail, CallFilter, CallKind, CallSummary, Page};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{ApiPath, ApiQuery, PageLimit};
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
    let mut call = stored_call(&state, project.id, &call_id).await?;
    let raw_truncated = json_len(&call.raw) > RAW_INLINE_MAX_BYTES;
    if raw_truncated {
        call.raw = Value::Null;
    }
    Ok(Json(CallResponse {
        raw_url: format!("/api/v1/calls/{}/raw", call.summary.call_id),
        call,
        raw_truncated,
    }))
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
