//! A webhook call's `recording_url`, end to end: a file server on port 0 serves a stereo WAV,
//! a redirect to a private address, a file that is not audio, one over the size limit and one
//! that fails once; calls point at those and at private addresses directly. Only the good
//! files become recordings (with their audio metrics); every other call says why, and the URL's
//! secret query never shows.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::TimeDelta;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

/// Caller speaks 0–1 s (left), the agent 1.5–2.5 s (right): an audio latency of 0.5 s.
pub(crate) fn stereo_wav() -> Vec<u8> {
    let rate = 8_000u32;
    let tone = |from_ms: u64, to_ms: u64| -> Vec<i16> {
        (0..rate as u64 * 3)
            .map(|i| {
                let ms = i * 1000 / u64::from(rate);
                if (from_ms..to_ms).contains(&ms) {
                    (8000.0 * (i as f64 * 0.3).sin()) as i16
                } else {
                    0
                }
            })
            .collect()
    };
    callgrade_audio::wav_bytes(
        &callgrade_audio::Pcm {
            sample_rate: rate,
            channels: vec![tone(0, 1000), tone(1500, 2500)],
        },
        callgrade_audio::WavEncoding::Pcm16,
    )
}

#[derive(Clone, Default)]
struct Files {
    flaky_requests: Arc<AtomicUsize>,
}

async fn good() -> Response {
    ([(header::CONTENT_TYPE, "audio/wav")], stereo_wav()).into_response()
}

async fn flaky(State(files): State<Files>) -> Response {
    if files.flaky_requests.fetch_add(1, Ordering::SeqCst) == 0 {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    good().await
}

async fn file_server() -> (String, Files) {
    let files = Files::default();
    let app = Router::new()
        .route("/good.wav", get(good))
        .route("/flaky.wav", get(flaky))
        .route(
            "/to-private.wav",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, "http://10.255.255.1/x.wav?sig=secret123")],
                )
            }),
        )
        .route(
            "/to-good.wav",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/good.wav")]) }),
        )
        .route(
            "/garbage.wav",
            get(|| async { "this is not audio at all".repeat(10) }),
        )
        .route("/big.wav", get(|| async { vec![0u8; 300_000] }))
        .route("/missing.wav", get(|| async { StatusCode::NOT_FOUND }))
        .with_state(files.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, files)
}

