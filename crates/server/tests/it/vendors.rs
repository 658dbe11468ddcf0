//! Calls in vendors' shapes: Cekura's observe endpoint with every transcript type, and the
//! post-call webhooks of Vapi, Retell and ElevenLabs with their signatures. Each fixture (in
//! `crates/core/tests/fixtures/formats/`, one dental-clinic call in every shape) goes through
//! parsing, storage and the API, and what is stored is checked field by field.

use callgrade_core::{signature, Vendor};
use serde_json::{json, Value};

use crate::common::*;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../core/tests/fixtures/formats/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The call every fixture describes: who spoke, when (seconds from its start), and what.
const SPOKEN: [(&str, f64, f64); 7] = [
    ("bot", 1.0, 5.0),
    ("user", 6.0, 10.0),
    ("bot", 11.5, 17.0),
    ("user", 18.0, 20.0),
    ("bot", 22.0, 30.0),
    ("user", 31.0, 33.0),
    ("bot", 35.5, 38.5),
];

/// What was said, in order, as the Cekura fixture has it.
fn utterances() -> Vec<String> {
    fixture("observe_cekura.json")["transcript_json"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "Main Agent" || m["role"] == "Testing Agent")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

/// How a format gives times: both ends, only starts (whole seconds for ElevenLabs), none.
#[derive(Clone, Copy, Debug)]
enum Times {
    Both,
    StartOnly { whole_seconds: bool },
    None,
}

/// Checks the stored call's spoken rows against the call, and its tool rows when the format
/// carries tools.
fn check_transcript(call: &Value, times: Times, tools: bool, what: &str) {
    check_spoken(call, times, tools, SPOKEN.len(), what)
}

/// [`check_transcript`] for a fixture that holds only the first `rows` utterances.
fn check_spoken(call: &Value, times: Times, tools: bool, rows: usize, what: &str) {
    let messages = call["messages"].as_array().unwrap();
    let spoken: Vec<&Value> = messages
        .iter()
        .filter(|m| m["role"] == "bot" || m["role"] == "user")
        .collect();
    let texts = utterances();
    assert_eq!(spoken.len(), rows, "{what}: {messages:#?}");
    for (i, (m, (role, start, end))) in spoken.iter().zip(SPOKEN).enumerate() {
        assert_eq!(m["role"], role, "{what} row {i}");
        assert_eq!(m["content"], texts[i].as_str(), "{what} row {i}");
        let (want_start, want_end) = match times {
            Times::Both => (json!(start), json!(end)),
            Times::StartOnly {
                whole_seconds: true,
            } => (json!(start.floor()), Value::Null),
            Times::StartOnly {
                whole_seconds: false,
            } => (json!(start), Value::Null),
            Times::None => (Value::Null, Value::Null),
        };
        assert_eq!(
            m["start_offset"]
                .as_f64()
                .map(|v| (v * 1000.0).round() / 1000.0)
                .map_or(Value::Null, |v| json!(v)),
            want_start,
            "{what} row {i} start"
        );
        assert_eq!(
            m["end_offset"]
                .as_f64()
                .map(|v| (v * 1000.0).round() / 1000.0)
                .map_or(Value::Null, |v| json!(v)),
            want_end,
            "{what} row {i} end"
        );
        if let Some(start) = m["start_offset"].as_f64() {
            let started =
                chrono::DateTime::parse_from_rfc3339(call["started_at"].as_str().unwrap())
                    .unwrap()
                    .timestamp_millis();
            assert_eq!(
                m["start_at_ms"],
                json!(started + (start * 1000.0).round() as i64),
                "{what} row {i}"
            );
        }
    }
    let calls: Vec<&Value> = messages
        .iter()
        .filter(|m| m["role"] == "function_call")
        .collect();
    let results: Vec<&Value> = messages
        .iter()
        .filter(|m| m["role"] == "function_call_result")
        .collect();
    if !tools {
        assert!(calls.is_empty() && results.is_empty(), "{what}");
        return;
    }
    let names = [
        "check_availability",
        "book_appointment",
        "send_sms_confirmation",
    ];
    let ids = [
        "call_7Fq2cKx1AvailTue",
        "call_9Hw4mLz2BookAppt",
        "call_3Kd8pNq5SmsConfirm",
    ];
    assert_eq!(calls.len(), 3, "{what}");
    assert_eq!(results.len(), 3, "{what}");
    for k in 0..3 {
        assert_eq!(calls[k]["data"]["id"], ids[k], "{what} tool {k}");
        assert_eq!(calls[k]["data"]["name"], names[k], "{what} tool {k}");
        assert!(
            calls[k]["data"]["arguments"].is_string(),
            "{what} tool {k}: {}",
            calls[k]
        );
        assert_eq!(results[k]["data"]["id"], ids[k], "{what} result {k}");
    }
    // Results sent as JSON text are read as the objects they hold.
    assert_eq!(
        results[1]["data"]["result"]["confirmation"], "BSD-4821",
        "{what}"
    );
}

/// A fixture's body for the tenant's agent. Its recording URL names a host that does not
/// exist, which the evaluation job would wait on; `recording_url.rs` tests fetching.
fn observe_body(name: &str, t: &Tenant) -> Value {
    let mut body = fixture(name);
    body["agent"] = json!(t.agent_id);
    body.as_object_mut().unwrap().remove("voice_recording_url");
    body
}

async fn observe(app: &TestApp, t: &Tenant, body: &Value) -> (u16, Value) {
    let r = app
        .post("/observability/v1/observe/")
        .header("X-CEKURA-API-KEY", &t.key)
        .json(body)
        .send()
        .await
        .unwrap();
    status_and_json(r).await
}

async fn stored(app: &TestApp, t: &Tenant, call_id: &str) -> Value {
    let (status, call) = app.api(&t.key, &format!("/api/v1/calls/{call_id}")).await;
    assert_eq!(status, 200, "{call}");
    call
}

#[tokio::test]
async fn observe_reads_every_transcript_type() {
    let app = TestApp::spawn().await;
    let t = app.tenant("observe").await;
    let cases = [
        ("observe_cekura.json", Times::Both, true, 7),
        ("observe_vapi.json", Times::Both, true, 7),
        ("observe_retell.json", Times::Both, true, 7),
        // Deepgram's words carry the first four utterances.
        ("observe_deepgram.json", Times::Both, false, 4),
        ("observe_pipecat.json", Times::Both, true, 7),
        ("observe_pipecat_untimed.json", Times::None, true, 7),
        (
            "observe_livekit.json",
            Times::StartOnly {
                whole_seconds: false,
            },
            false,
            7,
        ),
        (
            "observe_elevenlabs.json",
            Times::StartOnly {
                whole_seconds: true,
            },
            true,
            7,
        ),
    ];
    for (name, times, tools, rows) in cases {
        let body = observe_body(name, &t);
        let (status, log) = observe(&app, &t, &body).await;
        assert_eq!(status, 201, "{name}: {log}");
        assert_eq!(log["call_id"], body["call_id"], "{name}");
        assert_eq!(log["agent"], t.agent_id, "{name}");
        assert_eq!(log["agent_name"], "support-bot", "{name}");
        assert_eq!(log["status"], "evaluating", "{name}");
        assert_eq!(log["receipt"]["format"], "observe", "{name}");
        assert_eq!(log["receipt"]["created"], 1, "{name}");
        assert_eq!(log["timestamp"], "2026-11-30T10:00:00Z", "{name}");
        let call = stored(&app, &t, log["id"].as_str().unwrap()).await;
        assert_eq!(call["started_at"], "2026-11-30T10:00:00Z", "{name}");
        check_spoken(&call, times, tools, rows, name);
        // Cekura's role names in the answer.
        let first = log["transcript_object"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] != "System")
            .unwrap();
        assert_eq!(first["role"], "Main Agent", "{name}");
        assert_eq!(call["raw"]["call_id"], body["call_id"], "{name}");
        // A resend is a duplicate, not a second call.
        let (again, log2) = observe(&app, &t, &body).await;
        assert_eq!(again, 201, "{name}");
        assert_eq!(log2["receipt"]["duplicates"], 1, "{name}");
        assert_eq!(log2["id"], log["id"], "{name}");
    }
    assert_eq!(app.call_count(&t).await, cases.len());
    app.settle().await;
    // The SMS that failed fails the tool metric wherever the format says so.
    let (_, page) = app.api(&t.key, "/api/v1/calls?limit=50").await;
    let mut measured = 0;
    for summary in page["data"].as_array().unwrap() {
        let call = stored(&app, &t, summary["call_id"].as_str().unwrap()).await;
        let evaluations = call["evaluations"].as_array().unwrap();
        assert!(!evaluations.is_empty(), "{}", summary["id"]);
        let tools = evaluations
            .iter()
            .find(|e| e["metric_name"] == "tool_call_success")
            .unwrap();
        if let Some(value) = tools["value"].as_f64() {
            assert!(
                (value - 2.0 / 3.0).abs() < 1e-6,
                "{}: {tools}",
                summary["id"]
            );
            measured += 1;
        }
    }
    assert_eq!(measured, 6, "every format with tools");
}

