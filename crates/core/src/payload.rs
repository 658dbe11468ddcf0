//! The webhook body `{agent_id?, calls:[…]}`: parsing, validation and normalisation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

use crate::{parse_datetime, FieldError, MessageTimes, PhoneNumber};

mod budget;
#[cfg(feature = "openapi")]
mod contract;

pub use budget::{json_len, json_values};
#[cfg(feature = "openapi")]
pub use contract::{WebhookBody, WebhookCall, WebhookMessage};

/// The longest call id, in characters.
pub const CALL_ID_MAX_CHARS: usize = 255;

/// The longest trace id, in characters (an OpenTelemetry trace id has 32).
pub const TRACE_ID_MAX_CHARS: usize = 32;
/// The longest `recording_url` taken (a presigned URL's signature fits).
pub const RECORDING_URL_MAX_CHARS: usize = 4096;

/// Limits that a deployment may tune. Together with the body size they bound the memory and the
/// work one request can cost (docs/security.md works out the worst case).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_calls_per_request: usize,
    /// JSON values in one body, counted before it is parsed ([`json_values`]).
    pub max_json_values: usize,
    /// Messages in one call.
    pub max_messages_per_call: usize,
    /// A call's `metadata`, as compact JSON.
    pub max_metadata_bytes: usize,
    /// One message's `data`, as compact JSON.
    pub max_message_data_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_calls_per_request: 1000,
            max_json_values: 250_000,
            max_messages_per_call: 10_000,
            max_metadata_bytes: 64 * 1024,
            max_message_data_bytes: 16 * 1024,
        }
    }
}

impl Limits {
    /// Refuses a body with more JSON values than allowed, before building any of them.
    pub fn check_json_values(&self, bytes: &[u8]) -> Result<(), String> {
        let values = json_values(bytes);
        if values > self.max_json_values {
            return Err(format!(
                "the body holds about {values} JSON values; at most {} are accepted per request \
                 (split the batch, or keep large metadata elsewhere)",
                self.max_json_values
            ));
        }
        Ok(())
    }
}

/// A validated webhook request.
#[derive(Debug, Clone)]
pub struct Batch {
    pub agent_id: Option<i64>,
    pub calls: Vec<NewCall>,
}

/// One validated, normalised call, ready to store.
#[derive(Debug, Clone)]
pub struct NewCall {
    /// Position in the request's `calls` array (for error paths).
    pub index: usize,
    /// The sender's id.
    pub external_id: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub to_phone_number: Option<PhoneNumber>,
    pub from_phone_number: Option<PhoneNumber>,
    pub messages: Vec<Message>,
    pub message_times: MessageTimes,
    pub metadata: Map<String, Value>,
    pub ended_reason: String,
    pub run_id: Option<i64>,
    pub trace_id: Option<String>,
    pub channel: Channel,
    /// The call object exactly as received (unknown fields included).
    pub raw: Value,
    /// Hash of the request's `agent_id` and the raw call, in canonical form: an identical
    /// resend has the same hash, a changed one does not.
    pub content_hash: String,
    /// Data-quality remarks that do not reject the call.
    pub warnings: Vec<FieldError>,
    /// Its recording, stored with it when the call is new (a simulated voice call's; an
    /// uploaded file's). Never part of the payload, so never part of the content hash.
    pub recording: Option<Box<crate::AnalysedRecording>>,
    /// Where the sender says its recording is (`recording_url`), to be fetched once the call
    /// is stored.
    pub recording_request: Option<RecordingRequest>,
    /// Metadata a later event of the same call adds (Retell's `call_analysis`): left out of
    /// the content hash, so that event is not a conflict, and added to the stored call when
    /// it is missing there.
    pub amendment: Map<String, Value>,
    /// What the project's redaction policy replaced in the call, by kind (empty when off).
    pub redactions: crate::redact::Counts,
}

/// A recording to fetch for a stored call: its URL and which channel is the agent's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRequest {
    pub url: String,
    /// 0 or 1; the other channel is the caller's.
    pub agent_channel: u32,
}

impl RecordingRequest {
    /// The URL as a log line or a warning may show it: without credentials, query or
    /// fragment, where a presigned URL keeps its signature.
    pub fn shown(&self) -> String {
        shown_url(&self.url)
    }
}

