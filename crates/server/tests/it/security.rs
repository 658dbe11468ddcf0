//! Hostile and careless clients: rate limits, slow clients, deep nesting, oversized fields,
//! and project isolation on every route of the API.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::common::*;
use callgrade_app::Clock;
use callgrade_server::{RateLimit, Settings};

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_per_project() {
    let mut settings = Settings::default();
    settings.http.rate_limit = Some(RateLimit {
        per_second: 1,
        burst: 2,
    });
    let app = TestApp::spawn_with(settings).await;
    let a = app.tenant("a").await;
    let b = app.tenant("b").await;
    for i in 0..2 {
        let r = app
            .send(&a.key, &batch(a.agent_id, vec![call(&format!("c{i}"))]))
            .await;
        assert_eq!(r.status(), 202);
    }
    let r = app.send(&a.key, &batch(a.agent_id, vec![call("c3")])).await;
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let (_, body) = status_and_json(r).await;
    assert_eq!(body["error"], "rate_limited");
    // The API shares the key's budget; another project has its own.
    let (status, _) = app.api(&a.key, "/api/v1/calls").await;
    assert_eq!(status, 429);
    assert_eq!(
        app.send(&b.key, &batch(b.agent_id, vec![call("x")]))
            .await
            .status(),
        202
    );
}

fn raw(addr: &str) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let mut settings = Settings::default();
    settings.http.header_read_timeout = Duration::from_millis(300);
    settings.http.body_read_timeout = Duration::from_millis(300);
    let app = TestApp::spawn_with(settings).await;
    let t = app.tenant("slow").await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let key = t.key.clone();
    tokio::task::spawn_blocking(move || {
        // Headers that never end: the connection is closed, not held.
        let mut stream = raw(&addr);
        stream.write_all(b"POST /api/v1/calls HTTP/1.1\r\nHost: x\r\n").unwrap();
        let started = Instant::now();
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
        assert!(started.elapsed() < Duration::from_secs(5), "held for {:?}", started.elapsed());

        // A body that trickles: 408.
        let mut stream = raw(&addr);
        let head = format!(
            "POST {CEKURA_PATH} HTTP/1.1\r\nHost: x\r\nX-CEKURA-API-KEY: {key}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"calls\""
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_timeout"));

        // A body that trickles one byte every 100 ms never stalls for the 300 ms deadline, yet
        // it is cut off by the deadline counted from its headers.
        let mut stream = raw(&addr);
        stream.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        let mut answered = false;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            if stream.write_all(b" ").is_err() {
                answered = true;
                break;
            }
            stream.set_nonblocking(true).unwrap();
            let mut peek = [0u8; 1];
            let seen = stream.peek(&mut peek).is_ok_and(|n| n > 0);
            stream.set_nonblocking(false).unwrap();
            if seen {
                answered = true;
                break;
            }
        }
        assert!(answered, "a trickling body was held for {:?}", started.elapsed());
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    })
    .await
    .unwrap();
}

/// Bodies over the in-flight budget together wait their turn instead of failing: with room for
/// one 40 KB body at a time, four sent at once are all accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_beyond_the_in_flight_budget_wait_their_turn() {
    let mut settings = Settings::default();
    settings.http.webhook_bytes_in_flight = 64 * 1024;
    let app = std::sync::Arc::new(TestApp::spawn_with(settings).await);
    let t = app.tenant("budget").await;
    let sends = (0..4).map(|i| {
        let (app, key) = (app.clone(), t.key.clone());
        let mut c = call(&format!("big-{i}"));
        c["messages"][0]["content"] = json!("word ".repeat(8_000));
        let body = batch(t.agent_id, vec![c]);
        tokio::spawn(async move { app.send(&key, &body).await.status().as_u16() })
    });
    let statuses: Vec<u16> = futures_in_order(sends).await;
    assert_eq!(statuses, [202; 4]);
    assert_eq!(app.call_count(&t).await, 4);
}

async fn futures_in_order<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

