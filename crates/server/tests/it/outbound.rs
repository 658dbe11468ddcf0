//! Outbound webhooks against a receiver on port 0: events signed per Standard Webhooks (checked
//! here with an implementation of our own, not the server's), the delivery log, retries on the
//! server's clock (moved by hand), giving up and disabling, replays, secret rotation with an
//! overlap, the forgery guard, and runs and results announced.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use callgrade_app::Clock;
use chrono::TimeDelta;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;

/// What the receiver answers, request by request; 200 once the script is done.
#[derive(Clone, Copy)]
enum Reply {
    Status(u16),
    RetryAfter(&'static str),
    /// Answers only after this long (past the server's timeout).
    Hang(Duration),
}

#[derive(Clone, Default)]
pub(crate) struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

impl Receiver {
    fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    pub(crate) fn got(&self) -> Vec<(HeaderMap, Value)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(h, b)| (h.clone(), serde_json::from_str(b).unwrap()))
            .collect()
    }

    /// The events received of one type.
    pub(crate) fn of_type(&self, kind: &str) -> Vec<(HeaderMap, Value)> {
        self.got()
            .into_iter()
            .filter(|(_, b)| b["type"] == kind)
            .collect()
    }

    fn raw(&self, i: usize) -> (HeaderMap, String) {
        self.got.lock().unwrap()[i].clone()
    }
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: String) -> Response {
    r.got.lock().unwrap().push((headers, body));
    let reply = r.script.lock().unwrap().pop_front();
    match reply {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(Reply::Status(s)) => {
            (StatusCode::from_u16(s).unwrap(), "receiver says no").into_response()
        }
        Some(Reply::RetryAfter(secs)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs)],
            "slow down",
        )
            .into_response(),
        Some(Reply::Hang(d)) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
    }
}

pub(crate) async fn receiver() -> (String, Receiver) {
    let r = Receiver::default();
    let router = Router::new()
        .route("/hook", post(hook))
        .route(
            "/to-private",
            post(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [("location", "http://10.255.255.1/hook")],
                )
            }),
        )
        .with_state(r.clone());
    (crate::fakes::serve(router).await, r)
}

/// Loopback allowed (the receiver is there), a short timeout, a quick poll.
pub(crate) fn settings() -> callgrade_server::Settings {
    let mut s = callgrade_server::Settings::default();
    s.app.outbound.policy.allowed = vec!["127.0.0.1/32".parse().unwrap()];
    s.app.outbound.policy.timeout = Duration::from_millis(400);
    s.app.outbound.poll = Duration::from_millis(20);
    s
}

