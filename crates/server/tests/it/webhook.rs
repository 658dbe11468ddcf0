use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn seed_example_is_accepted_on_both_paths() {
    let app = TestApp::spawn().await;
    let t = app.tenant("staging").await;

    let (status, receipt) =
        status_and_json(app.send(&t.key, &seed_two_calls(t.agent_id)).await).await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["accepted"], 2);
    assert_eq!(receipt["created"], 2);
    let first = &receipt["calls"][0];
    assert_eq!(first["id"], "0199e72d-795e-7ffe-b9b9-d3b08a3a11ae");
    assert_eq!(first["status"], "created");
    assert_eq!(first["agent_id"], t.agent_id);
    assert_eq!(first["message_times"], "epoch_ms");

    // The same payload on the per-project URL is an identical resend.
    let r = app
        .post(&format!("/webhooks/custom/{}", t.project_id))
        .header("X-CEKURA-API-KEY", &t.key)
        .json(&seed_two_calls(t.agent_id))
        .send()
        .await
        .unwrap();
    let (status, again) = status_and_json(r).await;
    assert_eq!(status, 202);
    assert_eq!(again["duplicates"], 2);
    assert_eq!(again["calls"][0]["call_id"], first["call_id"]);

    // Stored as sent, normalised.
    let call_id = first["call_id"].as_str().unwrap();
    let (status, call) = app.api(&t.key, &format!("/api/v1/calls/{call_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(call["ended_reason"], "customer-hungup");
    assert_eq!(call["to_phone_number"], "+18646190758");
    assert_eq!(call["metadata"]["customer_name"], "John Doe");
    assert_eq!(call["messages"].as_array().unwrap().len(), 4);
    assert_eq!(call["messages"][0]["start_at_ms"], 1_760_520_142_852_i64);
    assert_eq!(call["messages"][0]["start_offset"], 1.065);
    assert_eq!(call["duration_seconds"], 128.442);
    assert_eq!(call["raw"], seed_two_calls(t.agent_id)["calls"][0]);
}

#[tokio::test]
async fn cekura_path_works_without_trailing_slash() {
    let app = TestApp::spawn().await;
    let t = app.tenant("staging").await;
    let r = app
        .post(CEKURA_PATH.trim_end_matches('/'))
        .header("X-CEKURA-API-KEY", &t.key)
        .json(&batch(t.agent_id, vec![call("a")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

/// Every validation rule, through HTTP, with the path it reports.
#[tokio::test]
async fn every_validation_rule_reports_its_path() {
    let app = TestApp::spawn().await;
    let t = app.tenant("staging").await;
    let a = t.agent_id;
    let with = |field: &str, value: Value| {
        let mut c = call("x");
        c[field] = value;
        batch(a, vec![c])
    };
    let without = |field: &str| {
        let mut c = call("x");
        c.as_object_mut().unwrap().remove(field);
        batch(a, vec![c])
    };
    let message = |m: Value| with("messages", json!([m]));
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("body not an object", json!([]), "$", "JSON object"),
        (
            "agent_id as string",
            json!({"agent_id": a.to_string(), "calls": [call("x")]}),
            "agent_id",
            "JSON integer, not a string",
        ),
        (
            "agent_id float",
            json!({"agent_id": 1.5, "calls": [call("x")]}),
            "agent_id",
            "integer",
        ),
        (
            "agent_id unknown",
            batch(a + 1000, vec![call("x")]),
            "agent_id",
            "no agent with id",
        ),
        (
            "agent_id missing",
            json!({"calls": [call("x")]}),
            "calls[0].run_id",
            "no agent_id",
        ),
        ("calls missing", json!({"agent_id": a}), "calls", "required"),
        (
            "calls empty",
            json!({"agent_id": a, "calls": []}),
            "calls",
            "at least one",
        ),
        (
            "calls not array",
            json!({"agent_id": a, "calls": {}}),
            "calls",
            "array",
        ),
        (
            "call not object",
            json!({"agent_id": a, "calls": ["x"]}),
            "calls[0]",
            "call object",
        ),
        ("id missing", without("id"), "calls[0].id", "required"),
        ("id empty", with("id", json!("")), "calls[0].id", "empty"),
        (
            "id too long",
            with("id", json!("i".repeat(256))),
            "calls[0].id",
            "255",
        ),
        (
            "id wrong type",
            with("id", json!(["x"])),
            "calls[0].id",
            "string",
        ),
        (
            "id duplicated",
            batch(a, vec![call("d"), call("d")]),
            "calls[1].id",
            "unique",
        ),
        (
            "startedAt missing",
            without("startedAt"),
            "calls[0].startedAt",
            "required",
        ),
        (
            "startedAt not ISO",
            with("startedAt", json!("10/15/2025")),
            "calls[0].startedAt",
            "ISO 8601",
        ),
        (
            "endedAt missing",
            without("endedAt"),
            "calls[0].endedAt",
            "required",
        ),
        (
            "endedAt before start",
            with("endedAt", json!("2025-10-15T09:00:00Z")),
            "calls[0].endedAt",
            "before startedAt",
        ),
        (
            "to phone no plus",
            with("to_phone_number", json!("18646190758")),
            "calls[0].to_phone_number",
            "+",
        ),
        (
            "from phone too long",
            with("from_phone_number", json!("+1234567890123456")),
            "calls[0].from_phone_number",
            "15",
        ),
        (
            "phone with dashes",
            with("to_phone_number", json!("+1-864-619")),
            "calls[0].to_phone_number",
            "digits",
        ),
        (
            "metadata not object",
            with("metadata", json!([1])),
            "calls[0].metadata",
            "object",
        ),
        (
            "endedReason not string",
            with("endedReason", json!(1)),
            "calls[0].endedReason",
            "string",
        ),
        (
            "run_id not integer",
            with("run_id", json!("abc")),
            "calls[0].run_id",
            "A valid integer is required",
        ),
        (
            "run_id unknown",
            with("run_id", json!(456789)),
            "calls[0].run_id",
            "not found",
        ),
        (
            "trace_id too long",
            with("trace_id", json!("t".repeat(33))),
            "calls[0].trace_id",
            "32",
        ),
        (
            "messages not array",
            with("messages", json!("hi")),
            "calls[0].messages",
            "array",
        ),
        (
            "message not object",
            with("messages", json!(["hi"])),
            "calls[0].messages[0]",
            "message object",
        ),
        (
            "role missing",
            message(json!({"content": "hi"})),
            "calls[0].messages[0].role",
            "required",
        ),
        (
            "role near miss",
            message(json!({"role": "assistant", "content": "hi"})),
            "calls[0].messages[0].role",
            "did you mean \"bot\"",
        ),
        (
            "role wrong case",
            message(json!({"role": "User", "content": "hi"})),
            "calls[0].messages[0].role",
            "did you mean \"user\"",
        ),
        (
            "content missing",
            message(json!({"role": "bot"})),
            "calls[0].messages[0].content",
            "required",
        ),
        (
            "content not string",
            message(json!({"role": "bot", "content": 1})),
            "calls[0].messages[0].content",
            "string",
        ),
        (
            "start_time negative",
            message(json!({"role": "bot", "content": "", "start_time": -1})),
            "calls[0].messages[0].start_time",
            "non-negative",
        ),
        (
            "end_time before start",
            message(json!({"role": "bot", "content": "", "start_time": 2, "end_time": 1})),
            "calls[0].messages[0].end_time",
            "before start_time",
        ),
        (
            "data not object",
            message(json!({"role": "function_call", "content": "", "data": "x"})),
            "calls[0].messages[0].data",
            "object",
        ),
    ];
    for (name, body, path, needle) in cases {
        let (status, err) = status_and_json(app.send(&t.key, &body).await).await;
        assert_eq!(status, 400, "{name}: {err}");
        assert_eq!(err["error"], "invalid_payload", "{name}: {err}");
        assert!(
            error_paths(&err).contains(&path.to_owned()),
            "{name}: expected {path} in {err}"
        );
        let message = err["errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == path)
            .unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.contains(needle),
            "{name}: {message:?} lacks {needle:?}"
        );
    }
    assert_eq!(app.call_count(&t).await, 0, "nothing invalid is stored");
}

#[tokio::test]
async fn all_problems_are_reported_at_once() {
    let app = TestApp::spawn().await;
    let t = app.tenant("staging").await;
    let mut bad = call("b");
    bad["to_phone_number"] = json!("555");
    bad["messages"] = json!([{"role": "agent", "content": "x"}]);
    let body = json!({"agent_id": "7", "calls": [call("a"), bad, {"id": "c"}]});
    let (status, err) = status_and_json(app.send(&t.key, &body).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        error_paths(&err),
        [
            "agent_id",
            "calls[1].to_phone_number",
            "calls[1].messages[0].role",
            "calls[2].startedAt",
            "calls[2].endedAt"
        ]
    );
}

#[tokio::test]
async fn optional_fields_and_unknown_fields() {
    let app = TestApp::spawn().await;
    let t = app.tenant("staging").await;
    let minimal = json!({"id": 42, "startedAt": "2025-10-15T09:22:21", "endedAt": "2025-10-15T11:23:21+02:00", "vendor": {"x": 1}});
    let (status, receipt) = status_and_json(
        app.send(&t.key, &batch(t.agent_id, vec![minimal.clone()]))
            .await,
    )
    .await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["calls"][0]["id"], "42");
    assert_eq!(receipt["calls"][0]["message_times"], "none");
    let call_id = receipt["calls"][0]["call_id"].as_str().unwrap();
    let (_, call) = app.api(&t.key, &format!("/api/v1/calls/{call_id}")).await;
    assert_eq!(call["ended_reason"], "unknown");
    assert_eq!(call["duration_seconds"], 60.0);
    assert_eq!(
        call["raw"], minimal,
        "unknown fields are kept in the raw payload"
    );
}

#[tokio::test]
async fn both_message_time_forms() {
    let app = TestApp::spawn().await;
    let t = app.tenant("staging").await;
    // 09:22:21.787Z is 1760520141787 ms; the same turn in both forms.
    let mut seconds = call("seconds");
    seconds["messages"] =
        json!([{"role": "bot", "content": "Hi", "start_time": 1.065, "end_time": 6.055}]);
    let mut millis = call("millis");
    millis["messages"] = json!([{"role": "bot", "content": "Hi", "start_time": 1_760_520_142_852_i64, "end_time": 1_760_520_147_842_i64}]);
    let (status, receipt) = status_and_json(
        app.send(&t.key, &batch(t.agent_id, vec![seconds, millis]))
            .await,
    )
    .await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["calls"][0]["message_times"], "seconds_from_start");
    assert_eq!(receipt["calls"][1]["message_times"], "epoch_ms");
    let mut stored = Vec::new();
    for c in receipt["calls"].as_array().unwrap() {
        let (_, call) = app
            .api(
                &t.key,
                &format!("/api/v1/calls/{}", c["call_id"].as_str().unwrap()),
            )
            .await;
        stored.push(call["messages"][0].clone());
    }
    assert_eq!(stored[0]["start_at_ms"], stored[1]["start_at_ms"]);
    assert_eq!(stored[0]["end_at_ms"], stored[1]["end_at_ms"]);
    assert_eq!(stored[0]["start_at_ms"], 1_760_520_142_852_i64);
    assert_eq!(stored[1]["start_offset"], 1.065);

    // A time far outside the call is kept, with a warning in the receipt.
    let mut odd = call("odd");
    odd["messages"] = json!([{"role": "bot", "content": "Hi", "start_time": 900.0}]);
    let (status, receipt) =
        status_and_json(app.send(&t.key, &batch(t.agent_id, vec![odd])).await).await;
    assert_eq!(status, 202);
    assert_eq!(
        receipt["calls"][0]["warnings"][0]["path"],
        "calls[0].messages[0].start_time"
    );
}

#[tokio::test]
async fn auth_cases() {
    let app = TestApp::spawn().await;
    let t = app.tenant("staging").await;
    let other = app.tenant("production").await;
    let body = batch(t.agent_id, vec![call("a")]);

    // Missing key.
    let r = app.post(CEKURA_PATH).json(&body).send().await.unwrap();
    let (status, err) = status_and_json(r).await;
    assert_eq!(status, 401);
    assert!(err["detail"].as_str().unwrap().contains("X-CEKURA-API-KEY"));

    // Wrong key; the error never echoes it.
    let (status, err) = status_and_json(app.send("cg_wrongwrongwrong", &body).await).await;
    assert_eq!(status, 401);
    assert!(!err.to_string().contains("cg_wrongwrongwrong"));

    // Any header casing works.
    for name in ["x-cekura-api-key", "X-Cekura-Api-Key", "X-CEKURA-API-KEY"] {
        let r = app
            .post(CEKURA_PATH)
            .header(name, &t.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{name}");
    }

    // Another project's key on this project's URL.
    let r = app
        .post(&format!("/webhooks/custom/{}", t.project_id))
        .header("X-CEKURA-API-KEY", &other.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Unknown project id, and one that is not a number.
    for path in ["/webhooks/custom/999", "/webhooks/custom/abc"] {
        let r = app
            .post(path)
            .header("X-CEKURA-API-KEY", &t.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err) = status_and_json(r).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(err["error"], "not_found");
    }

    // Rotation: the old key stops at once, the new one works.
    let key_id = app.store.list_keys(t.project_id).await.unwrap()[0].id;
    let now = callgrade_app::Clock::now(app.clock.as_ref());
    let (_, new_key) = app
        .store
        .rotate_key(t.project_id, key_id, now, now)
        .await
        .unwrap()
        .unwrap();
    let r = app.send(&t.key, &body).await;
    assert_eq!(r.status(), 401);
    let r = app.send(new_key.expose(), &body).await;
    assert_eq!(r.status(), 202);

    // Only the authenticated requests are in the delivery log.
    let (_, log) = app.api(new_key.expose(), "/api/v1/deliveries").await;
    assert_eq!(log["data"].as_array().unwrap().len(), 4);
    let (_, other_log) = app.api(&other.key, "/api/v1/deliveries").await;
    assert_eq!(other_log["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn batches_are_all_or_nothing() {
    let app = TestApp::spawn().await;
    let t = app.tenant("staging").await;
    let mut bad = call("bad");
    bad["startedAt"] = json!("nope");
    let (status, _) = status_and_json(
        app.send(&t.key, &batch(t.agent_id, vec![call("good"), bad]))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(app.call_count(&t).await, 0);

    // A conflict anywhere in the batch stores nothing of it either.
    assert_eq!(
        app.send(&t.key, &batch(t.agent_id, vec![call("first")]))
            .await
            .status(),
        202
    );
    let mut changed = call("first");
    changed["endedReason"] = json!("assistant-ended-call");
    let (status, err) = status_and_json(
        app.send(&t.key, &batch(t.agent_id, vec![call("new"), changed]))
            .await,
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(err["error"], "conflict");
    assert_eq!(error_paths(&err), ["calls[1].id"]);
    assert!(err["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("\"first\""));
    assert_eq!(
        app.call_count(&t).await,
        1,
        "the new call of the refused batch is not stored"
    );
}

#[tokio::test]
async fn resends_are_idempotent() {
    let app = TestApp::spawn().await;
    let t = app.tenant("staging").await;
    let body = batch(t.agent_id, vec![call("a"), call("b")]);
    let (_, first) = status_and_json(app.send(&t.key, &body).await).await;
    let (status, second) = status_and_json(app.send(&t.key, &body).await).await;
    assert_eq!(status, 202);
    assert_eq!(second["created"], 0);
    assert_eq!(second["duplicates"], 2);
    assert_eq!(first["calls"][1]["call_id"], second["calls"][1]["call_id"]);
    // A batch mixing a resend and a new call stores only the new one.
    let (_, mixed) = status_and_json(
        app.send(&t.key, &batch(t.agent_id, vec![call("a"), call("c")]))
            .await,
    )
    .await;
    assert_eq!(mixed["calls"][0]["status"], "duplicate");
    assert_eq!(mixed["calls"][1]["status"], "created");
    assert_eq!(app.call_count(&t).await, 3);
    // The same sender id in another project is another call.
    let other = app.tenant("production").await;
    let (status, r) = status_and_json(
        app.send(&other.key, &batch(other.agent_id, vec![call("a")]))
            .await,
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(r["created"], 1);
}

#[tokio::test]
async fn concurrent_identical_requests_store_one_call() {
    let app = TestApp::spawn().await;
    let t = app.tenant("staging").await;
    let body = batch(t.agent_id, vec![call("race")]);
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (client, url, key, body) = (
            app.client.clone(),
            format!("{}{CEKURA_PATH}", app.base),
            t.key.clone(),
            body.clone(),
        );
        sends.spawn(async move {
            client
                .post(url)
                .header("X-CEKURA-API-KEY", key)
                .json(&body)
                .send()
                .await
                .unwrap()
        });
    }
    let mut created = 0;
    while let Some(r) = sends.join_next().await {
        let (status, receipt) = status_and_json(r.unwrap()).await;
        assert_eq!(status, 202);
        created += receipt["created"].as_u64().unwrap();
    }
    assert_eq!(created, 1);
    assert_eq!(app.call_count(&t).await, 1);
}

#[tokio::test]
async fn transport_errors_413_415_405_and_malformed_json() {
    let settings = callgrade_server::Settings {
        max_body_bytes: 4096,
        ..Default::default()
    };
    let app = TestApp::spawn_with(settings).await;
    let t = app.tenant("staging").await;

    let mut big = call("big");
    big["metadata"] = json!({"blob": "x".repeat(5000)});
    let (status, err) =
        status_and_json(app.send(&t.key, &batch(t.agent_id, vec![big])).await).await;
    assert_eq!(status, 413);
    assert_eq!(err["error"], "payload_too_large");

    let body = batch(t.agent_id, vec![call("a")]).to_string();
    let r = app
        .post(CEKURA_PATH)
        .header("X-CEKURA-API-KEY", &t.key)
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(r).await;
    assert_eq!(status, 415);
    assert_eq!(err["error"], "unsupported_media_type");
    let r = app
        .post(CEKURA_PATH)
        .header("X-CEKURA-API-KEY", &t.key)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415, "no Content-Type at all");
    let r = app
        .post(CEKURA_PATH)
        .header("X-CEKURA-API-KEY", &t.key)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "a charset parameter is fine");

    let r = app
        .get(CEKURA_PATH)
        .header("X-CEKURA-API-KEY", &t.key)
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(r).await;
    assert_eq!(status, 405);
    assert_eq!(err["error"], "method_not_allowed");

    let r = app
        .post(CEKURA_PATH)
        .header("X-CEKURA-API-KEY", &t.key)
        .header("content-type", "application/json")
        .body("{\n  \"agent_id\": 1,\n  \"calls\": [,]\n}")
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(r).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"], "malformed_json");
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("line 3, column 13"),
        "{err}"
    );

    // Every one of these is in the delivery log, the failures first.
    let (_, log) = app.api(&t.key, "/api/v1/deliveries?outcome=rejected").await;
    let statuses: Vec<u64> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [400, 415, 415, 413]);
}

#[tokio::test]
async fn max_calls_per_request_is_configurable() {
    let mut settings = callgrade_server::Settings::default();
    settings.app.limits.max_calls_per_request = 2;
    let app = TestApp::spawn_with(settings).await;
    let t = app.tenant("staging").await;
    let (status, err) = status_and_json(
        app.send(
            &t.key,
            &batch(t.agent_id, vec![call("a"), call("b"), call("c")]),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_paths(&err), ["calls"]);
}

#[tokio::test]
async fn delivery_log_keeps_rejections_with_errors_and_body() {
    let mut settings = callgrade_server::Settings::default();
    settings.app.delivery_body_cap = 100;
    let app = TestApp::spawn_with(settings).await;
    let t = app.tenant("staging").await;
    let bad = json!({"agent_id": "1", "calls": [call("a")]});
    let (_, err) = status_and_json(app.send(&t.key, &bad).await).await;
    assert_eq!(err["error"], "invalid_payload");

    let (status, log) = app.api(&t.key, "/api/v1/deliveries").await;
    assert_eq!(status, 200);
    let entry = &log["data"][0];
    assert_eq!(entry["status"], 400);
    assert_eq!(entry["outcome"], "rejected");
    assert_eq!(entry["errors"][0]["path"], "agent_id");
    assert_eq!(entry["route"], CEKURA_PATH);
    let (status, detail) = app
        .api(&t.key, &format!("/api/v1/deliveries/{}", entry["id"]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(detail["body_truncated"], true);
    assert_eq!(detail["body"].as_str().unwrap().len(), 100);
    assert_eq!(
        detail["body_size"].as_u64().unwrap() as usize,
        bad.to_string().len()
    );
}

/// The seed's troubleshooting list, item by item: each cause gives a clear answer.
#[tokio::test]
async fn seed_troubleshooting_items_give_clear_errors() {
    let app = TestApp::spawn().await;
    let t = app.tenant("staging").await;
    let good = batch(t.agent_id, vec![call("a")]);

    // "Verify the webhook URL is correct"
    let r = app
        .post("/test_framework/custom-provider-webhook/")
        .header("X-CEKURA-API-KEY", &t.key)
        .json(&good)
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(r).await;
    assert_eq!((status, err["error"].as_str()), (404, Some("not_found")));
    // "Check that the X-CEKURA-API-KEY header is included and correct"
    let (status, _) =
        status_and_json(app.post(CEKURA_PATH).json(&good).send().await.unwrap()).await;
    assert_eq!(status, 401);
    // "Ensure the header name is exactly X-CEKURA-API-KEY (case-sensitive)": we accept any casing.
    let r = app
        .post(CEKURA_PATH)
        .header("x-cekura-api-key", &t.key)
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // "Confirm the agent_id is correct"
    let (status, err) = status_and_json(
        app.send(&t.key, &batch(t.agent_id + 99, vec![call("b")]))
            .await,
    )
    .await;
    assert_eq!(
        (status, error_paths(&err)),
        (400, vec!["agent_id".to_owned()])
    );
    // "Verify the agent_id is an integer, not a string"
    let (_, err) = status_and_json(
        app.send(
            &t.key,
            &json!({"agent_id": t.agent_id.to_string(), "calls": [call("b")]}),
        )
        .await,
    )
    .await;
    assert!(err["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("not a string"));
    // "Ensure all required fields are present (id, startedAt, endedAt)"
    let (_, err) =
        status_and_json(app.send(&t.key, &batch(t.agent_id, vec![json!({})])).await).await;
    assert_eq!(
        error_paths(&err),
        ["calls[0].id", "calls[0].startedAt", "calls[0].endedAt"]
    );
    // "Check that phone numbers follow the correct format"
    let mut c = call("b");
    c["to_phone_number"] = json!("(415) 555-1234");
    let (_, err) = status_and_json(app.send(&t.key, &batch(t.agent_id, vec![c])).await).await;
    assert_eq!(error_paths(&err), ["calls[0].to_phone_number"]);
    // "Ensure messages is an array with dictionaries containing role and content fields"
    let mut c = call("b");
    c["messages"] = json!([{"speaker": "bot", "text": "hi"}]);
    let (_, err) = status_and_json(app.send(&t.key, &batch(t.agent_id, vec![c])).await).await;
    assert_eq!(
        error_paths(&err),
        ["calls[0].messages[0].role", "calls[0].messages[0].content"]
    );
    // "Check that the call ID is unique and under 255 characters"
    let mut c = call("b");
    c["id"] = json!("x".repeat(300));
    let (_, err) = status_and_json(app.send(&t.key, &batch(t.agent_id, vec![c])).await).await;
    assert!(err["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("255"));
    // "Verify timestamps are in ISO 8601 format"
    let mut c = call("b");
    c["startedAt"] = json!(1760520141787_i64);
    let (_, err) = status_and_json(app.send(&t.key, &batch(t.agent_id, vec![c])).await).await;
    assert_eq!(error_paths(&err), ["calls[0].startedAt"]);
    // "Validate your JSON payload structure"
    let r = app
        .post(CEKURA_PATH)
        .header("X-CEKURA-API-KEY", &t.key)
        .header("content-type", "application/json")
        .body("{\"calls\": [}")
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(r).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("malformed_json"))
    );
    // "Verify the call data was sent within 5 minutes after the call ended": a late call is
    // never dropped; with no test run to match it is stored as a production call.
    let mut old = call("old");
    old["startedAt"] = json!("2020-01-01T00:00:00Z");
    old["endedAt"] = json!("2020-01-01T00:01:00Z");
    old["messages"] = json!([]);
    assert_eq!(
        app.send(&t.key, &batch(t.agent_id, vec![old]))
            .await
            .status(),
        202
    );
    // "Use the metadata field to pass additional key-value pairs"
    let mut c = call("meta");
    c["metadata"] = json!("recording=https://x");
    let (_, err) = status_and_json(app.send(&t.key, &batch(t.agent_id, vec![c])).await).await;
    assert_eq!(error_paths(&err), ["calls[0].metadata"]);
}