/// A compressed body is refused as such (it used to be read as JSON and reported malformed),
/// and the refusal is in the delivery log.
#[tokio::test]
async fn a_compressed_body_is_refused_by_its_encoding() {
    let app = TestApp::spawn().await;
    let t = app.tenant("gzip").await;
    let r = app
        .post(CEKURA_PATH)
        .header("X-CEKURA-API-KEY", &t.key)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0x08, 0x00])
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(r).await;
    assert_eq!(status, 415, "{err}");
    assert_eq!(err["error"], "unsupported_media_type");
    assert!(
        err["detail"].as_str().unwrap().contains("\"gzip\""),
        "{err}"
    );
    let (_, log) = app.api(&t.key, "/api/v1/deliveries").await;
    assert_eq!(log["data"][0]["status"], 415, "{log}");
}

#[tokio::test]
async fn deep_nesting_and_oversized_fields_get_short_clear_errors() {
    let app = TestApp::spawn().await;
    let t = app.tenant("big").await;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let r = app
        .post(CEKURA_PATH)
        .header("X-CEKURA-API-KEY", &t.key)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    let (status, err) = status_and_json(r).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("malformed_json"))
    );
    assert!(
        err["detail"].as_str().unwrap().contains("recursion limit"),
        "{err}"
    );

    let mut c = call("x");
    c["id"] = json!("i".repeat(100_000));
    c["run_id"] = json!("r".repeat(100_000));
    c["to_phone_number"] = json!(format!("+{}", "1".repeat(100_000)));
    let (status, err) = status_and_json(app.send(&t.key, &batch(t.agent_id, vec![c])).await).await;
    assert_eq!(status, 400);
    assert!(
        err.to_string().len() < 2_000,
        "errors never echo huge values: {} bytes",
        err.to_string().len()
    );
}

