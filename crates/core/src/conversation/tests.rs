//! Every expected value below is computed by hand in the comments next to it.

use super::*;
use crate::{validate_batch, Limits};
use serde_json::json;

fn msg(role: Role, content: &str, start: Option<f64>, end: Option<f64>) -> Message {
    Message {
        role,
        content: content.to_owned(),
        start_offset: start,
        end_offset: end,
        start_at_ms: None,
        end_at_ms: None,
        data: None,
    }
}

fn bot(content: &str, start: f64, end: f64) -> Message {
    msg(Role::Bot, content, Some(start), Some(end))
}

fn user(content: &str, start: f64, end: f64) -> Message {
    msg(Role::User, content, Some(start), Some(end))
}

fn tool(role: Role, data: Value) -> Message {
    Message {
        data: Some(data),
        ..msg(role, "", None, None)
    }
}

fn conv(duration: f64, messages: &[Message]) -> Conversation<'_> {
    Conversation {
        duration_seconds: duration,
        messages,
        ended_reason: "customer-ended-call",
        audio: None,
        trace: None,
    }
}

fn run_with(key: &str, duration: f64, messages: &[Message], cfg: &BuiltinConfig) -> BuiltinOutcome {
    compute_builtin(key, &conv(duration, messages), cfg).expect("known key")
}

fn run(key: &str, duration: f64, messages: &[Message]) -> BuiltinOutcome {
    run_with(key, duration, messages, &BuiltinConfig::default())
}

fn num(o: &BuiltinOutcome) -> f64 {
    match o.value {
        Some(MetricValue::Number(x)) => x,
        _ => panic!("expected a number, got {o:#?}"),
    }
}

fn boolean(o: &BuiltinOutcome) -> bool {
    match o.value {
        Some(MetricValue::Bool(b)) => b,
        _ => panic!("expected a boolean, got {o:#?}"),
    }
}

#[track_caller]
fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-6,
        "{actual} != {expected} (expected)"
    );
}

#[track_caller]
fn not_computable(o: &BuiltinOutcome, reason_contains: &str) {
    assert!(o.value.is_none(), "expected not computable, got {o:#?}");
    let reason = o.not_computable.as_deref().unwrap_or_default();
    assert!(
        reason.contains(reason_contains),
        "reason {reason:?} lacks {reason_contains:?}"
    );
}

fn all(duration: f64, messages: &[Message]) -> Vec<(&'static str, BuiltinOutcome)> {
    compute_all_builtins(&conv(duration, messages), &BuiltinConfig::default())
        .into_iter()
        .map(|(k, o)| (k.as_str(), o))
        .collect()
}

fn get<'o>(outcomes: &'o [(&'static str, BuiltinOutcome)], key: &str) -> &'o BuiltinOutcome {
    &outcomes.iter().find(|(k, _)| *k == key).unwrap().1
}

// ---------------------------------------------------------------------------------------------
// The catalogue and the configuration.

#[test]
fn catalogue_has_the_thirty_three_keys_in_order() {
    let keys: Vec<&str> = BUILTIN_METRICS.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "call_duration",
            "time_to_first_word",
            "agent_latency",
            "agent_interrupting_user",
            "user_interrupting_agent",
            "interruption_score",
            "talk_ratio",
            "user_talk_ratio",
            "longest_silence",
            "silence_detected",
            "infrastructure_issues",
            "agent_words_per_minute",
            "user_words_per_minute",
            "turns",
            "tool_calls",
            "tool_call_success",
            "unnecessary_repetition",
            "end_reason",
            "audio_latency",
            "audio_time_to_first_audio",
            "audio_agent_interrupting_caller",
            "audio_caller_interrupting_agent",
            "audio_agent_stop_time",
            "audio_talk_ratio",
            "audio_speech_share",
            "audio_call_share",
            "audio_longest_silence",
            "audio_agent_speaking_rate",
            "audio_transcript_latency_gap",
            "trace_stt_latency",
            "trace_llm_ttft",
            "trace_tts_ttfb",
            "trace_tool_time",
        ]
    );
    assert_eq!(builtin_metric("agent_latency").unwrap().unit, Some("s"));
    assert_eq!(
        builtin_metric("interruption_score").unwrap().output,
        BuiltinOutput::Score
    );
    assert_eq!(
        builtin_metric("silence_detected").unwrap().output,
        BuiltinOutput::Binary
    );
    assert_eq!(
        builtin_metric("end_reason").unwrap().output,
        BuiltinOutput::Text
    );
    assert!(builtin_metric("nope").is_none());
    let c = conv(1.0, &[]);
    assert!(compute_builtin("nope", &c, &BuiltinConfig::default()).is_none());

    // compute_all returns every key, in catalogue order, and agrees with compute_builtin.
    let messages = [bot("Hello there, how are you?", 0.5, 2.0)];
    let outcomes = all(10.0, &messages);
    assert_eq!(outcomes.iter().map(|(k, _)| *k).collect::<Vec<_>>(), keys);
    for (key, outcome) in &outcomes {
        assert_eq!(outcome, &run(key, 10.0, &messages), "{key}");
        assert_eq!(
            outcome.value.is_none(),
            outcome.not_computable.is_some(),
            "{key}"
        );
        assert!(outcome.details.is_object(), "{key}");
        assert!(!outcome.explanation.is_empty(), "{key}");
    }
}

#[test]
fn config_defaults_and_partial_json() {
    let d = BuiltinConfig::default();
    assert_eq!(d.min_overlap_seconds, 0.2);
    assert_eq!(d.silence_threshold_seconds, 10.0);
    assert_eq!(d.infrastructure_silence_seconds, 10.0);
    assert_eq!(d.repetition_similarity, 0.8);
    assert_eq!(d.latency_statistic, "p50");
    assert_eq!(d.backchannels.len(), 16);
    assert!(d.backchannels.iter().any(|b| b == "uh-huh"));
    assert!(d.validate().is_ok());

    let partial: BuiltinConfig =
        serde_json::from_str(r#"{"silence_threshold_seconds": 5, "latency_statistic": "p90"}"#)
            .unwrap();
    assert_eq!(partial.silence_threshold_seconds, 5.0);
    assert_eq!(partial.latency_statistic, "p90");
    assert_eq!(partial.min_overlap_seconds, 0.2);
    assert_eq!(partial.backchannels, d.backchannels);

    let bad = BuiltinConfig {
        min_overlap_seconds: -1.0,
        repetition_similarity: 1.5,
        latency_statistic: "median".into(),
        ..BuiltinConfig::default()
    };
    let errors = bad.validate().unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[2].contains("latency_statistic"));
}

#[test]
fn outcome_serialises_plainly() {
    let o = run("call_duration", 12.5, &[]);
    let v = serde_json::to_value(&o).unwrap();
    assert_eq!(v["value"], json!(12.5));
    assert_eq!(v["not_computable"], Value::Null);
    assert_eq!(
        serde_json::to_value(MetricValue::Text("x".into())).unwrap(),
        json!("x")
    );
    assert_eq!(
        serde_json::from_value::<MetricValue>(json!(true)).unwrap(),
        MetricValue::Bool(true)
    );
}

// ---------------------------------------------------------------------------------------------
// The example call of crates/core/tests/fixtures/example-two-calls.json (first call), with its
// epoch-millisecond times, through the webhook validator.
//
// startedAt 09:22:21.787Z = 1760520141787 ms; endedAt 09:24:30.229Z → duration 128.442 s.
//   [0] bot  142852–147842 →  1.065 –  6.055 s  (16 words)
//   [1] user 149392–153012 →  7.605 – 11.225 s  (13 words)
//   [2] bot  154442–160522 → 12.655 – 18.735 s  (28 words)
//   [3] user 157372–165132 → 15.585 – 23.345 s  ( 9 words)

fn example_call(body: Value) -> Vec<(&'static str, BuiltinOutcome)> {
    let batch = validate_batch(&body, &Limits::default()).unwrap();
    let call = &batch.calls[0];
    let duration = (call.ended_at - call.started_at).num_milliseconds() as f64 / 1000.0;
    let c = Conversation {
        duration_seconds: duration,
        messages: &call.messages,
        ended_reason: &call.ended_reason,
        audio: None,
        trace: None,
    };
    compute_all_builtins(&c, &BuiltinConfig::default())
        .into_iter()
        .map(|(k, o)| (k.as_str(), o))
        .collect()
}

