//! What the store takes and gives back.

use callgrade_core::{FieldError, Message, MessageTimes};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Project {
    pub id: i64,
    pub name: String,
    /// The first characters of the current key, to recognise it; never the key.
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Agent {
    /// The `agent_id` that senders put in webhook payloads.
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub phone_number: Option<String>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A webhook request as received, for the delivery log.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub project_id: i64,
    pub received_at: DateTime<Utc>,
    pub route: String,
    pub body_size: usize,
    /// The body as text, cut at the log's cap.
    pub body: String,
    pub body_truncated: bool,
}

impl NewDelivery {
    /// Keeps at most `cap` bytes of the body (cut on a character boundary).
    pub fn new(
        project_id: i64,
        received_at: DateTime<Utc>,
        route: &str,
        body: &[u8],
        cap: usize,
    ) -> Self {
        let text = String::from_utf8_lossy(body);
        let mut end = text.len().min(cap);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            project_id,
            received_at,
            route: route.to_owned(),
            body_size: body.len(),
            body: text[..end].to_owned(),
            body_truncated: end < text.len(),
        }
    }
}

/// Why a webhook request was refused, as answered and as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedDelivery {
    pub status: u16,
    /// A stable machine code, e.g. `invalid_payload`.
    pub error: String,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

impl RejectedDelivery {
    pub fn invalid_payload(errors: Vec<FieldError>) -> Self {
        let n = errors.len();
        Self {
            status: 400,
            error: "invalid_payload".into(),
            detail: format!(
                "the payload has {n} problem{}; each is listed with its JSON path",
                if n == 1 { "" } else { "s" }
            ),
            errors,
        }
    }

    pub fn conflict(errors: Vec<FieldError>) -> Self {
        Self {
            status: 409,
            error: "conflict".into(),
            detail: "calls with these ids were already received with different content; nothing from this request was stored".into(),
            errors,
        }
    }
}

#[derive(Debug, Clone)]
pub enum IngestOutcome {
    Accepted(Receipt),
    Rejected(RejectedDelivery),
}

/// The answer to an accepted webhook request.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Receipt {
    /// Calls of this request now stored (created plus duplicates).
    pub accepted: usize,
    pub created: usize,
    pub duplicates: usize,
    /// This request's entry in the delivery log.
    pub delivery_id: i64,
    pub calls: Vec<CallReceipt>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CallReceipt {
    /// The sender's id.
    pub id: String,
    /// Our id, for `GET /api/v1/calls/{call_id}`.
    pub call_id: String,
    pub status: CallStatus,
    pub agent_id: Option<i64>,
    /// How the message times were read.
    pub message_times: MessageTimes,
    pub warnings: Vec<FieldError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// Stored by this request.
    Created,
    /// An identical call with this id was already stored; nothing changed.
    Duplicate,
}

#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub agent_id: Option<i64>,
    /// The sender's call id.
    pub external_id: Option<String>,
    /// Calls that started at or after this time (epoch ms).
    pub started_from_ms: Option<i64>,
    /// Calls that started before this time (epoch ms).
    pub started_before_ms: Option<i64>,
    pub cursor: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Accepted,
    Rejected,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub outcome: Option<DeliveryOutcome>,
    pub cursor: Option<String>,
    pub limit: u32,
}

/// One page of a newest-first list.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CallSummary {
    /// Our id.
    pub call_id: String,
    /// The sender's id.
    pub id: String,
    pub agent_id: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub to_phone_number: Option<String>,
    pub from_phone_number: Option<String>,
    pub ended_reason: String,
    pub run_id: Option<i64>,
    pub message_count: i64,
    pub received_at: DateTime<Utc>,
    pub delivery_id: i64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CallDetail {
    #[serde(flatten)]
    pub summary: CallSummary,
    pub trace_id: Option<String>,
    pub message_times: MessageTimes,
    pub messages: Vec<Message>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Value,
    pub warnings: Vec<FieldError>,
    /// The call object exactly as received, unknown fields included.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub raw: Value,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeliverySummary {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub route: String,
    /// The HTTP status we answered.
    pub status: u16,
    /// `accepted` or `rejected`.
    pub outcome: String,
    pub error: Option<String>,
    pub detail: Option<String>,
    pub errors: Vec<FieldError>,
    pub body_size: i64,
    pub accepted_calls: i64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Delivery {
    #[serde(flatten)]
    pub summary: DeliverySummary,
    /// The request body as received, cut at the log's cap.
    pub body: Option<String>,
    pub body_truncated: bool,
}
