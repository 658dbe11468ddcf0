//! Calls in the shapes other systems send: Cekura's observe endpoint (with its nine transcript
//! types) and the post-call webhooks of Vapi, Retell and ElevenLabs. Each parser reads its
//! vendor's shape, collecting every problem with its path as the webhook's validator does, and
//! produces the same [`NewCall`] the webhook stores; what a vendor sends that callgrade has no
//! column for stays in the call's `raw` and, where metrics can use it, its `metadata`.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

use crate::payload::{content_hash, kind, short, within};
use crate::{Channel, FieldError, Limits, Message, MessageTimes, NewCall, PhoneNumber, Role};

mod elevenlabs;
mod observe;
mod retell;
pub mod signature;
mod transcript;
mod vapi;

pub use observe::parse_observe;
use transcript::parse_transcript;
pub use transcript::TranscriptType;

/// A format callgrade reads calls in, named as receipts and the delivery log name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Cekura's custom-provider webhook (`payload.rs`).
    Custom,
    /// Cekura's observe endpoint.
    Observe,
    Vapi,
    Retell,
    ElevenLabs,
    /// OpenTelemetry traces (OTLP/HTTP): spans, not calls.
    Otlp,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Custom => "custom",
            Self::Observe => "observe",
            Self::Vapi => "vapi",
            Self::Retell => "retell",
            Self::ElevenLabs => "elevenlabs",
            Self::Otlp => "otlp",
        }
    }

    /// The vendor whose signing secret a route checks, when it has one.
    pub fn vendor(self) -> Option<Vendor> {
        match self {
            Self::Vapi => Some(Vendor::Vapi),
            Self::Retell => Some(Vendor::Retell),
            Self::ElevenLabs => Some(Vendor::ElevenLabs),
            Self::Custom | Self::Observe | Self::Otlp => None,
        }
    }
}

/// A platform that signs its post-call webhooks with a secret the project keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    Vapi,
    Retell,
    ElevenLabs,
}

impl Vendor {
    pub const ALL: [Vendor; 3] = [Vendor::Vapi, Vendor::Retell, Vendor::ElevenLabs];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vapi => "vapi",
            Self::Retell => "retell",
            Self::ElevenLabs => "elevenlabs",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn format(self) -> Format {
        match self {
            Self::Vapi => Format::Vapi,
            Self::Retell => Format::Retell,
            Self::ElevenLabs => Format::ElevenLabs,
        }
    }
}

/// Which agent a vendor's call is for, as the body names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentRef {
    /// callgrade's agent id.
    Id(i64),
    /// The vendor's assistant or agent id, matched against an agent's `external_ids`; `path`
    /// is where the body gave it.
    External { id: String, path: String },
}

/// A vendor body read: the call to store, or an event that carries none (a Vapi
/// `status-update`, a Retell `call_started`), acknowledged and not stored.
#[derive(Debug, Clone)]
pub enum VendorBody {
    Call(Box<VendorCall>),
    Ignored { event: String, reason: String },
}

/// A call read from a vendor's body, with the agent it names.
#[derive(Debug, Clone)]
pub struct VendorCall {
    pub call: NewCall,
    pub agent: Option<AgentRef>,
}

/// Reads a vendor's post-call webhook body.
pub fn parse_vendor(
    vendor: Vendor,
    body: Value,
    agent_id: Option<i64>,
    limits: &Limits,
) -> Result<VendorBody, Vec<FieldError>> {
    match vendor {
        Vendor::Vapi => vapi::parse(body, agent_id, limits),
        Vendor::Retell => retell::parse(body, agent_id, limits),
        Vendor::ElevenLabs => elevenlabs::parse(body, agent_id, limits),
    }
}

/// One transcript row as a vendor gives it, its times already read as seconds from the call's
/// start or as epoch milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Turn {
    pub role: Role,
    pub content: String,
    pub start: Option<Time>,
    pub end: Option<Time>,
    pub data: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Time {
    FromStart(f64),
    EpochMs(f64),
}

impl Turn {
    pub fn said(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            start: None,
            end: None,
            data: None,
        }
    }

    pub fn tool(role: Role, data: Value) -> Self {
        Self {
            data: Some(data),
            ..Self::said(role, "")
        }
    }

    pub fn at(mut self, start: Option<Time>, end: Option<Time>) -> Self {
        self.start = start;
        self.end = end;
        self
    }
}

/// What a parser found for the call's columns; [`Parts::finish`] checks the limits and makes
/// the [`NewCall`].
pub(crate) struct Parts {
    pub external_id: String,
    pub started_at: DateTime<Utc>,
    /// `None`: the end of the last message (or the start, without messages).
    pub ended_at: Option<DateTime<Utc>>,
    pub to_phone_number: Option<PhoneNumber>,
    pub from_phone_number: Option<PhoneNumber>,
    pub turns: Vec<Turn>,
    pub metadata: Map<String, Value>,
    pub ended_reason: String,
    pub trace_id: Option<String>,
    pub channel: Channel,
    pub recording_request: Option<crate::RecordingRequest>,
    pub warnings: Vec<FieldError>,
}