fn epoch_ms_example() -> Value {
    serde_json::from_str(include_str!("../../tests/fixtures/example-two-calls.json")).unwrap()
}

#[test]
fn example_call_from_epoch_ms() {
    let o = example_call(epoch_ms_example());
    for (key, outcome) in &o {
        assert!(outcome.warnings.is_empty(), "{key}: {:?}", outcome.warnings);
    }

    close(num(get(&o, "call_duration")), 128.442);
    // The first bot row starts 142852 − 141787 = 1065 ms after the start.
    close(num(get(&o, "time_to_first_word")), 1.065);

    // One handoff, [1] → [2]: 1760520154442 − 1760520153012 = 1430 ms.
    let latency = get(&o, "agent_latency");
    close(num(latency), 1.43);
    assert_eq!(latency.details["count"], json!(1));
    assert_eq!(
        latency.details["samples"],
        json!([{"user_message": 1, "agent_message": 2, "latency": 1.43}])
    );
    assert_eq!(latency.details["p99"], json!(1.43));

    // The bot never starts before the preceding user message ends.
    close(num(get(&o, "agent_interrupting_user")), 0.0);
    // [3] starts at 157372 while [2] goes on to 160522: an overlap of 3150 ms.
    let barge = get(&o, "user_interrupting_agent");
    close(num(barge), 1.0);
    assert_eq!(
        barge.details["interruptions"],
        json!([{"agent_message": 2, "user_message": 3, "overlap": 3.15}])
    );
    // 5 × (1 − 1/4) = 3.75
    close(num(get(&o, "interruption_score")), 3.75);

    // Agent: 4.990 + 6.080 = 11.070 s of 128.442 s = 0.0861868; user: 3.620 + 7.760 = 11.380 s
    // = 0.0886003.
    let talk = get(&o, "talk_ratio");
    close(num(talk), 0.086187);
    assert_eq!(talk.details["agent_seconds"], json!(11.07));
    assert_eq!(talk.details["user_seconds"], json!(11.38));
    close(num(get(&o, "user_talk_ratio")), 0.0886);

    // Speech: [1.065, 6.055] [7.605, 11.225] [12.655, 23.345]; the gaps are 1.065, 1.55, 1.43
    // and 23.345 → 128.442 = 105.097 s.
    let silence = get(&o, "longest_silence");
    close(num(silence), 105.097);
    assert_eq!(silence.details, json!({"start": 23.345, "end": 128.442}));
    assert!(boolean(get(&o, "silence_detected")));

    // [1] is answered 1.43 s later; after [3] nobody speaks for the last 105.097 s.
    let infra = get(&o, "infrastructure_issues");
    close(num(infra), 1.0);
    assert_eq!(infra.details["issues"][0]["user_message"], json!(3));
    assert_eq!(infra.details["issues"][0]["agent_answer_at"], Value::Null);
    assert_eq!(infra.details["issues"][0]["silent_seconds"], json!(105.097));

    // 16 + 28 = 44 words in 11.07 s: 44 × 60 / 11.07 = 238.482385 words/min.
    close(num(get(&o, "agent_words_per_minute")), 238.482385);
    // 13 + 9 = 22 words in 11.38 s: 22 × 60 / 11.38 = 115.992970.
    close(num(get(&o, "user_words_per_minute")), 115.99297);

    close(num(get(&o, "turns")), 4.0);
    close(num(get(&o, "tool_calls")), 0.0);
    not_computable(get(&o, "tool_call_success"), "no function call");
    close(num(get(&o, "unnecessary_repetition")), 0.0);
    assert_eq!(
        get(&o, "end_reason").value,
        Some(MetricValue::Text("customer-hungup".into()))
    );
}

#[test]
fn example_call_in_seconds_from_start_gives_the_same_outcomes() {
    let mut body = epoch_ms_example();
    let start_ms = 1_760_520_141_787i64;
    for m in body["calls"][0]["messages"].as_array_mut().unwrap() {
        for field in ["start_time", "end_time"] {
            let ms = m[field].as_i64().unwrap();
            m[field] = json!((ms - start_ms) as f64 / 1000.0);
        }
    }
    assert_eq!(body["calls"][0]["messages"][3]["start_time"], json!(15.585));
    assert_eq!(example_call(body), example_call(epoch_ms_example()));
}

// ---------------------------------------------------------------------------------------------
// Interruptions and backchannels.

/// Duration 60 s.
fn interruption_fixture() -> Vec<Message> {
    vec![
        bot("Hello, thanks for calling Acme, how can I help?", 0.0, 3.0), // 0
        user("I want to change the address on my account", 3.5, 6.2),     // 1
        bot("Sure, I can help you change the address", 6.0, 8.0),         // 2
        user("It is twelve Main Street in Springfield", 7.81, 11.0),      // 3
        bot("Thank you, I have updated the address now", 10.79, 14.0),    // 4
        user("Great, and can you also check my last bill", 13.79, 17.0),  // 5
        bot("Your last bill was forty two dollars", 16.81, 20.0),         // 6
        user("Uh-huh.", 19.0, 19.4),                                      // 7
        user("What about the late fee on it", 21.0, 25.0),                // 8
        bot("Mm-hmm.", 24.0, 24.5),                                       // 9
        bot("The late fee was waived last month", 26.0, 29.0),            // 10
        user("Uh-huh, okay, sure, thanks", 28.0, 30.0),                   // 11
    ]
}

#[test]
fn agent_interrupting_user_threshold_and_backchannels() {
    let m = interruption_fixture();
    let o = run("agent_interrupting_user", 60.0, &m);
    // Candidates (a bot row right after a user row): [2] [4] [6] [9].
    //   [2]: user [1] ends 6.2, bot starts 6.0 → overlap 0.20, exactly the threshold: counted.
    //   [4]: [3] ends 11.0, [4] starts 10.79 → 0.21: counted.
    //   [6]: [5] ends 17.0, [6] starts 16.81 → 0.19: below the threshold.
    //   [9]: "Mm-hmm." overlaps [8] by min(25, 24.5) − 24 = 0.5 but is a backchannel.
    close(num(&o), 2.0);
    assert_eq!(
        o.details["interruptions"],
        json!([
            {"user_message": 1, "agent_message": 2, "overlap": 0.2},
            {"user_message": 3, "agent_message": 4, "overlap": 0.21},
        ])
    );
    assert_eq!(
        o.details["backchannels_ignored"],
        json!([{"user_message": 8, "agent_message": 9, "overlap": 0.5}])
    );
    assert_eq!(o.details["handoffs"], json!(4));
    assert!(o.warnings.is_empty());
}

#[test]
fn user_interrupting_agent_threshold_and_backchannels() {
    let m = interruption_fixture();
    let o = run("user_interrupting_agent", 60.0, &m);
    // Candidates (a user row right after a bot row): [1] [3] [5] [7] [11].
    //   [1]: starts 3.5 after [0] ended at 3.0: no overlap.
    //   [3]: [2] ends 8.0, [3] starts 7.81 → 0.19: below.
    //   [5]: [4] ends 14.0, [5] starts 13.79 → 0.21: counted.
    //   [7]: "Uh-huh." inside [6] (0.4 s) is a backchannel: not a barge-in.
    //   [11]: "Uh-huh, okay, sure, thanks" has 4 words, so it is no backchannel; it overlaps
    //         [10] by 29 − 28 = 1.0: counted.
    close(num(&o), 2.0);
    assert_eq!(
        o.details["interruptions"],
        json!([
            {"agent_message": 4, "user_message": 5, "overlap": 0.21},
            {"agent_message": 10, "user_message": 11, "overlap": 1.0},
        ])
    );
    assert_eq!(
        o.details["backchannels_ignored"],
        json!([{"agent_message": 6, "user_message": 7, "overlap": 0.4}])
    );

    // 12 agent/user messages, 2 + 2 interruptions: 5 × (1 − 4/12) = 3.333333.
    close(num(&run("interruption_score", 60.0, &m)), 3.333333);

    // A looser threshold (0.1 s) also counts the 0.19 s overlaps: [3] and [6].
    let cfg = BuiltinConfig {
        min_overlap_seconds: 0.1,
        ..BuiltinConfig::default()
    };
    close(
        num(&run_with("user_interrupting_agent", 60.0, &m, &cfg)),
        3.0,
    );
    close(
        num(&run_with("agent_interrupting_user", 60.0, &m, &cfg)),
        3.0,
    );
    // 5 × (1 − 6/12) = 2.5
    close(num(&run_with("interruption_score", 60.0, &m, &cfg)), 2.5);
}