#[tokio::test]
async fn observe_accepts_role_aliases_with_warnings_and_names_every_problem() {
    let app = TestApp::spawn().await;
    let t = app.tenant("aliases").await;
    let (status, log) = observe(&app, &t, &observe_body("observe_aliases.json", &t)).await;
    assert_eq!(status, 201, "{log}");
    let warnings = log["receipt"]["calls"][0]["warnings"].as_array().unwrap();
    let aliased: Vec<&str> = warnings
        .iter()
        .filter(|w| w["message"].as_str().unwrap().contains("was read as"))
        .map(|w| w["path"].as_str().unwrap())
        .collect();
    assert!(!aliased.is_empty(), "{warnings:?}");
    let call = stored(&app, &t, log["id"].as_str().unwrap()).await;
    let roles: Vec<&str> = call["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert!(
        roles.iter().all(|r| *r == "bot" || *r == "user"),
        "{roles:?}"
    );
    assert_eq!(roles.len(), 5);

    // Every problem at once, nothing stored, and the refusal in the delivery log.
    let bad = json!({"agent": 999_999, "transcript_type": "zoom", "transcript_json": "not json"});
    let (status, body) = observe(&app, &t, &bad).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        error_paths(&body),
        ["transcript_json", "call_id", "transcript_type"]
    );
    let unknown_agent = json!({"call_id": "x1", "agent": 999_999});
    let (status, body) = observe(&app, &t, &unknown_agent).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_paths(&body), ["agent_id"]);
    assert_eq!(app.call_count(&t).await, 1);
    let (_, log) = app.api(&t.key, "/api/v1/deliveries?limit=10").await;
    let statuses: Vec<i64> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [400, 400, 201]);
}

