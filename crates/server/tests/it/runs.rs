//! Test runs: the matching ladder, the listening window, timeouts, late arrivals, manual attach.
use callgrade_store::NewAgent;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use crate::common::*;

const TESTER: &str = "+14155550100";
const AGENT_NUMBER: &str = "+18646190758";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A project whose clock stands at 09:20, an agent, and helpers to make scenarios and runs.
struct Lab {
    app: TestApp,
    t: Tenant,
}

impl Lab {
    async fn new() -> Self {
        Self::with(callgrade_server::Settings::default()).await
    }

    async fn with(settings: callgrade_server::Settings) -> Self {
        let app = TestApp::spawn_with(settings).await;
        app.clock.set(at("2025-10-15T09:20:00Z"));
        let t = app.tenant("lab").await;
        Self { app, t }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .app
            .post(path)
            .bearer_auth(&self.t.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        status_and_json(r).await
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.app.api(&self.t.key, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    async fn scenario(&self, direction: &str, tester: &str, tags: &[&str]) -> i64 {
        let (status, s) = self
            .post(
                "/api/v1/scenarios",
                json!({"agent_id": self.t.agent_id, "name": format!("{direction} {tester}"),
                       "direction": direction, "tester_phone_number": tester, "tags": tags,
                       "instructions": "Ask about a charge", "expected_outcome_prompt": "The agent explains it"}),
            )
            .await;
        assert_eq!(status, 201, "{s}");
        s["id"].as_i64().unwrap()
    }

    /// Starts one run of each scenario; returns the run ids.
    async fn start(&self, scenario_ids: &[i64]) -> Vec<i64> {
        let (status, result) = self
            .post(
                "/api/v1/results",
                json!({"agent_id": self.t.agent_id, "scenario_ids": scenario_ids}),
            )
            .await;
        assert_eq!(status, 201, "{result}");
        result["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    }

    /// The run, once evaluation has settled.
    async fn run(&self, id: i64) -> Value {
        self.app.settle().await;
        self.get(&format!("/api/v1/runs/{id}")).await
    }

    /// Posts one call (09:22:21 → 09:24:30) and returns its receipt entry.
    async fn send(&self, call: Value) -> Value {
        let body = batch(self.t.agent_id, vec![call]);
        let (status, receipt) = status_and_json(self.app.send(&self.t.key, &body).await).await;
        assert_eq!(status, 202, "{receipt}");
        receipt["calls"][0].clone()
    }
}

fn phone_call(id: &str, from: &str, to: &str) -> Value {
    let mut c = call(id);
    c["from_phone_number"] = json!(from);
    c["to_phone_number"] = json!(to);
    c
}

#[tokio::test]
async fn seed_run_id_example_matches_by_run_id() {
    let lab = Lab::new().await;
    let s = lab.scenario("inbound", TESTER, &[]).await;
    let runs = lab.start(&[s]).await;
    lab.app.clock.set(at("2025-10-15T09:25:00Z"));

    let mut body: Value = serde_json::from_str(include_str!(
        "../../../core/tests/fixtures/example-sip-run-id.json"
    ))
    .unwrap();
    body["calls"][0]["run_id"] = json!(runs[0].to_string()); // a digit string, as in the seed
    let (status, receipt) = status_and_json(lab.app.send(&lab.t.key, &body).await).await;
    assert_eq!(status, 202, "{receipt}");
    let entry = &receipt["calls"][0];
    assert_eq!(entry["match"], "matched");
    assert_eq!(entry["matched_by"], "run_id");
    assert_eq!(entry["run_id"], runs[0]);
    assert_eq!(entry["agent_id"], lab.t.agent_id, "the agent is the run's");

    let run = lab.run(runs[0]).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["call_id"], entry["call_id"]);
    assert_eq!(run["matched_by"], "run_id");
    let call = lab
        .get(&format!(
            "/api/v1/calls/{}",
            entry["call_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(call["run_id"], runs[0]);
    assert_eq!(call["match"], "matched");

    // A resend is a duplicate that reports the same match.
    let (_, again) = status_and_json(lab.app.send(&lab.t.key, &body).await).await;
    assert_eq!(again["calls"][0]["status"], "duplicate");
    assert_eq!(again["calls"][0]["run_id"], runs[0]);
}

#[tokio::test]
async fn run_id_must_be_this_projects_and_this_agents() {
    let lab = Lab::new().await;
    let s = lab.scenario("inbound", TESTER, &[]).await;
    let runs = lab.start(&[s]).await;
    let other_agent = lab
        .app
        .store
        .create_agent(lab.t.project_id, &NewAgent::named("other"))
        .await
        .unwrap();

    let mut c = call("x");
    c["run_id"] = json!(runs[0]);
    let (status, err) = status_and_json(
        lab.app
            .send(&lab.t.key, &batch(other_agent.id, vec![c.clone()]))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["errors"][0]["path"], "calls[0].run_id");
    assert!(err["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("belongs to agent"));

    let other = lab.app.tenant("elsewhere").await;
    let (status, err) =
        status_and_json(lab.app.send(&other.key, &json!({"calls": [c]})).await).await;
    assert_eq!(status, 400, "another project's run is unknown");
    assert!(err["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("Run IDs not found"));
    assert_eq!(lab.run(runs[0]).await["status"], "pending");
}

#[tokio::test]
async fn phone_match_in_both_directions() {
    let lab = Lab::new().await;
    let inbound = lab.scenario("inbound", TESTER, &[]).await;
    let outbound = lab.scenario("outbound", "+14155550199", &[]).await;
    let runs = lab.start(&[inbound, outbound]).await;
    lab.app.clock.set(at("2025-10-15T09:25:00Z"));

    // Inbound: the tester called the agent, so the tester is the caller.
    let entry = lab.send(phone_call("in", TESTER, AGENT_NUMBER)).await;
    assert_eq!(
        (entry["match"].as_str(), entry["matched_by"].as_str()),
        (Some("matched"), Some("phone_number"))
    );
    assert_eq!(entry["run_id"], runs[0]);
    // Outbound: the agent called the tester, so the tester is the callee.
    let entry = lab
        .send(phone_call("out", AGENT_NUMBER, "+14155550199"))
        .await;
    assert_eq!(entry["run_id"], runs[1]);
    assert_eq!(lab.run(runs[1]).await["status"], "completed");
}

#[tokio::test]
async fn ambiguous_then_attached_by_hand() {
    let lab = Lab::new().await;
    let s = lab.scenario("inbound", TESTER, &[]).await;
    let runs = lab.start(&[s, s]).await; // the same scenario twice is deduplicated
    assert_eq!(runs.len(), 1);
    let (_, result) = lab
        .post(
            "/api/v1/results",
            json!({"agent_id": lab.t.agent_id, "scenario_ids": [s], "frequency": 2}),
        )
        .await;
    let runs: Vec<i64> = result["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    lab.app.clock.set(at("2025-10-15T09:25:00Z"));

    let entry = lab.send(phone_call("amb", TESTER, AGENT_NUMBER)).await;
    assert_eq!(entry["match"], "ambiguous");
    assert_eq!(entry["run_id"], Value::Null);
    assert!(entry["reason"]
        .as_str()
        .unwrap()
        .contains("listening runs fit"));
    // Two of the three runs share the number: all three listen, so all three are candidates.
    let candidates: Vec<i64> = entry["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_i64().unwrap())
        .collect();
    assert_eq!(candidates.len(), 3);
    assert!(runs.iter().all(|r| candidates.contains(r)));

    let call_id = entry["call_id"].as_str().unwrap();
    let (status, run) = lab
        .post(
            &format!("/api/v1/runs/{}/attach", runs[0]),
            json!({"call_id": call_id}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["matched_by"], "manual");
    let run = lab.run(runs[0]).await;
    assert_eq!(run["status"], "completed", "evaluated, then completed");
    let call = lab.get(&format!("/api/v1/calls/{call_id}")).await;
    assert_eq!(
        (call["run_id"].as_i64(), call["match"].as_str()),
        (Some(runs[0]), Some("matched"))
    );

    // The call cannot go to a second run, nor the run take a second call.
    let (status, err) = lab
        .post(
            &format!("/api/v1/runs/{}/attach", runs[1]),
            json!({"call_id": call_id}),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    let other = lab
        .send(phone_call("other", "+19999999999", AGENT_NUMBER))
        .await;
    let (status, _) = lab
        .post(
            &format!("/api/v1/runs/{}/attach", runs[0]),
            json!({"call_id": other["call_id"]}),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = lab
        .post(
            &format!("/api/v1/runs/{}/attach", runs[1]),
            json!({"call_id": "nope"}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn no_candidate_is_a_production_call() {
    let lab = Lab::new().await;
    let s = lab.scenario("inbound", TESTER, &[]).await;
    let runs = lab.start(&[s]).await;
    lab.app.clock.set(at("2025-10-15T09:25:00Z"));
    let entry = lab
        .send(phone_call("prod", "+12025550123", AGENT_NUMBER))
        .await;
    assert_eq!(entry["match"], "unmatched");
    assert_eq!(entry["run_id"], Value::Null);
    assert!(entry["reason"].as_str().unwrap().contains("+12025550123"));
    assert_eq!(lab.run(runs[0]).await["status"], "pending");
    let mut no_numbers = call("bare");
    no_numbers
        .as_object_mut()
        .unwrap()
        .remove("to_phone_number");
    no_numbers
        .as_object_mut()
        .unwrap()
        .remove("from_phone_number");
    let entry = lab.send(no_numbers).await;
    assert!(entry["reason"]
        .as_str()
        .unwrap()
        .contains("no phone numbers"));
}

/// The window closes 300 s after the reported end: one second inside matches, one outside is late.
#[tokio::test]
async fn window_edges_with_an_injected_clock() {
    let lab = Lab::new().await;
    let inside = lab.scenario("inbound", "+14155550001", &[]).await;
    let outside = lab.scenario("inbound", "+14155550002", &[]).await;
    let runs = lab.start(&[inside, outside]).await;
    for run in &runs {
        let (status, r) = lab
            .post(
                &format!("/api/v1/runs/{run}/call-started"),
                json!({"at": "2025-10-15T09:22:21Z"}),
            )
            .await;
        assert_eq!((status, r["status"].as_str()), (200, Some("in_progress")));
        let (status, r) = lab
            .post(
                &format!("/api/v1/runs/{run}/call-ended"),
                json!({"at": "2025-10-15T09:24:30Z"}),
            )
            .await;
        assert_eq!(
            (status, r["status"].as_str()),
            (200, Some("awaiting_transcript"))
        );
        assert_eq!(r["listen_until"], "2025-10-15T09:29:30Z");
    }

    lab.app.clock.set(at("2025-10-15T09:29:29Z"));
    let entry = lab
        .send(phone_call("inside", "+14155550001", AGENT_NUMBER))
        .await;
    assert_eq!(entry["match"], "matched");

    lab.app.clock.set(at("2025-10-15T09:29:31Z"));
    let entry = lab
        .send(phone_call("outside", "+14155550002", AGENT_NUMBER))
        .await;
    assert_eq!(entry["match"], "late", "{entry}");
    assert_eq!(entry["run_id"], runs[1]);
    assert!(entry["reason"].as_str().unwrap().contains("1 s after"));
    let run = lab.run(runs[1]).await;
    assert_eq!(run["status"], "timeout");
    assert_eq!(run["late"], true);
    assert!(run["error_message"].as_str().unwrap().contains("late"));
}

#[tokio::test]
async fn the_sweeper_times_out_runs_with_a_reason() {
    let lab = Lab::new().await;
    let s = lab.scenario("inbound", TESTER, &[]).await;
    let runs = lab
        .start(&[s, lab.scenario("outbound", "+14155550199", &[]).await])
        .await;
    lab.post(
        &format!("/api/v1/runs/{}/call-ended", runs[0]),
        json!({"at": "2025-10-15T09:24:30Z"}),
    )
    .await;

    // One second before the window closes nothing happens; one second after, the run times out.
    lab.app.clock.set(at("2025-10-15T09:29:30Z"));
    assert!(callgrade_app::upkeep::sweep_runs(&lab.app.state.app)
        .await
        .unwrap()
        .is_empty());
    lab.app.clock.set(at("2025-10-15T09:29:31Z"));
    assert_eq!(
        callgrade_app::upkeep::sweep_runs(&lab.app.state.app)
            .await
            .unwrap(),
        [runs[0]]
    );
    let run = lab.run(runs[0]).await;
    assert_eq!(run["status"], "timeout");
    assert!(run["error_message"]
        .as_str()
        .unwrap()
        .contains("300 s listening window"));

    // The other run never reported an end: it times out at its deadline (30 min after creation).
    lab.app.clock.set(at("2025-10-15T09:50:00Z"));
    assert!(callgrade_app::upkeep::sweep_runs(&lab.app.state.app)
        .await
        .unwrap()
        .is_empty());
    lab.app.clock.advance(TimeDelta::seconds(1));
    assert_eq!(
        callgrade_app::upkeep::sweep_runs(&lab.app.state.app)
            .await
            .unwrap(),
        [runs[1]]
    );
    assert!(lab.run(runs[1]).await["error_message"]
        .as_str()
        .unwrap()
        .contains("deadline"));
    // Sweeping again changes nothing.
    assert!(callgrade_app::upkeep::sweep_runs(&lab.app.state.app)
        .await
        .unwrap()
        .is_empty());

    let result = lab
        .get(&format!(
            "/api/v1/results/{}",
            lab.run(runs[0]).await["result_id"]
        ))
        .await;
    assert_eq!(result["finished"], true);
    assert_eq!(result["counts"]["timeout"], 2);
}

/// Attaching by API queues the run's evaluation and wakes a worker at once: with workers that
/// would otherwise poll once a minute, the run completes within seconds.
#[tokio::test]
async fn api_attach_wakes_a_worker_at_once() {
    let mut settings = callgrade_server::Settings::default();
    settings.app.workers.poll = std::time::Duration::from_secs(60);
    let lab = Lab::with(settings).await;
    let s = lab.scenario("inbound", TESTER, &[]).await;
    let (_, result) = lab
        .post(
            "/api/v1/results",
            json!({"agent_id": lab.t.agent_id, "scenario_ids": [s], "frequency": 2}),
        )
        .await;
    let run_id = result["runs"][0]["id"].as_i64().unwrap();
    lab.app.clock.set(at("2025-10-15T09:25:00Z"));
    let entry = lab.send(phone_call("amb", TESTER, AGENT_NUMBER)).await;
    assert_eq!(entry["match"], "ambiguous");
    lab.app.settle().await;

    let started = std::time::Instant::now();
    let (status, run) = lab
        .post(
            &format!("/api/v1/runs/{run_id}/attach"),
            json!({"call_id": entry["call_id"]}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    loop {
        let run = lab.get(&format!("/api/v1/runs/{run_id}")).await;
        if run["status"] == "completed" {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the attached run is still {} after 10 s: no worker was woken",
            run["status"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn late_transcript_is_kept_linked_and_can_be_attached() {
    let lab = Lab::new().await;
    let s = lab.scenario("inbound", TESTER, &[]).await;
    let runs = lab.start(&[s]).await;
    lab.post(
        &format!("/api/v1/runs/{}/call-ended", runs[0]),
        json!({"at": "2025-10-15T09:24:30Z"}),
    )
    .await;
    lab.app.clock.set(at("2025-10-15T09:40:00Z"));
    callgrade_app::upkeep::sweep_runs(&lab.app.state.app)
        .await
        .unwrap();
    assert_eq!(lab.run(runs[0]).await["status"], "timeout");

    let mut c = call("late");
    c["run_id"] = json!(runs[0]);
    let entry = lab.send(c).await;
    assert_eq!(entry["match"], "late");
    assert_eq!(entry["run_id"], runs[0]);
    let run = lab.run(runs[0]).await;
    assert_eq!(
        (run["status"].as_str(), run["late"].as_bool()),
        (Some("timeout"), Some(true))
    );
    assert_eq!(run["call_id"], entry["call_id"]);

    // Attaching it by hand completes the run; the record keeps that it was late.
    let (status, run) = lab
        .post(
            &format!("/api/v1/runs/{}/attach", runs[0]),
            json!({"call_id": entry["call_id"]}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["matched_by"], "manual");
    let run = lab.run(runs[0]).await;
    assert_eq!(
        (run["status"].as_str(), run["late"].as_bool()),
        (Some("completed"), Some(true))
    );
}

#[tokio::test]
async fn cancel() {
    let lab = Lab::new().await;
    let s = lab.scenario("inbound", TESTER, &[]).await;
    let runs = lab.start(&[s]).await;
    let (status, run) = lab
        .post(&format!("/api/v1/runs/{}/cancel", runs[0]), json!({}))
        .await;
    assert_eq!((status, run["status"].as_str()), (200, Some("cancelled")));
    let (status, err) = lab
        .post(&format!("/api/v1/runs/{}/cancel", runs[0]), json!({}))
        .await;
    assert_eq!((status, err["error"].as_str()), (409, Some("conflict")));
    let (status, _) = lab
        .post(&format!("/api/v1/runs/{}/call-ended", runs[0]), json!({}))
        .await;
    assert_eq!(status, 409);
    // A transcript naming a cancelled run is kept as a production call, with the reason.
    let mut c = call("after-cancel");
    c["run_id"] = json!(runs[0]);
    let entry = lab.send(c).await;
    assert_eq!(entry["match"], "unmatched");
    assert!(entry["reason"].as_str().unwrap().contains("cancelled"));
    let (status, _) = lab.post("/api/v1/runs/999/cancel", json!({})).await;
    assert_eq!(status, 404);
}

/// Two webhook requests racing for one run: exactly one call is attached.
#[tokio::test]
async fn concurrent_requests_never_attach_two_calls_to_one_run() {
    let lab = Lab::new().await;
    let s = lab.scenario("inbound", TESTER, &[]).await;
    let runs = lab.start(&[s]).await;
    lab.app.clock.set(at("2025-10-15T09:25:00Z"));
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..8 {
        let mut c = phone_call(&format!("race-{i}"), TESTER, AGENT_NUMBER);
        if i % 2 == 0 {
            c["run_id"] = json!(runs[0]);
        }
        let body = batch(lab.t.agent_id, vec![c]);
        let (client, url, key) = (
            lab.app.client.clone(),
            format!("{}{CEKURA_PATH}", lab.app.base),
            lab.t.key.clone(),
        );
        sends.spawn(async move {
            let r = client
                .post(url)
                .header("X-CEKURA-API-KEY", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            status_and_json(r).await
        });
    }
    let mut matched = 0;
    while let Some(r) = sends.join_next().await {
        let (status, receipt) = r.unwrap();
        assert_eq!(status, 202);
        if receipt["calls"][0]["match"] == "matched" {
            matched += 1;
        }
    }
    assert_eq!(matched, 1);
    lab.app.settle().await;
    let page = lab
        .get(&format!(
            "/api/v1/runs?result_id={}",
            lab.run(runs[0]).await["result_id"]
        ))
        .await;
    assert_eq!(page["data"][0]["status"], "completed");
}

#[tokio::test]
async fn results_by_tag_runs_listing_and_project_settings() {
    let lab = Lab::new().await;
    lab.scenario("inbound", "+14155550001", &["billing"]).await;
    lab.scenario("inbound", "+14155550002", &["billing", "smoke"])
        .await;
    lab.scenario("inbound", "+14155550003", &["smoke"]).await;
    let (status, result) = lab
        .post("/api/v1/results", json!({"agent_id": lab.t.agent_id, "tags": ["billing"], "frequency": 2, "name": "nightly"}))
        .await;
    assert_eq!(status, 201, "{result}");
    assert_eq!(result["counts"]["total"], 4);
    assert_eq!(result["counts"]["pending"], 4);
    assert_eq!(result["finished"], false);
    assert_eq!(result["runs"][0]["agent_phone_number"], Value::Null);

    let page = lab.get("/api/v1/runs?status=pending&limit=3").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    assert!(page["next_cursor"].is_string());
    let (status, _) = lab.app.api(&lab.t.key, "/api/v1/runs?status=bogus").await;
    assert_eq!(status, 400);

    // Bad requests name their fields.
    let (status, err) = lab
        .post(
            "/api/v1/results",
            json!({"agent_id": lab.t.agent_id, "frequency": 0}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_paths(&err), ["scenario_ids", "frequency"]);
    let (status, err) = lab
        .post(
            "/api/v1/results",
            json!({"agent_id": lab.t.agent_id, "tags": ["nope"]}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = lab
        .post(
            "/api/v1/scenarios",
            json!({"agent_id": lab.t.agent_id, "name": "x", "direction": "up"}),
        )
        .await;
    assert_eq!(
        (status, error_paths(&err)),
        (400, vec!["direction".to_owned()])
    );
    let (status, _) = lab
        .post(
            "/api/v1/scenarios",
            json!({"agent_id": 9999, "name": "x", "direction": "inbound"}),
        )
        .await;
    assert_eq!(status, 404);

    // The window is per project.
    let r = lab
        .app
        .client
        .patch(format!("{}/api/v1/project", lab.app.base))
        .bearer_auth(&lab.t.key)
        .json(&json!({"listening_window_seconds": 60}))
        .send()
        .await
        .unwrap();
    let (status, project) = status_and_json(r).await;
    assert_eq!(
        (status, project["listening_window_seconds"].as_i64()),
        (200, Some(60))
    );
    let r = lab
        .app
        .client
        .patch(format!("{}/api/v1/project", lab.app.base))
        .bearer_auth(&lab.t.key)
        .json(&json!({"listening_window_seconds": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let run_id = result["runs"][0]["id"].as_i64().unwrap();
    let (_, run) = lab
        .post(
            &format!("/api/v1/runs/{run_id}/call-ended"),
            json!({"at": "2025-10-15T09:24:30Z"}),
        )
        .await;
    assert_eq!(run["listen_until"], "2025-10-15T09:25:30Z");
}
