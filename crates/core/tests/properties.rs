//! Property tests: the parser, the validator, the time normaliser and the builtin metrics never
//! panic on any input, and what they accept they describe consistently. These run on stable in
//! every `cargo test`; the same targets are fuzzed with cargo-fuzz (fuzz/) where nightly exists.

use callgrade_core::{
    compute_all_builtins, parse_datetime, parse_json, validate_batch, BuiltinConfig, Conversation,
    Limits, Message, MessageTimes, Role,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_owned()),
                    Just("startedAt".to_owned()),
                    Just("endedAt".to_owned()),
                    Just("messages".to_owned()),
                    Just("role".to_owned()),
                    Just("content".to_owned()),
                    Just("start_time".to_owned()),
                    Just("end_time".to_owned()),
                    Just("run_id".to_owned()),
                    Just("to_phone_number".to_owned()),
                    Just("agent_id".to_owned()),
                    Just("calls".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A call whose fields are each either right or of a random shape.
fn mostly_valid_call() -> impl Strategy<Value = Value> {
    let time = prop_oneof![
        Just(json!("2025-10-15T09:22:21.787Z")),
        Just(json!("2025-10-15T09:30:00+02:00")),
        any_json(),
    ];
    let message = (
        prop_oneof![Just(json!("bot")), Just(json!("user")), Just(json!("function_call")), any_json()],
        prop_oneof![Just(json!("hello")), any_json()],
        prop_oneof![(0.0f64..5000.0).prop_map(|t| json!(t)), (1.7e12f64..1.8e12).prop_map(|t| json!(t)), any_json()],
        prop_oneof![(0.0f64..5000.0).prop_map(|t| json!(t)), any_json()],
    )
        .prop_map(|(role, content, start, end)| json!({"role": role, "content": content, "start_time": start, "end_time": end}));
    (
        prop_oneof![".{1,40}".prop_map(Value::String), any_json()],
        time.clone(),
        time,
        prop::collection::vec(message, 0..12),
        prop_oneof![Just(json!("+14155551234")), any_json()],
        prop_oneof![Just(Value::Null), any_json()],
    )
        .prop_map(|(id, start, end, messages, phone, run_id)| {
            json!({"id": id, "startedAt": start, "endedAt": end, "messages": messages,
                   "to_phone_number": phone, "run_id": run_id})
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_and_reports_a_position(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Err(e) = parse_json(&bytes) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn validator_never_panics_on_any_json(body in any_json()) {
        if let Err(errors) = validate_batch(&body, &Limits::default()) {
            prop_assert!(!errors.is_empty());
            for e in &errors {
                prop_assert!(e.path == "$" || e.path.starts_with("agent_id") || e.path.starts_with("calls"), "{}", e.path);
            }
        }
    }

    #[test]
    fn validator_on_near_valid_calls(calls in prop::collection::vec(mostly_valid_call(), 1..4), agent in prop_oneof![Just(json!(1)), any_json()]) {
        let body = json!({"agent_id": agent, "calls": calls});
        match validate_batch(&body, &Limits::default()) {
            Ok(batch) => {
                for call in &batch.calls {
                    prop_assert!(call.ended_at >= call.started_at);
                    prop_assert!(!call.external_id.is_empty() && call.external_id.chars().count() <= 255);
                    for m in &call.messages {
                        if let (Some(s), Some(e)) = (m.start_offset, m.end_offset) {
                            prop_assert!(e >= s - 1e-9);
                        }
                    }
                }
            }
            Err(errors) => prop_assert!(!errors.is_empty()),
        }
    }

    #[test]
    fn datetime_parser_never_panics(s in ".{0,40}") {
        let _ = parse_datetime(&s);
    }

    #[test]
    fn both_time_forms_agree(start_ms in 1_000_000_000_000i64..2_000_000_000_000, offset in 0.0f64..100_000.0) {
        let epoch = start_ms as f64 + offset * 1000.0;
        let (from_epoch, abs_epoch) = MessageTimes::EpochMs.normalise(epoch, start_ms);
        let (from_seconds, abs_seconds) = MessageTimes::SecondsFromStart.normalise(offset, start_ms);
        prop_assert!((from_epoch - from_seconds).abs() < 1e-3);
        prop_assert!((abs_epoch - abs_seconds).abs() <= 1);
        prop_assert_eq!(MessageTimes::of(epoch), MessageTimes::EpochMs);
        prop_assert_eq!(MessageTimes::of(offset), MessageTimes::SecondsFromStart);
    }

    #[test]
    fn builtin_metrics_never_panic(
        rows in prop::collection::vec((0u8..5, proptest::option::of(0.0f64..600.0), proptest::option::of(0.0f64..30.0), ".{0,30}"), 0..40),
        duration in 0.0f64..700.0,
    ) {
        let messages: Vec<Message> = rows.into_iter().map(|(role, start, length, content)| Message {
            role: [Role::Bot, Role::User, Role::System, Role::FunctionCall, Role::FunctionCallResult][role as usize],
            content,
            start_offset: start,
            end_offset: start.zip(length).map(|(s, l)| s + l),
            start_at_ms: None,
            end_at_ms: None,
            data: None,
        }).collect();
        let conv = Conversation { duration_seconds: duration, messages: &messages, ended_reason: "x", audio: None, trace: None };
        for (_, outcome) in compute_all_builtins(&conv, &BuiltinConfig::default()) {
            // A value or a reason, never both missing.
            prop_assert!(outcome.value.is_some() || outcome.not_computable.is_some());
        }
    }
}

/// The vendor fixtures with the parser each is for: 0 the observe endpoint, else a vendor.
fn vendor_fixtures() -> Vec<(usize, Value)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/formats");
    let mut all: Vec<(usize, Value)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let which = ["observe", "vapi", "retell", "elevenlabs"]
                .iter()
                .position(|p| name.starts_with(p))?;
            let text = std::fs::read_to_string(format!("{dir}/{name}")).ok()?;
            Some((which, serde_json::from_str(&text).ok()?))
        })
        .collect();
    all.sort_by_key(|(w, v)| (*w, v.to_string()));
    all
}

/// Every place in a JSON value, as a JSON pointer.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, c)| pointers(c, format!("{at}/{k}"), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
        _ => {}
    }
    out.push(at);
}

