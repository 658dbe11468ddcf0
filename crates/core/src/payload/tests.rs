use super::*;
use serde_json::json;

fn errors_of(body: Value) -> Vec<FieldError> {
    validate_batch(&body, &Limits::default()).expect_err("should be invalid")
}

fn paths(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

fn call() -> Value {
    json!({"id": "c1", "startedAt": "2025-10-15T09:22:21.787Z", "endedAt": "2025-10-15T09:24:30.229Z"})
}

#[test]
fn seed_two_call_example_is_valid() {
    let body: Value =
        serde_json::from_str(include_str!("../../tests/fixtures/example-two-calls.json")).unwrap();
    let batch = validate_batch(&body, &Limits::default()).unwrap();
    assert_eq!(batch.agent_id, Some(2));
    assert_eq!(batch.calls.len(), 2);
    let first = &batch.calls[0];
    assert_eq!(first.message_times, MessageTimes::EpochMs);
    assert_eq!(first.messages.len(), 4);
    // 1760520142852 − 1760520141787 ms = 1.065 s from the start.
    assert!((first.messages[0].start_offset.unwrap() - 1.065).abs() < 1e-9);
    assert_eq!(first.messages[0].start_at_ms, Some(1_760_520_142_852));
    assert_eq!(first.ended_reason, "customer-hungup");
    assert!(first.warnings.is_empty());
}

#[test]
fn root_must_be_an_object() {
    assert_eq!(paths(&errors_of(json!([1]))), ["$"]);
}

#[test]
fn agent_id_as_string_says_integer() {
    let errors = errors_of(json!({"agent_id": "123", "calls": [call()]}));
    assert_eq!(paths(&errors), ["agent_id"]);
    assert!(errors[0].message.contains("JSON integer, not a string"));
}

#[test]
fn agent_id_float_and_negative_are_rejected() {
    assert_eq!(
        paths(&errors_of(json!({"agent_id": 1.5, "calls": [call()]}))),
        ["agent_id"]
    );
    assert_eq!(
        paths(&errors_of(json!({"agent_id": -1, "calls": [call()]}))),
        ["agent_id"]
    );
}

#[test]
fn agent_id_missing_names_calls_without_run_id() {
    let mut with_run = call();
    with_run["run_id"] = json!(5);
    with_run["id"] = json!("c2");
    let errors = errors_of(
        json!({"calls": [call(), with_run, {"id": "c3", "startedAt": "2025-10-15T09:22:21Z", "endedAt": "2025-10-15T09:22:22Z"}]}),
    );
    // One error per call that cannot be placed, at the field that would place it.
    assert_eq!(paths(&errors), ["calls[0].run_id", "calls[2].run_id"]);
    assert!(
        errors[0].message.contains("no agent_id"),
        "{}",
        errors[0].message
    );
}

#[test]
fn agent_id_may_be_omitted_when_every_call_has_run_id() {
    let mut c = call();
    c["run_id"] = json!("456789");
    let batch = validate_batch(&json!({"calls": [c]}), &Limits::default()).unwrap();
    assert_eq!(batch.agent_id, None);
    assert_eq!(batch.calls[0].run_id, Some(456789));
}

#[test]
fn calls_shape() {
    assert_eq!(paths(&errors_of(json!({"agent_id": 1}))), ["calls"]);
    assert_eq!(
        paths(&errors_of(json!({"agent_id": 1, "calls": []}))),
        ["calls"]
    );
    assert_eq!(
        paths(&errors_of(json!({"agent_id": 1, "calls": {}}))),
        ["calls"]
    );
    assert_eq!(
        paths(&errors_of(json!({"agent_id": 1, "calls": [7]}))),
        ["calls[0]"]
    );
    let limits = Limits {
        max_calls_per_request: 2,
        ..Limits::default()
    };
    let body = json!({"agent_id": 1, "calls": [call(), call(), call()]});
    let errors = validate_batch(&body, &limits).unwrap_err();
    assert_eq!(paths(&errors), ["calls"]);
    assert!(errors[0].message.contains("at most 2"));
}

#[test]
fn call_id_rules() {
    let mut missing = call();
    missing.as_object_mut().unwrap().remove("id");
    let mut empty = call();
    empty["id"] = json!("");
    let mut long = call();
    long["id"] = json!("x".repeat(256));
    let mut boolean = call();
    boolean["id"] = json!(true);
    let errors = errors_of(json!({"agent_id": 1, "calls": [missing, empty, long, boolean]}));
    assert_eq!(
        paths(&errors),
        ["calls[0].id", "calls[1].id", "calls[2].id", "calls[3].id"]
    );

    let mut max = call();
    max["id"] = json!("é".repeat(255));
    let mut numeric = call();
    numeric["id"] = json!(42);
    let batch = validate_batch(
        &json!({"agent_id": 1, "calls": [max, numeric]}),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(batch.calls[1].external_id, "42");
}

#[test]
fn duplicate_ids_in_one_request() {
    let errors = errors_of(json!({"agent_id": 1, "calls": [call(), call()]}));
    assert_eq!(paths(&errors), ["calls[1].id"]);
    assert!(errors[0].message.contains("calls[0]"));
}

#[test]
fn duplicate_ids_are_reported_beside_other_errors() {
    let mut first = call();
    first["id"] = json!("dup");
    first["to_phone_number"] = json!("555");
    let mut second = call();
    second["id"] = json!("dup");
    second["endedAt"] = json!("not a time");
    let errors = errors_of(json!({"agent_id": 1, "calls": [first, second]}));
    assert_eq!(
        paths(&errors),
        [
            "calls[0].to_phone_number",
            "calls[1].endedAt",
            "calls[1].id"
        ]
    );
    assert!(errors[2].message.contains("calls[0]"), "{errors:?}");
}

#[test]
fn datetime_rules() {
    let mut missing = call();
    missing.as_object_mut().unwrap().remove("startedAt");
    missing["started_at"] = json!("2025-10-15T09:22:21Z");
    let mut bad = call();
    bad["endedAt"] = json!("15/10/2025 09:22");
    bad["id"] = json!("c2");
    let mut reversed = call();
    reversed["endedAt"] = json!("2025-10-15T09:00:00Z");
    reversed["id"] = json!("c3");
    let mut offset = call();
    offset["startedAt"] = json!("2025-10-15T11:22:21+02:00");
    offset["endedAt"] = json!("2025-10-15T09:22:21");
    offset["id"] = json!("c4");
    let errors = errors_of(json!({"agent_id": 1, "calls": [missing, bad, reversed, offset]}));
    assert_eq!(
        paths(&errors),
        ["calls[0].startedAt", "calls[1].endedAt", "calls[2].endedAt"]
    );
    assert!(errors[0].message.contains("\"started_at\""));
}

#[test]
fn phone_number_rules() {
    let mut c = call();
    c["to_phone_number"] = json!("4155551234");
    c["from_phone_number"] = json!("+1234567890123456");
    let errors = errors_of(json!({"agent_id": 1, "calls": [c]}));
    assert_eq!(
        paths(&errors),
        ["calls[0].to_phone_number", "calls[0].from_phone_number"]
    );
}

#[test]
fn optional_fields_types() {
    let mut c = call();
    c["metadata"] = json!("x");
    c["endedReason"] = json!(3);
    c["run_id"] = json!("12a");
    c["trace_id"] = json!("a".repeat(33));
    let errors = errors_of(json!({"agent_id": 1, "calls": [c]}));
    assert_eq!(
        paths(&errors),
        [
            "calls[0].metadata",
            "calls[0].endedReason",
            "calls[0].run_id",
            "calls[0].trace_id"
        ]
    );
    assert!(errors[2].message.starts_with("A valid integer is required"));
}

#[test]
fn defaults_and_unknown_fields() {
    let mut c = call();
    c["vendor_extra"] = json!({"kept": true});
    let batch = validate_batch(&json!({"agent_id": 1, "calls": [c]}), &Limits::default()).unwrap();
    let call = &batch.calls[0];
    assert_eq!(call.ended_reason, "unknown");
    assert_eq!(call.raw["vendor_extra"]["kept"], json!(true));
    assert_eq!(call.message_times, MessageTimes::None);
}

#[test]
fn message_rules_report_every_problem() {
    let mut c = call();
    c["messages"] = json!([
        {"role": "assistant", "content": "hi"},
        {"role": "Bot", "content": "hi"},
        {"content": "hi"},
        {"role": "user"},
        {"role": "user", "content": 5},
        {"role": "user", "content": "x", "start_time": -1},
        {"role": "user", "content": "x", "start_time": "1"},
        {"role": "user", "content": "x", "start_time": 3, "end_time": 2},
        {"role": "function_call", "content": "", "data": [1]},
        "hello"
    ]);
    let errors = errors_of(json!({"agent_id": 1, "calls": [c]}));
    assert_eq!(
        paths(&errors),
        [
            "calls[0].messages[0].role",
            "calls[0].messages[1].role",
            "calls[0].messages[2].role",
            "calls[0].messages[3].content",
            "calls[0].messages[4].content",
            "calls[0].messages[5].start_time",
            "calls[0].messages[6].start_time",
            "calls[0].messages[7].end_time",
            "calls[0].messages[8].data",
            "calls[0].messages[9]",
        ]
    );
    assert!(errors[0].message.contains("did you mean \"bot\""));
    assert!(errors[1].message.contains("did you mean \"bot\""));
    let mut not_array = call();
    not_array["messages"] = json!({"role": "bot"});
    assert_eq!(
        paths(&errors_of(json!({"agent_id": 1, "calls": [not_array]}))),
        ["calls[0].messages"]
    );
}

#[test]
fn seconds_from_start_are_normalised() {
    let mut c = call();
    c["messages"] = json!([
        {"role": "bot", "content": "Hi", "start_time": 0.5, "end_time": 2.1},
        {"role": "user", "content": "Billing.", "start_time": 3.0, "end_time": 4.2},
        {"role": "function_call", "content": "", "data": {"name": "lookup", "arguments": {}}}
    ]);
    let batch = validate_batch(&json!({"agent_id": 1, "calls": [c]}), &Limits::default()).unwrap();
    let call = &batch.calls[0];
    assert_eq!(call.message_times, MessageTimes::SecondsFromStart);
    let start = call.started_at.timestamp_millis();
    assert_eq!(call.messages[0].start_at_ms, Some(start + 500));
    assert_eq!(call.messages[1].end_offset, Some(4.2));
    assert_eq!(call.messages[2].start_offset, None);
    assert_eq!(call.messages[2].role, Role::FunctionCall);
}

#[test]
fn mixed_time_forms_are_rejected() {
    let mut c = call();
    c["messages"] = json!([
        {"role": "bot", "content": "Hi", "start_time": 0.5, "end_time": 1_760_520_142_852_i64},
    ]);
    let errors = errors_of(json!({"agent_id": 1, "calls": [c]}));
    assert_eq!(paths(&errors), ["calls[0].messages[0].end_time"]);
}

#[test]
fn times_outside_the_call_warn() {
    let mut c = call();
    c["messages"] = json!([{"role": "bot", "content": "Hi", "start_time": 500.0}]);
    let batch = validate_batch(&json!({"agent_id": 1, "calls": [c]}), &Limits::default()).unwrap();
    assert_eq!(
        paths(&batch.calls[0].warnings),
        ["calls[0].messages[0].start_time"]
    );
}

#[test]
fn content_hash_tracks_content_and_agent() {
    let a = validate_batch(
        &json!({"agent_id": 1, "calls": [call()]}),
        &Limits::default(),
    )
    .unwrap();
    let b = validate_batch(
        &json!({"agent_id": 1, "calls": [call()]}),
        &Limits::default(),
    )
    .unwrap();
    let mut changed = call();
    changed["endedReason"] = json!("x");
    let c = validate_batch(
        &json!({"agent_id": 1, "calls": [changed]}),
        &Limits::default(),
    )
    .unwrap();
    let d = validate_batch(
        &json!({"agent_id": 2, "calls": [call()]}),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(a.calls[0].content_hash, b.calls[0].content_hash);
    assert_ne!(a.calls[0].content_hash, c.calls[0].content_hash);
    assert_ne!(a.calls[0].content_hash, d.calls[0].content_hash);
}

#[test]
fn json_syntax_errors_have_line_and_column() {
    let err = parse_json(b"{\n  \"calls\": [,]\n}").unwrap_err();
    assert_eq!(err.line, 2);
    assert_eq!(err.column, 13);
    assert!(!err.message.contains("at line"));
}

#[test]
fn limits_on_messages_metadata_data_and_values() {
    let limits = Limits {
        max_messages_per_call: 2,
        max_metadata_bytes: 20,
        max_message_data_bytes: 10,
        max_json_values: 50,
        ..Limits::default()
    };
    let mut c = call();
    c["messages"] = json!([
        {"role": "bot", "content": "a"}, {"role": "user", "content": "b"}, {"role": "bot", "content": "c"}
    ]);
    c["metadata"] = json!({"note": "x".repeat(30)});
    let mut d = call();
    d["id"] = json!("d");
    d["messages"] = json!([{"role": "bot", "content": "a", "data": {"k": "0123456789"}}]);
    let body = json!({"agent_id": 1, "calls": [c, d]});
    let errors = validate_batch(&body, &limits).unwrap_err();
    assert_eq!(
        paths(&errors),
        [
            "calls[0].metadata",
            "calls[0].messages",
            "calls[1].messages[0].data"
        ]
    );
    assert!(errors[0].message.contains("at most 20"), "{errors:?}");
    assert!(
        errors[1].message.contains("holds 3 messages; at most 2"),
        "{errors:?}"
    );

    // Counted on the bytes, before a tree is built.
    let wide = format!("{{\"calls\": [{}]}}", vec!["[]"; 100].join(","));
    let refused = limits.check_json_values(wide.as_bytes()).unwrap_err();
    assert!(refused.contains("at most 50"), "{refused}");
    assert!(limits
        .check_json_values(body.to_string().as_bytes())
        .is_ok());
}

#[test]
fn the_content_hash_is_the_canonical_json_hash_and_owned_validation_moves_raw() {
    use sha2::{Digest, Sha256};
    let mut c = call();
    c["metadata"] = json!({"z": 1, "a": [1, 2]});
    let body = json!({"agent_id": 1, "calls": [c.clone()]});
    let borrowed = validate_batch(&body, &Limits::default()).unwrap();
    // What stored hashes were computed as before it was streamed: resends must still match.
    let canonical = json!({"agent_id": 1, "call": c}).to_string();
    let expected = hex::encode(Sha256::digest(canonical.as_bytes()));
    assert_eq!(borrowed.calls[0].content_hash, expected);
    let owned = validate_batch_owned(body, &Limits::default()).unwrap();
    assert_eq!(owned.calls[0].content_hash, expected);
    assert_eq!(owned.calls[0].raw, borrowed.calls[0].raw);
    assert_eq!(owned.calls[0].raw, c);
}

#[test]
fn recording_url_rules() {
    let n = std::cell::Cell::new(0);
    let with = |fields: Value| {
        let mut c = call();
        n.set(n.get() + 1);
        c["id"] = json!(format!("c{}", n.get()));
        for (k, v) in fields.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let good = validate_batch(
        &json!({"agent_id": 1, "calls": [
            with(json!({"recording_url": "https://u:p@files.example.com/a.wav?sig=1#x", "agent_channel": 0})),
            with(json!({"metadata": {"recording_url": "http://files.example.com:8080/b.mp3"}})),
            with(json!({"recording_url": null, "agent_channel": 1})),
        ]}),
        &Limits::default(),
    )
    .unwrap();
    let request = good.calls[0].recording_request.clone().unwrap();
    assert_eq!(request.agent_channel, 0);
    assert_eq!(
        request.shown(),
        "https://files.example.com/a.wav",
        "no credentials, no query"
    );
    let from_metadata = good.calls[1].recording_request.clone().unwrap();
    assert_eq!(
        (from_metadata.url.as_str(), from_metadata.agent_channel),
        ("http://files.example.com:8080/b.mp3", 1)
    );
    assert_eq!(good.calls[2].recording_request, None);
    assert_eq!(
        paths(&good.calls[2].warnings),
        ["calls[2].agent_channel"],
        "agent_channel without a recording is ignored, with a warning"
    );

    let errors = errors_of(json!({"agent_id": 1, "calls": [
        with(json!({"recording_url": "ftp://files.example.com/a.wav"})),
        with(json!({"recording_url": "https:///a.wav"})),
        with(json!({"recording_url": "https://files.example.com/a b.wav"})),
        with(json!({"recording_url": 7})),
        with(json!({"recording_url": format!("https://e.com/{}", "a".repeat(4096))})),
        with(json!({"recording_url": "https://e.com/a.wav", "agent_channel": 2})),
        with(json!({"metadata": {"recording_url": "file:///etc/passwd"}})),
        with(json!({"recording_url": "https://user@:80/a.wav"})),
    ]}));
    assert_eq!(
        paths(&errors),
        [
            "calls[0].recording_url",
            "calls[1].recording_url",
            "calls[2].recording_url",
            "calls[3].recording_url",
            "calls[4].recording_url",
            "calls[5].agent_channel",
            "calls[6].metadata.recording_url",
            "calls[7].recording_url",
        ]
    );
    assert!(
        errors[0].message.contains("http:// or https://"),
        "{errors:?}"
    );
    assert!(errors[5].message.contains("0 or 1"), "{errors:?}");
}