impl Parts {
    pub fn new(external_id: String, started_at: DateTime<Utc>) -> Self {
        Self {
            external_id,
            started_at,
            ended_at: None,
            to_phone_number: None,
            from_phone_number: None,
            turns: Vec::new(),
            metadata: Map::new(),
            ended_reason: "unknown".into(),
            trace_id: None,
            channel: Channel::Voice,
            recording_request: None,
            warnings: Vec::new(),
        }
    }

    /// The call, its content hash taken over `hashed` (the vendor's call as sent, less what a
    /// later event of the same call may add); the caller gives it its raw form.
    pub fn finish(
        self,
        turns_path: &str,
        hashed: &Value,
        limits: &Limits,
    ) -> Result<NewCall, Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.turns.len() > limits.max_messages_per_call {
            errors.push(FieldError::new(
                turns_path,
                format!(
                    "holds {} messages; at most {} are accepted per call",
                    self.turns.len(),
                    limits.max_messages_per_call
                ),
            ));
        }
        if let Err(e) = within(
            &Value::Object(self.metadata.clone()),
            limits.max_metadata_bytes,
        ) {
            errors.push(FieldError::new("metadata", e));
        }
        for (j, turn) in self.turns.iter().enumerate() {
            if let Some(Err(e)) = turn
                .data
                .as_ref()
                .map(|d| within(d, limits.max_message_data_bytes))
            {
                errors.push(FieldError::new(format!("{turns_path}[{j}]"), e));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let start_ms = self.started_at.timestamp_millis();
        let mut times = MessageTimes::None;
        let messages: Vec<Message> = self
            .turns
            .into_iter()
            .map(|t| {
                let read = |time: Option<Time>, times: &mut MessageTimes| {
                    time.map(|time| match time {
                        Time::FromStart(s) => {
                            if *times == MessageTimes::None {
                                *times = MessageTimes::SecondsFromStart;
                            }
                            MessageTimes::SecondsFromStart.normalise(s, start_ms)
                        }
                        Time::EpochMs(ms) => {
                            if *times == MessageTimes::None {
                                *times = MessageTimes::EpochMs;
                            }
                            MessageTimes::EpochMs.normalise(ms, start_ms)
                        }
                    })
                };
                let start = read(t.start, &mut times);
                let end = read(t.end, &mut times);
                Message {
                    role: t.role,
                    content: t.content,
                    start_offset: start.map(|s| s.0),
                    end_offset: end.map(|e| e.0),
                    start_at_ms: start.map(|s| s.1),
                    end_at_ms: end.map(|e| e.1),
                    data: t.data,
                }
            })
            .collect();
        let ended_at = self.ended_at.unwrap_or_else(|| {
            let last = messages
                .iter()
                .filter_map(|m| m.end_at_ms.or(m.start_at_ms))
                .max()
                .unwrap_or(start_ms)
                .max(start_ms);
            DateTime::from_timestamp_millis(last).unwrap_or(self.started_at)
        });
        Ok(NewCall {
            index: 0,
            external_id: self.external_id,
            started_at: self.started_at,
            ended_at,
            to_phone_number: self.to_phone_number,
            from_phone_number: self.from_phone_number,
            messages,
            message_times: times,
            metadata: self.metadata,
            ended_reason: self.ended_reason,
            run_id: None,
            trace_id: self.trace_id,
            channel: self.channel,
            content_hash: content_hash(&Value::Null, hashed),
            raw: Value::Null,
            warnings: self.warnings,
            recording: None,
            recording_request: self.recording_request,
            amendment: Map::new(),
            redactions: Default::default(),
        })
    }
}

/// Reads an object's fields with their paths, collecting problems: the small vocabulary every
/// vendor parser shares.
pub(crate) struct Fields<'a> {
    pub obj: &'a Map<String, Value>,
    pub path: String,
}

impl<'a> Fields<'a> {
    /// `value` at `path` as an object, or a problem.
    pub fn of(
        value: &'a Value,
        path: &str,
        what: &str,
        errors: &mut Vec<FieldError>,
    ) -> Option<Self> {
        match value.as_object() {
            Some(obj) => Some(Self {
                obj,
                path: path.to_owned(),
            }),
            None => {
                errors.push(FieldError::new(
                    display_path(path),
                    format!("must be {what}, got {}", kind(value)),
                ));
                None
            }
        }
    }

    pub fn at(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    /// A present, non-null field.
    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    pub fn object(&self, field: &str, errors: &mut Vec<FieldError>) -> Option<Fields<'a>> {
        let v = self.get(field)?;
        Fields::of(v, &self.at(field), "an object", errors)
    }

