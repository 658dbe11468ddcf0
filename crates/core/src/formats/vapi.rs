//! Vapi's `end-of-call-report` server message: `{"message": {"type": "end-of-call-report",
//! "call", "artifact": {"messages", "recording"…}, "analysis", "endedReason"…}}`.

use serde_json::Value;

use super::transcript::vapi_item;
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
        "Vapi's server message {\"message\": {…}}",
        &mut errors,
    ) else {
        return Err(errors);
    };
    let Some(m) = root.object("message", &mut errors) else {
        if root.get("message").is_none() {
            errors.push(FieldError::new(
                "message",
                "is required: Vapi sends its server messages as {\"message\": {\"type\": \"end-of-call-report\", …}}",
            ));
        }
        return Err(errors);
    };
    match m.str("type", &mut errors) {
        Some("end-of-call-report") => {}
        Some(other) => {
            return Ok(VendorBody::Ignored {
                event: other.to_owned(),
                reason: "callgrade reads Vapi's end-of-call-report; other server messages are acknowledged and not stored".into(),
            })
        }
        None => {
            errors.push(FieldError::new(m.at("type"), "is required, e.g. \"end-of-call-report\""));
            return Err(errors);
        }
    }
    let mut warnings = Vec::new();
    let call = m.object("call", &mut errors);
    let call_id = match &call {
        Some(c) => c.call_id("id", &mut errors),
        None => {
            errors.push(FieldError::new(
                m.at("call.id"),
                "is required: the Vapi call's id",
            ));
            None
        }
    };
    let agent = match agent_id {
        Some(id) => Some(AgentRef::Id(id)),
        None => {
            let from_call = call.as_ref().and_then(|c| {
                c.id("assistantId", &mut errors)
                    .map(|id| (id, c.at("assistantId")))
            });
            let from_assistant = || {
                let a = m.object("assistant", &mut Vec::new())?;
                a.id("id", &mut Vec::new()).map(|id| (id, a.at("id")))
            };
            from_call
                .or_else(from_assistant)
                .map(|(id, path)| AgentRef::External { id, path })
        }
    };

    let mut turns = Vec::new();
    let artifact = m.object("artifact", &mut errors);
    match artifact
        .as_ref()
        .and_then(|a| a.array("messages", &mut errors).map(|ms| (a, ms)))
    {
        Some((a, messages)) => {
            for (j, item) in messages.iter().enumerate() {
                if let Some(f) = Fields::of(
                    item,
                    &a.at(&format!("messages[{j}]")),
                    "a message object",
                    &mut errors,
                ) {
                    vapi_item(&f, &mut turns, &mut errors, &mut warnings);
                }
            }
        }
        None => warnings.push(FieldError::new(
            m.at("artifact.messages"),
            "is missing: the call is stored without a transcript",
        )),
    }

    // Without the call's times, its start is a message's clock time less its offset.
    let first_time = artifact
        .as_ref()
        .and_then(|a| a.get("messages"))
        .and_then(Value::as_array)
        .and_then(|ms| {
            ms.iter().find_map(|m| {
                let time = m.get("time")?.as_f64()?;
                let offset = m
                    .get("secondsFromStart")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                Some(time - offset * 1000.0)
            })
        });
    let started_at = m
        .datetime("startedAt", &mut errors)
        .or_else(|| {
            call.as_ref()
                .and_then(|c| c.get("startedAt"))
                .and_then(|v| v.as_str())
                .and_then(crate::parse_datetime)
        })
        .or_else(|| first_time.and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64)));
    let ended_at = m.datetime("endedAt", &mut errors).or_else(|| {
        call.as_ref()
            .and_then(|c| c.get("endedAt"))
            .and_then(|v| v.as_str())
            .and_then(crate::parse_datetime)
    });
    if started_at.is_none() && !errors.iter().any(|e| e.path.ends_with("startedAt")) {
        errors.push(FieldError::new(
            m.at("startedAt"),
            "is required when no message has a time: the call's start as an ISO 8601 date-time",
        ));
    }

    // Who called whom: the customer is the caller of an inbound call, the callee of an
    // outbound one.
    let customer = m.object("customer", &mut errors).or_else(|| {
        call.as_ref()
            .and_then(|c| c.object("customer", &mut Vec::new()))
    });
    let customer = customer.and_then(|c| c.phone("number", &mut warnings));
    let line = m
        .object("phoneNumber", &mut errors)
        .and_then(|p| p.phone("number", &mut warnings));
    let outbound = call
        .as_ref()
        .and_then(|c| c.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("outbound"));
    let (from, to) = if outbound {
        (line, customer)
    } else {
        (customer, line)
    };

    let stereo = artifact.as_ref().and_then(|a| {
        a.get("recording")
            .and_then(|r| r.get("stereoUrl"))
            .or_else(|| a.get("stereoRecordingUrl"))
            .and_then(Value::as_str)
            .map(|url| (url, a.at("stereoRecordingUrl")))
    });
    let recording_request = stereo.and_then(
        |(url, path)| match crate::payload::check_recording_url(url) {
            // Vapi records the customer on the left channel and the assistant on the right.
            Ok(()) => Some(RecordingRequest {
                url: url.to_owned(),
                agent_channel: 1,
            }),
            Err(why) => {
                warnings.push(FieldError::new(
                    path,
                    format!("is not fetched: it {}", why.trim_start_matches("must ")),
                ));
                None
            }
        },
    );

    let mut metadata = call
        .as_ref()
        .and_then(|c| c.get("metadata"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    keep(&mut metadata, "analysis", m.get("analysis"));
    keep(&mut metadata, "cost", m.get("cost"));
    keep(
        &mut metadata,
        "performance_metrics",
        artifact.as_ref().and_then(|a| a.get("performanceMetrics")),
    );
    keep(
        &mut metadata,
        "variable_values",
        artifact.as_ref().and_then(|a| a.get("variableValues")),
    );
    let ended_reason = m.str("endedReason", &mut errors).map(str::to_owned);

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
    parts.metadata = metadata;
    if let Some(reason) = ended_reason {
        parts.ended_reason = reason;
    }
    parts.recording_request = recording_request;
    parts.warnings = warnings;
    let call = parts.finish("message.artifact.messages", &body, limits)?;
    Ok(VendorBody::Call(Box::new(VendorCall {
        call: crate::NewCall { raw: body, ..call },
        agent,
    })))
}
