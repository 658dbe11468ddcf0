//! Retell's call webhooks, `{"event": "call_ended" | "call_analyzed", "call": {…}}`. The two
//! events of one call make one call: `call_analyzed` is `call_ended` plus `call_analysis`, so
//! the content hash leaves the analysis out and the analysis is an amendment, added to the
//! stored call whichever event came first.

use serde_json::Value;

use super::transcript::retell_item;
use super::{keep, AgentRef, Fields, Parts, VendorBody, VendorCall};
use crate::{FieldError, Limits, RecordingRequest};

pub(super) fn parse(
    body: Value,
    agent_id: Option<i64>,
    limits: &Limits,
) -> Result<VendorBody, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(root) = Fields::of(
        &body,
        "",
        "Retell's webhook {\"event\", \"call\": {…}}",
        &mut errors,
    ) else {
        return Err(errors);
    };
    match root.str("event", &mut errors) {
        Some("call_ended" | "call_analyzed") => {}
        Some(other) => {
            return Ok(VendorBody::Ignored {
                event: other.to_owned(),
                reason: "callgrade reads Retell's call_ended and call_analyzed; other events are acknowledged and not stored".into(),
            })
        }
        None => {
            errors.push(FieldError::new("event", "is required, e.g. \"call_ended\""));
            return Err(errors);
        }
    }
    let Some(c) = root.object("call", &mut errors) else {
        if root.get("call").is_none() {
            errors.push(FieldError::new(
                "call",
                "is required: the Retell call object",
            ));
        }
        return Err(errors);
    };
    let mut warnings = Vec::new();
    let call_id = c.call_id("call_id", &mut errors);
    let agent = match agent_id {
        Some(id) => Some(AgentRef::Id(id)),
        None => c.id("agent_id", &mut errors).map(|id| AgentRef::External {
            id,
            path: c.at("agent_id"),
        }),
    };
    let started_at = c.epoch_ms("start_timestamp", &mut errors);
    if c.get("start_timestamp").is_none() {
        errors.push(FieldError::new(
            c.at("start_timestamp"),
            "is required: the call's start in epoch milliseconds (Retell sends none for a call that never connected)",
        ));
    }
    let ended_at = c.epoch_ms("end_timestamp", &mut errors).or_else(|| {
        let duration = c.number("duration_ms", &mut errors)?;
        Some(started_at? + chrono::TimeDelta::milliseconds(duration.round() as i64))
    });

    // The transcript with tool calls when Retell sends it, else the plain one.
    let mut turns = Vec::new();
    let field = ["transcript_with_tool_calls", "transcript_object"]
        .into_iter()
        .find(|f| c.get(f).is_some());
    match field {
        Some(field) => {
            for (j, item) in c
                .array(field, &mut errors)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                if let Some(f) = Fields::of(
                    item,
                    &c.at(&format!("{field}[{j}]")),
                    "a transcript item object",
                    &mut errors,
                ) {
                    retell_item(&f, &mut turns, &mut errors, &mut warnings);
                }
            }
        }
        None => warnings.push(FieldError::new(
            c.at("transcript_object"),
            "is missing: the call is stored without a transcript",
        )),
    }

    let from = c.phone("from_number", &mut warnings);
    let to = c.phone("to_number", &mut warnings);
    let recording_request = c
        .get("recording_multi_channel_url")
        .and_then(Value::as_str)
        .and_then(|url| match crate::payload::check_recording_url(url) {
            // Retell's multi-channel recording has the agent on the second channel.
            Ok(()) => Some(RecordingRequest {
                url: url.to_owned(),
                agent_channel: 1,
            }),
            Err(why) => {
                warnings.push(FieldError::new(
                    c.at("recording_multi_channel_url"),
                    format!("is not fetched: it {}", why.trim_start_matches("must ")),
                ));
                None
            }
        });
    let mut metadata = c
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    keep(
        &mut metadata,
        "dynamic_variables",
        c.get("retell_llm_dynamic_variables"),
    );
    keep(&mut metadata, "latency", c.get("latency"));
    let analysis = c.get("call_analysis").cloned();
    let ended_reason = c
        .str("disconnection_reason", &mut errors)
        .map(str::to_owned);

    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(call_id), Some(started_at)) = (call_id, started_at) else {
        return Err(errors);
    };
    let mut parts = Parts::new(call_id, started_at);
    parts.ended_at = ended_at.filter(|e| *e >= started_at);
    parts.turns = turns;
    parts.from_phone_number = from;
    parts.to_phone_number = to;
    if let Some(analysis) = &analysis {
        metadata.insert("call_analysis".into(), analysis.clone());
    }
    parts.metadata = metadata;
    if let Some(reason) = ended_reason {
        parts.ended_reason = reason;
    }
    parts.recording_request = recording_request;
    parts.warnings = warnings;
    let mut hashed = body["call"].clone();
    if let Some(obj) = hashed.as_object_mut() {
        obj.remove("call_analysis");
    }
    let mut call = parts.finish(&c.at("transcript_object"), &hashed, limits)?;
    drop(hashed);
    if let Some(analysis) = analysis {
        call.amendment.insert("call_analysis".into(), analysis);
    }
    call.raw = body;
    Ok(VendorBody::Call(Box::new(VendorCall { call, agent })))
}
