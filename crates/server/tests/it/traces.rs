//! OpenTelemetry traces: exports in OTLP/HTTP (JSON, protobuf, gzip) stored all or nothing,
//! linked to the call with their trace id whichever arrives first, and turned into the per-turn
//! breakdown and the trace metrics. The fixtures (`crates/core/tests/fixtures/traces/`) are a
//! Pipecat and a LiveKit conversation whose stage figures the tests know.

use std::io::Write as _;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde_json::{json, Value};

use crate::common::*;

const PIPECAT_TRACE: &str = "5b8efff798038103d269b633813fc60c";
const LIVEKIT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../core/tests/fixtures/traces/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(path).unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The fixture as an OTLP protobuf body.
fn protobuf(name: &str) -> Vec<u8> {
    let request: ExportTraceServiceRequest = serde_json::from_slice(&fixture(name)).unwrap();
    request.encode_to_vec()
}

async fn export(
    app: &TestApp,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
    gzipped: bool,
) -> reqwest::Response {
    let mut request = app
        .post("/v1/traces")
        .header("x-cekura-api-key", key)
        .header("content-type", content_type);
    if gzipped {
        request = request.header("content-encoding", "gzip");
    }
    request.body(body).send().await.unwrap()
}

/// Sends a call with a trace id and gives our id of it.
async fn call_with_trace(app: &TestApp, t: &Tenant, id: &str, trace_id: &str) -> String {
    let mut c = call(id);
    c["trace_id"] = json!(trace_id);
    let r = app.send(&t.key, &batch(t.agent_id, vec![c])).await;
    let (status, receipt) = status_and_json(r).await;
    assert_eq!(status, 202, "{receipt}");
    receipt["calls"][0]["call_id"].as_str().unwrap().to_owned()
}

/// `(stt, llm_ttft, tts_ttfb, tool)` in ms of each turn of the call's trace.
fn figures(trace: &Value) -> Vec<[Value; 4]> {
    trace["breakdown"]["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| ["stt", "llm_ttft", "tts_ttfb", "tool"].map(|stage| t[stage]["ms"].clone()))
        .collect()
}

async fn metric(app: &TestApp, key: &str, call_id: &str, name: &str) -> Value {
    let (_, call) = app.api(key, &format!("/api/v1/calls/{call_id}")).await;
    call["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["metric_name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {}", call["evaluations"]))
        .clone()
}

#[tokio::test]
async fn a_trace_sent_before_its_call_and_one_sent_after_both_link() {
    let app = TestApp::spawn().await;
    let t = app.tenant("traces").await;

    // Pipecat's trace first, as JSON; its call afterwards.
    let r = export(
        &app,
        &t.key,
        fixture("pipecat.json"),
        "application/json",
        false,
    )
    .await;
    let (status, body) = status_and_json(r).await;
    assert_eq!((status, body), (200, json!({})));
    let early = call_with_trace(&app, &t, "pipecat-call", PIPECAT_TRACE).await;
    app.settle().await;
    let (status, trace) = app
        .api(&t.key, &format!("/api/v1/calls/{early}/trace"))
        .await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["trace_id"], PIPECAT_TRACE);
    assert_eq!(
        figures(&trace),
        [
            [json!(250.0), json!(700.0), json!(180.0), Value::Null],
            [json!(300.0), json!(550.0), json!(200.0), json!(420.0)],
        ]
    );
    // Every span is kept, the one of no known kind too.
    let names: Vec<&str> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 11);
    assert!(names.contains(&"pipeline_frame_stats"), "{names:?}");
    assert_eq!(trace["breakdown"]["other_spans"], 1);
    // The sender's id finds it too.
    let (status, _) = app.api(&t.key, "/api/v1/calls/pipecat-call/trace").await;
    assert_eq!(status, 200);
    let ttft = metric(&app, &t.key, &early, "trace_llm_ttft").await;
    assert_eq!(ttft["status"], "ok", "{ttft}");
    assert_eq!(
        ttft["value"],
        json!(0.625),
        "the median of 0.7 s and 0.55 s"
    );
    let tool = metric(&app, &t.key, &early, "trace_tool_time").await;
    assert_eq!(tool["value"], json!(0.42));
    // The call page shows the turns stage by stage, and every span.
    let (client, cookie) = crate::dashboard::signed_in(&app).await;
    let page = client
        .get(format!(
            "{}/projects/{}/calls/{early}",
            app.base, t.project_id
        ))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let turns = &page[page.find("id=\"trace-turns\"").expect("the breakdown")..];
    let turns = &turns[..turns.find("</table>").unwrap()];
    for figure in [
        "250 ms", "700 ms", "180 ms", "300 ms", "550 ms", "200 ms", "420 ms",
    ] {
        assert!(turns.contains(figure), "{figure} in {turns}");
    }
    assert!(
        page.contains("pipeline_frame_stats") && page.contains("unknown"),
        "{page}"
    );

    // LiveKit's call first, with its trace id in capitals; its trace later, gzipped protobuf.
    let late = call_with_trace(&app, &t, "livekit-call", &LIVEKIT_TRACE.to_uppercase()).await;
    app.settle().await;
    let before = metric(&app, &t.key, &late, "trace_llm_ttft").await;
    assert_eq!(before["status"], "not_applicable", "{before}");
    let (_, trace) = app
        .api(&t.key, &format!("/api/v1/calls/{late}/trace"))
        .await;
    assert_eq!(trace["breakdown"], Value::Null);
    assert_eq!(trace["spans"], json!([]));

    let r = export(
        &app,
        &t.key,
        gzip(&protobuf("livekit.json")),
        "application/x-protobuf",
        true,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/x-protobuf",
        "an empty ExportTraceServiceResponse"
    );
    assert!(r.bytes().await.unwrap().is_empty());
    app.settle().await;
    let (_, trace) = app
        .api(&t.key, &format!("/api/v1/calls/{late}/trace"))
        .await;
    assert_eq!(
        figures(&trace),
        [
            [json!(320.0), json!(610.0), json!(210.0), json!(900.0)],
            [json!(270.0), json!(480.0), json!(190.0), Value::Null],
        ]
    );
    let failed = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tts_request")
        .unwrap();
    assert_eq!(failed["status"], "error");
    assert_eq!(
        failed["attributes"]["lk.tts_metrics"],
        json!("{\"ttfb\": 0.19, \"audio_duration\": 1.6}")
    );
    let after = metric(&app, &t.key, &late, "trace_llm_ttft").await;
    assert_eq!(
        after["status"], "ok",
        "evaluated again once its trace came: {after}"
    );
    assert_eq!(after["value"], json!(0.545));
    let stt = metric(&app, &t.key, &late, "trace_stt_latency").await;
    assert_eq!(stt["value"], json!(0.295));
}