/// `url` without its user information, query and fragment.
pub fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let rest = &rest[..end];
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

impl NewCall {
    /// Adds this call's amendment to the metadata stored for it; whether that changed it (a
    /// resend of the amending event changes nothing).
    pub fn amend(&self, stored: &mut Map<String, Value>) -> bool {
        let mut changed = false;
        for (key, value) in &self.amendment {
            if stored.get(key) != Some(value) {
                stored.insert(key.clone(), value.clone());
                changed = true;
            }
        }
        changed
    }

    /// What was said, one message per line, for text search.
    pub fn transcript_text(&self) -> String {
        let lines: Vec<&str> = self
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .filter(|c| !c.is_empty())
            .collect();
        lines.join("\n")
    }
}

/// How a conversation was held: spoken, or written (a chat, or callgrade's text simulation),
/// where speech timing (interruptions, talk ratio, words per minute) has no meaning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    #[default]
    Voice,
    Text,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Voice => "voice",
            Self::Text => "text",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "voice" => Some(Self::Voice),
            "text" => Some(Self::Text),
            _ => None,
        }
    }
}

/// One normalised transcript row, as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// Seconds from the call's start.
    pub start_offset: Option<f64>,
    pub end_offset: Option<f64>,
    /// Absolute times, milliseconds since the Unix epoch.
    pub start_at_ms: Option<i64>,
    pub end_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub data: Option<Value>,
}

/// Who spoke a message. Case-sensitive on the wire, as in Cekura's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The agent under test.
    Bot,
    /// The caller.
    User,
    System,
    FunctionCall,
    FunctionCallResult,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Bot,
        Role::User,
        Role::System,
        Role::FunctionCall,
        Role::FunctionCallResult,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bot => "bot",
            Role::User => "user",
            Role::System => "system",
            Role::FunctionCall => "function_call",
            Role::FunctionCallResult => "function_call_result",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(role) = Role::ALL.into_iter().find(|r| r.as_str() == s) {
            return Ok(role);
        }
        let allowed = "one of bot, user, system, function_call, function_call_result";
        Err(match Self::near_miss(s) {
            Some(hint) => format!("must be {allowed}; got {s:?}, did you mean {hint:?}?"),
            None => format!("must be {allowed}; got {s:?}"),
        })
    }

    fn near_miss(s: &str) -> Option<&'static str> {
        let lower = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        if let Some(role) = Role::ALL.into_iter().find(|r| r.as_str() == lower) {
            return Some(role.as_str());
        }
        Some(match lower.as_str() {
            "assistant" | "agent" | "ai" | "main_agent" | "bot_message" => "bot",
            "human" | "customer" | "caller" | "testing_agent" | "user_message" => "user",
            "tool" | "tool_call" | "tool_calls" | "function" | "functioncall" => "function_call",
            "tool_result"
            | "tool_call_result"
            | "function_result"
            | "tool_response"
            | "function_call_response" => "function_call_result",
            _ => return None,
        })
    }
}

/// Malformed JSON, with where it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonSyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for JsonSyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "malformed JSON at line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Parses bytes as JSON, reporting the line and column of a syntax error.
pub fn parse_json(bytes: &[u8]) -> Result<Value, JsonSyntaxError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let full = e.to_string();
        // serde_json appends " at line L column C"; we report those separately.
        let message = match full.rfind(" at line ") {
            Some(i) => full[..i].to_owned(),
            None => full,
        };
        JsonSyntaxError {
            line: e.line(),
            column: e.column(),
            message,
        }
    })
}

/// Validates and normalises a webhook body, collecting every problem with its path.
///
/// Checks that need the database (the agent and runs exist in the project) are the store's.
pub fn validate_batch(body: &Value, limits: &Limits) -> Result<Batch, Vec<FieldError>> {
    let mut batch = validate(body, limits)?;
    for call in &mut batch.calls {
        call.raw = body["calls"][call.index].clone();
    }
    Ok(batch)
}

