//! The worker against a real SQLite store: a panicking evaluation fails its job, with the
//! reason, instead of leaving it to wait out its lease.

use callgrade_app::ingest::{self, Delivery};
use callgrade_app::{metrics, runs, App, AppSettings};
use callgrade_core::{MetricDraft, ResultDraft, ScenarioDraft};
use callgrade_eval::{Evaluator, JudgeCache, JudgeClient, JudgeDefaults};
use callgrade_store::NewAgent;
use callgrade_store::{SqliteStore, Store};
use serde_json::json;
use std::sync::Arc;

/// A judge cache that panics, standing for any bug inside an evaluation.
struct Panicking;

#[async_trait::async_trait]
impl JudgeCache for Panicking {
    async fn get(&self, _key: &str) -> Option<String> {
        panic!("the cache exploded");
    }

    async fn put(&self, _key: &str, _value: &str) {}
}

#[tokio::test]
async fn a_panicking_evaluation_fails_its_job_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cg.db").display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
    let mut settings = AppSettings::default();
    settings.workers.max_attempts = 1;
    settings.judge = JudgeDefaults {
        base_url: Some("http://127.0.0.1:9/v1".into()),
        model: Some("judge".into()),
        ..JudgeDefaults::default()
    };
    let mut app = App::new(store.clone(), settings.clone());
    app.evaluator = Arc::new(Evaluator {
        judge: JudgeClient::new(settings.judge.clone()),
        cache: Arc::new(Panicking),
        script_limits: settings.script_limits,
    });

    let (project, _) = store.create_project("lab").await.unwrap();
    let agent = store
        .create_agent(project.id, &NewAgent::named("support"))
        .await
        .unwrap();
    let draft: MetricDraft = serde_json::from_value(json!({
        "name": "polite", "kind": "llm_judge", "output": "binary",
        "description": "Was the agent polite?\n{{transcript}}"
    }))
    .unwrap();
    metrics::create(&app, project.id, draft).await.unwrap();
    let scenario: ScenarioDraft = serde_json::from_value(json!({
        "agent_id": agent.id, "name": "refund", "direction": "inbound",
        "instructions": "Ask for a refund."
    }))
    .unwrap();
    let scenario = runs::create_scenario(&app, project.id, scenario)
        .await
        .unwrap();
    let result: ResultDraft = serde_json::from_value(json!({
        "agent_id": agent.id, "scenario_ids": [scenario.id]
    }))
    .unwrap();
    let run_id = runs::create_result(&app, project.id, result)
        .await
        .unwrap()
        .runs[0]
        .id;

    let body = json!({"agent_id": agent.id, "calls": [{
        "id": "c1", "run_id": run_id,
        "startedAt": app.now().to_rfc3339(), "endedAt": app.now().to_rfc3339(),
        "endedReason": "customer-hungup",
        "messages": [{"role": "bot", "content": "Hello", "start_time": 0.0, "end_time": 1.0}]
    }]});
    let delivery = Delivery {
        project: &project,
        route: "/test",
        received_at: app.now(),
        answer: |kind| if kind.is_none() { 202 } else { 400 },
        format: callgrade_core::Format::Custom,
    };
    let bytes = serde_json::to_vec(&body).unwrap();
    ingest::receive(&app, &delivery, &bytes, true)
        .await
        .unwrap();

    let held = callgrade_app::worker::run_once(&app, "w").await.unwrap();
    assert_eq!(held, 1);
    let counts = store.job_counts(Some(project.id)).await.unwrap();
    assert_eq!((counts.running, counts.dead), (0, 1), "{counts:?}");
    let run = store.run(project.id, run_id).await.unwrap().unwrap();
    assert_eq!(run.status.as_str(), "failed");
    let reason = run.error_message.unwrap_or_default();
    assert!(
        reason.contains("panicked") && reason.contains("the cache exploded"),
        "{reason}"
    );
}