    pub fn str(&self, field: &str, errors: &mut Vec<FieldError>) -> Option<&'a str> {
        match self.get(field)? {
            Value::String(s) => Some(s),
            other => {
                errors.push(FieldError::new(
                    self.at(field),
                    format!("must be a string, got {}", kind(other)),
                ));
                None
            }
        }
    }

    /// A string or an integer, as ids come from vendors.
    pub fn id(&self, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
        match self.get(field)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            other => {
                errors.push(FieldError::new(
                    self.at(field),
                    format!("must be a non-empty string id, got {}", short(other)),
                ));
                None
            }
        }
    }

    /// A required id, within the call id's length.
    pub fn call_id(&self, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
        let Some(id) = self.id(field, errors) else {
            if self.get(field).is_none() {
                errors.push(FieldError::new(
                    self.at(field),
                    "is required: the call's id, which makes a resend a duplicate",
                ));
            }
            return None;
        };
        let chars = id.chars().count();
        if chars > crate::CALL_ID_MAX_CHARS {
            errors.push(FieldError::new(
                self.at(field),
                format!(
                    "must be at most {} characters (got {chars})",
                    crate::CALL_ID_MAX_CHARS
                ),
            ));
            return None;
        }
        Some(id)
    }

    pub fn number(&self, field: &str, errors: &mut Vec<FieldError>) -> Option<f64> {
        match self.get(field)? {
            Value::Number(n) => match n.as_f64() {
                Some(v) if v.is_finite() && v >= 0.0 => Some(v),
                _ => {
                    errors.push(FieldError::new(
                        self.at(field),
                        format!("must be a non-negative number, got {n}"),
                    ));
                    None
                }
            },
            other => {
                errors.push(FieldError::new(
                    self.at(field),
                    format!("must be a number, got {}", kind(other)),
                ));
                None
            }
        }
    }

    pub fn array(&self, field: &str, errors: &mut Vec<FieldError>) -> Option<&'a [Value]> {
        match self.get(field)? {
            Value::Array(items) => Some(items),
            other => {
                errors.push(FieldError::new(
                    self.at(field),
                    format!("must be an array, got {}", kind(other)),
                ));
                None
            }
        }
    }

    /// An ISO 8601 date-time.
    pub fn datetime(&self, field: &str, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
        let s = self.str(field, errors)?;
        let parsed = crate::parse_datetime(s);
        if parsed.is_none() {
            errors.push(FieldError::new(
                self.at(field),
                format!(
                    "must be an ISO 8601 date-time such as \"2026-11-30T10:00:00Z\", got {s:?}"
                ),
            ));
        }
        parsed
    }

    /// Epoch milliseconds as a date-time.
    pub fn epoch_ms(&self, field: &str, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
        let ms = self.number(field, errors)?;
        let parsed = DateTime::from_timestamp_millis(ms.round() as i64).filter(|_| ms < 1e15);
        if parsed.is_none() {
            errors.push(FieldError::new(
                self.at(field),
                format!("must be milliseconds since the Unix epoch, got {ms}"),
            ));
        }
        parsed
    }

    /// Epoch seconds as a date-time.
    pub fn epoch_secs(&self, field: &str, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
        let s = self.number(field, errors)?;
        let parsed =
            DateTime::from_timestamp_millis((s * 1000.0).round() as i64).filter(|_| s < 1e12);
        if parsed.is_none() {
            errors.push(FieldError::new(
                self.at(field),
                format!("must be seconds since the Unix epoch, got {s}"),
            ));
        }
        parsed
    }

    /// A phone number the call can be matched by; one that is not in the contract's form is
    /// kept in the raw call and noted, never a reason to refuse a vendor's call.
    pub fn phone(&self, field: &str, warnings: &mut Vec<FieldError>) -> Option<PhoneNumber> {
        let s = self.get(field)?.as_str()?;
        match PhoneNumber::parse(s) {
            Ok(p) => Some(p),
            Err(why) => {
                warnings.push(FieldError::new(
                    self.at(field),
                    format!(
                        "is not used for run matching: it {}",
                        why.trim_start_matches("must ")
                    ),
                ));
                None
            }
        }
    }
}

/// The path as shown: `$` for the body itself.
pub(crate) fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "$"
    } else {
        path
    }
}

/// Puts `value` in `metadata` under `key` unless it is null or the sender's metadata already
/// has that key.
pub(crate) fn keep(metadata: &mut Map<String, Value>, key: &str, value: Option<&Value>) {
    if let Some(v) = value.filter(|v| !v.is_null()) {
        metadata.entry(key).or_insert_with(|| v.clone());
    }
}

/// Seconds as a duration, for call ends given as a length.
pub(crate) fn seconds(s: f64) -> TimeDelta {
    TimeDelta::milliseconds((s * 1000.0).round() as i64)
}

#[cfg(test)]
mod tests;
