//! Simulated callers end to end: a scripted OpenAI-compatible caller LLM, an `http_turn` agent
//! (both in `fakes.rs`) and an `openai_chat` agent, each a small fake server on port 0, against
//! the real server.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::fakes::*;

#[tokio::test]
async fn a_simulated_run_is_a_normal_call_everywhere() {
    let app = TestApp::spawn().await;
    let caller = start_caller(vec![("Dana", vec!["I want a refund for order A1."])], 30).await;
    let (agent, url) = start_turn_agent().await;
    let t = simulated_project(&app, "sim", &url, &caller).await;
    // The connector's secret is write-only.
    let (_, shown) = app
        .api(&t.key, &format!("/api/v1/agents/{}", t.agent_id))
        .await;
    assert_eq!(shown["connector"]["headers"]["Authorization"], "***");
    assert_eq!(shown["connector"]["kind"], "http_turn");
    let (_, sim) = app.api(&t.key, "/api/v1/simulator").await;
    assert_eq!(
        (sim["api_key_set"].clone(), sim.get("api_key")),
        (json!(true), None)
    );

    // A judge metric too: its requests and tokens are counted on the run.
    let (status, _) = send(
        &app,
        &t.key,
        reqwest::Method::PUT,
        "/api/v1/judge",
        json!({"base_url": caller, "model": "judge-1"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, m) = send(
        &app,
        &t.key,
        reqwest::Method::POST,
        "/api/v1/metrics",
        json!({
        "name": "polite", "kind": "llm_judge", "output": "binary",
        "description": "Was the agent polite?\n{{transcript}}"}),
    )
    .await;
    assert_eq!(status, 201, "{m}");
    let slow = scenario(&app, &t, "slow", json!({})).await;
    let result = start(&app, &t, &[slow], 1, "main").await;
    let result = finished(&app, &t, &result).await;
    let run = &result["runs"][0];
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(run["success"], true);
    assert_eq!(run["matched_by"], "simulation");
    assert_eq!(run["stop_reason"], "caller_ended");
    assert_eq!(run["usage"]["caller_requests"], 2);
    assert_eq!(run["usage"]["caller_tokens"], 60);
    assert_eq!(
        run["usage"]["agent_requests"], 2,
        "start and one message; end is not counted"
    );
    assert!(
        run.get("live_messages").is_none(),
        "the call holds the transcript now"
    );

    // The agent saw the whole conversation each turn, its headers, the run and the scenario.
    let requests = agent.requests.lock().unwrap().clone();
    let events: Vec<&str> = requests
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["start", "message", "end"]);
    assert_eq!(requests[1]["run_id"], run["id"]);
    assert_eq!(requests[1]["scenario"]["name"], "slow");
    assert_eq!(
        requests[1]["messages"][1]["content"],
        "I want a refund for order A1."
    );
    assert_eq!(requests[1]["messages"].as_array().unwrap().len(), 2);

    // The call: text channel, in the calls list, the delivery log and the metrics summary.
    let call_id = run["call_id"].as_str().unwrap();
    app.settle().await;
    let (_, call) = app.api(&t.key, &format!("/api/v1/calls/{call_id}")).await;
    assert_eq!(call["channel"], "text");
    assert_eq!(call["run_id"], run["id"]);
    let roles: Vec<&str> = call["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["bot", "user", "bot", "user"]);
    let eval = |name: &str| {
        call["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["metric_name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {call:#}"))
            .clone()
    };
    // The fake agent takes 700 ms to answer the refund request: that is the measured latency.
    let latency = eval("agent_latency")["value"].as_f64().unwrap();
    assert!((0.7..0.9).contains(&latency), "agent latency {latency}");
    assert_eq!(eval("talk_ratio")["status"], "not_applicable");
    assert_eq!(eval("refund_granted")["value"], true);
    let (_, calls) = app.api(&t.key, "/api/v1/calls?kind=test").await;
    assert_eq!(calls["data"][0]["call_id"], call_id);
    let (_, deliveries) = app.api(&t.key, "/api/v1/deliveries").await;
    assert_eq!(deliveries["data"][0]["route"], "simulation");
    assert_eq!(deliveries["data"][0]["status"], 202);
    let (_, summary) = app.api(&t.key, "/api/v1/metrics/summary").await;
    assert!(summary.to_string().contains("refund_granted"), "{summary}");
    let page = app
        .get(&format!("/api/v1/calls/{call_id}"))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("agent-secret") && !page.contains("sk-caller"));

    // An agent that ends the call itself.
    let ends = scenario(
        &app,
        &t,
        "hangs-up",
        json!({"first_message": "Hi, refund please."}),
    )
    .await;
    let result = finished(&app, &t, &start(&app, &t, &[ends], 1, "main").await).await;
    assert_eq!(result["runs"][0]["stop_reason"], "agent_ended");
}

#[tokio::test]
async fn the_agent_failing_fails_the_run_with_the_reason() {
    let app = TestApp::spawn().await;
    let caller = start_caller(vec![("Dana", vec!["Refund, please."])], 10).await;
    let (_, url) = start_turn_agent().await;
    let t = simulated_project(&app, "failing", &url, &caller).await;
    let error = scenario(&app, &t, "error500", json!({})).await;
    let hang = scenario(&app, &t, "hang", json!({})).await;
    let malformed = scenario(&app, &t, "malformed", json!({})).await;
    let huge = scenario(&app, &t, "huge", json!({})).await;
    let result = start(&app, &t, &[error, hang, malformed, huge], 1, "x").await;
    let result = finished(&app, &t, &result).await;
    let reason = |i: usize| {
        let run = &result["runs"][i];
        assert_eq!(run["status"], "failed", "{run:#}");
        run["error_message"].as_str().unwrap().to_owned()
    };
    assert!(
        reason(0).contains("HTTP 500 Internal Server Error: database down (after 3 attempts)"),
        "{}",
        reason(0)
    );
    assert!(
        reason(1).contains("did not answer within 1 s (after 3 attempts)"),
        "{}",
        reason(1)
    );
    assert!(
        reason(2).contains("malformed: expected {\"messages\""),
        "{}",
        reason(2)
    );
    // A reply too large to be a turn is refused as it streams in.
    assert!(
        reason(3).contains("the answer is over 256 KiB"),
        "{}",
        reason(3)
    );
    // No call was stored for them.
    assert_eq!(app.call_count(&t).await, 0);
    let (status, gate) = app
        .api(&t.key, &format!("/api/v1/results/{}/gate", result["id"]))
        .await;
    assert_eq!(
        (status, gate["verdict"].clone()),
        (200, json!("undecided")),
        "{gate:#}"
    );
}

async fn gate(app: &TestApp, t: &Tenant, id: &Value, query: &str) -> Value {
    app.api(&t.key, &format!("/api/v1/results/{id}/gate{query}"))
        .await
        .1
}

#[tokio::test]
async fn pass_k_intervals_and_a_baseline_that_tells_regression_from_noise() {
    let app = TestApp::spawn().await;
    let caller = start_caller(vec![("Dana", vec!["Refund, please."])], 10).await;
    let (agent, url) = start_turn_agent().await;
    let t = simulated_project(&app, "gate", &url, &caller).await;
    let refund = scenario(&app, &t, "refund", json!({})).await;

    let main = finished(&app, &t, &start(&app, &t, &[refund], 10, "main").await).await;
    let report = gate(&app, &t, &main["id"], "").await;
    assert_eq!(report["verdict"], "pass", "{report:#}");
    let s = &report["scenarios"][0];
    assert_eq!(
        (
            s["current"]["passed"].clone(),
            s["current"]["pass_all"].clone()
        ),
        (json!(10), json!(true))
    );
    let low = s["current"]["interval"]["low"].as_f64().unwrap();
    assert!((low - 0.7225).abs() < 1e-3, "Wilson low for 10/10: {low}");

    // Noise: 9/10 against 10/10 is not a regression.
    agent.approve.store(9, Ordering::SeqCst);
    agent.turns.store(0, Ordering::SeqCst);
    let noisy = finished(&app, &t, &start(&app, &t, &[refund], 10, "pr").await).await;
    let report = gate(&app, &t, &noisy["id"], "?baseline_label=main").await;
    assert_eq!(report["scenarios"][0]["change"], "unchanged", "{report:#}");
    assert_eq!(report["scenarios"][0]["current"]["pass_all"], false);
    assert_eq!(report["verdict"], "pass");
    assert_eq!(report["baseline_result_id"], main["id"]);

    // A real regression: 3/10 against 10/10.
    agent.approve.store(3, Ordering::SeqCst);
    agent.turns.store(0, Ordering::SeqCst);
    let broken = finished(&app, &t, &start(&app, &t, &[refund], 10, "pr").await).await;
    let report = gate(
        &app,
        &t,
        &broken["id"],
        &format!("?baseline_id={}", main["id"]),
    )
    .await;
    assert_eq!(report["scenarios"][0]["change"], "regressed", "{report:#}");
    assert_eq!(report["verdict"], "fail");
    assert!(report["reasons"][0]
        .as_str()
        .unwrap()
        .contains("3/10 passed, baseline 10/10"));
    // --min-pass-rate alone.
    let report = gate(&app, &t, &broken["id"], "?min_pass_rate=0.5").await;
    assert_eq!(report["verdict"], "fail");

    // "Run failed scenarios again" reruns the failing scenario with the same frequency.
    let (status, rerun) = send(
        &app,
        &t.key,
        reqwest::Method::POST,
        &format!("/api/v1/results/{}/rerun-failed", broken["id"]),
        json!({}),
    )
    .await;
    assert_eq!(status, 201, "{rerun}");
    assert_eq!(rerun["runs"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn simulated_runs_respect_the_project_concurrency() {
    let app = TestApp::spawn().await;
    let caller = start_caller(vec![("Dana", vec!["Refund, please.", "Still there?"])], 10).await;
    let (agent, url) = start_turn_agent().await;
    let t = simulated_project(&app, "busy", &url, &caller).await;
    let (status, _) = send(
        &app,
        &t.key,
        reqwest::Method::PUT,
        "/api/v1/simulator",
        json!({"concurrency": 2}),
    )
    .await;
    assert_eq!(status, 200);
    let busy = scenario(&app, &t, "busy", json!({})).await;
    let result = finished(&app, &t, &start(&app, &t, &[busy], 6, "x").await).await;
    assert_eq!(result["counts"]["completed"], 6, "{result:#}");
    assert_eq!(agent.max_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn cancel_stops_calling_the_agent_at_once() {
    let app = TestApp::spawn().await;
    let caller = start_caller(vec![("Dana", vec!["Refund, please."])], 10).await;
    let (agent, url) = start_turn_agent().await;
    let t = simulated_project(&app, "cancel", &url, &caller).await;
    // A patient connector: the agent's endless turn is waited for a minute.
    let (status, _) = send(&app, &t.key, reqwest::Method::PATCH, &format!("/api/v1/agents/{}", t.agent_id),
        json!({"connector": {"kind": "http_turn", "url": url, "headers": {"Authorization": "***"}, "timeout_seconds": 60}})).await;
    assert_eq!(status, 200);
    let hang = scenario(&app, &t, "hang", json!({})).await;
    let result = start(&app, &t, &[hang], 1, "x").await;
    let run_id = result["runs"][0]["id"].clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.requests.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the agent was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The kept header still carries the secret.
    assert_eq!(agent.requests.lock().unwrap().len(), 1);
    let (_, run) = app.api(&t.key, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(run["status"], "in_progress");
    let cancelled_at = Instant::now();
    let (status, run) = send(
        &app,
        &t.key,
        reqwest::Method::POST,
        &format!("/api/v1/runs/{run_id}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, run["status"].clone()),
        (200, json!("cancelled")),
        "{run}"
    );
    // The request in flight (the agent would take two minutes) is dropped at once.
    while app.state.app.simulator.playing() > 0 {
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(2),
            "the conversation goes on"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        agent.requests.lock().unwrap().len(),
        1,
        "no call after the cancel"
    );
    let (_, run) = app.api(&t.key, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(run["status"], "cancelled");
    assert_eq!(app.call_count(&t).await, 0);
}

#[tokio::test]
async fn a_conversation_cut_by_a_restart_fails_with_the_reason() {
    let mut settings = callgrade_server::Settings::default();
    settings.app.simulation.slots = 0; // this instance plays nothing: a "dead" one claims
    let app = TestApp::spawn_with(settings).await;
    let caller = start_caller(vec![], 10).await;
    let (_, url) = start_turn_agent().await;
    let t = simulated_project(&app, "restart", &url, &caller).await;
    let refund = scenario(&app, &t, "refund", json!({})).await;
    let result = start(&app, &t, &[refund], 1, "x").await;
    let now = callgrade_app::Clock::now(app.clock.as_ref());
    let claimed = app
        .store
        .claim_simulations("crashed-instance", now, chrono::TimeDelta::seconds(30), 8)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(matches!(
        claimed[0].connector,
        Some(callgrade_core::Connector::HttpTurn(_))
    ));
    // Within its lease nothing happens; after it, the run is failed with why.
    let sim = &app.state.app;
    assert!(callgrade_app::simulation::fail_abandoned(sim)
        .await
        .unwrap()
        .is_empty());
    app.clock.set(now + chrono::TimeDelta::seconds(31));
    assert_eq!(
        callgrade_app::simulation::fail_abandoned(sim)
            .await
            .unwrap()
            .len(),
        1
    );
    let (_, r) = app
        .api(&t.key, &format!("/api/v1/results/{}", result["id"]))
        .await;
    let run = &r["runs"][0];
    assert_eq!(run["status"], "failed");
    assert!(
        run["error_message"]
            .as_str()
            .unwrap()
            .contains("the server instance playing it stopped"),
        "{run}"
    );
}

#[tokio::test]
async fn the_token_budget_stops_the_conversation() {
    let app = TestApp::spawn().await;
    let lines = vec!["One.", "Two.", "Three.", "Four.", "Five.", "Six."];
    let caller = start_caller(vec![("Dana", lines)], 600).await;
    let (_, url) = start_turn_agent().await;
    let t = simulated_project(&app, "budget", &url, &caller).await;
    let (status, sim) = send(
        &app,
        &t.key,
        reqwest::Method::PUT,
        "/api/v1/simulator",
        json!({"token_budget": 1000}),
    )
    .await;
    assert_eq!((status, sim["token_budget"].clone()), (200, json!(1000)));
    let refund = scenario(&app, &t, "refund", json!({"max_turns": 50})).await;
    let result = finished(&app, &t, &start(&app, &t, &[refund], 1, "x").await).await;
    let run = &result["runs"][0];
    assert_eq!(run["stop_reason"], "token_budget", "{run:#}");
    assert_eq!(run["usage"]["caller_tokens"], 1200);
    assert_eq!(run["status"], "completed");

    // max_turns: the greeting, then caller and agent alternately.
    let short = scenario(&app, &t, "short", json!({"max_turns": 3})).await;
    let (status, _) = send(
        &app,
        &t.key,
        reqwest::Method::PUT,
        "/api/v1/simulator",
        json!({"token_budget": 100000}),
    )
    .await;
    assert_eq!(status, 200);
    let result = finished(&app, &t, &start(&app, &t, &[short], 1, "x").await).await;
    assert_eq!(result["runs"][0]["stop_reason"], "max_turns", "{result:#}");
}

/// An `openai_chat` agent: its tool calls are answered from the scenario's mocks, first match
/// by argument wins, an unmatched call gets the configured error.
#[tokio::test]
async fn openai_chat_agents_get_their_tools_answered_by_mocks() {
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<Value>>>);
    async fn agent_llm(State(seen): State<Seen>, Json(body): Json<Value>) -> Json<Value> {
        seen.0.lock().unwrap().push(body.clone());
        let messages = body["messages"].as_array().unwrap();
        let last = messages.last().unwrap();
        let message = if last["role"] == "user" {
            // Look up two orders: one the mocks know by argument, one they do not.
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "lookup_order", "arguments": "{\"order\":\"A1\"}"}},
                {"id": "t2", "type": "function", "function": {"name": "lookup_order", "arguments": "{\"order\":\"Z9\"}"}}]})
        } else {
            json!({"role": "assistant", "content": format!("Order status: {}", last["content"].as_str().unwrap())})
        };
        Json(json!({"choices": [{"message": message}], "usage": {"total_tokens": 5}}))
    }
    let seen = Seen::default();
    let router = Router::new()
        .route("/v1/chat/completions", post(agent_llm))
        .with_state(seen.clone());
    let agent_base = format!("{}/v1", serve(router).await);

    let app = TestApp::spawn().await;
    let caller = start_caller(vec![("Dana", vec!["Where is my order A1?"])], 10).await;
    let t = simulated_project(&app, "chat", "http://127.0.0.1:9/unused", &caller).await;
    let tools = json!([{"type": "function", "function": {"name": "lookup_order",
        "parameters": {"type": "object", "properties": {"order": {"type": "string"}}}}}]);
    let (status, a) = send(&app, &t.key, reqwest::Method::PATCH, &format!("/api/v1/agents/{}", t.agent_id),
        json!({"description": "You are Acme's order desk.", "connector": {"kind": "openai_chat", "base_url": agent_base, "model": "agent-1", "api_key": "sk-agent", "tools": tools}})).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["connector"]["api_key"], "***");
    let orders = scenario(
        &app,
        &t,
        "orders",
        json!({
        "tool_mocks": [
            {"name": "lookup_order", "when": {"order": "B2"}, "result": {"status": "lost"}},
            {"name": "lookup_order", "when": {"order": "A1"}, "result": {"status": "shipped"}}],
        "unmatched_tool_result": {"error": "unknown order"}}),
    )
    .await;
    let result = finished(&app, &t, &start(&app, &t, &[orders], 1, "x").await).await;
    let run = &result["runs"][0];
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(run["usage"]["agent_tokens"], 10);
    app.settle().await;
    let (_, call) = app
        .api(
            &t.key,
            &format!("/api/v1/calls/{}", run["call_id"].as_str().unwrap()),
        )
        .await;
    let messages = call["messages"].as_array().unwrap();
    let results: Vec<&Value> = messages
        .iter()
        .filter(|m| m["role"] == "function_call_result")
        .collect();
    assert_eq!(results[0]["data"]["result"], json!({"status": "shipped"}));
    assert_eq!(
        results[1]["data"]["result"],
        json!({"error": "unknown order"})
    );
    let calls: Vec<&Value> = messages
        .iter()
        .filter(|m| m["role"] == "function_call")
        .collect();
    assert_eq!(calls[0]["data"]["arguments"], json!({"order": "A1"}));
    // The agent's LLM saw its system prompt, the caller as its user and the tool results.
    let second = seen.0.lock().unwrap()[1].clone();
    assert_eq!(
        second["messages"][0]["content"],
        "You are Acme's order desk."
    );
    assert_eq!(
        second["messages"][1],
        json!({"role": "user", "content": "Where is my order A1?"})
    );
    assert_eq!(second["messages"][3]["role"], "tool");
    assert_eq!(second["tools"], tools);
    let tool_success = call["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["metric_name"] == "tool_call_success")
        .expect("every builtin is a default metric");
    assert_eq!(
        tool_success["value"], 0.5,
        "one of two tool calls failed: {tool_success}"
    );
}

/// A turn that outlasts the lease is not an abandoned conversation: the instance playing it
/// renews the lease in between turns' writes and never fails its own runs.
#[tokio::test]
async fn a_turn_longer_than_the_lease_is_not_abandoned() {
    let mut settings = callgrade_server::Settings::default();
    settings.app.simulation.lease = chrono::TimeDelta::seconds(1);
    let app = TestApp::spawn_with(settings).await;
    let caller = start_caller(vec![("Dana", vec!["Refund, please."])], 10).await;
    let (agent, url) = start_turn_agent().await;
    let t = simulated_project(&app, "long-turn", &url, &caller).await;
    let (status, _) = send(&app, &t.key, reqwest::Method::PATCH, &format!("/api/v1/agents/{}", t.agent_id),
        json!({"connector": {"kind": "http_turn", "url": url, "headers": {"Authorization": "***"}, "timeout_seconds": 10}})).await;
    assert_eq!(status, 200);
    let long = scenario(&app, &t, "longer-than-the-lease", json!({})).await;
    let result = start(&app, &t, &[long], 1, "x").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.requests.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the message turn never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Mid-turn, well past the lease by the server's clock.
    let now = callgrade_app::Clock::now(app.clock.as_ref());
    app.clock.set(now + chrono::TimeDelta::seconds(5));
    assert!(callgrade_app::simulation::fail_abandoned(&app.state.app)
        .await
        .unwrap()
        .is_empty());
    let result = finished(&app, &t, &result).await;
    assert_eq!(result["runs"][0]["status"], "completed", "{result:#}");
}