#[test]
fn overlap_of_exactly_the_threshold_survives_float_rounding() {
    // 1.2 − 1.0 is 0.19999999999999996 in binary floating point; it still counts as 0.2 s.
    let m = [
        user("Can I pay by card please", 0.0, 1.2),
        bot("Yes you can pay by card", 1.0, 3.0),
    ];
    close(num(&run("agent_interrupting_user", 5.0, &m)), 1.0);
    // 0.199 s does not.
    let m = [
        user("Can I pay by card please", 0.0, 1.199),
        bot("Yes you can pay by card", 1.0, 3.0),
    ];
    close(num(&run("agent_interrupting_user", 5.0, &m)), 0.0);
}

#[test]
fn backchannel_normalisation() {
    let list = BuiltinConfig::default().backchannels;
    for yes in [
        "Uh-huh.", "uh huh", "MM-HMM!", "Got it.", "  okay  ", "I see…", "Yeah",
    ] {
        assert!(is_backchannel(yes, &list), "{yes}");
    }
    for no in [
        "Uh-huh, okay, sure, thanks",
        "yeah I see",
        "no",
        "",
        "...",
        "wait",
    ] {
        assert!(!is_backchannel(no, &list), "{no}");
    }
    // A configured phrase is normalised the same way.
    assert!(is_backchannel("you bet!", &["You bet".to_owned()]));
}