/// [`validate_batch`] on a body it may take apart: each call's raw object is moved into the
/// batch instead of copied, so a large body is not held twice.
pub fn validate_batch_owned(mut body: Value, limits: &Limits) -> Result<Batch, Vec<FieldError>> {
    let mut batch = validate(&body, limits)?;
    for call in &mut batch.calls {
        call.raw = body["calls"][call.index].take();
    }
    Ok(batch)
}

/// The hash that tells an identical resend from a changed call: SHA-256 of
/// `{"agent_id":…,"call":…}` as compact JSON, streamed into the hasher rather than built.
pub(crate) fn content_hash(agent_id: &Value, call: &Value) -> String {
    struct Digest(Sha256);
    impl std::io::Write for Digest {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    use std::io::Write;
    let mut digest = Digest(Sha256::new());
    // Writing into a hasher cannot fail.
    let _ = digest.write_all(br#"{"agent_id":"#);
    let _ = serde_json::to_writer(&mut digest, agent_id);
    let _ = digest.write_all(br#","call":"#);
    let _ = serde_json::to_writer(&mut digest, call);
    let _ = digest.write_all(b"}");
    hex::encode(digest.0.finalize())
}

fn validate(body: &Value, limits: &Limits) -> Result<Batch, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new(
            "$",
            format!(
                "the body must be a JSON object {{\"agent_id\": …, \"calls\": […]}}, got {}",
                kind(body)
            ),
        )]);
    };

    let agent_id = match obj.get("agent_id") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(id) if id > 0 => Some(id),
            _ => {
                errors.push(FieldError::new(
                    "agent_id",
                    integer_message(v, "an agent id"),
                ));
                None
            }
        },
    };
    let agent_id_given = !matches!(obj.get("agent_id"), None | Some(Value::Null));

    let raw_calls: &[Value] = match obj.get("calls") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                "calls",
                "is required: an array of call objects",
            ));
            &[]
        }
        Some(Value::Array(calls)) if calls.is_empty() => {
            errors.push(FieldError::new("calls", "must contain at least one call"));
            &[]
        }
        Some(Value::Array(calls)) if calls.len() > limits.max_calls_per_request => {
            errors.push(FieldError::new(
                "calls",
                format!(
                    "holds {} calls; at most {} are accepted per request, split the batch",
                    calls.len(),
                    limits.max_calls_per_request
                ),
            ));
            &[]
        }
        Some(Value::Array(calls)) => calls,
        Some(other) => {
            errors.push(FieldError::new(
                "calls",
                format!("must be an array of call objects, got {}", kind(other)),
            ));
            &[]
        }
    };

    let canonical_agent = obj.get("agent_id").cloned().unwrap_or(Value::Null);
    let mut calls = Vec::with_capacity(raw_calls.len());
    let mut first_index_of_id: HashMap<String, usize> = HashMap::new();
    let mut without_run_id = Vec::new();
    for (i, raw) in raw_calls.iter().enumerate() {
        let path = format!("calls[{i}]");
        let before = errors.len();
        let call = parse_call(i, &path, raw, &canonical_agent, limits, &mut errors);
        // Checked on the raw id, so a duplicate is reported even when either call has other
        // problems too.
        if let Some(id) = usable_id(raw) {
            if let Some(&first) = first_index_of_id.get(&id) {
                errors.push(FieldError::new(
                    format!("{path}.id"),
                    format!(
                        "{id:?} is already used by calls[{first}]; ids must be unique within a request"
                    ),
                ));
            } else {
                first_index_of_id.insert(id, i);
            }
        }
        if let Some(call) = call.filter(|_| errors.len() == before) {
            if call.run_id.is_none() {
                without_run_id.push(i);
            }
            calls.push(call);
        } else if raw.get("run_id").is_none_or(Value::is_null) {
            without_run_id.push(i);
        }
    }

    // Each call that cannot be placed gets its own error, so a tool can point at it.
    if !agent_id_given && !raw_calls.is_empty() {
        for i in without_run_id {
            errors.push(FieldError::new(
                format!("calls[{i}].run_id"),
                "is required when the request has no agent_id: give this call its run_id, or agent_id for the whole request",
            ));
        }
    }

    if errors.is_empty() {
        Ok(Batch { agent_id, calls })
    } else {
        Err(errors)
    }
}