/// Standard Webhooks' verification, written here from the specification: some `v1,` signature
/// in the header is the HMAC-SHA256 of `id.timestamp.body` under the secret's base64 key.
fn verifies(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let id = headers["webhook-id"].to_str().unwrap();
    let ts = headers["webhook-timestamp"].to_str().unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

pub(crate) async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn call_api(
    app: &TestApp,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", app.base);
    let request = match method {
        "POST" => app.client.post(url),
        "PATCH" => app.client.patch(url),
        "PUT" => app.client.put(url),
        "DELETE" => app.client.delete(url),
        _ => app.client.get(url),
    };
    let request = request.bearer_auth(key);
    let request = match body {
        Some(b) => request.json(&b),
        None => request,
    };
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub(crate) async fn endpoint(
    app: &TestApp,
    t: &Tenant,
    url: &str,
    events: &[&str],
) -> (i64, String) {
    let (status, created) = call_api(
        app,
        &t.key,
        "POST",
        "/api/v1/webhook-endpoints",
        Some(json!({"url": url, "events": events, "description": "ops pipeline"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (created["id"].as_i64().unwrap(), secret)
}

async fn delivery_of(app: &TestApp, t: &Tenant, endpoint: i64) -> Value {
    let (status, page) = call_api(
        app,
        &t.key,
        "GET",
        &format!("/api/v1/webhook-deliveries?endpoint_id={endpoint}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let id = page["data"][0]["id"].as_i64().expect("a delivery");
    let (status, detail) = call_api(
        app,
        &t.key,
        "GET",
        &format!("/api/v1/webhook-deliveries/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{detail}");
    detail
}

#[tokio::test]
async fn events_arrive_signed_and_every_attempt_is_logged() {
    let app = TestApp::spawn_with(settings()).await;
    let t = app.tenant("outbound").await;
    let (base, received) = receiver().await;
    let (id, secret) = endpoint(
        &app,
        &t,
        &format!("{base}/hook"),
        &["call.received", "call.evaluated", "delivery.rejected"],
    )
    .await;

    // The list and the endpoint never show the secret again.
    let (_, list) = call_api(&app, &t.key, "GET", "/api/v1/webhook-endpoints", None).await;
    assert_eq!(list["data"][0]["id"], id);
    assert_eq!(
        list["data"][0]["events"],
        json!(["call.received", "call.evaluated", "delivery.rejected"])
    );
    assert!(!list.to_string().contains(&secret));

    let r = app
        .send(&t.key, &batch(t.agent_id, vec![call("c-1")]))
        .await;
    assert_eq!(r.status(), 202);
    wait_for("call.received and call.evaluated", || async {
        !received.of_type("call.received").is_empty()
            && !received.of_type("call.evaluated").is_empty()
    })
    .await;
    let (headers, event) = received.of_type("call.received").remove(0);
    assert_eq!(event["data"]["id"], "c-1");
    assert_eq!(event["data"]["status"], "created");
    assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers["webhook-id"].to_str().unwrap().starts_with("msg_"));
    assert!(headers.get("x-cekura-secret").is_none(), "not asked for");
    let (_, evaluated) = received.of_type("call.evaluated").remove(0);
    assert_eq!(evaluated["data"]["id"], "c-1");
    assert_eq!(evaluated["data"]["agent_id"], t.agent_id);
    assert!(evaluated["data"]["metrics"].as_array().unwrap().len() > 5);
    assert!(evaluated["data"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "call_duration" && m["value"].is_number()));
    // Every body verifies, byte for byte as sent, with the secret shown at creation.
    for i in 0..received.got().len() {
        let (headers, body) = received.raw(i);
        assert!(
            verifies(&secret, &headers, &body),
            "request {i} does not verify"
        );
        let mut tampered = body.clone();
        tampered.push(' ');
        assert!(!verifies(&secret, &headers, &tampered));
    }

    // A refused batch is an event too, without the body.
    let r = app
        .send(&t.key, &json!({"agent_id": t.agent_id, "calls": [{}]}))
        .await;
    assert_eq!(r.status(), 400);
    wait_for("delivery.rejected", || async {
        !received.of_type("delivery.rejected").is_empty()
    })
    .await;
    let (_, rejected) = received.of_type("delivery.rejected").remove(0);
    assert_eq!(rejected["data"]["status"], 400);
    assert_eq!(rejected["data"]["error"], "invalid_payload");
    assert!(rejected["data"]["error_count"].as_u64().unwrap() >= 1);

    // The log: each delivery with its attempts, their headers without any secret.
    let detail = delivery_of(&app, &t, id).await;
    assert_eq!(detail["status"], "delivered");
    assert_eq!(detail["attempts"].as_array().unwrap().len(), 1);
    let attempt = &detail["attempts"][0];
    assert_eq!(attempt["status"], 204);
    assert!(attempt["request_headers"]["webhook-signature"]
        .as_str()
        .unwrap()
        .starts_with("v1,"));
    assert!(!detail.to_string().contains(&secret));

    // A test event on demand, to this endpoint only; with Cekura's header once asked for.
    let (status, patched) = call_api(
        &app,
        &t.key,
        "PATCH",
        &format!("/api/v1/webhook-endpoints/{id}"),
        Some(json!({"cekura_secret_header": true})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    let (status, queued) = call_api(
        &app,
        &t.key,
        "POST",
        &format!("/api/v1/webhook-endpoints/{id}/test"),
        None,
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["type"], "test");
    wait_for("the test event", || async {
        !received.of_type("test").is_empty()
    })
    .await;
    let (headers, _) = received.of_type("test").remove(0);
    assert_eq!(headers["x-cekura-secret"], secret.as_str());
    let detail = delivery_of(&app, &t, id).await;
    assert!(
        detail["attempts"][0]["request_headers"]
            .get("x-cekura-secret")
            .is_none(),
        "the log keeps no secret: {detail}"
    );

    // Mistakes are named; another project sees nothing.
    let (status, err) = call_api(
        &app,
        &t.key,
        "POST",
        "/api/v1/webhook-endpoints",
        Some(json!({"url": "ftp://x", "events": ["call.exploded"]})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_paths(&err), ["events[0]", "url"]);
    let other = app.tenant("other").await;
    let (status, _) = call_api(
        &app,
        &other.key,
        "GET",
        &format!("/api/v1/webhook-endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call_api(
        &app,
        &t.key,
        "DELETE",
        &format!("/api/v1/webhook-endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call_api(
        &app,
        &t.key,
        "GET",
        &format!("/api/v1/webhook-endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// Moves the server's clock past the pending delivery's next attempt and waits for it.
async fn next_attempt(app: &TestApp, t: &Tenant, endpoint: i64, made: usize) -> Value {
    let detail = delivery_of(app, t, endpoint).await;
    let due = detail["next_attempt_at"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .expect("a next attempt");
    app.clock
        .set(due.with_timezone(&chrono::Utc) + TimeDelta::milliseconds(1));
    delivery_when(app, t, endpoint, &format!("attempt {}", made + 1), |d| {
        d["attempts"].as_array().unwrap().len() > made && d["status"] != "sending"
    })
    .await
}

/// The endpoint's latest delivery once `ready` holds of it.
async fn delivery_when(
    app: &TestApp,
    t: &Tenant,
    endpoint: i64,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let detail = delivery_of(app, t, endpoint).await;
        if ready(&detail) {
            return detail;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn waited_ms(detail: &Value) -> i64 {
    let attempts = detail["attempts"].as_array().unwrap();
    let last = chrono::DateTime::parse_from_rfc3339(
        attempts.last().unwrap()["attempted_at"].as_str().unwrap(),
    )
    .unwrap();
    let due =
        chrono::DateTime::parse_from_rfc3339(detail["next_attempt_at"].as_str().unwrap()).unwrap();
    (due - last).num_milliseconds()
}

#[tokio::test]
async fn failures_are_retried_on_the_schedule_then_given_up_disabled_and_replayed() {
    let app = TestApp::spawn_with(settings()).await;
    let t = app.tenant("flaky").await;
    let (base, received) = receiver().await;
    received.script([
        Reply::RetryAfter("60"),
        Reply::Status(500),
        Reply::Hang(Duration::from_secs(2)),
        Reply::Status(503),
        Reply::Status(502),
        Reply::Status(500),
        Reply::Status(500),
        Reply::Status(500),
    ]);
    let (id, secret) = endpoint(&app, &t, &format!("{base}/hook"), &["call.received"]).await;
    let (status, _) = call_api(
        &app,
        &t.key,
        "POST",
        &format!("/api/v1/webhook-endpoints/{id}/test"),
        None,
    )
    .await;
    assert_eq!(status, 202);

    // 429 with Retry-After: 60 s, more than the schedule's 5 s, is honoured (±10% jitter).
    let detail = delivery_when(&app, &t, id, "the first attempt", |d| {
        d["attempts"].as_array().unwrap().len() == 1 && d["status"] == "pending"
    })
    .await;
    assert_eq!(detail["attempts"][0]["status"], 429);
    assert_eq!(detail["attempts"][0]["response"], "slow down");
    assert!((54_000..=66_000).contains(&waited_ms(&detail)), "{detail}");

    // 500: the schedule's second wait, 5 minutes.
    let detail = next_attempt(&app, &t, id, 1).await;
    assert_eq!(detail["last_status"], 500);
    assert!(
        (270_000..=330_000).contains(&waited_ms(&detail)),
        "{detail}"
    );

    // No answer within the timeout: retried, 30 minutes on.
    let detail = next_attempt(&app, &t, id, 2).await;
    assert_eq!(detail["status"], "pending");
    assert!(detail["attempts"][2]["status"].is_null());
    assert!(
        detail["last_error"].as_str().unwrap().contains("timed out"),
        "{detail}"
    );
    assert!(
        (1_620_000..=1_980_000).contains(&waited_ms(&detail)),
        "{detail}"
    );

    // Five more failures and the schedule (about 27.6 h) is spent: failed, and the endpoint,
    // failing for more than a day, is disabled with the reason.
    let mut detail = detail;
    for made in 3..8 {
        detail = next_attempt(&app, &t, id, made).await;
    }
    assert_eq!(detail["status"], "failed", "{detail}");
    assert_eq!(detail["attempts"].as_array().unwrap().len(), 8);
    let (_, ep) = call_api(
        &app,
        &t.key,
        "GET",
        &format!("/api/v1/webhook-endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(ep["enabled"], false);
    assert!(
        ep["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("every attempt has failed since"),
        "{ep}"
    );
    // While disabled, nothing new is queued for it.
    let r = app
        .send(&t.key, &batch(t.agent_id, vec![call("while-off")]))
        .await;
    assert_eq!(r.status(), 202);

    let test = format!("/api/v1/webhook-endpoints/{id}/test");
    let (status, err) = call_api(&app, &t.key, "POST", &test, None).await;
    assert_eq!(status, 409, "a disabled endpoint gets no test: {err}");

    // Replayed while disabled, it waits (a second replay is refused while it does); enabled
    // again, it is delivered, with the same webhook-id as every attempt before.
    let delivery = detail["id"].as_i64().unwrap();
    let replay = format!("/api/v1/webhook-deliveries/{delivery}/replay");
    let (status, again) = call_api(&app, &t.key, "POST", &replay, None).await;
    assert_eq!(
        (status, again["status"].as_str()),
        (202, Some("pending")),
        "{again}"
    );
    let (status, err) = call_api(&app, &t.key, "POST", &replay, None).await;
    assert_eq!(status, 409, "{err}");
    let (status, ep) = call_api(
        &app,
        &t.key,
        "PATCH",
        &format!("/api/v1/webhook-endpoints/{id}"),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(ep["disabled_reason"].is_null() && ep["failing_since"].is_null());
    wait_for("the replay", || async {
        delivery_of(&app, &t, id).await["status"] == "delivered"
    })
    .await;
    let got = received.got();
    assert_eq!(got.len(), 9, "eight attempts and the replay");
    assert!(got
        .iter()
        .all(|(h, _)| h["webhook-id"] == got[0].0["webhook-id"]));
    assert!(
        got.iter().all(|(_, b)| b["type"] == "test"),
        "nothing queued while disabled"
    );
    let (h, b) = received.raw(8);
    assert!(verifies(&secret, &h, &b));
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_for_the_overlap() {
    let app = TestApp::spawn_with(settings()).await;
    let t = app.tenant("rotating").await;
    let (base, received) = receiver().await;
    let (id, old) = endpoint(&app, &t, &format!("{base}/hook"), &["call.received"]).await;
    let (status, rotated) = call_api(
        &app,
        &t.key,
        "POST",
        &format!("/api/v1/webhook-endpoints/{id}/rotate-secret?overlap_minutes=60"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated["previous_secret_until"].is_string());

    let test = format!("/api/v1/webhook-endpoints/{id}/test");
    call_api(&app, &t.key, "POST", &test, None).await;
    wait_for("the first test", || async { received.got().len() == 1 }).await;
    let (h, b) = received.raw(0);
    assert_eq!(
        h["webhook-signature"].to_str().unwrap().split(' ').count(),
        2
    );
    assert!(verifies(&old, &h, &b) && verifies(&new, &h, &b));

    // Past the overlap, only the new secret signs.
    app.clock.advance(TimeDelta::minutes(61));
    call_api(&app, &t.key, "POST", &test, None).await;
    wait_for("the second test", || async { received.got().len() == 2 }).await;
    let (h, b) = received.raw(1);
    assert!(verifies(&new, &h, &b) && !verifies(&old, &h, &b));

    // Without an overlap the old secret stops at once; an overlap over a week is refused.
    let (_, rotated) = call_api(
        &app,
        &t.key,
        "POST",
        &format!("/api/v1/webhook-endpoints/{id}/rotate-secret?overlap_minutes=0"),
        None,
    )
    .await;
    let newest = rotated["secret"].as_str().unwrap().to_owned();
    call_api(&app, &t.key, "POST", &test, None).await;
    wait_for("the third test", || async { received.got().len() == 3 }).await;
    let (h, b) = received.raw(2);
    assert!(verifies(&newest, &h, &b) && !verifies(&new, &h, &b));
    let (status, err) = call_api(
        &app,
        &t.key,
        "POST",
        &format!("/api/v1/webhook-endpoints/{id}/rotate-secret?overlap_minutes=20000"),
        None,
    )
    .await;
    assert_eq!(status, 400, "{err}");
}

#[tokio::test]
async fn private_addresses_and_redirects_to_them_are_refused() {
    // Default settings: only public addresses, loopback included in the refusal.
    let app = TestApp::spawn().await;
    let t = app.tenant("guarded").await;
    let (base, received) = receiver().await;
    for url in [
        format!("{base}/hook"),
        "http://10.1.2.3/hook".to_owned(),
        "http://[::1]/x".to_owned(),
    ] {
        let (status, err) = call_api(
            &app,
            &t.key,
            "POST",
            "/api/v1/webhook-endpoints",
            Some(json!({"url": url, "events": ["call.received"]})),
        )
        .await;
        assert_eq!(status, 400, "{url}: {err}");
        assert_eq!(error_paths(&err), ["url"]);
        assert!(
            err.to_string().contains("--allow-webhooks-to"),
            "names the setting: {err}"
        );
    }

    // Loopback allowed, but a redirect to a private address is refused and not retried.
    let app = TestApp::spawn_with(settings()).await;
    let t = app.tenant("redirected").await;
    let (id, _) = endpoint(&app, &t, &format!("{base}/to-private"), &["call.received"]).await;
    call_api(
        &app,
        &t.key,
        "POST",
        &format!("/api/v1/webhook-endpoints/{id}/test"),
        None,
    )
    .await;
    wait_for("the refusal", || async {
        delivery_of(&app, &t, id).await["status"] == "failed"
    })
    .await;
    let detail = delivery_of(&app, &t, id).await;
    assert_eq!(detail["attempts"].as_array().unwrap().len(), 1);
    assert!(
        detail["last_error"]
            .as_str()
            .unwrap()
            .contains("10.255.255.1"),
        "{detail}"
    );
    assert!(received.got().is_empty());

    // Replaying every failed delivery since a time tries it again (and it fails again).
    let since = (app.clock.now() - TimeDelta::hours(1)).to_rfc3339();
    let (status, replayed) = call_api(
        &app,
        &t.key,
        "POST",
        "/api/v1/webhook-deliveries/replay-failed",
        Some(json!({"since": since, "endpoint_id": id})),
    )
    .await;
    assert_eq!(
        (status, replayed["replayed"].as_u64()),
        (202, Some(1)),
        "{replayed}"
    );
    wait_for("the replayed refusal", || async {
        let d = delivery_of(&app, &t, id).await;
        d["status"] == "failed" && d["attempts"].as_array().unwrap().len() == 2
    })
    .await;
    let (status, replayed) = call_api(
        &app,
        &t.key,
        "POST",
        "/api/v1/webhook-deliveries/replay-failed",
        Some(json!({"since": (app.clock.now() + TimeDelta::hours(1)).to_rfc3339()})),
    )
    .await;
    assert_eq!((status, replayed["replayed"].as_u64()), (202, Some(0)));
}

#[tokio::test]
async fn finished_runs_and_results_are_announced_once() {
    let app = TestApp::spawn_with(settings()).await;
    // The run is made just before its call (09:22:21 → 09:24:30), so it matches in time.
    app.clock.set("2025-10-15T09:20:00Z".parse().unwrap());
    let t = app.tenant("announced").await;
    let (base, received) = receiver().await;
    endpoint(
        &app,
        &t,
        &format!("{base}/hook"),
        &["run.completed", "result.completed"],
    )
    .await;
    let (status, scenario) = call_api(
        &app,
        &t.key,
        "POST",
        "/api/v1/scenarios",
        Some(
            json!({"agent_id": t.agent_id, "name": "refund", "direction": "inbound",
                    "tester_phone_number": "+14155550100"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{scenario}");
    let (status, result) = call_api(
        &app,
        &t.key,
        "POST",
        "/api/v1/results",
        Some(json!({"agent_id": t.agent_id, "scenario_ids": [scenario["id"]], "name": "nightly"})),
    )
    .await;
    assert_eq!(status, 201, "{result}");
    let run_id = result["runs"][0]["id"].as_i64().unwrap();
    let mut c = call("run-call");
    c["run_id"] = json!(run_id);
    let r = app.send(&t.key, &batch(t.agent_id, vec![c])).await;
    assert_eq!(r.status(), 202);
    wait_for("result.completed", || async {
        !received.of_type("result.completed").is_empty()
    })
    .await;
    let (_, run) = received.of_type("run.completed").remove(0);
    assert_eq!(run["data"]["id"], run_id);
    assert_eq!(run["data"]["status"], "completed");
    let (_, done) = received.of_type("result.completed").remove(0);
    let data = &done["data"];
    assert_eq!(data["id"], result["id"]);
    assert_eq!(data["name"], "nightly");
    assert_eq!(data["status"], "completed");
    assert_eq!(data["agent"], t.agent_id);
    let run_entry = &data["runs"][run_id.to_string()];
    assert_eq!(run_entry["scenario"]["name"], "refund");
    assert!(run_entry["transcript_object"].as_array().unwrap().len() >= 2);
    assert!(!run_entry["evaluation"]["metrics"]
        .as_array()
        .unwrap()
        .is_empty());
    let rate = data["success_rate"].as_f64().unwrap();
    assert!(rate == 0.0 || rate == 100.0, "{data}");

    // Announced once: later rounds find nothing new.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(received.of_type("run.completed").len(), 1);
    assert_eq!(received.of_type("result.completed").len(), 1);
}

/// The dashboard's Webhooks page: an endpoint added from the form shows its secret once and
/// keeps what was typed on an error; its test event, attempts and replay are there.
#[tokio::test]
async fn the_dashboard_manages_endpoints_and_replays() {
    let app = TestApp::spawn_with(settings()).await;
    let t = app.tenant("dashboard-hooks").await;
    let (base, received) = receiver().await;
    let session = crate::dashboard::Session::start(&app).await;
    let page_url = format!("/projects/{}/webhooks", t.project_id);
    let html = session.page(&page_url).await;
    assert!(html.contains("No endpoint yet"), "{html}");
    let csrf = crate::dashboard::csrf_of(&html);
    let post = |path: String, form: Vec<(&'static str, String)>| {
        let (session, url) = (&session, format!("{page_url}{path}"));
        async move { session.submit(&url, &form).await }
    };

    // A private address is refused with the reason; what was typed stays.
    let (status, html) = post(
        "/endpoints".into(),
        vec![
            ("_csrf", csrf.clone()),
            ("url", "http://10.9.9.9/hook".into()),
            ("event:run.completed", "on".into()),
            ("description", "kept on error".into()),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Not saved") && html.contains("10.9.9.9"),
        "{html}"
    );
    assert!(html.contains("kept on error"));
    assert!(
        html.contains(r#"name="event:run.completed" checked"#),
        "{html}"
    );

    let (status, html) = post(
        "/endpoints".into(),
        vec![
            ("_csrf", csrf.clone()),
            ("url", format!("{base}/hook")),
            ("event:call.received", "on".into()),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let secret = html
        .split(r#"<pre id="secret">"#)
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .expect("the secret, shown once")
        .to_owned();
    assert!(secret.starts_with("whsec_"));
    let html = session.page(&page_url).await;
    assert!(!html.contains(&secret), "shown once only");
    let endpoint = app.store.list_endpoints(t.project_id).await.unwrap()[0].id;

    let (status, html) = post(
        format!("/endpoints/{endpoint}/test"),
        vec![("_csrf", csrf.clone())],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("A test event is on its way"));
    wait_for("the test", || async { received.got().len() == 1 }).await;
    let (h, b) = received.raw(0);
    assert!(verifies(&secret, &h, &b));
    let delivery = delivery_of(&app, &t, endpoint).await["id"]
        .as_i64()
        .unwrap();
    wait_for("delivered", || async {
        delivery_of(&app, &t, endpoint).await["status"] == "delivered"
    })
    .await;
    let html = session
        .page(&format!("{page_url}/deliveries/{delivery}"))
        .await;
    assert!(
        html.contains("delivered") && html.contains("204") && html.contains("webhook-signature"),
        "{html}"
    );
    let (status, _) = post(
        format!("/deliveries/{delivery}/replay"),
        vec![("_csrf", csrf.clone())],
    )
    .await;
    assert_eq!(status, 303);
    wait_for("the replay", || async { received.got().len() == 2 }).await;

    // Disable, rotate, delete.
    let (_, html) = post(
        format!("/endpoints/{endpoint}/toggle"),
        vec![("_csrf", csrf.clone())],
    )
    .await;
    assert!(html.contains("is disabled"), "{html}");
    let (_, html) = post(
        format!("/endpoints/{endpoint}/rotate"),
        vec![("_csrf", csrf.clone())],
    )
    .await;
    assert!(html.contains(r#"<pre id="secret">whsec_"#) && !html.contains(&secret));
    let (status, _) = post(
        format!("/endpoints/{endpoint}/delete"),
        vec![("_csrf", "forged".into())],
    )
    .await;
    assert_eq!(status, 403, "a forged form changes nothing");
    let (_, html) = post(
        format!("/endpoints/{endpoint}/delete"),
        vec![("_csrf", csrf.clone())],
    )
    .await;
    assert!(html.contains("No endpoint yet"), "{html}");
}

/// A series' value in a parsed scrape: the sample of `name` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref buckets) => {
                buckets.last().map_or(0.0, |b| b.count)
            }
            _ => 0.0,
        })
        .sum()
}

async fn scrape(app: &TestApp, token: Option<&str>) -> (u16, Option<prometheus_parse::Scrape>) {
    let mut request = app.get("/metrics");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    (200, Some(prometheus_parse::Scrape::parse(lines).unwrap()))
}

/// `/metrics` parses with a Prometheus text-format parser, and its series move with traffic:
/// requests by route template, calls stored and refused per project, the queue, evaluation
/// times and webhook attempts.
#[tokio::test]
async fn prometheus_metrics_move_with_traffic() {
    let mut s = settings();
    s.metrics_token = Some("scrape-me".into());
    let app = TestApp::spawn_with(s).await;
    let t = app.tenant("scraped").await;
    assert_eq!(scrape(&app, None).await.0, 401);
    assert_eq!(scrape(&app, Some("wrong")).await.0, 401);
    let before = scrape(&app, Some("scrape-me")).await.1.unwrap();
    let project = t.project_id.to_string();
    assert_eq!(
        sample(
            &before,
            "callgrade_calls_ingested_total",
            &[("project", &project)]
        ),
        0.0
    );

    let (base, received) = receiver().await;
    endpoint(&app, &t, &format!("{base}/hook"), &["call.received"]).await;
    let r = app
        .send(&t.key, &batch(t.agent_id, vec![call("m-1"), call("m-2")]))
        .await;
    assert_eq!(r.status(), 202);
    let r = app
        .send(&t.key, &json!({"agent_id": t.agent_id, "calls": [{}]}))
        .await;
    assert_eq!(r.status(), 400);
    app.settle().await;
    wait_for("two events", || async { received.got().len() == 2 }).await;
    wait_for("the attempts recorded", || async {
        let s = scrape(&app, Some("scrape-me")).await.1.unwrap();
        sample(
            &s,
            "callgrade_webhook_attempts_total",
            &[("outcome", "delivered")],
        ) == 2.0
    })
    .await;

    let after = scrape(&app, Some("scrape-me")).await.1.unwrap();
    assert_eq!(
        sample(
            &after,
            "callgrade_calls_ingested_total",
            &[("project", &project)]
        ),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            "callgrade_deliveries_rejected_total",
            &[("project", &project), ("error", "invalid_payload")]
        ),
        1.0
    );
    let webhook = [
        (
            "route",
            "/test_framework/custom-provider-transcript-webhook/",
        ),
        ("method", "POST"),
    ];
    assert_eq!(
        sample(
            &after,
            "callgrade_http_requests_total",
            &[webhook[0], webhook[1], ("status", "202")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "callgrade_http_requests_total",
            &[webhook[0], webhook[1], ("status", "400")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "callgrade_evaluation_duration_seconds",
            &[("outcome", "done")]
        ),
        2.0,
        "each call's evaluation timed"
    );
    // The database's gauges, read on the pool: waited for, not raced.
    wait_for("the database's gauges", || async {
        let s = scrape(&app, Some("scrape-me")).await.1.unwrap();
        sample(&s, "callgrade_jobs", &[("state", "done")]) == 2.0
            && sample(
                &s,
                "callgrade_webhook_deliveries",
                &[("status", "delivered")],
            ) == 2.0
    })
    .await;
    // Paths with ids are counted under their template, never one series per id.
    assert_eq!(app.api(&t.key, "/api/v1/calls/nope").await.0, 404);
    let last = scrape(&app, Some("scrape-me")).await.1.unwrap();
    assert_eq!(
        sample(
            &last,
            "callgrade_http_requests_total",
            &[("route", "/api/v1/calls/:call_id"), ("status", "404")]
        ),
        1.0
    );
}