#[tokio::test]
async fn recording_urls_are_fetched_through_the_forgery_guard() {
    let mut settings = callgrade_server::Settings::default();
    // The file server is on loopback: that one address is allowed, nothing else private.
    settings.app.fetch.allowed = vec!["127.0.0.1/32".parse().unwrap()];
    settings.app.max_recording_bytes = 100_000;
    let app = TestApp::spawn_with(settings).await;
    let t = app.tenant("recorded").await;
    let (files, counters) = file_server().await;
    let port = files.rsplit(':').next().unwrap();

    // A rubric on one metric: the call page tells it from the metrics outside it.
    let r = app
        .client
        .put(format!("{}/api/v1/rubric", app.base))
        .bearer_auth(&t.key)
        .json(&json!({"rules": [{"metric": "call_duration", "op": "lte", "value": 10}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let urls = [
        ("good", format!("{files}/good.wav?sig=secret123")),
        ("redirected", format!("{files}/to-good.wav")),
        (
            "to-private",
            format!("{files}/to-private.wav?sig=secret123"),
        ),
        (
            "private",
            "http://192.168.7.7/a.wav?sig=secret123".to_owned(),
        ),
        ("loopback-v6", format!("http://[::1]:{port}/good.wav")),
        ("garbage", format!("{files}/garbage.wav")),
        ("big", format!("{files}/big.wav")),
        ("missing", format!("{files}/missing.wav")),
        ("flaky", format!("{files}/flaky.wav")),
    ];
    let calls: Vec<Value> = urls
        .iter()
        .map(|(id, url)| {
            let mut c = call(id);
            c["recording_url"] = json!(url);
            c
        })
        .collect();
    let r = app
        .send(&t.key, &json!({"agent_id": t.agent_id, "calls": calls}))
        .await;
    assert_eq!(r.status(), 202);
    let receipt: Value = r.json().await.unwrap();
    let ids: Vec<(String, String)> = receipt["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["call_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let id_of = |name: &str| ids.iter().find(|(e, _)| e == name).unwrap().1.clone();

    // Every call but the flaky one settles: a recording, or a warning.
    let settled = |call: &Value| {
        call["evaluations"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut details = std::collections::HashMap::new();
    for (name, _) in urls.iter().filter(|(n, _)| *n != "flaky") {
        let call = loop {
            let (_, call) = app
                .api(&t.key, &format!("/api/v1/calls/{}", id_of(name)))
                .await;
            if settled(&call) {
                break call;
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not evaluated: {call:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        details.insert(*name, call);
    }
    let recording = |name: &str| {
        let url = format!("{}/api/v1/calls/{}/recording", app.base, id_of(name));
        let (client, key) = (app.client.clone(), t.key.clone());
        async move { client.get(url).bearer_auth(key).send().await.unwrap() }
    };
    let audio_latency = |call: &Value| {
        call["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["metric_name"] == "audio_latency")
            .cloned()
            .unwrap()
    };

    for name in ["good", "redirected"] {
        let call = &details[name];
        assert_eq!(call["warnings"], json!([]), "{name}: {call:#}");
        let latency = audio_latency(call);
        assert!(
            (latency["value"].as_f64().unwrap() - 0.5).abs() <= 0.04,
            "{name}: {latency:#}"
        );
        let got = recording(name).await;
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.unwrap(), stereo_wav());
    }

    for (name, says) in [
        ("to-private", "10.255.255.1"),
        ("private", "192.168.7.7"),
        ("loopback-v6", "::1"),
        ("garbage", "cannot be used"),
        ("big", "100000-byte limit"),
        ("missing", "404"),
    ] {
        let call = &details[name];
        let warnings = call["warnings"].as_array().unwrap();
        let warning = warnings
            .iter()
            .find(|w| w["path"] == "recording_url")
            .unwrap_or_else(|| panic!("{name}: no warning: {call:#}"));
        let message = warning["message"].as_str().unwrap();
        assert!(message.contains(says), "{name}: {message}");
        assert!(!message.contains("secret123"), "{name}: {message}");
        assert_eq!(audio_latency(call)["status"], "not_applicable", "{name}");
        assert_eq!(recording(name).await.status(), 404, "{name}");
    }

    // The dashboard says it too, and names the agent.
    let (client, cookie) = crate::dashboard::signed_in(&app).await;
    let page = |path: String| {
        let (client, cookie) = (client.clone(), cookie.clone());
        async move {
            let r = client
                .get(path)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            r.text().await.unwrap()
        }
    };
    let private = page(format!(
        "{}/projects/{}/calls/{}",
        app.base,
        t.project_id,
        id_of("private")
    ))
    .await;
    assert!(
        private.contains("Warnings") && private.contains("192.168.7.7"),
        "{private}"
    );
    let warning = private.split("class=\"card warnings\"").nth(1).unwrap();
    let warning = warning.split("</div>").next().unwrap();
    assert!(!warning.contains("secret123"), "{warning}");
    assert!(
        private.contains(">support-bot</a>"),
        "the agent by name: {private}"
    );
    // A metric outside the rubric does not look like the reason a call failed.
    let silence = private.split("<td>silence_detected").nth(1).unwrap();
    let silence = silence.split("</tr>").next().unwrap();
    assert!(silence.contains("fail · not in the rubric"), "{silence}");
    assert!(!silence.contains("class=\"bad\""), "{silence}");
    let duration = private.split("<td>call_duration").nth(1).unwrap();
    let duration = duration.split("</tr>").next().unwrap();
    assert!(
        duration.contains("class=\"bad\">fail</span> <span class=\"muted\">rubric"),
        "{duration}"
    );
    let list = page(format!("{}/projects/{}/calls", app.base, t.project_id)).await;
    assert!(list.contains(">support-bot</a>"), "{list}");

    // The flaky source answered 503: the evaluation waits for a retry, then has the audio.
    assert_eq!(counters.flaky_requests.load(Ordering::SeqCst), 1);
    assert_eq!(recording("flaky").await.status(), 404);
    app.clock.advance(TimeDelta::minutes(5));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, call) = app
            .api(&t.key, &format!("/api/v1/calls/{}", id_of("flaky")))
            .await;
        if settled(&call) {
            assert_eq!(call["warnings"], json!([]), "{call:#}");
            assert!(audio_latency(&call)["value"].is_number(), "{call:#}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the flaky recording was not retried: {call:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counters.flaky_requests.load(Ordering::SeqCst), 2);
    assert_eq!(recording("flaky").await.status(), 200);
}
