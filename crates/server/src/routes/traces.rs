//! OpenTelemetry traces: `POST /v1/traces` (OTLP/HTTP, the path exporters append to their
//! endpoint) and a call's trace, `GET /api/v1/calls/{call_id}/trace`.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use callgrade_app::ingest::Delivery;
use callgrade_app::traces::{self, Encoding};
use callgrade_core::{Format, TraceBreakdown, TraceSpan};
use serde::Serialize;
use utoipa::ToSchema;

use super::webhook::{read_body, Compression};
use super::ApiPath;
use crate::auth::{api_key, project_for_key, ApiProject};
use crate::error::otlp_answer;
use crate::{ApiError, AppState};

pub const TRACES_PATH: &str = "/v1/traces";

/// Receives an OTLP/HTTP trace export; the project is the key's (`X-CEKURA-API-KEY`, as
/// Cekura's collector takes it, or `Authorization: Bearer`). Spans are linked to calls by
/// trace id, whichever arrives first.
#[utoipa::path(post, path = "/v1/traces", tag = "webhook",
    request_body(content(
        (Object = "application/x-protobuf"),
        (Object = "application/json")),
        description = "An OTLP `ExportTraceServiceRequest`, optionally with `Content-Encoding: gzip`"),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The spans are durably stored (a span sent again is kept once); the body is an empty `ExportTraceServiceResponse` in the request's encoding"),
        (status = 400, description = "Not an OTLP request, or a span with a problem (each with its path); nothing stored", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown key", body = crate::error::ErrorBody),
        (status = 413, description = "Body over the limit, compressed or inflated", body = crate::error::ErrorBody),
        (status = 415, description = "Neither protobuf nor JSON, or an encoding other than gzip", body = crate::error::ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let project = project_for_key(&state, api_key(&headers)?).await?;
    let delivery = Delivery {
        project: &project,
        route: TRACES_PATH,
        received_at: state.app.now(),
        answer: otlp_answer,
        format: Format::Otlp,
    };
    let limit = state.settings.max_body_bytes;
    let (bytes, _reserved) = read_body(
        &state,
        &delivery,
        &headers,
        body,
        limit,
        Compression::ByRoute,
    )
    .await?;
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let content_type = header(CONTENT_TYPE);
    let encoding = Encoding {
        content_type,
        content_encoding: header(CONTENT_ENCODING),
    };
    traces::receive(&state.app, &delivery, &bytes, encoding, limit).await?;
    // Full success is an empty `ExportTraceServiceResponse`: no bytes in protobuf, `{}` in JSON.
    let json = content_type.is_some_and(|c| {
        c.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    });
    Ok(match json {
        true => (StatusCode::OK, Json(serde_json::json!({}))).into_response(),
        false => (
            StatusCode::OK,
            [(CONTENT_TYPE, "application/x-protobuf")],
            Vec::<u8>::new(),
        )
            .into_response(),
    })
}

/// A call's trace.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallTraceBody {
    /// The call's `trace_id`.
    trace_id: String,
    /// The agent's turns, stage by stage; null while no span of the trace has arrived.
    breakdown: Option<TraceBreakdown>,
    /// Every span of the trace in start order, those of unknown kinds included.
    spans: Vec<TraceSpan>,
}

/// The spans that share a call's `trace_id`, and its latency by turn and stage.
#[utoipa::path(get, path = "/api/v1/calls/{call_id}/trace", tag = "calls",
    params(("call_id" = String, Path, description = "Our call id, or the sender's")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The call's trace (its spans may not have arrived yet)", body = CallTraceBody),
              (status = 401, body = crate::error::ErrorBody),
              (status = 404, description = "No such call, or the call has no trace_id", body = crate::error::ErrorBody)))]
pub async fn get_call_trace(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(call_id): ApiPath<String>,
) -> Result<Json<CallTraceBody>, ApiError> {
    let trace = traces::call_trace(&state.app, project.id, &call_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "call {call_id:?} has no trace_id; its sender links a trace by sending one"
            ))
        })?;
    Ok(Json(CallTraceBody {
        trace_id: trace.trace_id,
        breakdown: trace.breakdown,
        spans: trace.spans,
    }))
}