/// Runs a vendor body through its parser; every error must have a path.
fn vendor_parse(which: usize, body: Value) -> Result<(), TestCaseError> {
    let now = parse_datetime("2026-11-30T12:00:00Z").unwrap();
    let limits = Limits::default();
    let errors = match which {
        0 => callgrade_core::parse_observe(body, now, &limits).err(),
        n => callgrade_core::parse_vendor(callgrade_core::Vendor::ALL[n - 1], body, None, &limits)
            .err(),
    };
    prop_assert!(errors.iter().flatten().all(|e| !e.path.is_empty()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn vendor_parsers_never_panic_on_mutated_fixtures(
        pick in any::<prop::sample::Index>(),
        place in any::<prop::sample::Index>(),
        replacement in any_json(),
    ) {
        let fixtures = vendor_fixtures();
        let (which, mut body) = fixtures[pick.index(fixtures.len())].clone();
        let mut places = Vec::new();
        pointers(&body, String::new(), &mut places);
        let at = &places[place.index(places.len())];
        match body.pointer_mut(at) {
            Some(slot) => *slot = replacement,
            None => body = replacement,
        }
        vendor_parse(which, body)?;
    }

    #[test]
    fn vendor_parsers_never_panic_on_any_json(which in 0usize..4, inner in any_json()) {
        // Each shape's envelope, around anything.
        let body = match which {
            0 => inner,
            1 => json!({"message": {"type": "end-of-call-report", "call": inner}}),
            2 => json!({"event": "call_ended", "call": inner}),
            _ => json!({"type": "post_call_transcription", "data": inner}),
        };
        vendor_parse(which, body)?;
    }

    #[test]
    fn signature_checks_never_panic(header in ".{0,80}", body in prop::collection::vec(any::<u8>(), 0..64)) {
        let now = parse_datetime("2026-11-30T12:00:00Z").unwrap();
        for vendor in callgrade_core::Vendor::ALL {
            let checked = callgrade_core::signature::verify(vendor, "secret", |_| Some(header.as_str()), &body, now);
            prop_assert!(checked.is_err() || vendor == callgrade_core::Vendor::Vapi);
        }
    }
}

/// A Pipecat export with one value replaced by any JSON: the OTLP reader and the breakdown
/// never panic on it, and a span they keep is well formed.
fn trace_parse(body: &[u8]) -> Result<(), TestCaseError> {
    use callgrade_core::{breakdown, read_traces, OtlpEncoding, TraceLimits};
    for encoding in [OtlpEncoding::Json, OtlpEncoding::Protobuf] {
        match read_traces(body, encoding, &TraceLimits::default()) {
            Ok(read) => {
                for s in &read.spans {
                    prop_assert!(s.end_unix_nano >= s.start_unix_nano);
                    prop_assert_eq!(s.trace_id.len(), 32);
                }
                let _ = breakdown(&read.spans);
            }
            Err(errors) => prop_assert!(errors.iter().all(|e| !e.path.is_empty())),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn trace_reader_never_panics_on_mutated_exports(pick in any::<prop::sample::Index>(), value in any_json()) {
        let mut body: Value = serde_json::from_str(include_str!("fixtures/traces/pipecat.json")).unwrap();
        let mut paths = Vec::new();
        pointers(&body, String::new(), &mut paths);
        let path = pick.get(&paths).clone();
        *body.pointer_mut(&path).unwrap() = value;
        trace_parse(&serde_json::to_vec(&body).unwrap())?;
    }

    #[test]
    fn trace_reader_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        trace_parse(&bytes)?;
    }
}

proptest! {
    /// Any JSON as a PATCH body, in either shape, applied to any metadata: no panic, every
    /// problem has a path, and an accepted patch stays within the limit it is given.
    #[test]
    fn call_patches_never_panic(body in any_json(), stored in any_json(), max in 0usize..4096) {
        for parsed in [callgrade_core::CallPatch::parse(&body), callgrade_core::CallPatch::parse_cekura(&body)] {
            match parsed {
                Ok(patch) => {
                    let mut metadata = stored.clone();
                    if patch.apply(&mut metadata, max).is_ok() {
                        prop_assert!(callgrade_core::json_len(&metadata) <= max);
                    }
                }
                Err(errors) => prop_assert!(errors.iter().all(|e| !e.path.is_empty())),
            }
        }
    }
}
