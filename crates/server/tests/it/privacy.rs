//! PII redaction at ingest: with a policy set, nothing the detectors find reaches the
//! database (the call, its raw object, the delivery log's copy), whatever the route.

use serde_json::{json, Value};

use crate::common::*;
use crate::outbound::call_api;

/// The detectors' labelled corpus: each line's text, and the exact values it holds.
fn corpus() -> Vec<(String, Vec<String>)> {
    include_str!("../../../core/src/redact/corpus.tsv")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(expected, text)| {
            let values = match expected {
                "-" => Vec::new(),
                items => items
                    .split('|')
                    .filter_map(|item| item.split_once('=').map(|(_, v)| v.to_owned()))
                    .collect(),
            };
            (text.to_owned(), values)
        })
        .collect()
}

async fn patch_project(app: &TestApp, key: &str, body: Value) -> (u16, Value) {
    call_api(app, key, "PATCH", "/api/v1/project", Some(body)).await
}

#[tokio::test]
async fn no_value_the_detectors_find_reaches_the_database() {
    let app = TestApp::spawn().await;
    let t = app.tenant("private").await;
    let (status, project) =
        patch_project(&app, &t.key, json!({"redaction": {"mode": "mask"}})).await;
    assert_eq!(status, 200, "{project}");
    assert_eq!(
        project["redaction"],
        json!({"mode": "mask", "phone_numbers": "keep"})
    );
    let (status, err) =
        patch_project(&app, &t.key, json!({"redaction": {"mode": "scramble"}})).await;
    assert_eq!(status, 400, "{err}");

    // The corpus as transcripts: 40 lines a call, a positive in the metadata and a tool call's
    // arguments too; the caller's own number is kept for run matching.
    let corpus = corpus();
    // A value that is also part of a line where it is no PII (the 16 digits of a card inside a
    // 22-digit serial) would be found in the file rightly; the core corpus test checks those
    // by their exact ranges.
    let positives: Vec<&String> = corpus
        .iter()
        .flat_map(|(_, v)| v)
        .filter(|p| {
            !corpus
                .iter()
                .any(|(text, values)| !values.contains(p) && text.contains(p.as_str()))
        })
        .collect();
    assert!(positives.len() > 150, "{} positives", positives.len());
    let calls: Vec<Value> = corpus
        .chunks(40)
        .enumerate()
        .map(|(i, lines)| {
            let mut messages: Vec<Value> = lines
                .iter()
                .map(|(text, _)| json!({"role": "user", "content": text}))
                .collect();
            messages.push(json!({"role": "function_call", "content": "lookup",
                "data": {"arguments": {"email": "tool.user@example.com"}}}));
            json!({"id": format!("c{i}"), "startedAt": "2025-10-15T09:22:21Z",
                "endedAt": "2025-10-15T09:30:00Z", "from_phone_number": "+14155550199",
                "messages": messages, "metadata": {"customer_email": "meta.user@example.com"}})
        })
        .collect();
    let r = app
        .send(&t.key, &json!({"agent_id": t.agent_id, "calls": calls}))
        .await;
    let (status, receipt) = status_and_json(r).await;
    assert_eq!(status, 202, "{receipt}");
    let counted: u64 = receipt["calls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["redactions"].as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(counted as usize >= positives.len() + 2, "{counted} counted");

    // Through the API: the call, its raw object and the delivery log hold tokens instead.
    let call_id = receipt["calls"][0]["call_id"].as_str().unwrap();
    let (_, call) = app.api(&t.key, &format!("/api/v1/calls/{call_id}")).await;
    assert_eq!(call["from_phone_number"], "+14155550199");
    assert!(
        call["redactions"]["email"].as_u64().unwrap() > 0,
        "{}",
        call["redactions"]
    );
    assert!(call.to_string().contains("<EMAIL>"));
    let (_, log) = app.api(&t.key, "/api/v1/deliveries").await;
    let delivery_id = log["data"][0]["id"].as_i64().unwrap();
    let (_, delivery) = app
        .api(&t.key, &format!("/api/v1/deliveries/{delivery_id}"))
        .await;
    let body = delivery.to_string();
    assert!(
        body.contains("<CARD>"),
        "the log's copy is redacted, not dropped"
    );
    for p in &positives {
        assert!(!call.to_string().contains(p.as_str()), "{p:?} in the call");
        assert!(!body.contains(p.as_str()), "{p:?} in the delivery log");
    }
    for extra in ["tool.user@example.com", "meta.user@example.com"] {
        assert!(!call.to_string().contains(extra), "{extra} in the call");
    }

    // In the database file itself (and its WAL), on SQLite.
    if let Some(dir) = app.sqlite_dir() {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("+14155550199"), "the file was read");
        for p in positives
            .iter()
            .map(|p| p.as_str())
            .chain(["tool.user@example.com", "meta.user@example.com"])
        {
            assert!(!text.contains(p), "{p:?} is in the database file");
        }
    }
}

