//! Fake servers for simulated callers, each on port 0: a scripted OpenAI-compatible caller LLM
//! and an `http_turn` agent; and the API calls that set a simulated project up around them.
//! Shared by the simulation and dashboard suites.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

/// Serves `router` on port 0; its base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// The caller's LLM: each persona (found by its name in the system prompt) says its lines in
/// order, then calls `end_call`. Every answer costs `tokens`.
#[derive(Clone)]
struct Caller {
    scripts: Arc<Vec<(&'static str, Vec<&'static str>)>>,
    tokens: u64,
}

async fn caller_llm(State(caller): State<Caller>, Json(body): Json<Value>) -> Json<Value> {
    // It judges too, when asked for a structured verdict.
    if body.get("response_format").is_some() {
        let content = json!({"verdict": true, "explanation": "polite", "deviations": []});
        return Json(json!({"model": "judge-1", "usage": {"total_tokens": 120},
            "choices": [{"message": {"role": "assistant", "content": content.to_string()}}]}));
    }
    let messages = body["messages"].as_array().unwrap();
    let system = messages[0]["content"].as_str().unwrap();
    let lines = caller
        .scripts
        .iter()
        .find(|(persona, _)| system.contains(&format!("You are {persona}.")))
        .map_or(&[][..], |(_, lines)| lines.as_slice());
    let said = messages.iter().filter(|m| m["role"] == "assistant").count();
    let message = match lines.get(said) {
        Some(line) => json!({"role": "assistant", "content": line}),
        None => json!({"role": "assistant", "content": "Thanks, bye.", "tool_calls": [
            {"id": "hangup", "type": "function", "function": {"name": "end_call", "arguments": "{}"}}]}),
    };
    Json(json!({"choices": [{"message": message}], "usage": {"total_tokens": caller.tokens}}))
}

pub async fn start_caller(scripts: Vec<(&'static str, Vec<&'static str>)>, tokens: u64) -> String {
    let caller = Caller {
        scripts: Arc::new(scripts),
        tokens,
    };
    let router = Router::new()
        .route("/v1/chat/completions", post(caller_llm))
        .with_state(caller);
    format!("{}/v1", serve(router).await)
}

/// An `http_turn` agent whose behaviour the scenario's name picks. It records every request
/// and the most sessions it held in flight at once.
#[derive(Clone, Default)]
pub struct TurnAgent {
    pub requests: Arc<Mutex<Vec<Value>>>,
    pub in_flight: Arc<Mutex<HashSet<String>>>,
    pub max_in_flight: Arc<AtomicUsize>,
    /// Replies "approved" to the first `approve` of every ten refund turns.
    pub approve: Arc<AtomicU64>,
    pub turns: Arc<AtomicU64>,
}

async fn turn(State(agent): State<TurnAgent>, Json(body): Json<Value>) -> (StatusCode, String) {
    agent.requests.lock().unwrap().push(body.clone());
    let session = body["session_id"].as_str().unwrap().to_owned();
    let scenario = body["scenario"]["name"].as_str().unwrap().to_owned();
    let event = body["event"].as_str().unwrap();
    {
        let mut in_flight = agent.in_flight.lock().unwrap();
        in_flight.insert(session.clone());
        agent
            .max_in_flight
            .fetch_max(in_flight.len(), Ordering::SeqCst);
    }
    let reply = |text: &str| json!({"messages": [{"role": "bot", "content": text}]}).to_string();
    let answer = match (scenario.as_str(), event) {
        (_, "end") => (StatusCode::OK, "{}".into()),
        ("error500", _) => (StatusCode::INTERNAL_SERVER_ERROR, "database down".into()),
        ("huge", _) => (StatusCode::OK, reply(&"a".repeat(300 * 1024))),
        ("malformed", _) => (StatusCode::OK, json!({"reply": "hi"}).to_string()),
        ("hang", _) => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            (StatusCode::OK, reply("too late"))
        }
        (_, "start") => (
            StatusCode::OK,
            reply("Hello, this is Acme. How can I help?"),
        ),
        ("longer-than-the-lease", _) => {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            (StatusCode::OK, reply("Your refund is approved."))
        }
        ("slow", _) => {
            tokio::time::sleep(Duration::from_millis(700)).await;
            (StatusCode::OK, reply("Your refund is approved."))
        }
        ("hangs-up", _) => (
            StatusCode::OK,
            json!({"messages": [{"role": "bot", "content": "Goodbye."}], "end_call": true})
                .to_string(),
        ),
        ("busy", _) => {
            tokio::time::sleep(Duration::from_millis(150)).await;
            (StatusCode::OK, reply("Your refund is approved."))
        }
        _ => {
            let n = agent.turns.fetch_add(1, Ordering::SeqCst);
            let approve = n % 10 < agent.approve.load(Ordering::SeqCst);
            let text = if approve {
                "Your refund is approved."
            } else {
                "Sorry, I cannot do that."
            };
            (StatusCode::OK, reply(text))
        }
    };
    agent.in_flight.lock().unwrap().remove(&session);
    answer
}

