//! ElevenLabs' post-call webhook, `{"type": "post_call_transcription", "event_timestamp",
//! "data": {"conversation_id", "agent_id", "transcript", "metadata", "analysis"…}}`.

use serde_json::Value;

use super::transcript::elevenlabs_item;
use super::{keep, seconds, AgentRef, Fields, Parts, VendorBody, VendorCall};
use crate::{FieldError, Limits};

pub(super) fn parse(
    body: Value,
    agent_id: Option<i64>,
    limits: &Limits,
) -> Result<VendorBody, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(root) = Fields::of(
        &body,
        "",
        "ElevenLabs' webhook {\"type\", \"data\": {…}}",
        &mut errors,
    ) else {
        return Err(errors);
    };
    match root.str("type", &mut errors) {
        Some("post_call_transcription") => {}
        Some(other) => {
            return Ok(VendorBody::Ignored {
                event: other.to_owned(),
                reason: "callgrade reads ElevenLabs' post_call_transcription; other webhooks are acknowledged and not stored".into(),
            })
        }
        None => {
            errors.push(FieldError::new("type", "is required, e.g. \"post_call_transcription\""));
            return Err(errors);
        }
    }
    let Some(d) = root.object("data", &mut errors) else {
        if root.get("data").is_none() {
            errors.push(FieldError::new("data", "is required: the conversation"));
        }
        return Err(errors);
    };
    let mut warnings = Vec::new();
    let call_id = d.call_id("conversation_id", &mut errors);
    let agent = match agent_id {
        Some(id) => Some(AgentRef::Id(id)),
        None => d.id("agent_id", &mut errors).map(|id| AgentRef::External {
            id,
            path: d.at("agent_id"),
        }),
    };
    let meta = d.object("metadata", &mut errors);
    let started_at = meta
        .as_ref()
        .and_then(|m| m.epoch_secs("start_time_unix_secs", &mut errors));
    if started_at.is_none()
        && meta
            .as_ref()
            .is_none_or(|m| m.get("start_time_unix_secs").is_none())
    {
        errors.push(FieldError::new(
            d.at("metadata.start_time_unix_secs"),
            "is required: the conversation's start in seconds since the Unix epoch",
        ));
    }
    let duration = meta
        .as_ref()
        .and_then(|m| m.number("call_duration_secs", &mut errors));

    let mut turns = Vec::new();
    match d.array("transcript", &mut errors) {
        Some(items) => {
            for (j, item) in items.iter().enumerate() {
                if let Some(f) = Fields::of(
                    item,
                    &d.at(&format!("transcript[{j}]")),
                    "a transcript item object",
                    &mut errors,
                ) {
                    elevenlabs_item(&f, &mut turns, &mut errors, &mut warnings);
                }
            }
        }
        None => warnings.push(FieldError::new(
            d.at("transcript"),
            "is missing: the call is stored without a transcript",
        )),
    }

    let phone = meta
        .as_ref()
        .and_then(|m| m.object("phone_call", &mut errors));
    let (mut from, mut to) = (None, None);
    if let Some(p) = &phone {
        let external = p.phone("external_number", &mut warnings);
        let line = p.phone("agent_number", &mut warnings);
        let outbound = p.get("direction").and_then(Value::as_str) == Some("outbound");
        (from, to) = if outbound {
            (line, external)
        } else {
            (external, line)
        };
    }
    let mut metadata = serde_json::Map::new();
    keep(&mut metadata, "analysis", d.get("analysis"));
    keep(
        &mut metadata,
        "dynamic_variables",
        d.get("conversation_initiation_client_data")
            .and_then(|c| c.get("dynamic_variables")),
    );
    let ended_reason = meta
        .as_ref()
        .and_then(|m| m.get("termination_reason"))
        .or_else(|| d.get("status"))
        .and_then(Value::as_str)
        .map(str::to_owned);

    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(call_id), Some(started_at)) = (call_id, started_at) else {
        return Err(errors);
    };
    let mut parts = Parts::new(call_id, started_at);
    parts.ended_at = duration.map(|s| started_at + seconds(s));
    parts.turns = turns;
    parts.from_phone_number = from;
    parts.to_phone_number = to;
    parts.metadata = metadata;
    if let Some(reason) = ended_reason.filter(|r| !r.is_empty()) {
        parts.ended_reason = reason;
    }
    parts.warnings = warnings;
    let call = parts.finish(&d.at("transcript"), &body["data"], limits)?;
    Ok(VendorBody::Call(Box::new(VendorCall {
        call: crate::NewCall { raw: body, ..call },
        agent,
    })))
}