#[test]
fn interruption_of_a_row_that_started_later_is_not_counted() {
    // The user row is listed after the bot row but started before it: the user did not barge
    // in on the agent (min(8, 6) − max(2, 1) = 4 s of overlap, but the user spoke first).
    let m = [
        bot("Let me read you the terms now", 2.0, 8.0),
        user("I already know the terms thank you", 1.0, 6.0),
    ];
    close(num(&run("user_interrupting_agent", 10.0, &m)), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Latency and percentiles.

/// Duration 40 s; latencies in list order 4, 1, 10, 3, 2, then one overlap of 0.5 s.
fn latency_fixture() -> Vec<Message> {
    vec![
        user("Hi I need some help", 0.0, 1.0),
        bot("Hello, how can I help you?", 5.0, 6.0), // 5 − 1 = 4
        user("My order is late", 7.0, 8.0),
        bot("Let me check that for you", 9.0, 10.0), // 9 − 8 = 1
        user("It was order one two three", 11.0, 12.0),
        bot("I found it, it ships tomorrow", 22.0, 23.0), // 22 − 12 = 10
        user("Can it come sooner", 24.0, 25.0),
        bot("I am afraid it cannot", 28.0, 29.0), // 28 − 25 = 3
        user("Okay then cancel it", 30.0, 31.0),
        bot("Done, it is cancelled", 33.0, 34.0), // 33 − 31 = 2
        user("Thanks a lot", 35.0, 36.0),
        bot("You are very welcome, goodbye", 35.5, 37.0), // 35.5 − 36 < 0: an overlap
    ]
}

#[test]
fn latency_statistics_with_linear_interpolation() {
    let m = latency_fixture();
    let o = run("agent_latency", 40.0, &m);
    // Sorted samples: 1 2 3 4 10 (n = 5; the overlap is not a sample).
    //   avg = 20 / 5 = 4
    //   p50: h = 4 × 0.50 = 2    → x[2] = 3
    //   p90: h = 4 × 0.90 = 3.6  → 4 + 0.6 × (10 − 4) = 7.6
    //   p95: h = 4 × 0.95 = 3.8  → 4 + 0.8 × 6 = 8.8
    //   p99: h = 4 × 0.99 = 3.96 → 4 + 0.96 × 6 = 9.76
    close(num(&o), 3.0);
    let d = &o.details;
    assert_eq!(d["statistic"], json!("p50"));
    assert_eq!(d["avg"], json!(4.0));
    assert_eq!(d["p50"], json!(3.0));
    assert_eq!(d["p90"], json!(7.6));
    assert_eq!(d["p95"], json!(8.8));
    assert_eq!(d["p99"], json!(9.76));
    assert_eq!(d["max"], json!(10.0));
    assert_eq!(d["count"], json!(5));
    assert_eq!(d["handoffs"], json!(6));
    assert_eq!(
        d["overlaps"],
        json!([{"user_message": 10, "agent_message": 11, "overlap": 0.5}])
    );
    assert_eq!(
        d["samples"][0],
        json!({"user_message": 0, "agent_message": 1, "latency": 4.0})
    );

    for (stat, expected) in [
        ("avg", 4.0),
        ("p90", 7.6),
        ("p95", 8.8),
        ("p99", 9.76),
        ("max", 10.0),
        ("count", 5.0),
        ("P50", 3.0),
    ] {
        let cfg = BuiltinConfig {
            latency_statistic: stat.into(),
            ..BuiltinConfig::default()
        };
        close(num(&run_with("agent_latency", 40.0, &m, &cfg)), expected);
    }
    let cfg = BuiltinConfig {
        latency_statistic: "median".into(),
        ..BuiltinConfig::default()
    };
    not_computable(
        &run_with("agent_latency", 40.0, &m, &cfg),
        "latency_statistic",
    );

    // The overlapping answer is an interruption: min(36, 37) − max(35, 35.5) = 0.5 s.
    close(num(&run("agent_interrupting_user", 40.0, &m)), 1.0);
    // After [4] (ends 12) the agent answers at 22: 10 s of silence, not more than 10.
    close(num(&run("infrastructure_issues", 40.0, &m)), 0.0);
}

#[test]
fn percentile_is_numpy_linear() {
    // n = 4: p50 h = 1.5 → 1.0 + 0.5 × 0.5 = 1.25; p90 h = 2.7 → 1.5 + 0.7 × 1.0 = 2.2;
    // p0 = min, p100 = max.
    let x = [0.5, 1.0, 1.5, 2.5];
    close(percentile(&x, 50.0), 1.25);
    close(percentile(&x, 90.0), 2.2);
    close(percentile(&x, 0.0), 0.5);
    close(percentile(&x, 100.0), 2.5);
    // One sample is every percentile.
    close(percentile(&[1.43], 99.0), 1.43);
    close(percentile(&[1.43], 50.0), 1.43);
}

#[test]
fn latency_when_every_handoff_overlaps_or_none_exists() {
    let m = interruption_fixture();
    // Handoffs [1]→[2], [3]→[4], [5]→[6], [8]→[9] all overlap: no latency sample.
    let o = run("agent_latency", 60.0, &m);
    not_computable(&o, "in all 4 timed user→agent handoffs");
    let cfg = BuiltinConfig {
        latency_statistic: "count".into(),
        ..BuiltinConfig::default()
    };
    close(num(&run_with("agent_latency", 60.0, &m, &cfg)), 0.0);

    // Only the agent spoke.
    let m = [bot("Hello, is anyone there?", 0.0, 2.0)];
    not_computable(&run("agent_latency", 5.0, &m), "no user→agent handoff");
}

// ---------------------------------------------------------------------------------------------
// Silence, infrastructure issues, talk ratio, words per minute, turns (seconds-from-start).

/// Duration 60 s.
fn clinic_fixture() -> Vec<Message> {
    vec![
        bot(
            "Hello, you have reached the clinic, how can I help?",
            0.8,
            4.0,
        ), // 0: 10 words
        user("I would like to book an appointment", 5.0, 7.0), // 1: 7 words
        bot("Let me check the calendar for you", 19.0, 21.0),  // 2: 7 words
        user("Okay", 22.0, 22.5),                              // 3: 1 word
        user("Hello? Are you still there?", 30.0, 31.0),       // 4: 5 words
        bot("Yes, sorry, Tuesday at ten works", 34.0, 37.0),   // 5: 6 words
        user("Perfect, thank you", 38.0, 39.0),                // 6: 3 words
    ]
}

#[test]
fn clinic_call() {
    let m = clinic_fixture();
    let o = all(60.0, &m);

    close(num(get(&o, "time_to_first_word")), 0.8);

    // Handoffs [1]→[2]: 19 − 7 = 12; [4]→[5]: 34 − 31 = 3. Sorted 3, 12:
    // p50 = 7.5, p90 = 3 + 0.9 × 9 = 11.1.
    let latency = get(&o, "agent_latency");
    close(num(latency), 7.5);
    assert_eq!(latency.details["p90"], json!(11.1));

    // Speech: [0.8,4] [5,7] [19,21] [22,22.5] [30,31] [34,37] [38,39]. Gaps: 0.8, 1, 12, 1,
    // 7.5, 3, 1, and 39 → 60 = 21: the longest.
    let silence = get(&o, "longest_silence");
    close(num(silence), 21.0);
    assert_eq!(silence.details, json!({"start": 39.0, "end": 60.0}));
    assert!(boolean(get(&o, "silence_detected")));
    let cfg = BuiltinConfig {
        silence_threshold_seconds: 25.0,
        ..BuiltinConfig::default()
    };
    assert!(!boolean(&run_with("silence_detected", 60.0, &m, &cfg)));
    let cfg = BuiltinConfig {
        silence_threshold_seconds: 21.0,
        ..BuiltinConfig::default()
    };
    assert!(boolean(&run_with("silence_detected", 60.0, &m, &cfg)));

    // Infrastructure issues:
    //   [1] ends 7: the agent answers at 19 → 12 s silent (> 10): an issue.
    //   [3] ends 22.5: the agent answers at 34; the user's "Hello?" [30,31] pauses the clock:
    //       11.5 − 1 = 10.5 s silent: an issue.
    //   [4] ends 31: answered at 34 → 3 s.
    //   [6] ends 39: no later agent message, the call goes on to 60 → 21 s: an issue.
    let infra = get(&o, "infrastructure_issues");
    close(num(infra), 3.0);
    assert_eq!(
        infra.details["issues"],
        json!([
            {"user_message": 1, "user_end": 7.0, "agent_answer_at": 19.0, "silent_seconds": 12.0},
            {"user_message": 3, "user_end": 22.5, "agent_answer_at": 34.0, "silent_seconds": 10.5},
            {"user_message": 6, "user_end": 39.0, "agent_answer_at": null, "silent_seconds": 21.0},
        ])
    );
    assert_eq!(infra.details["checked_user_messages"], json!(4));

    // Agent speaks 3.2 + 2 + 3 = 8.2 s of 60: 0.136667; user 2 + 0.5 + 1 + 1 = 4.5 s: 0.075.
    let talk = get(&o, "talk_ratio");
    close(num(talk), 0.136667);
    assert_eq!(talk.details["user_share"], json!(0.075));
    close(num(get(&o, "user_talk_ratio")), 0.075);

    // Agent: 10 + 7 + 6 = 23 words in 8.2 s → 23 × 60 / 8.2 = 168.292683 words/min.
    let wpm = get(&o, "agent_words_per_minute");
    close(num(wpm), 168.292683);
    assert_eq!(wpm.details["words"], json!(23));
    // User: 7 + 1 + 5 + 3 = 16 words in 4.5 s → 213.333333.
    close(num(get(&o, "user_words_per_minute")), 213.333333);

    // Runs: bot | user | bot | user user | bot | user → 6 turns.
    close(num(get(&o, "turns")), 6.0);
    // No overlaps at all: score 5.
    close(num(get(&o, "interruption_score")), 5.0);
}

#[test]
fn user_continuing_is_not_an_infrastructure_issue() {
    // [0] ends 5; the user goes on in [1] from 6 to 14; the agent answers at 16. Silent time
    // after [0]: (16 − 5) − 8 s of user speech = 3 s; after [1]: 2 s. No issue.
    let m = [
        user("So my internet keeps dropping", 0.0, 5.0),
        user(
            "every evening around eight, and then it comes back after a while",
            6.0,
            14.0,
        ),
        bot(
            "I am sorry to hear that, let me run a line test",
            16.0,
            19.0,
        ),
    ];
    close(num(&run("infrastructure_issues", 20.0, &m)), 0.0);
    // The brief's literal rule would have flagged [0]: 16 − 5 = 11 s > 10.

    // A backchannel during a long agent message: the agent is still talking when it ends.
    let m = [
        bot(
            "Let me explain how the billing cycle works for your plan in detail",
            0.0,
            20.0,
        ),
        user("Uh-huh", 5.0, 5.5),
        bot("Does that make sense?", 21.0, 22.0),
    ];
    close(num(&run("infrastructure_issues", 25.0, &m)), 0.0);
}

#[test]
fn silence_at_the_start_and_in_an_empty_call() {
    // Nobody speaks from 0 to 12; the tail is 14 → 20 = 6.
    let m = [bot("Hello, sorry for the wait", 12.0, 14.0)];
    let o = run("longest_silence", 20.0, &m);
    close(num(&o), 12.0);
    assert_eq!(o.details, json!({"start": 0.0, "end": 12.0}));
    close(num(&run("time_to_first_word", 20.0, &m)), 12.0);

    // No agent or user message at all: the whole call is silent.
    let o = run("longest_silence", 20.0, &[]);
    close(num(&o), 20.0);
    // Zero duration: a zero-length silence, and no talk ratio.
    close(num(&run("longest_silence", 0.0, &[])), 0.0);
    not_computable(&run("talk_ratio", 0.0, &[]), "zero duration");
}

#[test]
fn overlapping_rows_of_one_speaker_are_counted_once() {
    // Agent rows [1,4] and [3,6] overlap: the agent speaks 5 s (not 6) of the 10 s call.
    let m = [
        bot("One two three four five", 1.0, 4.0),
        bot("six seven eight nine ten", 3.0, 6.0),
        user("eleven twelve three", 6.5, 8.0),
    ];
    let o = run("talk_ratio", 10.0, &m);
    close(num(&o), 0.5);
    assert_eq!(o.details["agent_seconds"], json!(5.0));
    assert_eq!(o.details["user_share"], json!(0.15));
    assert!(
        o.warnings
            .iter()
            .any(|w| w.contains("1 agent message overlaps")),
        "{:?}",
        o.warnings
    );
    // 10 words in 5 s = 120 words/min.
    close(num(&run("agent_words_per_minute", 10.0, &m)), 120.0);
    // One run of agent messages, one of user messages.
    close(num(&run("turns", 10.0, &m)), 2.0);
}

// ---------------------------------------------------------------------------------------------
// Missing and partial times; data quality.

#[test]
fn missing_times_make_time_metrics_not_computable() {
    let m = [
        msg(Role::Bot, "Hello there how are you", None, None),
        msg(Role::User, "Fine thanks", None, None),
        tool(Role::FunctionCall, json!({"name": "lookup"})),
        tool(Role::FunctionCallResult, json!({"result": "ok"})),
        msg(Role::Bot, "Great to hear that today", None, None),
    ];
    let o = all(30.0, &m);
    for key in [
        "time_to_first_word",
        "agent_latency",
        "agent_interrupting_user",
        "user_interrupting_agent",
        "interruption_score",
        "talk_ratio",
        "user_talk_ratio",
        "longest_silence",
        "silence_detected",
        "infrastructure_issues",
        "agent_words_per_minute",
        "user_words_per_minute",
    ] {
        let outcome = get(&o, key);
        not_computable(outcome, "no message has start and end times");
        assert!(outcome.explanation.starts_with("Not computable"), "{key}");
    }
    close(num(get(&o, "call_duration")), 30.0);
    // Only untimed user messages: the agent's share is not "0", it is unknown.
    let only_user = [msg(Role::User, "Hello? Anybody there?", None, None)];
    not_computable(
        &run("talk_ratio", 30.0, &only_user),
        "no message has start and end times",
    );
    // bot | user | bot (the tool rows are ignored) → 3 turns.
    close(num(get(&o, "turns")), 3.0);
    close(num(get(&o, "tool_calls")), 1.0);
    close(num(get(&o, "tool_call_success")), 1.0);
    close(num(get(&o, "unnecessary_repetition")), 0.0);
}

#[test]
fn start_only_times() {
    // Starts without ends: the first word is known; speech intervals are not.
    let m = [
        msg(Role::Bot, "Hello there", Some(0.7), None),
        msg(Role::User, "Hi", Some(2.0), None),
    ];
    close(num(&run("time_to_first_word", 10.0, &m)), 0.7);
    not_computable(&run("talk_ratio", 10.0, &m), "none of the 1 agent message");
    not_computable(
        &run("agent_words_per_minute", 10.0, &m),
        "none of the 1 agent",
    );
    not_computable(
        &run("longest_silence", 10.0, &m),
        "no agent or user message has both start and end times",
    );
    not_computable(
        &run("infrastructure_issues", 10.0, &m),
        "no user message has an end time",
    );
    not_computable(
        &run("agent_latency", 10.0, &[m[1].clone(), m[0].clone()]),
        "none of the 1",
    );
}

#[test]
fn partial_times_use_what_is_there_and_warn() {
    let m = [
        bot("Hi, how can I help you today?", 0.5, 2.5),
        user("I need help with my order", 3.0, 5.0),
        msg(Role::Bot, "Sure, what is the order number?", None, None),
        user("It is one two three", 9.0, 10.5),
        bot("Thanks, I found your order", 11.5, 13.0),
    ];
    let o = all(30.0, &m);

    // Handoff [1]→[2] lacks the agent's start; [3]→[4]: 11.5 − 10.5 = 1.0.
    let latency = get(&o, "agent_latency");
    close(num(latency), 1.0);
    assert_eq!(latency.details["untimed_handoffs"], json!(1));
    assert_eq!(
        latency.warnings,
        ["1 of 2 user→agent handoffs lack the user's end or the agent's start time and were left out"]
    );

    // Agent: 2.0 + 1.5 = 3.5 s of 30 = 0.116667.
    let talk = get(&o, "talk_ratio");
    close(num(talk), 0.116667);
    assert_eq!(
        talk.warnings,
        ["1 of 3 agent messages lacks start or end times and was left out"]
    );

    // Speech [0.5,2.5] [3,5] [9,10.5] [11.5,13]; the longest gap is 13 → 30 = 17.
    let silence = get(&o, "longest_silence");
    close(num(silence), 17.0);
    assert!(silence.warnings[0].starts_with("1 of 5 agent and user messages lack"));

    // [1] ends 5, the next timed agent speech starts 11.5; [3] speaks 1.5 s in between:
    // 6.5 − 1.5 = 5 s. [3] ends 10.5 → 1 s. No issue, with a warning for the untimed row.
    let infra = get(&o, "infrastructure_issues");
    close(num(infra), 0.0);
    assert_eq!(
        infra.warnings,
        ["1 of 3 agent messages lacks a start time and was left out"]
    );

    // The agent's handoff [1]→[2] cannot be checked for an interruption.
    let agent = get(&o, "agent_interrupting_user");
    close(num(agent), 0.0);
    assert_eq!(agent.warnings.len(), 1);
    assert!(agent.warnings[0].starts_with("1 of 2 user→agent handoffs"));
}

#[test]
fn data_quality_warnings() {
    let m = [
        bot("Hello, how can I help?", 0.5, 12.5), // ends 2.5 s after the 10 s call
        user("I have a question", 5.0, 4.0),      // ends before it starts: times ignored
        user("About my bill please", 6.0, 7.0),
    ];
    let o = all(10.0, &m);
    let talk = get(&o, "talk_ratio");
    // The agent's speech is clipped to the call: [0.5, 10] = 9.5 s of 10.
    close(num(talk), 0.95);
    assert_eq!(
        talk.warnings,
        [
            "1 message time lies more than 1 s outside the call (0 to 10.000 s): messages[0] end at 12.500 s",
            "1 message ends before its start: messages[1]; its times were ignored",
        ]
    );
    // The user's row without usable times is left out: 1 s of 10.
    close(num(get(&o, "user_talk_ratio")), 0.1);
    // Words per minute uses the unclipped 12 s: 5 words → 25 words/min.
    close(num(get(&o, "agent_words_per_minute")), 25.0);
    // Count-only metrics carry no time warnings.
    assert!(get(&o, "turns").warnings.is_empty());
    assert!(get(&o, "end_reason").warnings.is_empty());

    // A time within 1 s of the bounds is not remarked upon.
    let m = [bot("Hello, how can I help?", -0.5, 10.9)];
    assert!(run("talk_ratio", 10.0, &m).warnings.is_empty());

    // An invalid duration.
    not_computable(&run("call_duration", f64::NAN, &[]), "invalid");
    not_computable(&run("talk_ratio", -1.0, &[]), "invalid");
}

#[test]
fn zero_turns_and_no_agent() {
    let m = [tool(Role::FunctionCall, json!({"name": "x"}))];
    not_computable(
        &run("interruption_score", 10.0, &m),
        "no agent or user message",
    );
    close(num(&run("turns", 10.0, &m)), 0.0);
    not_computable(
        &run("time_to_first_word", 10.0, &m),
        "the agent never spoke",
    );
    not_computable(
        &run("agent_words_per_minute", 10.0, &m),
        "the agent never spoke",
    );
    // Nobody spoke: no interruption of anyone, no agent talk.
    close(num(&run("agent_interrupting_user", 10.0, &m)), 0.0);
    close(num(&run("talk_ratio", 10.0, &m)), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Tool calls.

#[test]
fn tool_call_success_with_every_error_form() {
    use Role::{FunctionCall as Call, FunctionCallResult as Res};
    let m = [
        bot("Let me look that up for you", 0.0, 2.0), // 0
        tool(Call, json!({"id": "a", "name": "lookup_order"})), // 1
        tool(Call, json!({"id": "b", "name": "check_stock"})), // 2
        tool(Res, json!({"id": "b", "result": {"in_stock": true}})), // 3: b ok (by id)
        tool(Res, json!({"id": "a", "error": "timeout"})), // 4: a: error
        tool(Call, json!({"name": "send_email"})),    // 5
        tool(Res, json!({"result": {"error": {"message": "SMTP down"}}})), // 6: result.error
        tool(Call, json!({"id": 7, "name": "get_weather"})), // 7
        tool(Res, json!({"id": "7", "status": "Failed"})), // 8: status
        tool(Call, json!({"name": "book"})),          // 9
        tool(Res, json!({"result": {"status": "ERROR"}})), // 10: result.status
        tool(Call, json!({"name": "refund"})),        // 11
        tool(Res, json!({"success": false})),         // 12: success
        tool(Call, json!({"name": "transfer"})),      // 13
        tool(Res, json!({"result": {"success": false}})), // 14: result.success
        tool(Call, json!({"name": "lookup_faq"})),    // 15
        tool(Res, json!({"result": "Open 9 to 5", "error": null})), // 16: ok
        tool(Call, json!({"name": "hangup"})),        // 17: no result
    ];
    // 9 calls (1 2 5 7 9 11 13 15 17); ok: check_stock and lookup_faq → 2/9 = 0.222222.
    close(num(&run("tool_calls", 60.0, &m)), 9.0);
    let o = run("tool_call_success", 60.0, &m);
    close(num(&o), 0.222222);
    let calls = o.details["calls"].as_array().unwrap();
    let summary: Vec<(u64, &str, bool, &str)> = calls
        .iter()
        .map(|c| {
            (
                c["message"].as_u64().unwrap(),
                c["name"].as_str().unwrap(),
                c["ok"].as_bool().unwrap(),
                c["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "lookup_order", false, "error: timeout"),
            (2, "check_stock", true, ""),
            (5, "send_email", false, "result.error: SMTP down"),
            (7, "get_weather", false, "status is \"Failed\""),
            (9, "book", false, "result.status is \"ERROR\""),
            (11, "refund", false, "success is false"),
            (13, "transfer", false, "result.success is false"),
            (15, "lookup_faq", true, ""),
            (17, "hangup", false, "no result"),
        ]
    );
    assert_eq!(calls[0]["result_message"], json!(4));
    assert_eq!(calls[0]["id"], json!("a"));
    assert_eq!(calls[3]["result_message"], json!(8));
    assert_eq!(calls[8]["result_message"], Value::Null);
    assert!(o.warnings.is_empty());
}

#[test]
fn tool_pairing_edge_cases() {
    use Role::{FunctionCall as Call, FunctionCallResult as Res};
    // `"error": false` and `"error": ""` report nothing. A result with another call's id is
    // not taken by position: it is an orphan, and call "one" has no result.
    let m = [
        tool(Call, json!({"name": "two"})),
        tool(Res, json!({"error": false, "result": "done"})),
        tool(Call, json!({"name": "three"})),
        tool(Res, json!({"error": "", "status": "ok"})),
        tool(Call, json!({"id": "x", "name": "one"})),
        tool(Res, json!({"id": "y", "result": "fine"})),
    ];
    let o = run("tool_call_success", 10.0, &m);
    // two and three: ok; one: no result → 2/3.
    close(num(&o), 0.666667);
    assert_eq!(o.details["calls"][2]["reason"], json!("no result"));
    assert_eq!(
        o.warnings,
        ["1 function_call_result row matches no function_call"]
    );

    // Without ids, a call takes the next unpaired result after it: parallel calls pair in order.
    let m = [
        tool(Call, json!({"name": "first"})),
        tool(Call, json!({"id": "c2", "name": "second"})),
        tool(Res, json!({"result": "one"})),
        tool(Res, json!({"error": "two failed"})),
    ];
    let o = run("tool_call_success", 10.0, &m);
    close(num(&o), 0.5);
    assert_eq!(o.details["calls"][0]["result_message"], json!(2));
    assert_eq!(o.details["calls"][1]["result_message"], json!(3));

    // A call is not paired with a result that comes before it (positional pairing).
    let m = [
        tool(Res, json!({"result": "early"})),
        tool(Call, json!({"name": "late"})),
    ];
    close(num(&run("tool_call_success", 10.0, &m)), 0.0);
    // By id, order does not matter.
    let m = [
        tool(Res, json!({"id": "k", "result": "early"})),
        tool(Call, json!({"id": "k", "name": "late"})),
    ];
    close(num(&run("tool_call_success", 10.0, &m)), 1.0);
    // The content names a call without data.name.
    let m = [msg(Role::FunctionCall, "transfer_call", None, None)];
    let o = run("tool_calls", 10.0, &m);
    assert_eq!(o.details["calls"][0]["name"], json!("transfer_call"));
}

// ---------------------------------------------------------------------------------------------
// Repetition.

#[test]
fn repetition_verbatim_and_near_duplicates() {
    let m = [
        bot("I can help you with your booking today.", 0.0, 2.0), // 0
        user("ok", 2.5, 3.0),
        bot("Sorry, could you repeat that?", 3.5, 5.0), // 2
        bot("I can help you with your booking today!", 5.5, 7.0), // 3
        bot("I can help you with the booking today.", 7.5, 9.0), // 4
        bot("Sure, I can help you with your booking today", 9.5, 11.0), // 5
        bot("Okay.", 11.5, 12.0),                       // 6
        bot("Okay.", 12.5, 13.0),                       // 7
    ];
    // Token sets: [0] = {i can help you with your booking today} (8).
    //   [3] normalises to the same text as [0]: similarity 1, verbatim.
    //   [4] = {i can help you with the booking today}: vs [0]/[3] 7 shared of 9 = 0.777…,
    //       below 0.8; vs [2] far lower. Not a repetition.
    //   [5] = [0] ∪ {sure} (9): vs [0] 8/9 = 0.888… ≥ 0.8 (ties with [3]; the earliest wins);
    //       vs [4] 7/10.
    //   [6], [7] have fewer than 4 words: not compared.
    let o = run("unnecessary_repetition", 20.0, &m);
    close(num(&o), 2.0);
    assert_eq!(
        o.details["repetitions"],
        json!([
            {"message": 3, "repeats": 0, "similarity": 1.0, "verbatim": true},
            {"message": 5, "repeats": 0, "similarity": 0.888889, "verbatim": false},
        ])
    );
    assert_eq!(o.details["compared_messages"], json!(5));

    // At 0.75, [4] (0.777…) repeats [0] too.
    let cfg = BuiltinConfig {
        repetition_similarity: 0.75,
        ..BuiltinConfig::default()
    };
    close(
        num(&run_with("unnecessary_repetition", 20.0, &m, &cfg)),
        3.0,
    );

    // The user repeating the agent does not count.
    let m = [
        bot("Please hold the line for me", 0.0, 2.0),
        user("Please hold the line for me", 2.5, 4.0),
    ];
    close(num(&run("unnecessary_repetition", 5.0, &m)), 0.0);
}

#[test]
fn normalisation_and_word_count() {
    let mut out = Vec::new();
    let mut spans = Vec::new();
    let text = "  Hello, WORLD!  It's  uh-huh … Ünïcode ";
    normalise_append(text, &mut out, |s, e| spans.push((s, e)));
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out, "hello world its uhhuh ünïcode");
    assert_eq!(spans.len(), 5);
    assert_eq!(&out[spans[3].0..spans[3].1], "uhhuh");
    assert_eq!(&out[spans[4].0..spans[4].1], "ünïcode");
    // Agrees with the allocation-free comparison used for backchannels.
    assert!(normalised_eq(text, &out));
    // The ASCII fast path gives what the general path gives.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    normalise_append("Hi,\tthere -- it's ME!", &mut a, |_, _| {});
    normalise_append("Hi,\tthere -- it's ME! é", &mut b, |_, _| {});
    assert_eq!(a, b"hi there its me");
    assert_eq!(b, "hi there its me é".as_bytes());

    // Words per minute counts whitespace-separated tokens, punctuation included.
    assert_eq!(word_count("Hi there. How are you?"), 5);
    assert_eq!(word_count("  a\tb\nc\r\n  d  "), 4);
    assert_eq!(word_count("— well —"), 3);
    assert_eq!(word_count("a\u{00A0}b"), 2);
    assert_eq!(word_count(""), 0);
}

#[test]
fn intern_numbers_a_token_by_the_first_with_its_text() {
    let text = b"hold on hold the line on";
    let tokens = [(0, 4), (5, 7), (8, 12), (13, 16), (17, 21), (22, 24)];
    assert_eq!(intern(text, &tokens), [0, 1, 0, 3, 4, 1]);
}

#[test]
fn jaccard_by_hand() {
    // {a b c d} vs {b c d e}: 3 shared of 5.
    close(jaccard(&["a", "b", "c", "d"], &["b", "c", "d", "e"]), 0.6);
    close(jaccard::<u32>(&[], &[]), 0.0);
}

// ---------------------------------------------------------------------------------------------
// End reason and duration.

#[test]
fn end_reason_and_duration() {
    let c = Conversation {
        duration_seconds: 42.25,
        messages: &[],
        ended_reason: "assistant-ended-call",
        audio: None,
        trace: None,
    };
    let cfg = BuiltinConfig::default();
    let o = compute_builtin("end_reason", &c, &cfg).unwrap();
    assert_eq!(
        o.value,
        Some(MetricValue::Text("assistant-ended-call".into()))
    );
    let o = compute_builtin("call_duration", &c, &cfg).unwrap();
    close(num(&o), 42.25);
    let empty = Conversation {
        ended_reason: " ",
        audio: None,
        trace: None,
        ..c
    };
    let o = compute_builtin("end_reason", &empty, &cfg).unwrap();
    not_computable(&o, "no ended reason");
}

// ---------------------------------------------------------------------------------------------
// The fast searches against straightforward ones, on seeded random calls.

/// SplitMix64: a seeded generator, so these tests see the same inputs on every run.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A time in `[0, seconds)` on a 1/64 s grid: sums and differences of such times are exact
    /// in f64, so two ways of adding them up give the same bits.
    fn seconds(&mut self, seconds: u64) -> f64 {
        self.below(seconds * 64) as f64 / 64.0
    }
}

/// Messages whose times go mostly forward with gaps up to 11 s, sometimes back (overlaps), some
/// of them zero-length, reversed or missing a time; a few system rows.
fn random_timed_call(rng: &mut Seeded, n: usize) -> (f64, Vec<Message>) {
    let mut clock = 0.0f64;
    let messages = (0..n)
        .map(|_| {
            let role = match rng.below(20) {
                0 => Role::System,
                r if r < 10 => Role::Bot,
                _ => Role::User,
            };
            clock = (clock + rng.seconds(14) - 3.0).max(0.0);
            let (start, end) = (clock, clock + rng.seconds(6));
            let (start, end) = if rng.chance(3) {
                (end, start)
            } else {
                (start, end)
            };
            clock = clock.max(end);
            msg(
                role,
                "words",
                (!rng.chance(10)).then_some(start),
                (!rng.chance(10)).then_some(end),
            )
        })
        .collect();
    (clock + rng.seconds(20), messages)
}

/// `infrastructure_issues`' list of issues as docs/metrics.md words it: for each user message,
/// a scan of every agent message and of the whole speech union.
fn infrastructure_issues_by_scanning(p: &Prepared, cfg: &BuiltinConfig) -> Vec<Value> {
    let d = *p.duration.as_ref().unwrap();
    let user_ends = p
        .rows
        .iter()
        .filter(|r| !r.bot)
        .filter_map(|u| Some((u, u.end?)));
    user_ends
        .filter_map(|(u, e)| {
            let answer = p
                .rows
                .iter()
                .filter(|r| r.bot)
                .filter_map(|r| match (r.start, r.end) {
                    (Some(s), Some(be)) if be > e => Some(s.max(e)),
                    (Some(s), None) if s >= e => Some(s),
                    _ => None,
                })
                .min_by(f64::total_cmp);
            let until = answer.unwrap_or(d);
            let silent = (until - e) - covered(&p.speech_union, e, until);
            (until > e && silent > cfg.infrastructure_silence_seconds + EPS).then(|| {
                json!({
                    "user_message": u.idx,
                    "user_end": r6(e),
                    "agent_answer_at": answer.map(r6),
                    "silent_seconds": r6(silent),
                })
            })
        })
        .collect()
}

#[test]
fn infrastructure_issues_agree_with_scanning_every_agent_message() {
    let mut rng = Seeded(20);
    let mut issues = 0;
    for round in 0..60 {
        let (duration, m) = random_timed_call(&mut rng, 300);
        let cfg = BuiltinConfig {
            infrastructure_silence_seconds: [2.0, 5.0, 10.0][round % 3],
            ..BuiltinConfig::default()
        };
        let p = Prepared::new(&conv(duration, &m));
        let expected = infrastructure_issues_by_scanning(&p, &cfg);
        let outcome = infrastructure_issues(&p, &cfg);
        assert_eq!(outcome.details["issues"], json!(expected), "round {round}");
        close(num(&outcome), expected.len() as f64);
        issues += expected.len();
    }
    // Not a comparison of empty lists.
    assert!(issues > 1000, "{issues} issues");
}

/// Every pair compared: each message's most similar earlier one at or above the threshold, the
/// earliest on a tie.
fn repeats_by_comparing_all_pairs(sets: &TokenSets, threshold: f64) -> Vec<(usize, (usize, f64))> {
    (1..sets.len())
        .filter_map(|j| {
            let mut best: Option<(usize, f64)> = None;
            for i in 0..j {
                let sim = jaccard(sets.get(i), sets.get(j));
                if sim >= threshold && best.is_none_or(|(_, b)| sim > b) {
                    best = Some((i, sim));
                }
            }
            Some((j, best?))
        })
        .collect()
}

#[test]
fn repetition_candidates_miss_no_repeat_of_a_normal_call() {
    // A vocabulary of 400 words, a few of them common (like "the" or "you"), most rare.
    let mut words = Seeded(17);
    let mut word = || {
        let commoner = words.below(400) + 1;
        format!("w{}", words.below(commoner))
    };
    let mut rng = Seeded(18);
    let mut repeats = 0;
    for round in 0..20 {
        // Agent messages of 4–12 words; a third of them an earlier one with a word changed,
        // added or dropped.
        let mut said: Vec<Vec<String>> = Vec::new();
        for _ in 0..300 {
            let message = if !said.is_empty() && rng.chance(33) {
                let mut m = said[rng.below(said.len() as u64) as usize].clone();
                let at = rng.below(m.len() as u64) as usize;
                match rng.below(3) {
                    0 => m[at] = word(),
                    1 => m.insert(at, word()),
                    _ if m.len() > 4 => drop(m.remove(at)),
                    _ => {}
                }
                m
            } else {
                (0..4 + rng.below(9)).map(|_| word()).collect()
            };
            said.push(message);
        }
        let threshold = [0.5, 0.8, 0.9, 1.0][round % 4] - EPS;
        let (mut text, mut tokens) = (Vec::new(), Vec::new());
        let spans: Vec<Span> = said
            .iter()
            .map(|words| {
                let first = tokens.len();
                normalise_append(&words.join(" "), &mut text, |s, e| tokens.push((s, e)));
                (first, tokens.len())
            })
            .collect();
        let sets = TokenSets::new(&text, &tokens, spans.into_iter());
        let expected = repeats_by_comparing_all_pairs(&sets, threshold);
        assert_eq!(earlier_repeats(&sets, threshold), expected, "round {round}");
        repeats += expected.len();
    }
    assert!(repeats > 1000, "{repeats} repeats");
}

/// Each call's result message, paired the straightforward way: for every call, a search of
/// every result (docs/metrics.md, tool_call_success).
fn tool_pairs_by_searching(m: &[Message]) -> Vec<Option<usize>> {
    let of_role = |role| {
        (0..m.len())
            .filter(|&i| m[i].role == role)
            .collect::<Vec<_>>()
    };
    let (calls, results) = (
        of_role(Role::FunctionCall),
        of_role(Role::FunctionCallResult),
    );
    let mut used = vec![false; results.len()];
    let mut paired = vec![None; calls.len()];
    for (c, &ci) in calls.iter().enumerate() {
        let Some(id) = tool_id(&m[ci]) else { continue };
        let same_id =
            |r: &usize| tool_id(&m[results[*r]]).is_some_and(|rid| id_text(rid) == id_text(id));
        if let Some(r) = (0..results.len()).filter(|r| !used[*r]).find(same_id) {
            used[r] = true;
            paired[c] = Some(results[r]);
        }
    }
    for (c, &ci) in calls.iter().enumerate() {
        let both_ids = |r: usize| tool_id(&m[ci]).is_some() && tool_id(&m[results[r]]).is_some();
        if paired[c].is_none() {
            if let Some(r) =
                (0..results.len()).find(|&r| !used[r] && results[r] > ci && !both_ids(r))
            {
                used[r] = true;
                paired[c] = Some(results[r]);
            }
        }
    }
    paired
}

#[test]
fn tool_pairing_agrees_with_searching_every_result() {
    use Role::{FunctionCall as Call, FunctionCallResult as Res};
    let ids = [
        json!("a"),
        json!("b"),
        json!("7"),
        json!(7),
        json!(7.0),
        json!(""),
    ];
    let mut rng = Seeded(16);
    let mut paired = 0;
    for round in 0..40 {
        let m: Vec<Message> = (0..300)
            .map(|_| {
                let role = if rng.chance(50) { Call } else { Res };
                let data = match rng.below(8) as usize {
                    k if k < ids.len() => json!({ "id": ids[k], "name": "lookup" }),
                    _ => json!({ "name": "lookup" }),
                };
                tool(role, data)
            })
            .collect();
        let expected = tool_pairs_by_searching(&m);
        let outcome = run("tool_call_success", 10.0, &m);
        let found: Vec<Option<usize>> = outcome.details["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["result_message"].as_u64().map(|r| r as usize))
            .collect();
        assert_eq!(found, expected, "round {round}");
        paired += expected.iter().flatten().count();
    }
    assert!(paired > 1000, "{paired} pairs");
}

// ---------------------------------------------------------------------------------------------
// Long calls: 100,000 messages through every builtin, with values known by construction.

/// `n` messages, agent and user in turn from the agent at 0 s, each 1.5 s long and starting
/// 0.5 s after the one before ends, except every 1000th (an agent's), which starts 12.5 s after.
/// `says(i)` is message i's content. Times are multiples of 0.5 s, so every sum is exact.
fn long_call(n: usize, says: impl Fn(usize) -> String) -> (f64, Vec<Message>) {
    let mut start = 0.0;
    let messages = (0..n)
        .map(|i| {
            if i > 0 {
                start += 1.5 + if i % 1000 == 0 { 12.5 } else { 0.5 };
            }
            let content = says(i);
            if i % 2 == 0 {
                bot(&content, start, start + 1.5)
            } else {
                user(&content, start, start + 1.5)
            }
        })
        .collect();
    (start + 2.5, messages)
}

/// Evaluates a `long_call` of 100,000 messages of `words` words each and checks what does not
/// depend on what they say; returns the outcomes.
fn long_call_outcomes(
    words: usize,
    says: impl Fn(usize) -> String,
) -> Vec<(&'static str, BuiltinOutcome)> {
    let (duration, m) = long_call(100_000, says);
    assert!(m.iter().all(|m| word_count(&m.content) == words));
    let o = all(duration, &m);
    for (key, outcome) in &o {
        assert!(outcome.warnings.is_empty(), "{key}: {:?}", outcome.warnings);
    }
    // 1.5 s of speech each; 99,999 gaps, 99 of them 12.5 s and the others 0.5 s; 1 s at the end.
    close(
        duration,
        100_000.0 * 1.5 + 99_900.0 * 0.5 + 99.0 * 12.5 + 1.0,
    );
    close(num(get(&o, "call_duration")), duration);
    close(num(get(&o, "time_to_first_word")), 0.0);
    close(num(get(&o, "turns")), 100_000.0);
    // 49,999 user→agent handoffs: 99 of them 12.5 s, the rest 0.5 s.
    let latency = get(&o, "agent_latency");
    close(num(latency), 0.5);
    assert_eq!(latency.details["count"], json!(49_999));
    assert_eq!(latency.details["max"], json!(12.5));
    close(num(get(&o, "agent_interrupting_user")), 0.0);
    close(num(get(&o, "user_interrupting_agent")), 0.0);
    close(num(get(&o, "interruption_score")), 5.0);
    close(num(get(&o, "talk_ratio")), 75_000.0 / duration);
    close(num(get(&o, "user_talk_ratio")), 75_000.0 / duration);
    close(num(get(&o, "longest_silence")), 12.5);
    assert!(boolean(get(&o, "silence_detected")));
    // The user messages before the 99 late agent messages: 12.5 s of silence each.
    let infra = get(&o, "infrastructure_issues");
    close(num(infra), 99.0);
    assert_eq!(infra.details["checked_user_messages"], json!(50_000));
    let issues = infra.details["issues"].as_array().unwrap();
    for (k, issue) in (1..).zip(issues) {
        assert_eq!(issue["user_message"], json!(1000 * k - 1));
        assert_eq!(issue["silent_seconds"], json!(12.5));
    }
    let wpm = words as f64 * 60.0 / 1.5;
    close(num(get(&o, "agent_words_per_minute")), wpm);
    close(num(get(&o, "user_words_per_minute")), wpm);
    close(num(get(&o, "tool_calls")), 0.0);
    not_computable(get(&o, "tool_call_success"), "no function call");
    o
}

/// The repetitions of a long call: (message, repeats, similarity, verbatim).
fn repetitions(o: &[(&'static str, BuiltinOutcome)]) -> Vec<(u64, u64, f64, bool)> {
    get(o, "unnecessary_repetition").details["repetitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["message"].as_u64().unwrap(),
                r["repeats"].as_u64().unwrap(),
                r["similarity"].as_f64().unwrap(),
                r["verbatim"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_hundred_thousand_one_word_messages() {
    let o = long_call_outcomes(1, |i| format!("word{i}"));
    let repetition = get(&o, "unnecessary_repetition");
    close(num(repetition), 0.0);
    assert_eq!(repetition.details["compared_messages"], json!(0));
}

#[test]
fn a_hundred_thousand_six_word_messages() {
    // The agent's messages share 5 of 6 words (5/7 ≈ 0.71, below 0.8), except that every
    // 200th message says the same sentence: 500 times, so 499 verbatim repeats of message 0.
    let o = long_call_outcomes(6, |i| match i {
        _ if i % 200 == 0 => "Let me check that for you.".to_owned(),
        _ if i % 2 == 0 => format!("Your order number {i} is ready."),
        _ => "Yes, I would like that please.".to_owned(),
    });
    close(num(get(&o, "unnecessary_repetition")), 499.0);
    let expected: Vec<(u64, u64, f64, bool)> = (1..500).map(|k| (200 * k, 0, 1.0, true)).collect();
    assert_eq!(repetitions(&o), expected);
    assert_eq!(
        get(&o, "unnecessary_repetition").details["compared_messages"],
        json!(50_000)
    );
}

#[test]
fn a_hundred_thousand_messages_the_agent_always_says_the_same() {
    let o = long_call_outcomes(8, |i| match i % 2 {
        0 => "I can help you with your booking today.".to_owned(),
        _ => "Thanks, that is all I needed to know.".to_owned(),
    });
    // Every agent message after the first repeats message 0 verbatim.
    let expected: Vec<(u64, u64, f64, bool)> = (1..50_000).map(|k| (2 * k, 0, 1.0, true)).collect();
    assert_eq!(repetitions(&o), expected);
}

#[test]
fn a_hundred_thousand_messages_the_agent_says_nearly_the_same() {
    // "please hold the line while i check your order number N": any two share 10 of 12 words
    // (0.833333), so every agent message after the first repeats one. Each is compared with the
    // 64 most recent (its rarest token, N, is its own; the next, "please", every message's),
    // of which the earliest wins the tie.
    let o = long_call_outcomes(11, |i| match i % 2 {
        0 => format!("Please hold the line while I check your order number {i}."),
        _ => "Okay, I will hold the line, take the time you need.".to_owned(),
    });
    let expected: Vec<(u64, u64, f64, bool)> = (1..50_000u64)
        .map(|k| {
            (
                2 * k,
                2 * k.saturating_sub(REPETITION_CANDIDATES as u64),
                0.833333,
                false,
            )
        })
        .collect();
    assert_eq!(repetitions(&o), expected);
}

// ---------------------------------------------------------------------------------------------
// Evidence: what the metrics count, for the dashboard's timeline.

#[test]
fn evidence_lists_what_the_metrics_count() {
    let mut m = interruption_fixture();
    let e = evidence(&conv(60.0, &m), &BuiltinConfig::default());
    // The same events as both interruption metrics' details (the two tests above), with the
    // interrupter's start; the 0.19 s overlaps and the backchannels [7] [9] are left out.
    let events: Vec<(usize, usize, f64)> = e
        .interruptions
        .iter()
        .map(|i| (i.interrupted, i.interrupter, i.start))
        .collect();
    let agent = run("agent_interrupting_user", 60.0, &m);
    let user = run("user_interrupting_agent", 60.0, &m);
    assert_eq!(
        e.interruptions.len() as f64,
        num(&agent) + num(&user),
        "{events:?}"
    );
    assert_eq!(
        events,
        [(1, 2, 6.0), (3, 4, 10.79), (4, 5, 13.79), (10, 11, 28.0)]
    );
    close(e.interruptions[0].seconds, 0.2);
    // Every user→agent handoff here is an overlap ([1]→[2], [3]→[4], [5]→[6], [8]→[9]), so
    // agent_latency has no sample.
    assert!(e.latencies.is_empty(), "{:?}", e.latencies);
    // Speech ends at 30 s of 60: one silence of 30 s, at or above the 10 s threshold.
    assert_eq!(e.silences, vec![(30.0, 60.0)]);

    // A tool call whose result failed, and a gap before the agent's answer.
    m.truncate(2);
    m.push(tool(
        Role::FunctionCall,
        json!({"id": "c1", "function": {"name": "update_address", "arguments": "{}"}}),
    ));
    m.push(tool(
        Role::FunctionCallResult,
        json!({"id": "c1", "error": "timeout"}),
    ));
    m.push(bot("Sorry, that did not work", 7.4, 9.0));
    let e = evidence(&conv(10.0, &m), &BuiltinConfig::default());
    assert_eq!(e.latencies.len(), 1);
    assert_eq!(
        (e.latencies[0].user_message, e.latencies[0].agent_message),
        (1, 4)
    );
    close(e.latencies[0].seconds, 1.2);
    assert_eq!(
        e.tool_calls,
        vec![ToolCall {
            message: 2,
            result: Some(3),
            name: Some("update_address".to_owned()),
            ok: false,
            reason: Some("error: timeout".to_owned()),
        }]
    );
    assert!(e.silences.is_empty(), "no 10 s pause in a 10 s call");
}