pub async fn start_turn_agent() -> (TurnAgent, String) {
    let agent = TurnAgent::default();
    agent.approve.store(10, Ordering::SeqCst);
    let router = Router::new()
        .route("/turn", post(turn))
        .with_state(agent.clone());
    (agent, format!("{}/turn", serve(router).await))
}

pub async fn send(
    app: &TestApp,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A project whose agent has an `http_turn` connector, a caller LLM, and a rubric that passes
/// a call when the agent said "approved".
pub async fn simulated_project(app: &TestApp, name: &str, agent_url: &str, caller: &str) -> Tenant {
    let t = app.tenant(name).await;
    let connector = json!({"kind": "http_turn", "url": agent_url,
        "headers": {"Authorization": "Bearer agent-secret"}, "timeout_seconds": 1});
    let (status, agent) = send(
        app,
        &t.key,
        reqwest::Method::PATCH,
        &format!("/api/v1/agents/{}", t.agent_id),
        json!({"connector": connector}),
    )
    .await;
    assert_eq!(status, 200, "{agent}");
    let (status, sim) = send(
        app,
        &t.key,
        reqwest::Method::PUT,
        "/api/v1/simulator",
        json!({"base_url": caller, "model": "caller-1", "api_key": "sk-caller"}),
    )
    .await;
    assert_eq!(status, 200, "{sim}");
    let (status, m) = send(
        app,
        &t.key,
        reqwest::Method::POST,
        "/api/v1/metrics",
        json!({
            "name": "refund_granted", "kind": "script", "output": "binary",
            "config": {"script": "result = data.transcript.contains(\"approved\");"}
        }),
    )
    .await;
    assert_eq!(status, 201, "{m}");
    let (status, r) = send(
        app,
        &t.key,
        reqwest::Method::PUT,
        "/api/v1/rubric",
        json!({"rules": [{"metric": "refund_granted", "op": "eq", "value": true}]}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    t
}

pub async fn scenario(app: &TestApp, t: &Tenant, name: &str, extra: Value) -> i64 {
    let mut body = json!({"agent_id": t.agent_id, "name": name, "direction": "inbound",
        "instructions": "Ask for a refund of order A1.",
        "persona": {"name": "Dana", "traits": ["impatient"]}});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, s) = send(
        app,
        &t.key,
        reqwest::Method::POST,
        "/api/v1/scenarios",
        body,
    )
    .await;
    assert_eq!(status, 201, "{s}");
    s["id"].as_i64().unwrap()
}

pub async fn start(
    app: &TestApp,
    t: &Tenant,
    scenarios: &[i64],
    frequency: u32,
    label: &str,
) -> Value {
    let (status, result) = send(app, &t.key, reqwest::Method::POST, "/api/v1/results",
        json!({"agent_id": t.agent_id, "scenario_ids": scenarios, "frequency": frequency, "label": label}))
    .await;
    assert_eq!(status, 201, "{result}");
    assert_eq!(
        result["mode"], "simulate",
        "an agent with a connector is simulated"
    );
    result
}

/// Polls a result until every run is final (at most 30 s).
pub async fn finished(app: &TestApp, t: &Tenant, result: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, r) = app
            .api(&t.key, &format!("/api/v1/results/{}", result["id"]))
            .await;
        if r["finished"] == true {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "the result did not finish: {r:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