/// Whether a free-form object is within its size limit, as compact JSON.
pub(crate) fn within(value: &Value, max_bytes: usize) -> Result<(), String> {
    let len = json_len(value);
    if len > max_bytes {
        return Err(format!(
            "is {len} bytes as JSON; at most {max_bytes} are accepted here (keep large data elsewhere and link to it)"
        ));
    }
    Ok(())
}

/// A call's id as it will be stored, when it is a valid one (`parse_call` reports the others).
fn usable_id(raw: &Value) -> Option<String> {
    match raw.get("id")? {
        Value::String(s) if (1..=CALL_ID_MAX_CHARS).contains(&s.chars().count()) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn parse_call(
    index: usize,
    path: &str,
    raw: &Value,
    canonical_agent: &Value,
    limits: &Limits,
    errors: &mut Vec<FieldError>,
) -> Option<NewCall> {
    let Some(obj) = raw.as_object() else {
        errors.push(FieldError::new(
            path,
            format!("must be a call object, got {}", kind(raw)),
        ));
        return None;
    };
    let at = |field: &str| format!("{path}.{field}");

    let external_id = match obj.get("id") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                at("id"),
                "is required: your system's unique id for this call (1–255 characters)",
            ));
            None
        }
        Some(Value::String(s)) => {
            let chars = s.chars().count();
            if chars == 0 {
                errors.push(FieldError::new(at("id"), "must not be empty"));
                None
            } else if chars > CALL_ID_MAX_CHARS {
                errors.push(FieldError::new(
                    at("id"),
                    format!("must be at most {CALL_ID_MAX_CHARS} characters (got {chars})"),
                ));
                None
            } else {
                Some(s.clone())
            }
        }
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Some(other) => {
            errors.push(FieldError::new(
                at("id"),
                format!("must be a string of 1–255 characters, got {}", kind(other)),
            ));
            None
        }
    };

    let started_at = required_datetime(obj, "startedAt", &at, errors);
    let ended_at = required_datetime(obj, "endedAt", &at, errors);
    if let (Some(s), Some(e)) = (started_at, ended_at) {
        if e < s {
            errors.push(FieldError::new(
                at("endedAt"),
                format!(
                    "must not be before startedAt ({} < {})",
                    e.to_rfc3339(),
                    s.to_rfc3339()
                ),
            ));
        }
    }

    let to_phone_number = optional_phone(obj, "to_phone_number", &at, errors);
    let from_phone_number = optional_phone(obj, "from_phone_number", &at, errors);

    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(v @ Value::Object(m)) => {
            if let Err(e) = within(v, limits.max_metadata_bytes) {
                errors.push(FieldError::new(at("metadata"), e));
            }
            m.clone()
        }
        Some(other) => {
            errors.push(FieldError::new(
                at("metadata"),
                format!("must be an object of key-value pairs, got {}", kind(other)),
            ));
            Map::new()
        }
    };

    let ended_reason = match obj.get("endedReason") {
        None | Some(Value::Null) => "unknown".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            errors.push(FieldError::new(
                at("endedReason"),
                format!(
                    "must be a string such as \"customer-hungup\", got {}",
                    kind(other)
                ),
            ));
            String::new()
        }
    };

    let run_id = match obj.get("run_id") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let parsed = match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                    s.parse::<i64>().ok()
                }
                _ => None,
            };
            match parsed {
                Some(id) if id > 0 => Some(id),
                _ => {
                    errors.push(FieldError::new(
                        at("run_id"),
                        format!(
                            "A valid integer is required: a run id as a JSON integer or a string of digits, got {}",
                            short(v)
                        ),
                    ));
                    None
                }
            }
        }
    };

    let trace_id = match obj.get("trace_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= TRACE_ID_MAX_CHARS => Some(s.clone()),
        Some(Value::String(s)) => {
            errors.push(FieldError::new(
                at("trace_id"),
                format!(
                    "must be at most {TRACE_ID_MAX_CHARS} characters (an OpenTelemetry trace id), got {}",
                    s.chars().count()
                ),
            ));
            None
        }
        Some(other) => {
            errors.push(FieldError::new(
                at("trace_id"),
                format!("must be a string, got {}", kind(other)),
            ));
            None
        }
    };

    let channel = match obj.get("channel") {
        None | Some(Value::Null) => Channel::Voice,
        Some(v) => v.as_str().and_then(Channel::parse).unwrap_or_else(|| {
            errors.push(FieldError::new(
                at("channel"),
                format!(
                    "must be \"voice\" (the default) or \"text\" (a chat: no speech timing), got {}",
                    short(v)
                ),
            ));
            Channel::Voice
        }),
    };

    let recording_request = parse_recording_request(obj, &at, errors);

    let (messages, message_times, mut warnings) = match (started_at, ended_at) {
        (Some(s), Some(e)) => {
            parse_messages(obj.get("messages"), &at("messages"), s, e, limits, errors)
        }
        _ => {
            // Still report message problems even when the call's times are unusable.
            let epoch = DateTime::<Utc>::UNIX_EPOCH;
            parse_messages(
                obj.get("messages"),
                &at("messages"),
                epoch,
                epoch,
                limits,
                errors,
            );
            (Vec::new(), MessageTimes::None, Vec::new())
        }
    };

    if recording_request.is_none() && obj.get("agent_channel").is_some_and(|v| !v.is_null()) {
        warnings.push(FieldError::new(
            at("agent_channel"),
            "is ignored: the call has no recording_url",
        ));
    }

    let content_hash = content_hash(canonical_agent, raw);

    Some(NewCall {
        index,
        external_id: external_id?,
        started_at: started_at?,
        ended_at: ended_at?,
        to_phone_number,
        from_phone_number,
        messages,
        message_times,
        metadata,
        ended_reason,
        run_id,
        trace_id,
        channel,
        // Attached by the caller of `validate`: moved out of an owned body, or copied.
        raw: Value::Null,
        content_hash,
        warnings,
        recording: None,
        recording_request,
        amendment: Map::new(),
        redactions: Default::default(),
    })
}

