//! Evaluation end to end: builtins after ingest, judges against a fake OpenAI-compatible server
//! on port 0, scripts, the rubric, re-evaluation and the summary.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;

/// How the fake judge answers its next requests.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ok,
    Malformed,
    /// 429 with Retry-After: 1 once, then Ok.
    RateLimitedOnce,
    /// Sleeps past the client's timeout.
    Slow,
}

#[derive(Clone)]
struct FakeJudge {
    mode: Arc<Mutex<Mode>>,
    calls: Arc<AtomicUsize>,
    last_auth: Arc<Mutex<Option<String>>>,
    base: String,
}

impl FakeJudge {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Self {
            mode: Arc::new(Mutex::new(Mode::Ok)),
            calls: Arc::new(AtomicUsize::new(0)),
            last_auth: Arc::new(Mutex::new(None)),
            base: format!("http://{}/v1", listener.local_addr().unwrap()),
        };
        let app = Router::new()
            .route("/v1/chat/completions", axum::routing::post(answer))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A verdict of the type the request's schema asks for.
async fn answer(
    State(fake): State<FakeJudge>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    fake.calls.fetch_add(1, Ordering::SeqCst);
    *fake.last_auth.lock().unwrap() = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let mode = *fake.mode.lock().unwrap();
    match mode {
        Mode::RateLimitedOnce => {
            fake.set(Mode::Ok);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "slow down",
            )
                .into_response();
        }
        Mode::Slow => tokio::time::sleep(Duration::from_secs(3)).await,
        _ => {}
    }
    let verdict_schema = &req["response_format"]["json_schema"]["schema"]["properties"]["verdict"];
    let verdict = match verdict_schema["type"].as_str() {
        Some("boolean") => json!(true),
        Some("integer") => json!(4),
        Some("number") => json!(1.5),
        _ => verdict_schema["enum"][0].clone(),
    };
    let prompt = req["messages"][1]["content"].as_str().unwrap_or_default();
    let content = if mode == Mode::Malformed {
        "I think it went fine".to_owned()
    } else {
        json!({"verdict": verdict, "explanation": format!("judged {} chars", prompt.len()), "deviations": []}).to_string()
    };
    Json(json!({
        "model": "fake-judge-1",
        "choices": [{"message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }))
    .into_response()
}

/// Starts one run of a new inbound scenario at 09:20 and moves the clock to 09:25, inside its
/// listening window; gives the run's id.
async fn start_run(app: &TestApp, t: &Tenant, scenario: &str) -> i64 {
    app.clock.set("2025-10-15T09:20:00Z".parse().unwrap());
    let (_, scenario) = post(app, &t.key, "/api/v1/scenarios", json!({
        "agent_id": t.agent_id, "name": scenario, "direction": "inbound", "tester_phone_number": "+14155551234"
    })).await;
    let (_, result) = post(
        app,
        &t.key,
        "/api/v1/results",
        json!({"agent_id": t.agent_id, "scenario_ids": [scenario["id"]]}),
    )
    .await;
    app.clock.set("2025-10-15T09:25:00Z".parse().unwrap());
    result["runs"][0]["id"].as_i64().unwrap()
}

async fn evaluations_of(app: &TestApp, key: &str, call_id: &str) -> Value {
    app.settle().await;
    let (status, call) = app.api(key, &format!("/api/v1/calls/{call_id}")).await;
    assert_eq!(status, 200);
    call
}

fn evaluation<'a>(call: &'a Value, metric: &str) -> &'a Value {
    call["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["metric_name"] == metric)
        .unwrap_or_else(|| panic!("no {metric} evaluation in {}", call["evaluations"]))
}

async fn put(app: &TestApp, key: &str, path: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .put(format!("{}{path}", app.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    status_and_json(r).await
}

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> (u16, Value) {
    let r = app
        .post(path)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    status_and_json(r).await
}

async fn send_seed(app: &TestApp, t: &Tenant) -> String {
    let (status, receipt) =
        status_and_json(app.send(&t.key, &seed_two_calls(t.agent_id)).await).await;
    assert_eq!(status, 202);
    receipt["calls"][0]["call_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn builtin_metrics_are_evaluated_after_ingest() {
    let app = TestApp::spawn().await;
    let t = app.tenant("eval").await;
    let call_id = send_seed(&app, &t).await;
    let call = evaluations_of(&app, &t.key, &call_id).await;
    // The seed's first call: the user stops at …153012, the agent starts at …154442.
    let latency = evaluation(&call, "agent_latency");
    assert_eq!(latency["status"], "ok");
    assert!(
        (latency["value"].as_f64().unwrap() - 1.43).abs() < 1e-9,
        "{latency}"
    );
    assert_eq!(evaluation(&call, "call_duration")["value"], 128.442);
    assert_eq!(evaluation(&call, "user_interrupting_agent")["value"], 1.0);
    assert_eq!(evaluation(&call, "end_reason")["value"], "customer-hungup");
    assert_eq!(
        evaluation(&call, "silence_detected")["passed"],
        false,
        "{}",
        evaluation(&call, "silence_detected")
    );
    assert_eq!(call["success"], true, "no rubric rules: nothing fails");

    // A call without message times: timing metrics say why they cannot be computed.
    let mut bare = call_without_times();
    bare["id"] = json!("bare");
    let (_, receipt) =
        status_and_json(app.send(&t.key, &batch(t.agent_id, vec![bare])).await).await;
    let call = evaluations_of(
        &app,
        &t.key,
        receipt["calls"][0]["call_id"].as_str().unwrap(),
    )
    .await;
    let latency = evaluation(&call, "agent_latency");
    assert_eq!(latency["status"], "not_computable");
    assert_eq!(latency["value"], Value::Null);
    assert!(!latency["explanation"].as_str().unwrap().is_empty());
    assert_eq!(
        evaluation(&call, "turns")["status"],
        "ok",
        "turns need no times"
    );
}

fn call_without_times() -> Value {
    let mut c = call("x");
    c["messages"] = json!([
        {"role": "bot", "content": "Hello, how can I help?"},
        {"role": "user", "content": "My order is late."},
        {"role": "bot", "content": "Let me check that for you."}
    ]);
    c
}

#[tokio::test]
async fn judges_through_an_openai_compatible_endpoint() {
    let fake = FakeJudge::start().await;
    let app = TestApp::spawn().await;
    let t = app.tenant("judged").await;
    let (status, judge) = put(
        &app,
        &t.key,
        "/api/v1/judge",
        json!({"base_url": fake.base, "model": "fake-judge-1", "api_key": "sk-judge-secret"}),
    )
    .await;
    assert_eq!(status, 200, "{judge}");
    assert_eq!(judge["api_key_set"], true);
    assert!(
        !judge.to_string().contains("sk-judge-secret"),
        "the key is never shown"
    );
    let (status, metric) = post(
        &app,
        &t.key,
        "/api/v1/metrics",
        json!({
            "name": "sentiment", "kind": "llm_judge", "config": {"template": "sentiment"}
        }),
    )
    .await;
    assert_eq!(status, 201, "{metric}");
    assert_eq!(metric["output"], "enum");
    assert_eq!(
        metric["enum_values"],
        json!(["positive", "neutral", "negative"])
    );
    let (status, _) = post(&app, &t.key, "/api/v1/metrics", json!({
        "name": "greets", "kind": "llm_judge", "output": "binary",
        "description": "Does {{agent.name}} greet the caller? Note {{metadata.customer_name}} and {{metadata.missing}}.\n{{transcript}}"
    })).await;
    assert_eq!(status, 201);

    let call_id = send_seed(&app, &t).await;
    let call = evaluations_of(&app, &t.key, &call_id).await;
    let sentiment = evaluation(&call, "sentiment");
    assert_eq!(sentiment["status"], "ok", "{sentiment}");
    assert_eq!(sentiment["value"], "positive");
    assert_eq!(sentiment["details"]["model"], "fake-judge-1");
    assert_eq!(sentiment["details"]["usage"]["total_tokens"], 120);
    assert_eq!(
        sentiment["details"]["prompt_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert!(sentiment["explanation"]
        .as_str()
        .unwrap()
        .starts_with("judged"));
    let greets = evaluation(&call, "greets");
    assert_eq!(greets["value"], true);
    assert_eq!(
        greets["details"]["missing_variables"],
        json!(["metadata.missing"])
    );
    assert_eq!(
        fake.last_auth.lock().unwrap().as_deref(),
        Some("Bearer sk-judge-secret")
    );

    // Re-evaluating pays nothing: the verdicts come from the cache.
    let before = fake.calls();
    let (status, queued) = post(
        &app,
        &t.key,
        &format!("/api/v1/calls/{call_id}/evaluate"),
        json!({}),
    )
    .await;
    assert_eq!((status, queued["queued"].as_u64()), (202, Some(1)));
    let call = evaluations_of(&app, &t.key, &call_id).await;
    assert_eq!(fake.calls(), before);
    assert_eq!(evaluation(&call, "sentiment")["details"]["cached"], true);
}

#[tokio::test]
async fn judge_failures_malformed_rate_limited_timeout_and_unconfigured() {
    let fake = FakeJudge::start().await;
    let mut settings = callgrade_server::Settings::default();
    settings.app.judge.timeout = Duration::from_millis(500);
    settings.app.judge.max_retries = 1;
    settings.app.workers.max_attempts = 1;
    let app = TestApp::spawn_with(settings).await;
    let t = app.tenant("flaky").await;

    // No endpoint: judges are skipped with the reason; builtins still run.
    post(&app, &t.key, "/api/v1/metrics", json!({"name": "voicemail", "kind": "llm_judge", "config": {"template": "voicemail_detection"}})).await;
    let call_id = send_seed(&app, &t).await;
    let evaluated = evaluations_of(&app, &t.key, &call_id).await;
    let skipped = evaluation(&evaluated, "voicemail");
    assert_eq!(skipped["status"], "skipped");
    assert!(skipped["explanation"]
        .as_str()
        .unwrap()
        .contains("no judge endpoint"));
    assert_eq!(evaluation(&evaluated, "agent_latency")["status"], "ok");

    put(
        &app,
        &t.key,
        "/api/v1/judge",
        json!({"base_url": fake.base, "model": "fake-judge-1"}),
    )
    .await;

    // Malformed output: the metric's result is an error, the rest stands.
    fake.set(Mode::Malformed);
    post(
        &app,
        &t.key,
        &format!("/api/v1/calls/{call_id}/evaluate"),
        json!({}),
    )
    .await;
    let evaluated = evaluations_of(&app, &t.key, &call_id).await;
    let broken = evaluation(&evaluated, "voicemail");
    assert_eq!(broken["status"], "error");
    assert!(
        broken["explanation"]
            .as_str()
            .unwrap()
            .contains("malformed"),
        "{broken}"
    );

    // 429 with Retry-After: waited, retried, answered.
    fake.set(Mode::RateLimitedOnce);
    let before = fake.calls();
    let mut second = call("second");
    second["endedReason"] = json!("voicemail");
    let (_, receipt) =
        status_and_json(app.send(&t.key, &batch(t.agent_id, vec![second])).await).await;
    let evaluated = evaluations_of(
        &app,
        &t.key,
        receipt["calls"][0]["call_id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(evaluation(&evaluated, "voicemail")["status"], "ok");
    assert_eq!(fake.calls() - before, 2, "one 429, one success");

    // Timeouts: the job fails (here after its only attempt) and says why; nothing half-written.
    fake.set(Mode::Slow);
    let mut third = call("third");
    third["messages"][0]["content"] = json!("A new transcript, so no cached verdict applies.");
    let (_, receipt) =
        status_and_json(app.send(&t.key, &batch(t.agent_id, vec![third])).await).await;
    app.settle().await;
    let counts = app.store.job_counts(None).await.unwrap();
    assert_eq!(counts.dead, 1, "{counts:?}");
    let (_, stored) = app
        .api(
            &t.key,
            &format!(
                "/api/v1/calls/{}",
                receipt["calls"][0]["call_id"].as_str().unwrap()
            ),
        )
        .await;
    assert!(stored["evaluations"].as_array().unwrap().is_empty());
    assert_eq!(stored["success"], Value::Null);
}

/// A call whose evaluation outlasts the evaluation timeout fails its job with that reason (the
/// run waiting on it says so) instead of holding a worker: here a judge that answers in 3 s,
/// with a judge timeout that would wait, and an evaluation timeout of 1 s.
#[tokio::test]
async fn an_evaluation_past_its_deadline_fails_with_the_reason() {
    let fake = FakeJudge::start().await;
    fake.set(Mode::Slow);
    let mut settings = callgrade_server::Settings::default();
    settings.app.judge.timeout = Duration::from_secs(30);
    settings.app.workers.evaluation_timeout = Duration::from_secs(1);
    settings.app.workers.max_attempts = 1;
    let app = TestApp::spawn_with(settings).await;
    let t = app.tenant("deadline").await;
    put(
        &app,
        &t.key,
        "/api/v1/judge",
        json!({"base_url": fake.base, "model": "fake-judge-1"}),
    )
    .await;
    post(&app, &t.key, "/api/v1/metrics", json!({"name": "voicemail", "kind": "llm_judge", "config": {"template": "voicemail_detection"}})).await;
    let run_id = start_run(&app, &t, "slow judge").await;
    let mut c = call("judged-slowly");
    c["run_id"] = json!(run_id);
    let started = std::time::Instant::now();
    let (status, receipt) =
        status_and_json(app.send(&t.key, &batch(t.agent_id, vec![c])).await).await;
    assert_eq!(status, 202, "{receipt}");
    app.settle().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the worker waited for the judge"
    );
    assert_eq!(app.store.job_counts(None).await.unwrap().dead, 1);
    let (_, run) = app.api(&t.key, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(run["status"], "failed", "{run}");
    let reason = run["error_message"].as_str().unwrap();
    assert!(reason.contains("evaluation timeout (1 s)"), "{reason}");
}

#[tokio::test]
async fn scripts_rubric_and_runs_pass_or_fail_end_to_end() {
    let app = TestApp::spawn().await;
    let t = app.tenant("e2e").await;
    // A script metric, and a runaway one that must not stall the worker.
    let (status, m) = post(&app, &t.key, "/api/v1/metrics", json!({
        "name": "mentions_refund", "kind": "script", "output": "binary",
        "config": {"script": "result = data.transcript.contains(\"refund\"); explanation = `turns: ${data.metrics.turns}`;"}
    })).await;
    assert_eq!(status, 201, "{m}");
    let (_, runaway) = post(&app, &t.key, "/api/v1/metrics", json!({
        "name": "runaway", "kind": "script", "output": "numeric", "config": {"script": "loop {}"}
    })).await;
    // Rubric: latency at most 1 s, and the refund must be mentioned.
    let (status, rubric) = put(
        &app,
        &t.key,
        "/api/v1/rubric",
        json!({"rules": [
            {"metric": "agent_latency", "op": "lte", "value": 1.0},
            {"metric": "mentions_refund", "op": "eq", "value": true},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{rubric}");
    let (status, err) = put(
        &app,
        &t.key,
        "/api/v1/rubric",
        json!({"rules": [{"metric": "nope", "op": "eq", "value": 1}]}),
    )
    .await;
    assert_eq!(
        (status, error_paths(&err)),
        (400, vec!["rules[0].metric".to_owned()])
    );

    // A test run whose call is slow to answer: it completes, and fails the rubric.
    let run_id = start_run(&app, &t, "refund").await;
    let mut c = call("slow-agent");
    c["messages"] = json!([
        {"role": "user", "content": "I want a refund.", "start_time": 1.0, "end_time": 2.0},
        {"role": "bot", "content": "Sure, let me look.", "start_time": 4.5, "end_time": 6.0}
    ]);
    let (_, receipt) = status_and_json(app.send(&t.key, &batch(t.agent_id, vec![c])).await).await;
    assert_eq!(receipt["calls"][0]["run_id"], run_id);
    let call = evaluations_of(
        &app,
        &t.key,
        receipt["calls"][0]["call_id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(evaluation(&call, "mentions_refund")["value"], true);
    assert_eq!(
        evaluation(&call, "mentions_refund")["explanation"],
        "turns: 2.0"
    );
    assert_eq!(evaluation(&call, "runaway")["status"], "error");
    assert_eq!(call["success"], false);
    assert_eq!(call["rubric"]["rules"][0]["passed"], false);
    assert_eq!(call["rubric"]["rules"][0]["actual"], 2.5);
    let (_, run) = app.api(&t.key, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(
        (run["status"].as_str(), run["success"].as_bool()),
        (Some("completed"), Some(false))
    );

    // Loosen the rubric and re-run: the run passes; the summary aggregates.
    put(
        &app,
        &t.key,
        "/api/v1/rubric",
        json!({"rules": [{"metric": "agent_latency", "op": "lte", "value": 3}]}),
    )
    .await;
    let (status, queued) = post(
        &app,
        &t.key,
        "/api/v1/evaluations/rerun",
        json!({"agent_id": t.agent_id}),
    )
    .await;
    assert_eq!((status, queued["queued"].as_u64()), (202, Some(1)));
    app.settle().await;
    let (_, run) = app.api(&t.key, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(run["success"], true);
    let (status, summary) = app
        .api(
            &t.key,
            "/api/v1/metrics/summary?started_from=2025-10-15T00:00:00Z",
        )
        .await;
    assert_eq!(status, 200);
    let latency = summary["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric_name"] == "agent_latency")
        .unwrap();
    assert_eq!(
        (latency["count"].as_u64(), latency["p50"].as_f64()),
        (Some(1), Some(2.5))
    );
    let refund = summary["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric_name"] == "mentions_refund")
        .unwrap();
    assert_eq!(refund["pass_rate"], 1.0);

    // A rubric whose only rule has no value (its script throws) could not decide: the call and
    // the run are neither passed nor failed, and say why. (The runaway goes: it is slow.)
    let r = app
        .client
        .delete(format!("{}/api/v1/metrics/{}", app.base, runaway["id"]))
        .header("X-CEKURA-API-KEY", &t.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    post(
        &app,
        &t.key,
        "/api/v1/metrics",
        json!({
            "name": "unanswerable", "kind": "script", "output": "numeric",
            "config": {"script": "throw \"not for this call\";"}
        }),
    )
    .await;
    put(
        &app,
        &t.key,
        "/api/v1/rubric",
        json!({"rules": [{"metric": "unanswerable", "op": "lte", "value": 3}]}),
    )
    .await;
    post(
        &app,
        &t.key,
        "/api/v1/evaluations/rerun",
        json!({"agent_id": t.agent_id}),
    )
    .await;
    app.settle().await;
    let call = evaluations_of(
        &app,
        &t.key,
        receipt["calls"][0]["call_id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(call["success"], Value::Null);
    let why = call["rubric"]["undecided"].as_str().unwrap();
    assert!(why.contains("unanswerable"), "{why}");
    let (_, run) = app.api(&t.key, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(
        (run["status"].as_str(), &run["success"]),
        (Some("completed"), &Value::Null)
    );
}

#[tokio::test]
async fn metric_definitions_crud_apply_and_try() {
    let app = TestApp::spawn().await;
    let t = app.tenant("defs").await;
    // A script that does not compile is refused when saved, saying where.
    let (status, err) = post(
        &app,
        &t.key,
        "/api/v1/metrics",
        json!({
            "name": "broken", "kind": "script", "output": "binary",
            "config": {"script": "let turns = data.metrics.turns;\nresult = turns > ;"}
        }),
    )
    .await;
    assert_eq!(
        (status, error_paths(&err)),
        (400, vec!["config.script".to_owned()]),
        "{err}"
    );
    let why = err["errors"][0]["message"].as_str().unwrap();
    assert!(why.contains("line 2, column"), "{why}");
    let (_, list) = app.api(&t.key, "/api/v1/metrics").await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"agent_latency") && names.contains(&"tool_call_success"),
        "{names:?}"
    );

    let (status, err) = post(
        &app,
        &t.key,
        "/api/v1/metrics",
        json!({"name": "x", "kind": "builtin", "config": {"builtin": "nope"}}),
    )
    .await;
    assert_eq!(
        (status, error_paths(&err)),
        (400, vec!["config.builtin".to_owned()])
    );
    let (status, _) = post(
        &app,
        &t.key,
        "/api/v1/metrics",
        json!({"name": "agent_latency", "kind": "builtin", "config": {"builtin": "agent_latency"}}),
    )
    .await;
    assert_eq!(status, 409, "names are unique");

    let (status, m) = post(&app, &t.key, "/api/v1/metrics", json!({
        "name": "p90", "kind": "builtin", "config": {"builtin": "agent_latency", "latency_statistic": "p90", "pass": {"op": "lte", "value": 2}}
    })).await;
    assert_eq!(status, 201, "{m}");
    let id = m["id"].as_i64().unwrap();
    let call_id = send_seed(&app, &t).await;
    let call = evaluations_of(&app, &t.key, &call_id).await;
    assert_eq!(evaluation(&call, "p90")["metric_version"], 1);
    assert_eq!(evaluation(&call, "p90")["passed"], true);

    // Changing a metric bumps its version and leaves old results alone until re-evaluated.
    let (status, m) = put(&app, &t.key, &format!("/api/v1/metrics/{id}"), json!({
        "name": "p90", "kind": "builtin", "config": {"builtin": "agent_latency", "latency_statistic": "p90", "pass": {"op": "lte", "value": 1}}
    })).await;
    assert_eq!((status, m["version"].as_i64()), (200, Some(2)));
    let call = evaluations_of(&app, &t.key, &call_id).await;
    assert_eq!(evaluation(&call, "p90")["metric_version"], 1);
    post(
        &app,
        &t.key,
        &format!("/api/v1/calls/{call_id}/evaluate"),
        json!({}),
    )
    .await;
    let call = evaluations_of(&app, &t.key, &call_id).await;
    assert_eq!(
        (
            evaluation(&call, "p90")["metric_version"].as_i64(),
            evaluation(&call, "p90")["passed"].as_bool()
        ),
        (Some(2), Some(false))
    );

    // Apply: all or nothing, by name.
    let (status, err) = post(
        &app,
        &t.key,
        "/api/v1/metrics/apply",
        json!({"metrics": [
            {"name": "ok", "kind": "builtin", "config": {"builtin": "turns"}},
            {"name": "bad", "kind": "script", "output": "numeric", "config": {}},
        ]}),
    )
    .await;
    assert_eq!(
        (status, error_paths(&err)),
        (400, vec!["metrics[1].config.script".to_owned()])
    );
    let (_, list) = app.api(&t.key, "/api/v1/metrics").await;
    assert!(
        !list.to_string().contains("\"name\":\"ok\""),
        "nothing applied"
    );
    let (status, summary) = post(&app, &t.key, "/api/v1/metrics/apply", json!({"metrics": [
        {"name": "ok", "kind": "builtin", "config": {"builtin": "turns"}},
        {"name": "p90", "kind": "builtin", "config": {"builtin": "agent_latency", "latency_statistic": "p90", "pass": {"op": "lte", "value": 1}}},
    ], "rubric": [{"metric": "ok", "op": "gte", "value": 2}]})).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(
        (summary["created"].clone(), summary["unchanged"].clone()),
        (json!(["ok"]), json!(["p90"]))
    );

    // Try a metric on a stored call without storing anything.
    let (status, tried) = post(&app, &t.key, "/api/v1/metrics/try", json!({
        "call_id": call_id, "metric": {"name": "t", "kind": "script", "output": "numeric", "config": {"script": "result = data.messages.len();"}}
    })).await;
    assert_eq!(
        (status, tried["value"].as_f64()),
        (200, Some(4.0)),
        "{tried}"
    );

    let (status, _) = app
        .client
        .delete(format!("{}/api/v1/metrics/{id}", app.base))
        .bearer_auth(&t.key)
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 204);
    let (status, _) = app.api(&t.key, &format!("/api/v1/metrics/{id}")).await;
    assert_eq!(status, 404);
    let call = evaluations_of(&app, &t.key, &call_id).await;
    assert!(
        call["evaluations"].to_string().contains("\"p90\""),
        "old results keep a deleted metric"
    );
}

/// A project made before the audio metrics existed gets them once, at the next start; a
/// builtin deleted after it was offered stays deleted.
#[tokio::test]
async fn new_builtins_are_installed_once_in_existing_projects() {
    let app = TestApp::spawn().await;
    let t = app.tenant("older").await;
    // As such a project looks: the transcript builtins only, and the record says so.
    let audio: Vec<_> = app
        .store
        .list_metrics(t.project_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.spec.name.starts_with("audio_"))
        .collect();
    assert_eq!(audio.len(), 11);
    for m in &audio {
        app.store.delete_metric(t.project_id, m.id).await.unwrap();
    }
    let transcript: Vec<&str> = callgrade_core::BUILTIN_METRICS
        .iter()
        .filter(|b| !b.key.needs_recording())
        .map(|b| b.key.as_str())
        .collect();
    app.store
        .set_setting("builtin_metrics_offered", &json!(transcript).to_string())
        .await
        .unwrap();

    let installed = callgrade_app::upkeep::install_new_builtins(&app.state.app)
        .await
        .unwrap();
    assert_eq!(installed, 11);
    let names = |metrics: Vec<callgrade_core::Metric>| -> Vec<String> {
        metrics.into_iter().map(|m| m.spec.name).collect()
    };
    let now = names(app.store.list_metrics(t.project_id).await.unwrap());
    assert!(now.iter().any(|n| n == "audio_latency"), "{now:?}");

    // Offered once: deleting one afterwards is the user's choice.
    let latency = app
        .store
        .list_metrics(t.project_id)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.spec.name == "audio_latency")
        .unwrap();
    app.store
        .delete_metric(t.project_id, latency.id)
        .await
        .unwrap();
    let again = callgrade_app::upkeep::install_new_builtins(&app.state.app)
        .await
        .unwrap();
    assert_eq!(again, 0);
    let now = names(app.store.list_metrics(t.project_id).await.unwrap());
    assert!(!now.iter().any(|n| n == "audio_latency"), "{now:?}");
}