#[tokio::test]
async fn an_export_sent_again_is_kept_once_and_a_bad_one_changes_nothing() {
    let app = TestApp::spawn().await;
    let t = app.tenant("traces").await;
    let id = call_with_trace(&app, &t, "pipecat-call", PIPECAT_TRACE).await;
    for _ in 0..2 {
        let r = export(
            &app,
            &t.key,
            protobuf("pipecat.json"),
            "application/x-protobuf",
            false,
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let (_, trace) = app.api(&t.key, &format!("/api/v1/calls/{id}/trace")).await;
    assert_eq!(trace["spans"].as_array().unwrap().len(), 11);

    // One bad span refuses the whole export, with every problem's path.
    let mut body: Value = serde_json::from_slice(&fixture("livekit.json")).unwrap();
    let spans = &mut body["resourceSpans"][0]["scopeSpans"][0]["spans"];
    spans[3]["traceId"] = json!("0af765");
    spans[5]["endTimeUnixNano"] = json!("1");
    let r = export(
        &app,
        &t.key,
        serde_json::to_vec(&body).unwrap(),
        "application/json",
        false,
    )
    .await;
    let (status, error) = status_and_json(r).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"], "invalid_payload");
    assert_eq!(
        error_paths(&error),
        [
            "resourceSpans[0].scopeSpans[0].spans[3].traceId",
            "resourceSpans[0].scopeSpans[0].spans[5].endTimeUnixNano"
        ]
    );
    let (status, found) = app.api(&t.key, &format!("/api/v1/calls/{id}/trace")).await;
    assert_eq!(status, 200);
    assert_eq!(
        found["spans"].as_array().unwrap().len(),
        11,
        "nothing of it stored"
    );

    // Each refusal is clear, and in the delivery log.
    let cases: [(&str, Vec<u8>, bool, u16, &str); 4] = [
        (
            "text/plain",
            b"hello".to_vec(),
            false,
            415,
            "unsupported_media_type",
        ),
        (
            "application/x-protobuf",
            b"not gzip".to_vec(),
            true,
            400,
            "malformed_json",
        ),
        (
            "application/x-protobuf",
            vec![0xff, 0xff, 0xff],
            false,
            400,
            "malformed_json",
        ),
        (
            "application/json",
            b"{\"resourceSpans\": 3}".to_vec(),
            false,
            400,
            "malformed_json",
        ),
    ];
    for (content_type, body, gzipped, want, code) in cases {
        let r = export(&app, &t.key, body, content_type, gzipped).await;
        let (status, error) = status_and_json(r).await;
        assert_eq!(
            (status, error["error"].as_str()),
            (want, Some(code)),
            "{content_type}: {error}"
        );
    }
    let r = app
        .post("/v1/traces")
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .header("x-cekura-api-key", &t.key)
        .body("{}")
        .send()
        .await
        .unwrap();
    let (status, error) = status_and_json(r).await;
    assert_eq!(status, 415, "{error}");
    assert!(
        error["detail"].as_str().unwrap().contains("gzip"),
        "{error}"
    );
    let r = app
        .post("/v1/traces")
        .header("content-type", "application/json")
        .body(fixture("pipecat.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let (_, log) = app.api(&t.key, "/api/v1/deliveries?limit=50").await;
    let traces: Vec<(i64, String)> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["route"] == "/v1/traces")
        .map(|d| {
            (
                d["status"].as_i64().unwrap(),
                d["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(traces.len(), 8, "{traces:?}");
    assert_eq!(traces.iter().filter(|(s, _)| *s == 200).count(), 2);
    assert!(traces
        .iter()
        .filter(|(s, _)| *s != 200)
        .all(|(_, o)| o == "rejected"));
}

#[tokio::test]
async fn a_gzip_body_that_inflates_past_the_limit_is_refused() {
    let settings = callgrade_server::Settings {
        max_body_bytes: 64 * 1024,
        ..Default::default()
    };
    let app = TestApp::spawn_with(settings).await;
    let t = app.tenant("traces").await;
    let bomb = gzip(&vec![b' '; 1024 * 1024]);
    assert!(bomb.len() < 64 * 1024);
    let r = export(&app, &t.key, bomb, "application/json", true).await;
    let (status, error) = status_and_json(r).await;
    assert_eq!(status, 413, "{error}");
    assert!(
        error["detail"].as_str().unwrap().contains("inflates"),
        "{error}"
    );
}
