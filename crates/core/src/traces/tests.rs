use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde_json::json;

use super::*;

const PIPECAT: &[u8] = include_bytes!("../../tests/fixtures/traces/pipecat.json");
const LIVEKIT: &[u8] = include_bytes!("../../tests/fixtures/traces/livekit.json");

fn read(body: &[u8]) -> ReadTraces {
    read_traces(body, OtlpEncoding::Json, &TraceLimits::default()).expect("a valid export")
}

fn errors(body: serde_json::Value) -> Vec<String> {
    let body = serde_json::to_vec(&body).unwrap();
    read_traces(&body, OtlpEncoding::Json, &TraceLimits::default())
        .expect_err("refused")
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

/// `(stt, llm_ttft, tts_ttfb, tool)` of each turn, in ms, with the sources.
fn figures(b: &TraceBreakdown) -> Vec<[Option<(f64, String)>; 4]> {
    let f = |m: &Option<TurnMeasure>| m.as_ref().map(|m| (m.ms, m.source.clone()));
    b.turns
        .iter()
        .map(|t| [f(&t.stt), f(&t.llm_ttft), f(&t.tts_ttfb), f(&t.tool)])
        .collect()
}

fn m(ms: f64, source: &str) -> Option<(f64, String)> {
    Some((ms, source.to_owned()))
}

#[test]
fn pipecat_turns_read_their_ttfb_attributes() {
    let read = read(PIPECAT);
    assert_eq!(read.spans.len(), 11);
    assert_eq!(read.trace_ids, ["5b8efff798038103d269b633813fc60c"]);
    let stt = &read.spans[2];
    assert_eq!(stt.name, "stt");
    assert_eq!(stt.parent_span_id.as_deref(), Some("a000000000000002"));
    assert_eq!(stt.service_name.as_deref(), Some("pipecat-bot"));
    assert_eq!(stt.attributes["metrics.ttfb"], json!(0.25));
    assert_eq!(stt.attributes["is_final"], json!(true));
    assert_eq!(read.spans[1].attributes["turn.number"], json!(1));

    let b = breakdown(&read.spans).unwrap();
    assert_eq!(b.turns.len(), 2);
    assert_eq!(
        figures(&b),
        [
            [
                m(250.0, "metrics.ttfb"),
                m(700.0, "metrics.ttfb"),
                m(180.0, "metrics.ttfb"),
                None
            ],
            [
                m(300.0, "metrics.ttfb"),
                m(550.0, "metrics.ttfb"),
                m(200.0, "metrics.ttfb"),
                m(420.0, "duration")
            ],
        ]
    );
    assert_eq!((b.turns[1].start_ms, b.turns[1].end_ms), (4500.0, 8900.0));
    assert_eq!(b.span_count, 11);
    // The frame statistics are none of the known kinds: counted, kept, in no turn.
    assert_eq!(b.other_spans, 1);
    assert!(b
        .turns
        .iter()
        .all(|t| !t.spans.contains(&"a00000000000000b".to_owned())));
}

#[test]
fn livekit_caller_turns_join_the_answer_and_metrics_documents_are_read() {
    let read = read(LIVEKIT);
    let b = breakdown(&read.spans).unwrap();
    assert_eq!(
        figures(&b),
        [
            [
                m(320.0, "lk.transcription_delay"),
                m(610.0, "lk.response.ttft"),
                m(210.0, "lk.response.ttfb"),
                m(900.0, "duration")
            ],
            [
                m(270.0, "lk.transcription_delay"),
                m(480.0, "lk.llm_metrics.ttft"),
                m(190.0, "lk.tts_metrics.ttfb"),
                None
            ],
        ]
    );
    // The first turn starts with the caller's speech it answers.
    assert_eq!(b.turns[0].start_ms, 500.0);
    let failed = read.spans.iter().find(|s| s.name == "tts_request").unwrap();
    assert_eq!(failed.status, SpanStatus::Error);
    assert_eq!(
        failed.status_message.as_deref(),
        Some("provider closed the stream early")
    );
}

#[test]
fn protobuf_and_json_read_alike() {
    let request: ExportTraceServiceRequest = serde_json::from_slice(LIVEKIT).unwrap();
    let bytes = request.encode_to_vec();
    let from_protobuf =
        read_traces(&bytes, OtlpEncoding::Protobuf, &TraceLimits::default()).unwrap();
    assert_eq!(from_protobuf, read(LIVEKIT));
}

fn span(id: &str, parent: Option<&str>, name: &str, start_ms: i64, end_ms: i64) -> TraceSpan {
    TraceSpan {
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        span_id: id.into(),
        parent_span_id: parent.map(Into::into),
        name: name.into(),
        service_name: None,
        start_unix_nano: start_ms * 1_000_000,
        end_unix_nano: end_ms * 1_000_000,
        status: SpanStatus::Unset,
        status_message: None,
        attributes: Default::default(),
        events: Vec::new(),
    }
}

#[test]
fn without_turn_spans_a_stage_coming_round_again_starts_a_turn() {
    // Cekura's generic shape: every stage a child of the conversation.
    let c = Some("c1");
    let spans = [
        span("c1", None, "conversation", 0, 10_000),
        span("g1", c, "llm", 0, 400),
        span("g2", c, "tts", 300, 2000),
        span("s1", c, "stt", 3000, 3250),
        span("l1", c, "llm", 3300, 3900),
        span("t1", c, "tool_call", 3900, 4300),
        span("l2", c, "llm", 4300, 4800),
        span("v1", c, "tts", 4800, 6000),
        span("s2", c, "stt", 7000, 7200),
        span("x1", c, "s2s", 7200, 7900),
    ];
    let b = breakdown(&spans).unwrap();
    assert_eq!(
        figures(&b),
        [
            [None, m(400.0, "duration"), m(1700.0, "duration"), None],
            [
                m(250.0, "duration"),
                m(600.0, "duration"),
                m(1200.0, "duration"),
                m(400.0, "duration")
            ],
            [m(200.0, "duration"), m(700.0, "duration"), None, None],
        ]
    );
}

#[test]
fn gen_ai_operation_names_classify_spans_with_other_names() {
    let mut chat = span("a1", None, "openai.chat", 0, 10);
    chat.attributes
        .insert("gen_ai.operation.name".into(), json!("chat"));
    assert_eq!(SpanRole::of(&chat), SpanRole::Llm);
    assert_eq!(
        SpanRole::of(&span("a2", None, "stt_deepgramsttservice", 0, 1)),
        SpanRole::Stt
    );
    assert_eq!(
        SpanRole::of(&span("a3", None, "sttx", 0, 1)),
        SpanRole::Other
    );
    assert!(breakdown(&[]).is_none());
}

#[test]
fn a_parent_cycle_ends_the_search_for_a_turn() {
    let spans = [
        span("p1", Some("p2"), "llm", 0, 10),
        span("p2", Some("p1"), "internal", 0, 10),
    ];
    assert_eq!(breakdown(&spans).unwrap().turns.len(), 1);
}

fn one_span(overrides: serde_json::Value) -> serde_json::Value {
    let mut span = json!({
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "a000000000000001",
        "name": "llm",
        "startTimeUnixNano": "1767225600000000000",
        "endTimeUnixNano": "1767225601000000000",
    });
    for (k, v) in overrides.as_object().unwrap() {
        span[k] = v.clone();
    }
    json!({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
}

#[test]
fn every_problem_is_named_with_its_path() {
    let at = "resourceSpans[0].scopeSpans[0].spans[0]";
    assert_eq!(
        errors(one_span(
            json!({"traceId": "5b8eff", "spanId": "0000000000000000"})
        )),
        [
            format!("{at}.traceId: a trace id is 16 bytes (32 hex digits), got 3 bytes"),
            format!("{at}.spanId: an all-zero span id is invalid"),
        ]
    );
    assert_eq!(
        errors(one_span(json!({"name": " ", "endTimeUnixNano": "1767225599000000000"}))),
        [
            format!("{at}.name: a span needs a name (frameworks name them stt, llm, tts, turn…)"),
            format!("{at}.endTimeUnixNano: the span ends (1767225599000000000) before it starts (1767225600000000000)"),
        ]
    );
    assert_eq!(
        errors(one_span(
            json!({"startTimeUnixNano": "0", "status": {"code": 7}})
        )),
        [
            format!("{at}.startTimeUnixNano: the time is missing"),
            format!("{at}.status.code: 7 is not a status code (0 unset, 1 ok, 2 error)"),
        ]
    );
    let garbage = read_traces(
        b"\xff\xff\xff",
        OtlpEncoding::Protobuf,
        &TraceLimits::default(),
    );
    assert!(garbage.unwrap_err()[0]
        .message
        .starts_with("not an OTLP ExportTraceServiceRequest in protobuf"));
    assert!(errors(json!({"resourceSpans": 3}))[0].starts_with("$: not an OTLP"));
    assert!(errors(json!([]))[0].ends_with("must be a JSON object"));
}

#[test]
fn limits_bound_a_request() {
    let limits = TraceLimits {
        max_spans: 1,
        max_string_chars: 4,
        ..TraceLimits::default()
    };
    let long =
        one_span(json!({"attributes": [{"key": "input", "value": {"stringValue": "abcdefgh"}}]}));
    let read = read_traces(
        &serde_json::to_vec(&long).unwrap(),
        OtlpEncoding::Json,
        &limits,
    )
    .unwrap();
    assert_eq!(read.spans[0].attributes["input"], json!("abcd…"));
    let two = read_traces(PIPECAT, OtlpEncoding::Json, &limits).unwrap_err();
    assert_eq!(
        two[0].message,
        "11 spans in one request; at most 1 are accepted (export in smaller batches)"
    );
}