#[tokio::test]
async fn observe_takes_forms_and_multipart() {
    let app = TestApp::spawn().await;
    let t = app.tenant("forms").await;
    let transcript = fixture("observe_pipecat.json")["transcript_json"].to_string();
    let agent = t.agent_id.to_string();
    let form = [
        ("call_id", "form-1"),
        ("agent", agent.as_str()),
        ("transcript_type", "pipecat"),
        ("transcript_json", transcript.as_str()),
        ("timestamp", "2026-11-30T10:00:00Z"),
        ("metadata", r#"{"clinic": "palo-alto"}"#),
    ];
    let r = app
        .post("/observability/v1/observe")
        .header("X-CEKURA-API-KEY", &t.key)
        .form(&form)
        .send()
        .await
        .unwrap();
    let (status, log) = status_and_json(r).await;
    assert_eq!(status, 201, "{log}");
    let call = stored(&app, &t, log["id"].as_str().unwrap()).await;
    check_transcript(&call, Times::Both, true, "form");
    assert_eq!(call["metadata"]["clinic"], "palo-alto");

    let mut parts = reqwest::multipart::Form::new();
    for (name, value) in form {
        let value = if name == "call_id" {
            "multipart-1"
        } else {
            value
        };
        parts = parts.text(name, value.to_owned());
    }
    let r = app
        .post("/observability/v1/observe/")
        .header("X-CEKURA-API-KEY", &t.key)
        .multipart(parts)
        .send()
        .await
        .unwrap();
    let (status, log) = status_and_json(r).await;
    assert_eq!(status, 201, "{log}");
    let call = stored(&app, &t, log["id"].as_str().unwrap()).await;
    check_transcript(&call, Times::Both, true, "multipart");

    // A recording file that is not audio is refused, with nothing stored.
    let parts = reqwest::multipart::Form::new()
        .text("call_id", "multipart-2")
        .text("agent", agent.clone())
        .part(
            "voice_recording",
            reqwest::multipart::Part::bytes(b"not audio".to_vec()).file_name("x.wav"),
        );
    let r = app
        .post("/observability/v1/observe/")
        .header("X-CEKURA-API-KEY", &t.key)
        .multipart(parts)
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(r).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_paths(&body), ["voice_recording"]);
    assert_eq!(app.call_count(&t).await, 2);
}