/// `recording_url` (or `metadata.recording_url`) and `agent_channel`: an absolute http(s) URL,
/// fetched later; the agent on channel 1 (the right) unless said otherwise.
fn parse_recording_request(
    obj: &Map<String, Value>,
    at: &impl Fn(&str) -> String,
    errors: &mut Vec<FieldError>,
) -> Option<RecordingRequest> {
    let in_metadata = obj
        .get("metadata")
        .and_then(|m| m.get("recording_url"))
        .filter(|v| !v.is_null());
    let (url, path) = match obj.get("recording_url").filter(|v| !v.is_null()) {
        Some(v) => (v, at("recording_url")),
        None => (in_metadata?, at("metadata.recording_url")),
    };
    let url = match url {
        Value::String(s) => match check_recording_url(s) {
            Ok(()) => Some(s.clone()),
            Err(why) => {
                errors.push(FieldError::new(&path, why));
                None
            }
        },
        other => {
            errors.push(FieldError::new(
                &path,
                format!("must be a URL string, got {}", kind(other)),
            ));
            None
        }
    };
    let agent_channel = match obj.get("agent_channel") {
        None | Some(Value::Null) => Some(1),
        Some(v) => match v.as_u64() {
            Some(c @ 0..=1) => Some(c as u32),
            _ => {
                errors.push(FieldError::new(
                    at("agent_channel"),
                    format!(
                        "must be 0 or 1: the recording's channel that is the agent's (the other is the caller's), got {}",
                        short(v)
                    ),
                ));
                None
            }
        },
    };
    Some(RecordingRequest {
        url: url?,
        agent_channel: agent_channel?,
    })
}

pub(crate) fn check_recording_url(s: &str) -> Result<(), String> {
    let chars = s.chars().count();
    if chars > RECORDING_URL_MAX_CHARS {
        return Err(format!(
            "must be at most {RECORDING_URL_MAX_CHARS} characters, got {chars}"
        ));
    }
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or("must be an http:// or https:// URL the server can fetch the recording from")?;
    if s.chars().any(|c| c <= ' ' || c == '\x7f') {
        return Err("must not contain spaces or control characters".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err("must name a host, as in https://example.com/recording.wav".into());
    }
    Ok(())
}

fn required_datetime(
    obj: &Map<String, Value>,
    field: &str,
    at: &impl Fn(&str) -> String,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    let example = "an ISO 8601 date-time such as \"2025-10-15T09:22:21.787Z\"";
    match obj.get(field) {
        None | Some(Value::Null) => {
            let hint = snake_case_hint(obj, field);
            errors.push(FieldError::new(
                at(field),
                format!("is required: {example}{hint}"),
            ));
            None
        }
        Some(Value::String(s)) => {
            let parsed = parse_datetime(s);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    at(field),
                    format!("must be {example}, got {s:?}"),
                ));
            }
            parsed
        }
        Some(other) => {
            errors.push(FieldError::new(
                at(field),
                format!("must be {example} string, got {}", kind(other)),
            ));
            None
        }
    }
}