/// Project B's key reads and writes nothing of project A's, on every documented route.
#[tokio::test]
async fn every_api_route_is_isolated_by_project() {
    let app = TestApp::spawn().await;
    let a = app.tenant("a").await;
    let b = app.tenant("b").await;
    app.clock.set("2025-10-15T09:20:00Z".parse().unwrap());
    let post = |key: String, path: String, body: Value| {
        let req = app.post(&path).bearer_auth(key).json(&body);
        async move { status_and_json(req.send().await.unwrap()).await }
    };
    // A's resources.
    let (_, scenario) = post(a.key.clone(), "/api/v1/scenarios".into(), json!({"agent_id": a.agent_id, "name": "secret-scenario", "direction": "inbound", "tester_phone_number": "+14155550000"})).await;
    let (_, result) = post(
        a.key.clone(),
        "/api/v1/results".into(),
        json!({"agent_id": a.agent_id, "scenario_ids": [scenario["id"]]}),
    )
    .await;
    let (_, receipt) = status_and_json(app.send(&a.key, &seed_two_calls(a.agent_id)).await).await;
    let call_id = receipt["calls"][0]["call_id"].as_str().unwrap().to_owned();
    let delivery_id = receipt["delivery_id"].as_i64().unwrap();
    let metric_id = app.store.list_metrics(a.project_id).await.unwrap()[0].id;
    let run_id = result["runs"][0]["id"].as_i64().unwrap();
    // An outbound endpoint with a delivery, and an alert rule (made in the store: the API would
    // refuse a private receiver under the default settings).
    let now = app.clock.now();
    let draft = callgrade_core::outbound::EndpointDraft::parse(
        &json!({"url": "https://hooks.example.com/secret-endpoint", "events": ["call.received"]}),
    )
    .unwrap();
    let endpoint = app
        .store
        .create_endpoint(a.project_id, &draft, "whsec_c2VjcmV0LXNpZ25pbmcta2V5", now)
        .await
        .unwrap();
    let test =
        callgrade_store::NewEvent::new(callgrade_core::outbound::EventType::Test, now, json!({}));
    app.store
        .emit_event(a.project_id, test, Some(endpoint.id))
        .await
        .unwrap();
    let outbound_id = app
        .store
        .list_outbound(
            a.project_id,
            &callgrade_store::OutboundFilter {
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .data[0]
        .id;
    let rule = callgrade_core::alerts::AlertRule::parse(
        &json!({"name": "secret-rule", "kind": "failure"}),
    )
    .unwrap();
    let rule_id = app
        .store
        .create_rule(a.project_id, &rule, now)
        .await
        .unwrap()
        .id;
    let key_id = app.store.list_keys(a.project_id).await.unwrap()[0].id;
    let secrets = [
        a.key.clone(),
        a.key[..10].to_owned(),
        call_id.clone(),
        "secret-scenario".to_owned(),
        "0199e72d-795e-7ffe".to_owned(),
        "secret-endpoint".to_owned(),
        "whsec_c2VjcmV0LXNpZ25pbmcta2V5".to_owned(),
        "secret-rule".to_owned(),
    ];

    let spec = serde_json::to_value(callgrade_server::openapi()).unwrap();
    let mut checked = 0;
    for (path, methods) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        let id_for = |p: &str| -> String {
            if p.starts_with("/api/v1/calls") {
                call_id.clone()
            } else if p.starts_with("/api/v1/runs") {
                run_id.to_string()
            } else if p.starts_with("/api/v1/results") {
                result["id"].to_string()
            } else if p.starts_with("/api/v1/scenarios") {
                scenario["id"].to_string()
            } else if p.starts_with("/api/v1/metrics") {
                metric_id.to_string()
            } else if p.starts_with("/api/v1/deliveries") {
                delivery_id.to_string()
            } else if p.starts_with("/api/v1/agents") {
                a.agent_id.to_string()
            } else if p.starts_with("/api/v1/webhook-endpoints") {
                endpoint.id.to_string()
            } else if p.starts_with("/api/v1/webhook-deliveries") {
                outbound_id.to_string()
            } else if p.starts_with("/api/v1/keys") {
                key_id.to_string()
            } else if p.starts_with("/api/v1/alert-rules") {
                rule_id.to_string()
            } else if p.starts_with("/api/v1/vendor-secrets") {
                // A vendor names no one's resource: B's key reaches B's secret only (below).
                "vapi".to_owned()
            } else {
                panic!("no id for {p}")
            }
        };
        let concrete = if path.contains('{') {
            let open = path.find('{').unwrap();
            let close = path.find('}').unwrap();
            format!("{}{}{}", &path[..open], id_for(path), &path[close + 1..])
        } else {
            path.clone()
        };
        for method in methods.as_object().unwrap().keys() {
            // Bodies that would be valid if the ids were B's.
            let body = json!({
                "call_id": call_id, "agent_id": a.agent_id, "scenario_ids": [scenario["id"]],
                "name": "x", "kind": "builtin", "config": {"builtin": "turns"}, "direction": "inbound",
                "rules": [], "metrics": [], "metric": {"name": "t", "kind": "builtin", "config": {"builtin": "turns"}},
            });
            let req = app
                .client
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{concrete}", app.base),
                )
                .bearer_auth(&b.key);
            let req = if method == "get" || method == "delete" {
                req
            } else {
                req.json(&body)
            };
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            // A 404 may repeat the id it was asked for; it must reveal nothing else of A's.
            let asked = format!("{concrete} {body}");
            for s in secrets.iter().filter(|s| !asked.contains(s.as_str())) {
                assert!(
                    !text.contains(s.as_str()),
                    "{method} {concrete} with B's key leaked {s:?}: {text}"
                );
            }
            if path.contains('{') && !path.starts_with("/api/v1/vendor-secrets")
                || path.ends_with("/try")
                || path.ends_with("/results")
                || path.ends_with("/scenarios") && method == "post"
            {
                assert!(
                    matches!(status, 400 | 404),
                    "{method} {concrete} with B's key: {status} {text}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} routes checked");

    // A's data is intact.
    let (status, _) = app.api(&a.key, "/api/v1/project").await;
    assert_eq!(status, 200, "B could not revoke or rotate A's key");
    let kept = app.store.endpoint(a.project_id, endpoint.id).await.unwrap();
    assert!(
        kept.is_some_and(|e| e.enabled),
        "B could not touch A's endpoint"
    );
    assert!(app
        .store
        .rule(a.project_id, rule_id)
        .await
        .unwrap()
        .is_some());
    let (status, run) = app.api(&a.key, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(
        (status, run["status"].as_str()),
        (200, Some("pending")),
        "{run}"
    );
    assert!(app
        .store
        .metric(a.project_id, metric_id)
        .await
        .unwrap()
        .is_some());
    let (status, _) = app.api(&a.key, &format!("/api/v1/calls/{call_id}")).await;
    assert_eq!(status, 200);
    let vapi = callgrade_core::Vendor::Vapi;
    assert_eq!(
        app.store.vendor_secret(a.project_id, vapi).await.unwrap(),
        None
    );
}