#[tokio::test]
async fn vapi_report_is_stored_field_by_field() {
    let app = TestApp::spawn().await;
    let t = app.tenant("vapi").await;
    let body = fixture("vapi_end_of_call_report.json");
    let path = format!("/observability/v1/vapi/observe/?agent_id={}", t.agent_id);
    let r = app
        .post(&path)
        .header("X-CEKURA-API-KEY", &t.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, receipt) = status_and_json(r).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["format"], "vapi");
    let id = receipt["calls"][0]["call_id"].as_str().unwrap();
    let call = stored(&app, &t, id).await;
    assert_eq!(call["id"], "3f2b9c1e-7a4d-4e8b-9c61-2d5e8f0a1b7c");
    assert_eq!(call["agent_id"], t.agent_id);
    assert_eq!(call["started_at"], "2026-11-30T10:00:00Z");
    assert_eq!(call["ended_at"], "2026-11-30T10:00:40Z");
    assert_eq!(call["ended_reason"], "customer-ended-call");
    // Inbound: the customer called the clinic's number.
    assert_eq!(call["from_phone_number"], "+14155550123");
    assert_eq!(call["to_phone_number"], "+16505550100");
    assert_eq!(call["message_times"], "epoch_ms");
    assert_eq!(call["messages"][0]["role"], "system");
    check_transcript(&call, Times::Both, true, "vapi");
    assert!(
        call["metadata"]["analysis"]["summary"].is_string(),
        "{}",
        call["metadata"]
    );
    assert_eq!(
        call["metadata"]["performance_metrics"]["turnLatencyAverage"],
        2000
    );
    assert_eq!(call["raw"], body);

    // The minimal report: no times on the call, so they come from the messages.
    let minimal = fixture("vapi_minimal.json");
    let r = app
        .post(&path)
        .header("X-CEKURA-API-KEY", &t.key)
        .json(&minimal)
        .send()
        .await
        .unwrap();
    let (status, receipt) = status_and_json(r).await;
    assert_eq!(status, 200, "{receipt}");
    let call = stored(&app, &t, receipt["calls"][0]["call_id"].as_str().unwrap()).await;
    assert_eq!(call["messages"].as_array().unwrap().len(), 2);
    assert_eq!(call["messages"][0]["start_offset"], 1.0);
    assert_eq!(call["messages"][1]["end_offset"], 5.0);

    // Other server messages are acknowledged and logged, not stored.
    let status_update = json!({"message": {"type": "status-update", "status": "in-progress"}});
    let r = app
        .post(&path)
        .header("X-CEKURA-API-KEY", &t.key)
        .json(&status_update)
        .send()
        .await
        .unwrap();
    let (status, ack) = status_and_json(r).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["ignored"], true);
    assert_eq!(ack["event"], "status-update");
    assert_eq!(app.call_count(&t).await, 2);
}