#[tokio::test]
async fn hashed_tokens_link_one_value_across_calls_and_dropped_numbers_are_gone() {
    let app = TestApp::spawn().await;
    let t = app.tenant("hashed").await;
    let (status, _) = patch_project(
        &app,
        &t.key,
        json!({"redaction": {"mode": "hash", "phone_numbers": "drop"}}),
    )
    .await;
    assert_eq!(status, 200);
    let call = |id: &str, card: &str| {
        json!({"id": id, "startedAt": "2025-10-15T09:22:21Z", "endedAt": "2025-10-15T09:30:00Z",
            "from_phone_number": "+14155550199",
            "messages": [{"role": "user", "content": format!("my card is {card}")}]})
    };
    let body = json!({"agent_id": t.agent_id, "calls": [
        call("a", "4111 1111 1111 1111"), call("b", "4111-1111-1111-1111"), call("c", "4242 4242 4242 4242")]});
    let (status, receipt) = status_and_json(app.send(&t.key, &body).await).await;
    assert_eq!(status, 202, "{receipt}");
    let mut tokens = Vec::new();
    for c in receipt["calls"].as_array().unwrap() {
        let (_, stored) = app
            .api(
                &t.key,
                &format!("/api/v1/calls/{}", c["call_id"].as_str().unwrap()),
            )
            .await;
        assert!(stored["from_phone_number"].is_null(), "{stored}");
        assert!(!stored["raw"].to_string().contains("4155550199"));
        let text = stored["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(text.starts_with("my card is <CARD:"), "{text}");
        tokens.push(text);
    }
    assert_eq!(
        tokens[0], tokens[1],
        "one card, however it was written, one token"
    );
    assert_ne!(tokens[0], tokens[2]);
    // A resend is still a duplicate: the content hash is of the call as sent.
    let (status, again) = status_and_json(app.send(&t.key, &body).await).await;
    assert_eq!(
        (status, again["duplicates"].as_u64()),
        (202, Some(3)),
        "{again}"
    );
}

#[tokio::test]
async fn the_dashboard_sets_the_policy() {
    use crate::dashboard::{csrf_of, Session};
    let app = TestApp::spawn().await;
    let t = app.tenant("dash").await;
    let s = Session::start(&app).await;
    let setup = format!("/projects/{}/setup", t.project_id);
    let csrf = csrf_of(&s.page(&setup).await);
    let form = [
        ("_csrf", csrf),
        ("listening_window_seconds", "300".into()),
        ("run_deadline_seconds", "1800".into()),
        ("redaction_mode", "hash".into()),
        ("phone_numbers", "drop".into()),
    ];
    let (status, _) = s
        .submit(&format!("/projects/{}/settings", t.project_id), &form)
        .await;
    assert_eq!(status, 303);
    let (_, project) = app.api(&t.key, "/api/v1/project").await;
    assert_eq!(
        project["redaction"],
        json!({"mode": "hash", "phone_numbers": "drop"})
    );
    assert!(app
        .store
        .redaction_key(t.project_id)
        .await
        .unwrap()
        .is_some());
    let page = s.page(&setup).await;
    assert!(
        page.contains(r#"<option value="hash" selected>"#),
        "the form shows the policy"
    );
}
