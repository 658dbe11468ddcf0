//! Cekura's observe endpoint, `POST /observability/v1/observe/`: one call per request, its
//! transcript in any of the transcript types. A form or multipart body arrives here as an object
//! of strings, so the fields that are numbers or JSON are also read from their text.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{keep, parse_transcript, AgentRef, Fields, Parts, TranscriptType, VendorCall};
use crate::payload::{kind, short};
use crate::{FieldError, Limits, RecordingRequest, TRACE_ID_MAX_CHARS};

/// The fields Cekura's `CreateCallLog` takes; any other is reported as ignored.
const FIELDS: &[&str] = &[
    "call_id",
    "agent",
    "assistant_id",
    "transcript_type",
    "transcript_json",
    "voice_recording_url",
    "voice_recording",
    "main_agent_channel_index",
    "call_ended_reason",
    "customer_number",
    "timestamp",
    "metadata",
    "dynamic_variables",
    "trace_id",
    "redact_fields",
    "metric_ids",
    "feedback",
];

/// Reads an observe body. `now` is the call's time when the body gives no `timestamp`.
pub fn parse_observe(
    mut body: Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<VendorCall, Vec<FieldError>> {
    let mut errors = Vec::new();
    // Fields a form sends as text are read as the JSON they hold, in place, so the raw call
    // keeps them as values.
    if let Some(obj) = body.as_object_mut() {
        for field in [
            "transcript_json",
            "metadata",
            "dynamic_variables",
            "redact_fields",
        ] {
            if let Some(Value::String(s)) = obj.get(field) {
                if s.trim().is_empty() {
                    obj.remove(field);
                    continue;
                }
                match serde_json::from_str::<Value>(s) {
                    Ok(v) => drop(obj.insert(field.to_owned(), v)),
                    Err(e) => {
                        errors.push(FieldError::new(
                            field,
                            format!("was sent as text that is not JSON: {e}"),
                        ));
                        obj.remove(field);
                    }
                }
            }
        }
    }
    let Some(f) = Fields::of(&body, "", "a JSON object of call log fields", &mut errors) else {
        return Err(errors);
    };
    let mut warnings = Vec::new();
    for name in f.obj.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        warnings.push(FieldError::new(
            name.as_str(),
            "is not a field of the observe endpoint; it is kept in the raw call and otherwise ignored",
        ));
    }

    let call_id = f.call_id("call_id", &mut errors);
    let agent = match (
        integer(&f, "agent", &mut errors),
        f.id("assistant_id", &mut errors),
    ) {
        (Some(id), _) => Some(AgentRef::Id(id)),
        (None, Some(id)) => Some(AgentRef::External {
            id,
            path: "assistant_id".into(),
        }),
        (None, None) => {
            if f.get("agent").is_none() && f.get("assistant_id").is_none() {
                errors.push(FieldError::new(
                    "agent",
                    "is required: the callgrade agent id (or assistant_id, your platform's assistant id stored in the agent's external_ids)",
                ));
            }
            None
        }
    };
    let ty = match f.str("transcript_type", &mut errors) {
        None => TranscriptType::Cekura,
        Some(s) => TranscriptType::parse(s).unwrap_or_else(|| {
            errors.push(FieldError::new(
                "transcript_type",
                format!("must be one of {}; got {s:?}", TranscriptType::NAMES),
            ));
            TranscriptType::Cekura
        }),
    };
    let agent_channel = match f.get("main_agent_channel_index") {
        None => None,
        Some(v) => match integer_value(v) {
            Some(c @ 0..=1) => Some(c as u32),
            _ => {
                errors.push(FieldError::new(
                    "main_agent_channel_index",
                    format!("must be 0 or 1: the recording channel (or Deepgram speaker) that is the agent, got {}", short(v)),
                ));
                None
            }
        },
    };
    let started_at = match f.get("timestamp") {
        None => now,
        Some(_) => f.datetime("timestamp", &mut errors).unwrap_or(now),
    };
    let turns = match (ty, f.get("transcript_json")) {
        (TranscriptType::NoneMono, Some(_)) => {
            warnings.push(FieldError::new(
                "transcript_json",
                "is ignored: transcript_type none-mono means the call has no transcript",
            ));
            Vec::new()
        }
        (TranscriptType::NoneMono, None) | (_, None) => Vec::new(),
        (ty, Some(v)) => parse_transcript(
            ty,
            v,
            "transcript_json",
            agent_channel,
            &mut errors,
            &mut warnings,
        ),
    };
    if ty == TranscriptType::NoneMono {
        warnings.push(FieldError::new(
            "transcript_type",
            "none-mono: callgrade does not transcribe recordings, so only metrics of the recording and the call's times apply",
        ));
    }
    let recording_request = match f.str("voice_recording_url", &mut errors) {
        None => None,
        Some(url) => match crate::payload::check_recording_url(url) {
            Ok(()) => Some(RecordingRequest {
                url: url.to_owned(),
                agent_channel: agent_channel.unwrap_or(1),
            }),
            Err(why) => {
                errors.push(FieldError::new("voice_recording_url", why));
                None
            }
        },
    };
    let trace_id = match f.str("trace_id", &mut errors) {
        Some(t) if t.chars().count() > TRACE_ID_MAX_CHARS => {
            errors.push(FieldError::new(
                "trace_id",
                format!(
                    "must be at most {TRACE_ID_MAX_CHARS} characters (an OpenTelemetry trace id)"
                ),
            ));
            None
        }
        t => t.map(str::to_owned),
    };
    let mut metadata = match f.get("metadata") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            errors.push(FieldError::new(
                "metadata",
                format!("must be an object of key-value pairs, got {}", kind(other)),
            ));
            Map::new()
        }
    };
    match f.get("dynamic_variables") {
        None | Some(Value::Object(_)) => keep(
            &mut metadata,
            "dynamic_variables",
            f.get("dynamic_variables"),
        ),
        Some(other) => errors.push(FieldError::new(
            "dynamic_variables",
            format!("must be an object, got {}", kind(other)),
        )),
    }
    keep(&mut metadata, "feedback", f.get("feedback"));
    for (field, why) in [
        (
            "redact_fields",
            "is not applied: callgrade does not redact calls at ingest yet",
        ),
        (
            "metric_ids",
            "is ignored: every metric of the project is evaluated",
        ),
    ] {
        if f.get(field).is_some() {
            warnings.push(FieldError::new(field, why));
        }
    }
    let customer = f.get("customer_number").map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let from_phone_number = match customer.as_deref().map(crate::PhoneNumber::parse) {
        Some(Ok(p)) => Some(p),
        // Cekura takes any customer id here; one that is not a phone number is kept as such.
        Some(Err(_)) => {
            keep(&mut metadata, "customer_number", f.get("customer_number"));
            None
        }
        None => None,
    };
    let ended_reason = f.str("call_ended_reason", &mut errors).map(str::to_owned);

    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(call_id) = call_id else {
        return Err(errors);
    };
    let mut parts = Parts::new(call_id, started_at);
    parts.turns = turns;
    parts.from_phone_number = from_phone_number;
    parts.metadata = metadata;
    if let Some(reason) = ended_reason {
        parts.ended_reason = reason;
    }
    parts.trace_id = trace_id;
    parts.recording_request = recording_request;
    parts.warnings = warnings;
    let call = parts.finish("transcript_json", &body, limits)?;
    Ok(VendorCall {
        call: crate::NewCall { raw: body, ..call },
        agent,
    })
}

/// A positive integer, or a string of digits as a form sends it.
fn integer(f: &Fields<'_>, field: &str, errors: &mut Vec<FieldError>) -> Option<i64> {
    let v = f.get(field)?;
    match integer_value(v) {
        Some(id) if id > 0 => Some(id),
        _ => {
            errors.push(FieldError::new(
                field,
                format!(
                    "must be a positive integer (callgrade's agent id), got {}",
                    short(v)
                ),
            ));
            None
        }
    }
}

fn integer_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}