/// Senders often write `started_at` for `startedAt`; say so instead of only "required".
fn snake_case_hint(obj: &Map<String, Value>, field: &str) -> String {
    let snake: String = field
        .chars()
        .flat_map(|c| {
            if c.is_ascii_uppercase() {
                vec!['_', c.to_ascii_lowercase()]
            } else {
                vec![c]
            }
        })
        .collect();
    if obj.contains_key(&snake) {
        format!(" (found {snake:?}; the field is spelled {field:?})")
    } else {
        String::new()
    }
}

fn optional_phone(
    obj: &Map<String, Value>,
    field: &str,
    at: &impl Fn(&str) -> String,
    errors: &mut Vec<FieldError>,
) -> Option<PhoneNumber> {
    match obj.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match PhoneNumber::parse(s) {
            Ok(p) => Some(p),
            Err(message) => {
                errors.push(FieldError::new(at(field), message));
                None
            }
        },
        Some(other) => {
            errors.push(FieldError::new(
                at(field),
                format!(
                    "must be a string such as \"+14155551234\", got {}",
                    kind(other)
                ),
            ));
            None
        }
    }
}

/// Raw times of one message before the call-wide reading is chosen.
struct RawMessage {
    role: Role,
    content: String,
    start: Option<f64>,
    end: Option<f64>,
    data: Option<Value>,
}

fn parse_messages(
    value: Option<&Value>,
    path: &str,
    started_at: DateTime<Utc>,
    ended_at: DateTime<Utc>,
    limits: &Limits,
    errors: &mut Vec<FieldError>,
) -> (Vec<Message>, MessageTimes, Vec<FieldError>) {
    let items = match value {
        None | Some(Value::Null) => return (Vec::new(), MessageTimes::None, Vec::new()),
        Some(Value::Array(items)) if items.len() > limits.max_messages_per_call => {
            errors.push(FieldError::new(
                path,
                format!(
                    "holds {} messages; at most {} are accepted per call",
                    items.len(),
                    limits.max_messages_per_call
                ),
            ));
            return (Vec::new(), MessageTimes::None, Vec::new());
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            errors.push(FieldError::new(
                path,
                format!(
                    "must be an array of message objects with role and content, got {}",
                    kind(other)
                ),
            ));
            return (Vec::new(), MessageTimes::None, Vec::new());
        }
    };

    let mut raw = Vec::with_capacity(items.len());
    let before = errors.len();
    for (j, item) in items.iter().enumerate() {
        let mpath = format!("{path}[{j}]");
        if let Some(m) = parse_message(&mpath, item, limits, errors) {
            raw.push(m);
        }
    }
    if errors.len() != before {
        return (Vec::new(), MessageTimes::None, Vec::new());
    }

    // One reading per call: the first time present decides, and every other must agree.
    let mut times = MessageTimes::None;
    for (j, m) in raw.iter().enumerate() {
        for (field, value) in [("start_time", m.start), ("end_time", m.end)] {
            let Some(v) = value else { continue };
            let this = MessageTimes::of(v);
            if times == MessageTimes::None {
                times = this;
            } else if times != this {
                errors.push(FieldError::new(
                    format!("{path}[{j}].{field}"),
                    format!(
                        "{v} reads as {} but earlier times of this call read as {}; use one form per call (milliseconds since the epoch, or seconds from startedAt)",
                        this.as_str(),
                        times.as_str()
                    ),
                ));
                return (Vec::new(), MessageTimes::None, Vec::new());
            }
        }
    }

    let start_ms = started_at.timestamp_millis();
    let duration = (ended_at - started_at).num_milliseconds() as f64 / 1000.0;
    // Times a little outside the call are normal (clock skew, rounding); say so past a second.
    const SLACK_SECONDS: f64 = 1.0;
    let mut warnings = Vec::new();
    let messages = raw
        .into_iter()
        .enumerate()
        .map(|(j, m)| {
            let start = m.start.map(|v| times.normalise(v, start_ms));
            let end = m.end.map(|v| times.normalise(v, start_ms));
            for (field, t) in [("start_time", start), ("end_time", end)] {
                if let Some((offset, _)) = t {
                    if offset < -SLACK_SECONDS || offset > duration + SLACK_SECONDS {
                        warnings.push(FieldError::new(
                            format!("{path}[{j}].{field}"),
                            format!(
                                "lies outside the call: {offset:.3} s from startedAt, the call lasts {duration:.3} s"
                            ),
                        ));
                    }
                }
            }
            Message {
                role: m.role,
                content: m.content,
                start_offset: start.map(|t| t.0),
                end_offset: end.map(|t| t.0),
                start_at_ms: start.map(|t| t.1),
                end_at_ms: end.map(|t| t.1),
                data: m.data,
            }
        })
        .collect();
    (messages, times, warnings)
}

