//! The webhook body's schema: Cekura's custom-provider contract as [`validate_batch`] reads it.
//! Only the OpenAPI document uses these types; the body itself is read as JSON and validated,
//! so every rule here is one the validator enforces (the server's tests hold the two together).
//!
//! [`validate_batch`]: super::validate_batch

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use super::CALL_ID_MAX_CHARS;
use crate::{PhoneNumber, Role};

/// `{agent_id?, calls: […]}`. A request is stored all or nothing. Rules no schema can state:
/// `endedAt` is not before `startedAt`, ids are unique within the request, a request without
/// `agent_id` gives each call its `run_id`, the agent and runs named exist in the project, and
/// the message times of a call are all of one form.
#[derive(ToSchema)]
pub struct WebhookBody {
    /// The agent every call of the request belongs to.
    #[schema(minimum = 1)]
    pub agent_id: Option<i64>,
    /// At most `--max-calls-per-request` calls (1000 by default).
    #[schema(min_items = 1, max_items = 1000)]
    pub calls: Vec<WebhookCall>,
}

/// One call. Fields the contract does not name are kept with the call as received.
#[derive(ToSchema)]
pub struct WebhookCall {
    /// Your system's unique id for this call: a string of 1–255 characters, or an integer.
    #[schema(schema_with = call_id)]
    pub id: String,
    #[schema(rename = "startedAt", schema_with = date_time)]
    pub started_at: DateTime<Utc>,
    /// Not before `startedAt`.
    #[schema(rename = "endedAt", schema_with = date_time)]
    pub ended_at: DateTime<Utc>,
    pub to_phone_number: Option<PhoneNumber>,
    pub from_phone_number: Option<PhoneNumber>,
    pub messages: Option<Vec<WebhookMessage>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// Why the call ended, e.g. `customer-hungup`; `unknown` when absent.
    #[schema(rename = "endedReason")]
    pub ended_reason: Option<String>,
    /// The test run this call belongs to, as an integer or a string of digits.
    #[schema(schema_with = run_id)]
    pub run_id: Option<i64>,
    /// An OpenTelemetry trace id.
    #[schema(max_length = 32)]
    pub trace_id: Option<String>,
    /// `voice` (the default) or `text`: a written conversation, where speech-timing metrics
    /// are not applicable. A callgrade extension; Cekura's senders leave it out.
    pub channel: Option<crate::Channel>,
    /// Where callgrade can fetch the call's stereo recording (WAV, MP3, FLAC, Ogg, AAC in
    /// MP4), once the call is stored; `metadata.recording_url` is read too. Private and
    /// loopback addresses are refused unless the server allows them. A callgrade extension.
    #[schema(
        max_length = 4096,
        pattern = "^https?://([^\\x00-\\x20\\x7f/?#]*@)?[^\\x00-\\x20\\x7f/?#@:][^\\x00-\\x20\\x7f/?#@]*([/?#][^\\x00-\\x20\\x7f]*)?$"
    )]
    pub recording_url: Option<String>,
    /// Which channel of the recording is the agent's: 0 or 1 (the default); the other is the
    /// caller's.
    #[schema(minimum = 0, maximum = 1)]
    pub agent_channel: Option<u32>,
}

/// One transcript row. Times are milliseconds since the epoch or seconds from `startedAt`, one
/// form per call; `end_time` is not before `start_time`.
#[derive(ToSchema)]
pub struct WebhookMessage {
    pub role: Role,
    /// The utterance, or "" for tool rows.
    pub content: String,
    #[schema(minimum = 0)]
    pub start_time: Option<f64>,
    #[schema(minimum = 0)]
    pub end_time: Option<f64>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
}

/// A date-time as [`parse_datetime`] reads it: RFC 3339, or without a zone for UTC.
///
/// [`parse_datetime`]: crate::parse_datetime
fn date_time() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .pattern(Some(
            "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:?[0-9]{2})?$",
        ))
        .description(Some(
            "An ISO 8601 date-time such as 2025-10-15T09:22:21.787Z; one without a zone is UTC",
        ))
        .into()
}

/// A call id: a string of 1–255 characters, or any integer that fits in 64 bits.
fn call_id() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(CALL_ID_MAX_CHARS)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(i64::MIN))
                .maximum(Some(u64::MAX)),
        )
        .into()
}

/// A run id: a positive integer, or a string of its digits (leading zeros allowed).
fn run_id() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(i64::MAX)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^0*[1-9][0-9]{0,17}$")),
        )
        .into()
}
