//! OpenTelemetry traces of voice agents: the spans an OTLP exporter sends (`otlp.rs` reads
//! them, with every problem's path), and what they say about a call's latency, turn by turn
//! (`breakdown.rs`: speech to text, the LLM's first token, text to speech's first byte, tools).
//!
//! A trace is linked to a call by its trace id, which the call's sender gives (`trace_id`);
//! nothing here knows calls, so spans may arrive before or after theirs.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod breakdown;
mod otlp;

pub use breakdown::{breakdown, SpanRole, TraceBreakdown, TurnMeasure, TurnTiming};
pub use otlp::{read_traces, OtlpEncoding, TraceLimits};

/// One span as callgrade keeps it: the OTLP span with its resource's service name, its
/// attributes as a JSON object (OTLP's typed values read into JSON's) and its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TraceSpan {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    /// The resource's `service.name`, when it has one.
    pub service_name: Option<String>,
    /// Nanoseconds since the Unix epoch.
    pub start_unix_nano: i64,
    pub end_unix_nano: i64,
    pub status: SpanStatus,
    /// The span's status message, when the exporter set one.
    pub status_message: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub attributes: Map<String, Value>,
    pub events: Vec<SpanEvent>,
}

impl TraceSpan {
    /// How long the span lasted, in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        (self.end_unix_nano - self.start_unix_nano) as f64 / 1e6
    }
}

/// A span's status code, as OTLP defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SpanStatus {
    Unset,
    Ok,
    Error,
}

impl SpanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unset => "unset",
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Unset, Self::Ok, Self::Error]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Something that happened at one moment of a span (an exception, a frame pushed…).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nano: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub attributes: Map<String, Value>,
}

/// The spans of one export request, and the distinct trace ids among them (sorted).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadTraces {
    pub spans: Vec<TraceSpan>,
    pub trace_ids: Vec<String>,
}

/// The form a call's `trace_id` is compared in: OTLP ids are hex, which senders write in
/// either case.
pub fn normalise_trace_id(id: &str) -> String {
    id.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests;
