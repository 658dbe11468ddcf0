use callgrade_store::NewAgent;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn calls_list_filters_and_paginates() {
    let app = TestApp::spawn().await;
    let t = app.tenant("staging").await;
    let second_agent = app
        .store
        .create_agent(t.project_id, &NewAgent::named("sales-bot"))
        .await
        .unwrap();
    // Five calls a minute apart; the last one from the second agent.
    for i in 0..5 {
        let mut c = call(&format!("c{i}"));
        c["startedAt"] = json!(format!("2025-10-15T09:0{i}:00Z"));
        c["endedAt"] = json!(format!("2025-10-15T09:0{i}:30Z"));
        let agent = if i == 4 { second_agent.id } else { t.agent_id };
        assert_eq!(app.send(&t.key, &batch(agent, vec![c])).await.status(), 202);
    }

    // Newest first, two per page, three pages.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/calls?limit=2&cursor={c}"),
            None => "/api/v1/calls?limit=2".to_owned(),
        };
        let (status, page) = app.api(&t.key, &path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["c4", "c3", "c2", "c1", "c0"]);

    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, page) = app
        .api(
            &t.key,
            &format!("/api/v1/calls?agent_id={}", second_agent.id),
        )
        .await;
    assert_eq!(ids(&page), ["c4"]);
    let (_, page) = app.api(&t.key, "/api/v1/calls?external_id=c2").await;
    assert_eq!(ids(&page), ["c2"]);
    let (_, page) = app
        .api(
            &t.key,
            "/api/v1/calls?started_from=2025-10-15T09:01:00Z&started_before=2025-10-15T09:03:00Z",
        )
        .await;
    assert_eq!(ids(&page), ["c2", "c1"]);

    // Bad parameters are clear 400s.
    for bad in [
        "limit=0",
        "limit=500",
        "started_from=yesterday",
        "cursor=zzz",
        "agent_id=x",
    ] {
        let (status, err) = app.api(&t.key, &format!("/api/v1/calls?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert!(err["detail"].is_string());
    }
}

#[tokio::test]
async fn bearer_auth_and_project_isolation() {
    let app = TestApp::spawn().await;
    let a = app.tenant("a").await;
    let b = app.tenant("b").await;
    let (_, receipt) =
        status_and_json(app.send(&a.key, &batch(a.agent_id, vec![call("x")])).await).await;
    let call_id = receipt["calls"][0]["call_id"].as_str().unwrap();
    let delivery_id = receipt["delivery_id"].as_i64().unwrap();

    let r = app
        .get(&format!("/api/v1/calls/{call_id}"))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Project B's key sees nothing of project A's.
    for path in [
        format!("/api/v1/calls/{call_id}"),
        format!("/api/v1/deliveries/{delivery_id}"),
    ] {
        let (status, _) = app.api(&b.key, &path).await;
        assert_eq!(status, 404, "{path}");
    }
    let (_, page) = app.api(&b.key, "/api/v1/calls").await;
    assert!(page["data"].as_array().unwrap().is_empty());
    let (_, page) = app.api(&b.key, "/api/v1/deliveries").await;
    assert!(page["data"].as_array().unwrap().is_empty());

    // No key, a bad scheme, a wrong key.
    let r = app.get("/api/v1/calls").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .get("/api/v1/calls")
        .header("authorization", format!("Basic {}", a.key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .get("/api/v1/calls")
        .bearer_auth("cg_nope")
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(r).await;
    assert_eq!(status, 401);
    assert_eq!(err["error"], "unauthorized");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let r = app.get("/healthz").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (status, body) = status_and_json(app.get("/readyz").send().await.unwrap()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    let (status, body) = status_and_json(app.get("/nowhere").send().await.unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn calls_filter_by_reason_result_kind_failing_metric_and_text() {
    let app = TestApp::spawn().await;
    let t = app.tenant("filters").await;
    let mut hung = call("hung");
    hung["endedReason"] = json!("customer-hungup");
    hung["messages"] = json!([
        {"role": "user", "content": "I want a REFUND_100% now", "start_time": 1.0, "end_time": 2.0},
        {"role": "bot", "content": "Let me check.", "start_time": 6.0, "end_time": 7.0}
    ]);
    let mut quick = call("quick");
    quick["endedReason"] = json!("assistant-ended-call");
    quick["messages"] = json!([
        {"role": "user", "content": "Hello there", "start_time": 1.0, "end_time": 2.0},
        {"role": "bot", "content": "Hi!", "start_time": 2.5, "end_time": 3.0}
    ]);
    app.send(&t.key, &batch(t.agent_id, vec![hung, quick]))
        .await;
    let r = app
        .client
        .put(format!("{}/api/v1/rubric", app.base))
        .bearer_auth(&t.key)
        .json(&json!({"rules": [{"metric": "agent_latency", "op": "lte", "value": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app.client.post(format!("{}/api/v1/metrics", app.base)).bearer_auth(&t.key)
        .json(&json!({"name": "fast", "kind": "builtin", "config": {"builtin": "agent_latency", "pass": {"op": "lte", "value": 2}}})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    app.client
        .post(format!("{}/api/v1/evaluations/rerun", app.base))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap();
    app.settle().await;

    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    for (query, expected) in [
        ("ended_reason=customer-hungup", vec!["hung"]),
        ("success=false", vec!["hung"]),
        ("success=true", vec!["quick"]),
        ("kind=production", vec!["hung", "quick"]),
        ("kind=test", vec![]),
        ("failing_metric=fast", vec!["hung"]),
        // No pass condition of its own, but the rubric's rule on it failed.
        ("failing_metric=agent_latency", vec!["hung"]),
        ("q=refund_100%25", vec!["hung"]),
        ("q=hello", vec!["quick"]),
        ("q=_", vec!["hung"]),
        ("q=content", vec![]),
    ] {
        let (status, page) = app.api(&t.key, &format!("/api/v1/calls?{query}")).await;
        assert_eq!(status, 200, "{query}: {page}");
        let mut got = ids(&page);
        got.sort();
        assert_eq!(got, expected, "{query}");
    }
    let (status, _) = app.api(&t.key, "/api/v1/calls?kind=sideways").await;
    assert_eq!(status, 400);
}