fn parse_message(
    path: &str,
    item: &Value,
    limits: &Limits,
    errors: &mut Vec<FieldError>,
) -> Option<RawMessage> {
    let Some(obj) = item.as_object() else {
        errors.push(FieldError::new(
            path,
            format!(
                "must be a message object with role and content, got {}",
                kind(item)
            ),
        ));
        return None;
    };
    let at = |field: &str| format!("{path}.{field}");
    let before = errors.len();

    let role = match obj.get("role") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                at("role"),
                "is required: one of bot, user, system, function_call, function_call_result",
            ));
            None
        }
        Some(Value::String(s)) => match Role::parse(s) {
            Ok(r) => Some(r),
            Err(message) => {
                errors.push(FieldError::new(at("role"), message));
                None
            }
        },
        Some(other) => {
            errors.push(FieldError::new(
                at("role"),
                format!("must be a string, got {}", kind(other)),
            ));
            None
        }
    };

    let content = match obj.get("content") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                at("content"),
                "is required: the utterance text, or \"\" for tool rows",
            ));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.push(FieldError::new(
                at("content"),
                format!("must be a string, got {}", kind(other)),
            ));
            None
        }
    };

    let mut time = |field: &str| -> Option<f64> {
        match obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(v) if v >= 0.0 && v.is_finite() => Some(v),
                _ => {
                    errors.push(FieldError::new(
                        at(field),
                        format!("must be a non-negative number, got {n}"),
                    ));
                    None
                }
            },
            Some(other) => {
                errors.push(FieldError::new(
                    at(field),
                    format!(
                        "must be a number (milliseconds since the epoch, or seconds from startedAt), got {}",
                        kind(other)
                    ),
                ));
                None
            }
        }
    };
    let start = time("start_time");
    let end = time("end_time");
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            errors.push(FieldError::new(
                at("end_time"),
                format!("must not be before start_time ({e} < {s})"),
            ));
        }
    }

    let data = match obj.get("data") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => match within(v, limits.max_message_data_bytes) {
            Ok(()) => Some(v.clone()),
            Err(e) => {
                errors.push(FieldError::new(at("data"), e));
                None
            }
        },
        Some(other) => {
            errors.push(FieldError::new(
                at("data"),
                format!("must be an object, got {}", kind(other)),
            ));
            None
        }
    };

    if errors.len() != before {
        return None;
    }
    Some(RawMessage {
        role: role?,
        content: content?,
        start,
        end,
        data,
    })
}

fn integer_message(v: &Value, what: &str) -> String {
    match v {
        Value::String(s) => format!(
            "must be a JSON integer, not a string: send {what} as 123, not \"123\" (got {s:?})"
        ),
        Value::Number(n) if n.as_i64().is_some() => {
            format!("must be a positive integer (got {n})")
        }
        other => format!("must be a JSON integer, got {}", short(other)),
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value for an error message, cut short so a huge field cannot flood the response.
pub(crate) fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests;
