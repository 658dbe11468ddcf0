//! Cekura's observe endpoint, `POST /observability/v1/observe/`: one call per request, in JSON,
//! a urlencoded form or multipart with its recording; answered `201` with the stored call log.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use callgrade_app::ingest::{self, Delivery};
use callgrade_core::{Format, Role};
use callgrade_store::Receipt;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::webhook::{read_body, Compression};
use crate::auth::{project_for_key, webhook_key};
use crate::error::observe_answer;
use crate::{ApiError, AppState};

pub const OBSERVE_PATH: &str = "/observability/v1/observe/";

/// The stored call as Cekura's `CallLogList` shows it, with callgrade's receipt.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallLog {
    /// callgrade's id of the call (`GET /api/v1/calls/{id}`).
    id: String,
    /// The sender's `call_id`.
    call_id: String,
    agent: Option<i64>,
    agent_name: Option<String>,
    /// Seconds from start to end.
    duration: f64,
    /// Decided once evaluated; null until then.
    success: Option<bool>,
    /// `evaluating` until the call's evaluation is done, then `evaluated`.
    status: String,
    /// The metrics' results, once evaluated.
    #[schema(value_type = Vec<Object>)]
    metrics: Vec<Value>,
    /// What was said, one line per message.
    transcript: String,
    /// The transcript with Cekura's role names (`Main Agent`, `Testing Agent`, `Function
    /// Call`, `Function Call Result`, `System`) and times in seconds from the start.
    #[schema(value_type = Vec<Object>)]
    transcript_object: Vec<Value>,
    /// When the call started.
    timestamp: chrono::DateTime<chrono::Utc>,
    created_at: chrono::DateTime<chrono::Utc>,
    /// What callgrade read: the format, warnings, matching.
    receipt: Receipt,
}

/// Receives one call in Cekura's observe format; the project is the key's.
#[utoipa::path(post, path = "/observability/v1/observe/", tag = "webhook",
    request_body(content(
        (Object = "application/json"),
        (Object = "application/x-www-form-urlencoded"),
        (Object = "multipart/form-data")),
        description = "Cekura's CreateCallLog: `call_id`, `agent` or `assistant_id`, `transcript_type`, `transcript_json`, `voice_recording_url` (or a `voice_recording` file part), `main_agent_channel_index`, `call_ended_reason`, `customer_number`, `timestamp`, `metadata`, `dynamic_variables`, `trace_id`"),
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The call is durably stored (a resend is answered the same, as a duplicate)", body = CallLog),
        (status = 400, description = "Invalid body, or no such agent; nothing stored", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown key", body = crate::error::ErrorBody),
        (status = 409, description = "The call id was already received with different content", body = crate::error::ErrorBody),
        (status = 413, description = "Body over the limit", body = crate::error::ErrorBody),
        (status = 415, description = "Not JSON, a form or multipart", body = crate::error::ErrorBody)))]
pub async fn observe(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<CallLog>), ApiError> {
    let project = project_for_key(&state, webhook_key(&headers)?).await?;
    let delivery = Delivery {
        project: &project,
        route: OBSERVE_PATH,
        received_at: state.app.now(),
        answer: observe_answer,
        format: Format::Observe,
    };
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    // A multipart body may carry a recording: it may be as large as one.
    let multipart = content_type.is_some_and(|c| c.trim_start().starts_with("multipart/"));
    let limit = match multipart {
        true => state.settings.max_body_bytes + state.settings.app.max_recording_bytes,
        false => state.settings.max_body_bytes,
    };
    let (bytes, _reserved) = read_body(
        &state,
        &delivery,
        &headers,
        body,
        limit,
        Compression::Refused,
    )
    .await?;
    let receipt = ingest::receive_observe(&state.app, &delivery, bytes, content_type).await?;
    let stored = receipt.calls.first().map(|c| c.call_id.clone());
    let call = match stored {
        Some(id) => state.app.store.call(project.id, &id).await?,
        None => None,
    }
    .ok_or_else(|| ApiError::from(callgrade_app::AppError::Internal))?;
    let agent_name = match call.summary.agent_id {
        Some(id) => state
            .app
            .store
            .agent(project.id, id)
            .await?
            .map(|(a, _)| a.name),
        None => None,
    };
    let summary = &call.summary;
    let transcript_object = call
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::Bot => "Main Agent",
                Role::User => "Testing Agent",
                Role::System => "System",
                Role::FunctionCall => "Function Call",
                Role::FunctionCallResult => "Function Call Result",
            };
            let mut item = serde_json::json!({
                "role": role,
                "content": m.content,
                "start_time": m.start_offset,
                "end_time": m.end_offset,
            });
            if let Some(data) = &m.data {
                item["data"] = data.clone();
            }
            item
        })
        .collect();
    let transcript = call
        .messages
        .iter()
        .filter(|m| !m.content.is_empty())
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let evaluated = summary.evaluated_at.is_some();
    let log = CallLog {
        id: summary.call_id.clone(),
        call_id: summary.external_id.clone(),
        agent: summary.agent_id,
        agent_name,
        duration: summary.duration_seconds,
        success: summary.success,
        status: if evaluated { "evaluated" } else { "evaluating" }.into(),
        metrics: call
            .evaluations
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect(),
        transcript,
        transcript_object,
        timestamp: summary.started_at,
        created_at: summary.received_at,
        receipt,
    };
    Ok((StatusCode::CREATED, Json(log)))
}
