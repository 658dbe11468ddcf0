//! Behaviour stories for the storage seam. Every story runs on every backend: SQLite on a
//! temporary file, and PostgreSQL when `CALLGRADE_TEST_POSTGRES_URL` is set (for example
//! `postgres://postgres@127.0.0.1:5432/postgres`), each test on a database of its own that is
//! created for it and dropped after it.

use callgrade_core::{
    validate_batch, Direction, Limits, MatchOutcome, MatchedBy, MetricSpec, Op, OutputType,
    PhoneNumber, RubricRule, RubricVerdict, RunStatus, BUILTIN_METRICS,
};
use callgrade_store::*;
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::time::Duration;

mod ingest;
mod jobs;
mod metrics;
mod projects;
mod recordings;
mod runs;
mod simulations;
mod traces;
mod webhooks;

use {
    ingest::*, jobs::*, metrics::*, projects::*, recordings::*, runs::*, simulations::*, traces::*,
    webhooks::*,
};

// ---- Backends ----

use callgrade_testkit::{sqlite, TestDb};

/// One `sqlite_…` and one `postgres_…` test per story.
macro_rules! on_every_backend {
    ($($story:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let (_dir, store) = sqlite().await;
            $story(&store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs PostgreSQL: set CALLGRADE_TEST_POSTGRES_URL, run with --include-ignored"]
        async fn $postgres() {
            let db = TestDb::create(stringify!($postgres)).await;
            $story(&db.store().await).await;
        }
    )*};
}

on_every_backend! {
    story_ingest => sqlite_ingest, postgres_ingest;
    story_scenarios_and_runs => sqlite_scenarios_and_runs, postgres_scenarios_and_runs;
    story_matching => sqlite_matching, postgres_matching;
    story_sweep => sqlite_sweep, postgres_sweep;
    story_job_queue => sqlite_job_queue, postgres_job_queue;
    story_metrics => sqlite_metrics, postgres_metrics;
    story_text_with_nul => sqlite_text_with_nul, postgres_text_with_nul;
    story_concurrent_resends => sqlite_concurrent_resends, postgres_concurrent_resends;
    story_concurrent_phone_race => sqlite_concurrent_phone_race, postgres_concurrent_phone_race;
    story_concurrent_claims => sqlite_concurrent_claims, postgres_concurrent_claims;
    story_concurrent_sweeps => sqlite_concurrent_sweeps, postgres_concurrent_sweeps;
    story_settings => sqlite_settings, postgres_settings;
    story_call_filters => sqlite_call_filters, postgres_call_filters;
    story_job_signal => sqlite_job_signal, postgres_job_signal;
    story_simulations => sqlite_simulations, postgres_simulations;
    story_recordings => sqlite_recordings, postgres_recordings;
    story_vendor_ingest => sqlite_vendor_ingest, postgres_vendor_ingest;
    story_traces => sqlite_traces, postgres_traces;
    story_patch_call => sqlite_patch_call, postgres_patch_call;
    story_webhooks => sqlite_webhooks, postgres_webhooks;
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// When the stories' results are created; their calls start 21 s later.
fn t0() -> DateTime<Utc> {
    t("2025-10-15T09:22:00Z")
}

/// A valid call object starting at 09:22:21 and ending at 09:23:21.
fn call(id: &str) -> Value {
    json!({
        "id": id, "startedAt": "2025-10-15T09:22:21Z", "endedAt": "2025-10-15T09:23:21Z",
        "endedReason": "customer-hungup",
        "messages": [{"role": "bot", "content": "Hi", "start_time": 0.5, "end_time": 1.5}]
    })
}

fn with(mut call: Value, field: &str, value: Value) -> Value {
    call[field] = value;
    call
}

fn from_number(id: &str, from: &str) -> Value {
    with(call(id), "from_phone_number", json!(from))
}

fn batch(agent_id: i64, id: &str, reason: &str) -> (callgrade_core::Batch, String) {
    let body =
        json!({"agent_id": agent_id, "calls": [with(call(id), "endedReason", json!(reason))]});
    (
        validate_batch(&body, &Limits::default()).unwrap(),
        body.to_string(),
    )
}

/// The webhook's answers (the server's are the same).
fn answer(outcome: Option<RejectionKind>) -> u16 {
    match outcome {
        None => 202,
        Some(RejectionKind::Conflict) => 409,
        Some(_) => 400,
    }
}

fn delivery(project_id: i64, body: &str) -> NewDelivery {
    NewDelivery::new(
        project_id,
        Utc::now(),
        "/test",
        body.as_bytes(),
        1 << 16,
        answer,
    )
}

/// Sends `calls` as one webhook request received at `at`.
async fn send(
    store: &dyn Store,
    project_id: i64,
    at: DateTime<Utc>,
    agent_id: Option<i64>,
    calls: Vec<Value>,
) -> IngestOutcome {
    let body = json!({"agent_id": agent_id, "calls": calls});
    let batch = validate_batch(&body, &Limits::default()).unwrap();
    let delivery = NewDelivery::new(
        project_id,
        at,
        "/test",
        body.to_string().as_bytes(),
        1 << 16,
        answer,
    );
    store.ingest(batch, delivery).await.unwrap()
}

fn accepted(outcome: IngestOutcome) -> Receipt {
    match outcome {
        IngestOutcome::Accepted(receipt) => receipt,
        IngestOutcome::Rejected(r) => panic!("accepted expected, got {r:?}"),
    }
}

fn rejected(outcome: IngestOutcome) -> Rejection {
    match outcome {
        IngestOutcome::Rejected(r) => r,
        IngestOutcome::Accepted(r) => panic!("rejected expected, got {r:?}"),
    }
}

/// Sends one call and returns its receipt entry.
async fn send_one(
    store: &dyn Store,
    project_id: i64,
    at: DateTime<Utc>,
    agent_id: Option<i64>,
    call: Value,
) -> CallReceipt {
    accepted(send(store, project_id, at, agent_id, vec![call]).await)
        .calls
        .remove(0)
}

fn phone(n: &str) -> PhoneNumber {
    PhoneNumber::parse(n).unwrap()
}

async fn scenario(
    store: &dyn Store,
    project_id: i64,
    agent_id: i64,
    name: &str,
    direction: Direction,
    tester: &str,
    tags: &[&str],
) -> Scenario {
    store
        .create_scenario(
            project_id,
            &NewScenario {
                agent_id,
                name: name.into(),
                instructions: "ask about a refund".into(),
                expected_outcome_prompt: "the refund is explained".into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                direction,
                tester_phone_number: Some(phone(tester)),
                persona: None,
                first_message: None,
                tool_mocks: Vec::new(),
                unmatched_tool_result: None,
                stop_rules: Default::default(),
                quarantined: false,
            },
        )
        .await
        .unwrap()
}

fn runs_of(agent_id: i64, scenario_ids: Vec<i64>, frequency: u32) -> NewTestResult {
    NewTestResult {
        agent_id,
        scenario_ids,
        tags: Vec::new(),
        frequency,
        name: Some("nightly".into()),
        mode: None,
        label: None,
    }
}

/// Creates a result at [`t0`] and returns its runs' ids.
async fn start_runs(
    store: &dyn Store,
    project_id: i64,
    agent_id: i64,
    scenario_id: i64,
    frequency: u32,
) -> Vec<i64> {
    store
        .create_result(
            project_id,
            &runs_of(agent_id, vec![scenario_id], frequency),
            t0(),
        )
        .await
        .unwrap()
        .runs
        .iter()
        .map(|r| r.id)
        .collect()
}

async fn run(store: &dyn Store, project_id: i64, id: i64) -> Run {
    store.run(project_id, id).await.unwrap().unwrap()
}

fn page(limit: u32) -> CallFilter {
    CallFilter {
        limit,
        ..Default::default()
    }
}

// ---- Stories ----

/// One evaluation of `metric` with `value`.
fn evaluation(metric: &Metric, value: Value, passed: bool, at: DateTime<Utc>) -> Evaluation {
    Evaluation {
        metric_id: metric.id,
        metric_name: metric.spec.name.clone(),
        metric_version: metric.version,
        kind: metric.spec.kind(),
        output: metric.spec.output,
        status: EvaluationStatus::Ok,
        value: Some(value),
        passed: Some(passed),
        explanation: "computed".into(),
        details: json!({"samples": 3}),
        evaluated_at: at,
    }
}

fn verdict(success: bool) -> RubricVerdict {
    RubricVerdict {
        success: Some(success),
        undecided: None,
        rules: Vec::new(),
    }
}

fn script_metric(name: &str, description: &str) -> MetricSpec {
    MetricSpec {
        name: name.into(),
        output: OutputType::Binary,
        enum_values: Vec::new(),
        applies_to: callgrade_core::AppliesTo::Test,
        agent_ids: vec![1, 2],
        description: description.into(),
        definition: callgrade_core::MetricDefinition::Script {
            source: "result = true;".into(),
        },
        pass: Some(callgrade_core::Condition {
            op: Op::Eq,
            value: json!(true),
        }),
        enabled: true,
    }
}

const RACERS: usize = 8;
