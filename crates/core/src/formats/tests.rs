use serde_json::json;

use super::*;

fn limits() -> Limits {
    Limits::default()
}

fn now() -> DateTime<Utc> {
    crate::parse_datetime("2026-11-30T12:00:00Z").unwrap()
}

#[test]
fn role_aliases_are_read_with_a_warning() {
    let body = json!({
        "call_id": "c1", "agent": 3,
        "transcript_json": [
            {"role": "assistant", "content": "Hi", "start_time": 0.5, "end_time": 1.0},
            {"role": "Testing agent", "content": "Hello", "start_time": 1.5, "end_time": 2.0},
            {"role": "Main Agent", "content": "Bye", "start_time": 2.5, "end_time": 3.0}
        ]
    });
    let parsed = parse_observe(body, now(), &limits()).unwrap();
    let roles: Vec<Role> = parsed.call.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::Bot, Role::User, Role::Bot]);
    let paths: Vec<&str> = parsed
        .call
        .warnings
        .iter()
        .map(|w| w.path.as_str())
        .collect();
    assert_eq!(
        paths,
        ["transcript_json[0].role", "transcript_json[1].role"]
    );
    assert_eq!(parsed.agent, Some(AgentRef::Id(3)));
    assert_eq!(parsed.call.ended_at, now() + TimeDelta::seconds(3));
}

#[test]
fn an_unknown_role_is_refused_with_the_spellings() {
    let body = json!({"call_id": "c1", "agent": 3, "transcript_json": [{"role": "narrator", "content": "x"}]});
    let errors = parse_observe(body, now(), &limits()).unwrap_err();
    assert_eq!(errors[0].path, "transcript_json[0].role");
    assert!(
        errors[0].message.contains("Main Agent"),
        "{}",
        errors[0].message
    );
}

#[test]
fn form_fields_are_read_from_their_text() {
    let body = json!({
        "call_id": "c2", "agent": "7", "main_agent_channel_index": "0",
        "transcript_type": "pipecat",
        "transcript_json": "[{\"role\": \"user\", \"content\": \"hi\"}]",
        "metadata": "{\"shop\": 4}"
    });
    let parsed = parse_observe(body, now(), &limits()).unwrap();
    assert_eq!(parsed.agent, Some(AgentRef::Id(7)));
    assert_eq!(parsed.call.messages[0].content, "hi");
    assert_eq!(parsed.call.metadata["shop"], 4);
    assert_eq!(parsed.call.message_times, MessageTimes::None);
}

#[test]
fn observe_names_every_problem() {
    let body = json!({"transcript_type": "zoom", "trace_id": "x".repeat(40), "agent": "seven"});
    let errors = parse_observe(body, now(), &limits()).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["call_id", "agent", "transcript_type", "trace_id"]);
}

#[test]
fn deepgram_words_become_utterances() {
    let words = json!([
        {"word": "hello", "punctuated_word": "Hello,", "start": 0.2, "end": 0.5, "speaker": 0},
        {"word": "clinic", "punctuated_word": "clinic.", "start": 0.6, "end": 1.0, "speaker": 0},
        {"word": "hi", "start": 1.4, "end": 1.6, "speaker": 1}
    ]);
    let body = json!({"call_id": "d", "agent": 1, "transcript_type": "deepgram", "transcript_json": words, "main_agent_channel_index": 0});
    let call = parse_observe(body, now(), &limits()).unwrap().call;
    assert_eq!(call.messages.len(), 2);
    assert_eq!(call.messages[0].role, Role::Bot);
    assert_eq!(call.messages[0].content, "Hello, clinic.");
    assert_eq!(
        (call.messages[0].start_offset, call.messages[0].end_offset),
        (Some(0.2), Some(1.0))
    );
    assert_eq!(call.messages[1].role, Role::User);
}

#[test]
fn vapi_events_other_than_the_report_are_ignored() {
    let body = json!({"message": {"type": "status-update", "status": "in-progress"}});
    match parse_vendor(Vendor::Vapi, body, None, &limits()).unwrap() {
        VendorBody::Ignored { event, .. } => assert_eq!(event, "status-update"),
        VendorBody::Call(_) => panic!("a status update is not a call"),
    }
}

#[test]
fn retell_analysis_is_an_amendment_outside_the_hash() {
    let ended = json!({"event": "call_ended", "call": {
        "call_id": "r1", "agent_id": "agent_x", "start_timestamp": 1_764_496_800_000_i64,
        "end_timestamp": 1_764_496_830_000_i64,
        "transcript_object": [{"role": "agent", "content": "Hi", "words": [{"word": "Hi", "start": 0.4, "end": 0.7}]}]
    }});
    let mut analyzed = ended.clone();
    analyzed["event"] = json!("call_analyzed");
    analyzed["call"]["call_analysis"] = json!({"call_successful": true});
    let read = |v: Value| match parse_vendor(Vendor::Retell, v, None, &limits()).unwrap() {
        VendorBody::Call(c) => c,
        VendorBody::Ignored { .. } => panic!("a call"),
    };
    let (a, b) = (read(ended), read(analyzed));
    assert_eq!(a.call.content_hash, b.call.content_hash);
    assert!(a.call.amendment.is_empty());
    assert_eq!(b.call.amendment["call_analysis"]["call_successful"], true);
    assert_eq!(b.call.metadata["call_analysis"]["call_successful"], true);
    assert_eq!(
        a.agent,
        Some(AgentRef::External {
            id: "agent_x".into(),
            path: "call.agent_id".into()
        })
    );
    assert_eq!(a.call.messages[0].start_offset, Some(0.4));
    assert_eq!(a.call.messages[0].start_at_ms, Some(1_764_496_800_400));
}

#[test]
fn signatures_hold_and_refuse() {
    let at = now();
    let body = br#"{"a":1}"#;
    for vendor in Vendor::ALL {
        let (name, value) = signature::sign(vendor, "s3cret", body, at);
        let header = |n: &str| (n == name).then_some(value.as_str());
        assert_eq!(
            signature::verify(vendor, "s3cret", header, body, at),
            Ok(()),
            "{vendor:?}"
        );
        let wrong = signature::verify(vendor, "other", header, body, at).unwrap_err();
        assert!(
            !wrong.contains("s3cret") && !wrong.contains(&value),
            "{wrong}"
        );
        if vendor != Vendor::Vapi {
            assert!(signature::verify(vendor, "s3cret", header, br#"{"a":2}"#, at).is_err());
            let late = at + TimeDelta::hours(1);
            let stale = signature::verify(vendor, "s3cret", header, body, late).unwrap_err();
            assert!(stale.contains("window"), "{stale}");
        }
        let missing = signature::verify(vendor, "s3cret", |_| None, body, at).unwrap_err();
        assert!(missing.starts_with("missing"), "{missing}");
    }
}