#[tokio::test]
async fn vendor_calls_find_their_agent_by_external_id() {
    let app = TestApp::spawn().await;
    let t = app.tenant("external").await;
    let body = fixture("vapi_end_of_call_report.json");
    let send = |b: &Value| {
        app.post("/observability/v1/vapi/observe/")
            .header("X-CEKURA-API-KEY", &t.key)
            .json(b)
            .send()
    };
    let (status, err) = status_and_json(send(&body).await.unwrap()).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(error_paths(&err), ["message.call.assistantId"]);
    let r = app
        .client
        .patch(format!("{}/api/v1/agents/{}", app.base, t.agent_id))
        .header("X-CEKURA-API-KEY", &t.key)
        .json(&json!({"external_ids": ["6b1f0e2a-9c3d-4f5e-8a7b-1c2d3e4f5a6b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, receipt) = status_and_json(send(&body).await.unwrap()).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["calls"][0]["agent_id"], t.agent_id);
    // A vendor id names one agent.
    let r = app
        .post("/api/v1/agents")
        .header("X-CEKURA-API-KEY", &t.key)
        .json(&json!({"name": "twin", "external_ids": ["6b1f0e2a-9c3d-4f5e-8a7b-1c2d3e4f5a6b"]}))
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(r).await;
    assert_eq!(status, 409, "{err}");
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .starts_with("external_ids[0]"),
        "{err}"
    );
}

async fn retell(app: &TestApp, t: &Tenant, body: &Value) -> (u16, Value) {
    let r = app
        .post("/observability/v1/retell/observe/")
        .header("X-CEKURA-API-KEY", &t.key)
        .json(body)
        .send()
        .await
        .unwrap();
    status_and_json(r).await
}

#[tokio::test]
async fn retell_events_make_one_call_with_its_analysis_in_either_order() {
    let app = TestApp::spawn().await;
    // Their recording URL names a host that does not exist, which evaluation would wait on.
    let without_recording = |mut v: Value| {
        v["call"]
            .as_object_mut()
            .unwrap()
            .remove("recording_multi_channel_url");
        v
    };
    let ended = without_recording(fixture("retell_call_ended.json"));
    let analyzed = without_recording(fixture("retell_call_analyzed.json"));
    for (order, first, second) in [
        ("ended first", &ended, &analyzed),
        ("analyzed first", &analyzed, &ended),
    ] {
        let t = app.tenant(&format!("retell {order}")).await;
        let r = app
            .client
            .patch(format!("{}/api/v1/agents/{}", app.base, t.agent_id))
            .header("X-CEKURA-API-KEY", &t.key)
            .json(&json!({"external_ids": ["agent_3b7e1d9c2a5f8e4b6d0c1a2f"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (status, a) = retell(&app, &t, first).await;
        assert_eq!(status, 200, "{order}: {a}");
        assert_eq!(a["created"], 1, "{order}");
        app.settle().await;
        let id = a["calls"][0]["call_id"].as_str().unwrap();
        let evaluated = stored(&app, &t, id).await["evaluated_at"].clone();
        assert!(evaluated.is_string(), "{order}");
        app.clock.advance(chrono::TimeDelta::minutes(1));
        let (status, b) = retell(&app, &t, second).await;
        assert_eq!(status, 200, "{order}: {b}");
        let expected = if first == &ended {
            "updated"
        } else {
            "duplicate"
        };
        assert_eq!(b["calls"][0]["status"], expected, "{order}: {b}");
        assert_eq!(
            b["calls"][0]["call_id"], a["calls"][0]["call_id"],
            "{order}"
        );
        // Resending either is a duplicate.
        for again in [first, second] {
            let (status, c) = retell(&app, &t, again).await;
            assert_eq!(status, 200, "{order}");
            assert_eq!(c["calls"][0]["status"], "duplicate", "{order}: {c}");
        }
        assert_eq!(app.call_count(&t).await, 1, "{order}");
        // The analysis added, the call is evaluated again; a duplicate changes nothing.
        app.settle().await;
        let again = stored(&app, &t, id).await["evaluated_at"].clone();
        assert_eq!(
            again != evaluated,
            first == &ended,
            "{order}: {evaluated} then {again}"
        );
        let call = stored(&app, &t, a["calls"][0]["call_id"].as_str().unwrap()).await;
        assert_eq!(
            call["metadata"]["call_analysis"], analyzed["call"]["call_analysis"],
            "{order}"
        );
        assert_eq!(call["id"], "call_8f3a2b1c9d4e5f6a7b8c9d0e1f");
        assert_eq!(call["ended_reason"], "user_hangup");
        assert_eq!(call["started_at"], "2026-11-30T10:00:00Z");
        check_transcript(&call, Times::Both, true, order);
        let results: Vec<&Value> = call["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "function_call_result")
            .collect();
        assert_eq!(results[2]["data"]["success"], false, "{order}");
    }
}

/// Posts an ElevenLabs body to the project's own URL, with `header` as its signature.
async fn elevenlabs(
    app: &TestApp,
    t: &Tenant,
    body: &[u8],
    header: Option<String>,
) -> (u16, Value) {
    let mut r = app
        .post(&format!(
            "/webhooks/elevenlabs/{}?agent_id={}",
            t.project_id, t.agent_id
        ))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(h) = header {
        r = r.header("ElevenLabs-Signature", h);
    }
    status_and_json(r.send().await.unwrap()).await
}

#[tokio::test]
async fn signatures_are_checked_on_the_raw_body_and_every_refusal_is_logged() {
    let app = TestApp::spawn().await;
    let t = app.tenant("signed").await;
    let body = serde_json::to_vec(&fixture("elevenlabs_post_call_transcription.json")).unwrap();
    let now = app.state.app.now();
    let sign =
        |secret: &str, bytes: &[u8], at| signature::sign(Vendor::ElevenLabs, secret, bytes, at).1;

    // Without a saved secret the per-project URL trusts nothing.
    let (status, err) = elevenlabs(&app, &t, &body, Some(sign("whsec", &body, now))).await;
    assert_eq!(status, 401, "{err}");
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("PUT /api/v1/vendor-secrets/elevenlabs"),
        "{err}"
    );
    let r = app
        .client
        .put(format!("{}/api/v1/vendor-secrets/elevenlabs", app.base))
        .header("X-CEKURA-API-KEY", &t.key)
        .json(&json!({"secret": "whsec"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, list) = app.api(&t.key, "/api/v1/vendor-secrets").await;
    assert_eq!(list["data"][0]["vendor"], "elevenlabs");
    assert!(!list.to_string().contains("whsec"), "{list}");

    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'1').unwrap();
    tampered[at] = b'2';
    let refusals = [
        (
            "wrong secret",
            body.clone(),
            Some(sign("other", &body, now)),
            "does not match",
        ),
        (
            "tampered body",
            tampered,
            Some(sign("whsec", &body, now)),
            "does not match",
        ),
        (
            "stale",
            body.clone(),
            Some(sign("whsec", &body, now - chrono::TimeDelta::hours(2))),
            "window",
        ),
        (
            "missing header",
            body.clone(),
            None,
            "missing ElevenLabs-Signature",
        ),
    ];
    for (case, bytes, header, says) in &refusals {
        let (status, err) = elevenlabs(&app, &t, bytes, header.clone()).await;
        assert_eq!(status, 401, "{case}: {err}");
        let detail = err["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{case}: {detail}");
        assert!(!detail.contains("whsec"), "{case}: {detail}");
    }
    assert_eq!(app.call_count(&t).await, 0);

    let (status, receipt) = elevenlabs(&app, &t, &body, Some(sign("whsec", &body, now))).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["format"], "elevenlabs");
    let call = stored(&app, &t, receipt["calls"][0]["call_id"].as_str().unwrap()).await;
    assert_eq!(call["id"], "conv_01jx7k9a8b7c6d5e4f3g2h1j0k");
    assert_eq!(call["started_at"], "2026-11-30T10:00:00Z");
    assert_eq!(call["ended_at"], "2026-11-30T10:00:40Z");
    check_transcript(
        &call,
        Times::StartOnly {
            whole_seconds: true,
        },
        true,
        "elevenlabs",
    );
    let results: Vec<&Value> = call["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "function_call_result")
        .collect();
    assert_eq!(results[2]["data"]["success"], false);

    // Each refusal is in the delivery log with what was answered.
    let (_, log) = app.api(&t.key, "/api/v1/deliveries?limit=10").await;
    let rows: Vec<(i64, String)> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["status"].as_i64().unwrap(),
                d["route"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let route = format!("/webhooks/elevenlabs/{}", t.project_id);
    // The log names the route without its query.
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert_eq!(rows[0], (200, route.clone()));
    assert!(
        rows[1..].iter().all(|r| *r == (401, route.clone())),
        "{rows:?}"
    );
}

#[tokio::test]
async fn vapi_and_retell_prove_themselves_with_their_own_headers() {
    let app = TestApp::spawn().await;
    let t = app.tenant("proofs").await;
    for (vendor, secret) in [("vapi", "vapi-secret"), ("retell", "key_retell")] {
        let r = app
            .client
            .put(format!("{}/api/v1/vendor-secrets/{vendor}", app.base))
            .header("X-CEKURA-API-KEY", &t.key)
            .json(&json!({"secret": secret}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let vapi = serde_json::to_vec(&fixture("vapi_end_of_call_report.json")).unwrap();
    let url = format!("/webhooks/vapi/{}?agent_id={}", t.project_id, t.agent_id);
    let post = |headers: Vec<(&'static str, String)>, body: Vec<u8>, url: String| {
        let mut r = app
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.send()
    };
    let r = post(
        vec![("x-vapi-secret", "nope".into())],
        vapi.clone(),
        url.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    let r = post(
        vec![("authorization", "Bearer vapi-secret".into())],
        vapi.clone(),
        url.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let retell = serde_json::to_vec(&fixture("retell_call_ended.json")).unwrap();
    let url = format!("/webhooks/retell/{}?agent_id={}", t.project_id, t.agent_id);
    let now = app.state.app.now();
    let (name, good) = signature::sign(Vendor::Retell, "key_retell", &retell, now);
    let (_, bad) = signature::sign(Vendor::Retell, "key_other", &retell, now);
    let r = post(vec![(name, bad)], retell.clone(), url.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = post(vec![], retell.clone(), url.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("X-Retell-Signature"));
    let r = post(vec![(name, good)], retell, url).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(app.call_count(&t).await, 2);
}

#[tokio::test]
async fn observe_stores_an_uploaded_recording_with_its_call() {
    let app = TestApp::spawn().await;
    let t = app.tenant("uploads").await;
    let transcript = fixture("observe_pipecat.json")["transcript_json"].to_string();
    let wav = crate::recording_url::stereo_wav();
    let parts = reqwest::multipart::Form::new()
        .text("call_id", "upload-1")
        .text("agent", t.agent_id.to_string())
        .text("transcript_type", "pipecat")
        .text("transcript_json", transcript)
        .text("timestamp", "2026-11-30T10:00:00Z")
        // The agent on the second channel, as the recording has it.
        .text("main_agent_channel_index", "1")
        .part(
            "voice_recording",
            reqwest::multipart::Part::bytes(wav.clone())
                .file_name("call.wav")
                .mime_str("audio/wav")
                .unwrap(),
        );
    let r = app
        .post("/observability/v1/observe/")
        .header("X-CEKURA-API-KEY", &t.key)
        .multipart(parts)
        .send()
        .await
        .unwrap();
    let (status, log) = status_and_json(r).await;
    assert_eq!(status, 201, "{log}");
    let id = log["id"].as_str().unwrap();
    let r = app
        .get(&format!("/api/v1/calls/{id}/recording"))
        .header("X-CEKURA-API-KEY", &t.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        wav.as_slice(),
        "kept as uploaded"
    );
    app.settle().await;
    let call = stored(&app, &t, id).await;
    let latency = call["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["metric_name"] == "audio_latency")
        .unwrap();
    assert_eq!(
        latency["value"],
        json!(0.5),
        "measured from the upload: {latency}"
    );
}

#[tokio::test]
async fn cekura_paths_check_a_saved_secret_as_well_as_the_key() {
    let app = TestApp::spawn().await;
    let t = app.tenant("both").await;
    let r = app
        .client
        .put(format!("{}/api/v1/vendor-secrets/elevenlabs", app.base))
        .header("X-CEKURA-API-KEY", &t.key)
        .json(&json!({"secret": "whsec"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let body = serde_json::to_vec(&fixture("elevenlabs_post_call_transcription.json")).unwrap();
    let post = |signature: Option<String>| {
        let mut r = app
            .post(&format!(
                "/observability/v1/elevenlabs/observe/?agent_id={}",
                t.agent_id
            ))
            .header("X-CEKURA-API-KEY", &t.key)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(s) = signature {
            r = r.header("ElevenLabs-Signature", s);
        }
        r.send()
    };
    let now = app.state.app.now();
    let (status, err) = status_and_json(post(None).await.unwrap()).await;
    assert_eq!(
        status, 401,
        "the key alone is not enough once a secret is saved: {err}"
    );
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("ElevenLabs-Signature"),
        "{err}"
    );
    let wrong = signature::sign(Vendor::ElevenLabs, "other", &body, now).1;
    assert_eq!(post(Some(wrong)).await.unwrap().status(), 401);
    assert_eq!(app.call_count(&t).await, 0);
    let good = signature::sign(Vendor::ElevenLabs, "whsec", &body, now).1;
    let (status, receipt) = status_and_json(post(Some(good)).await.unwrap()).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["format"], "elevenlabs");
    assert_eq!(app.call_count(&t).await, 1);
}

#[tokio::test]
async fn a_stored_calls_metadata_is_patched_and_evaluated_again_when_asked() {
    let app = TestApp::spawn().await;
    let t = app.tenant("patched").await;
    let (status, log) = observe(&app, &t, &observe_body("observe_cekura.json", &t)).await;
    assert_eq!(status, 201, "{log}");
    let (ours, theirs) = (
        log["id"].as_str().unwrap().to_owned(),
        log["call_id"].as_str().unwrap().to_owned(),
    );
    app.settle().await;
    let before = stored(&app, &t, &ours).await;
    let patch = |path: String, body: Value| {
        app.client
            .patch(format!("{}{path}", app.base))
            .header("X-CEKURA-API-KEY", &t.key)
            .json(&body)
            .send()
    };
    let end_reason = |call: &Value| {
        call["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["metric_name"] == "end_reason")
            .unwrap()["value"]
            .clone()
    };

    // Cekura's path, by the sender's id: a top-level merge, and evaluated again.
    let r = patch(
        format!("/observability/v1/call-logs/{theirs}/"),
        json!({
            "metadata": {"plan": "gold"},
            "dynamic_variables": {"patient": "Ana"},
            "feedback": "booked fine",
            "call_ended_reason": "agent-transferred",
            "reevaluate_metrics": true,
        }),
    )
    .await
    .unwrap();
    let (status, call) = status_and_json(r).await;
    assert_eq!(status, 200, "{call}");
    assert_eq!(call["call_id"], ours);
    assert_eq!(call["metadata"]["plan"], "gold");
    assert_eq!(call["metadata"]["dynamic_variables"]["patient"], "Ana");
    assert_eq!(call["metadata"]["feedback"], "booked fine");
    assert_eq!(call["ended_reason"], "agent-transferred");
    assert_eq!(
        call["messages"], before["messages"],
        "the transcript stays as received"
    );
    assert_eq!(call["raw"], before["raw"]);
    app.settle().await;
    assert_eq!(
        end_reason(&stored(&app, &t, &ours).await),
        "agent-transferred"
    );

    // callgrade's path: a null removes a key; without reevaluate the results stay.
    let r = patch(
        format!("/api/v1/calls/{ours}"),
        json!({"metadata": {"plan": null}, "ended_reason": "customer-hungup"}),
    )
    .await
    .unwrap();
    let (status, call) = status_and_json(r).await;
    assert_eq!(status, 200, "{call}");
    assert!(call["metadata"].get("plan").is_none(), "{call}");
    assert_eq!(call["ended_reason"], "customer-hungup");
    app.settle().await;
    assert_eq!(
        end_reason(&stored(&app, &t, &ours).await),
        "agent-transferred"
    );

    // Refusals name the field and change nothing.
    let big = "x".repeat(70 * 1024);
    let refusals = [
        (
            "/observability/v1/call-logs/{}/",
            json!({"transcript_json": []}),
            400,
            "transcript_json",
        ),
        (
            "/observability/v1/call-logs/{}/",
            json!({"metadata": {"big": big}}),
            400,
            "metadata",
        ),
        (
            "/api/v1/calls/{}",
            json!({"reevaluate": "yes", "colour": 1}),
            400,
            "colour",
        ),
    ];
    for (path, body, want, first_path) in refusals {
        let r = patch(path.replace("{}", &ours), body).await.unwrap();
        let (status, err) = status_and_json(r).await;
        assert_eq!(status, want, "{path}: {err}");
        assert_eq!(err["errors"][0]["path"], first_path, "{err}");
    }
    let after = stored(&app, &t, &ours).await;
    assert_eq!(after["metadata"], call["metadata"]);
    let r = patch("/api/v1/calls/nope".into(), json!({"reevaluate": true}))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_dashboard_edits_an_agents_vendor_ids() {
    let app = TestApp::spawn().await;
    let t = app.tenant("dashboard-ids").await;
    let other = app
        .store
        .create_agent(t.project_id, &callgrade_store::NewAgent::named("sales-bot"))
        .await
        .unwrap();
    let (client, cookie) = crate::dashboard::signed_in(&app).await;
    let page = |url: String| client.get(url).header("cookie", &cookie).send();
    let project = format!("{}/projects/{}", app.base, t.project_id);
    let setup = format!("{project}/setup");
    let html = page(setup.clone()).await.unwrap().text().await.unwrap();
    let csrf = crate::dashboard::csrf_of(&html);
    let save = |agent: i64, ids: &str| {
        client
            .post(format!("{project}/agents/{agent}"))
            .header("cookie", &cookie)
            .form(&[
                ("_csrf", csrf.as_str()),
                ("name", "support-bot"),
                ("external_ids", ids),
            ])
            .send()
    };
    let r = save(t.agent_id, "asst_1, agent_2 ").await.unwrap();
    assert_eq!(r.status(), 303);
    let (agent, _) = app
        .store
        .agent(t.project_id, t.agent_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(agent.external_ids, ["asst_1", "agent_2"]);
    let html = page(setup.clone()).await.unwrap().text().await.unwrap();
    assert!(
        html.contains("value=\"asst_1, agent_2\""),
        "shown for editing"
    );

    // Another agent's id: refused with why, what was typed kept.
    let r = save(other.id, "agent_2").await.unwrap();
    assert_eq!(r.status(), 409);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("agent_2") && html.contains("errors"),
        "{html}"
    );
    let (other, _) = app
        .store
        .agent(t.project_id, other.id)
        .await
        .unwrap()
        .unwrap();
    assert!(other.external_ids.is_empty());
}
