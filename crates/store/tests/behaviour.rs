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
        async fn $postgres() {
            let Some(db) = TestDb::create(stringify!($postgres)).await else { return };
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
}

async fn story_call_filters(store: &dyn Store) {
    let (project, _) = store.create_project("filters").await.unwrap();
    let agent = store
        .create_agent(project.id, "a", None, None)
        .await
        .unwrap();
    let said = |id: &str, text: &str, reason: &str| {
        let c = with(call(id), "endedReason", json!(reason));
        with(c, "messages", json!([{"role": "user", "content": text}]))
    };
    accepted(
        send(
            store,
            project.id,
            Utc::now(),
            Some(agent.id),
            vec![
                said("a", "I want a REFUND_100% now", "customer-hungup"),
                said("b", "hello there", "assistant-ended-call"),
            ],
        )
        .await,
    );
    let ids = |page: Page<CallSummary>| -> Vec<String> {
        let mut ids: Vec<String> = page.data.into_iter().map(|c| c.id).collect();
        ids.sort();
        ids
    };
    let list = |filter: CallFilter| async move {
        store
            .list_calls(
                project.id,
                &CallFilter {
                    limit: 10,
                    ..filter
                },
            )
            .await
    };
    let text = |t: &str| CallFilter {
        text: Some(t.into()),
        ..Default::default()
    };
    assert_eq!(
        ids(list(text("refund_100%")).await.unwrap()),
        ["a"],
        "case-insensitive, wildcards literal"
    );
    assert_eq!(ids(list(text("_")).await.unwrap()), ["a"]);
    assert_eq!(
        ids(list(text("content")).await.unwrap()),
        Vec::<String>::new(),
        "field names are not text"
    );
    let reason = CallFilter {
        ended_reason: Some("assistant-ended-call".into()),
        ..Default::default()
    };
    assert_eq!(ids(list(reason).await.unwrap()), ["b"]);
    let test = CallFilter {
        kind: Some(CallKind::Test),
        ..Default::default()
    };
    assert!(list(test).await.unwrap().data.is_empty());
    let production = CallFilter {
        kind: Some(CallKind::Production),
        ..Default::default()
    };
    assert_eq!(ids(list(production).await.unwrap()), ["a", "b"]);
    let unevaluated = CallFilter {
        success: Some(true),
        ..Default::default()
    };
    assert!(
        list(unevaluated).await.unwrap().data.is_empty(),
        "not evaluated yet"
    );
}

async fn story_settings(store: &dyn Store) {
    let (project, _) = store.create_project("edits").await.unwrap();
    let agent = store
        .create_agent(project.id, "old", None, None)
        .await
        .unwrap();
    let phone = callgrade_core::PhoneNumber::parse("+14155550101").unwrap();
    let changed = store
        .update_agent(project.id, agent.id, "new", Some(&phone), Some("sells"))
        .await
        .unwrap();
    assert_eq!(
        (
            changed.id,
            changed.name.as_str(),
            changed.phone_number.as_deref()
        ),
        (agent.id, "new", Some("+14155550101"))
    );
    let (other, _) = store.create_project("other-edits").await.unwrap();
    assert!(matches!(
        store
            .update_agent(other.id, agent.id, "x", None, None)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.setting("admin_token_sha256").await.unwrap(), None);
    store
        .set_setting("admin_token_sha256", "first")
        .await
        .unwrap();
    store
        .set_setting("admin_token_sha256", "second")
        .await
        .unwrap();
    assert_eq!(
        store
            .setting("admin_token_sha256")
            .await
            .unwrap()
            .as_deref(),
        Some("second")
    );
}

// ---- Helpers ----

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

fn delivery(project_id: i64, body: &str) -> NewDelivery {
    NewDelivery::new(project_id, Utc::now(), "/test", body.as_bytes(), 1 << 16)
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
    );
    store.ingest(batch, delivery).await.unwrap()
}

fn accepted(outcome: IngestOutcome) -> Receipt {
    match outcome {
        IngestOutcome::Accepted(receipt) => receipt,
        IngestOutcome::Rejected(r) => panic!("accepted expected, got {r:?}"),
    }
}

fn rejected(outcome: IngestOutcome) -> RejectedDelivery {
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

/// The store signals its own job signal after every commit that queued jobs, whoever asked:
/// ingest, a re-evaluation, a manual attach. Nothing else has to remember to wake workers.
async fn story_job_signal(store: &dyn Store) {
    let (project, _) = store.create_project("signal").await.unwrap();
    let agent = store
        .create_agent(project.id, "Alex", None, None)
        .await
        .unwrap();
    let signal = store.job_signal();
    async fn within(notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>, what: &str) {
        tokio::time::timeout(Duration::from_secs(5), notified)
            .await
            .unwrap_or_else(|_| panic!("{what} did not signal the workers"));
    }

    let notified = signal.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let production = send_one(store, project.id, t0(), Some(agent.id), call("signal-1")).await;
    within(notified.as_mut(), "ingest").await;

    // Claim and finish the ingest's job so the call can be queued again.
    let job = store
        .claim_job("w", t0(), TimeDelta::seconds(30))
        .await
        .unwrap()
        .unwrap();
    store.fail_job(&job, "x", None, t0()).await.unwrap();
    let notified = signal.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let queued = store
        .enqueue_evaluations(project.id, &ReevaluateFilter::default(), None, t0())
        .await
        .unwrap();
    assert_eq!(queued, 1);
    within(notified.as_mut(), "a re-evaluation").await;

    // A run that matched nothing gets the production call by hand.
    let twins = scenario(
        store,
        project.id,
        agent.id,
        "twins",
        Direction::Inbound,
        "+15550000009",
        &[],
    )
    .await;
    let run_ids = start_runs(store, project.id, agent.id, twins.id, 1).await;
    let notified = signal.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    store
        .attach_call(project.id, run_ids[0], &production.call_id, t0())
        .await
        .unwrap();
    within(notified.as_mut(), "a manual attach").await;
}

async fn story_ingest(store: &dyn Store) {
    // Projects and keys.
    let (project, key) = store.create_project("staging").await.unwrap();
    assert!(matches!(
        store.create_project("staging").await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(
        store.authenticate(key.expose()).await.unwrap().unwrap().id,
        project.id
    );
    assert!(store.authenticate("cg_nope").await.unwrap().is_none());
    let new_key = store.rotate_key(project.id).await.unwrap();
    assert!(store.authenticate(key.expose()).await.unwrap().is_none());
    assert!(store
        .authenticate(new_key.expose())
        .await
        .unwrap()
        .is_some());
    assert!(matches!(
        store.rotate_key(999_999).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.find_project("staging").await.unwrap().unwrap().id,
        project.id
    );
    assert_eq!(
        store
            .find_project(&project.id.to_string())
            .await
            .unwrap()
            .unwrap()
            .name,
        "staging"
    );
    assert!(store.find_project("nope").await.unwrap().is_none());
    let (other, _) = store.create_project("production").await.unwrap();
    let names: Vec<String> = store
        .list_projects()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["staging", "production"]);

    // Agents.
    let agent = store
        .create_agent(
            project.id,
            "Alex",
            Some(&phone("+14155551234")),
            Some("support"),
        )
        .await
        .unwrap();
    assert_eq!(agent.phone_number.as_deref(), Some("+14155551234"));
    let foreign_agent = store
        .create_agent(other.id, "Other", None, None)
        .await
        .unwrap();
    assert_eq!(store.list_agents(project.id).await.unwrap().len(), 1);
    assert!(matches!(
        store.create_agent(999_999, "Ghost", None, None).await,
        Err(StoreError::NotFound(_))
    ));

    // Ingest, duplicate, conflict, unknown agent.
    let (b, body) = batch(agent.id, "c1", "customer-hungup");
    let receipt = accepted(
        store
            .ingest(b.clone(), delivery(project.id, &body))
            .await
            .unwrap(),
    );
    assert_eq!(receipt.created, 1);
    let call_id = receipt.calls[0].call_id.clone();
    let again = accepted(store.ingest(b, delivery(project.id, &body)).await.unwrap());
    assert_eq!(again.calls[0].status, CallStatus::Duplicate);
    assert_eq!(again.calls[0].call_id, call_id);
    assert_eq!((again.created, again.duplicates), (0, 1));

    let (changed, body2) = batch(agent.id, "c1", "assistant-ended-call");
    let conflict = rejected(
        store
            .ingest(changed, delivery(project.id, &body2))
            .await
            .unwrap(),
    );
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.errors[0].path, "calls[0].id");

    let (foreign, body3) = batch(foreign_agent.id, "c2", "x");
    let unknown = rejected(
        store
            .ingest(foreign, delivery(project.id, &body3))
            .await
            .unwrap(),
    );
    assert_eq!(unknown.errors[0].path, "agent_id");

    // A batch with one conflicting call stores none of its calls; conflicts list in order.
    let rejected_batch = rejected(
        send(
            store,
            project.id,
            Utc::now(),
            Some(agent.id),
            vec![
                call("c3"),
                with(call("c1"), "endedReason", json!("other")),
                call("c4"),
            ],
        )
        .await,
    );
    assert_eq!(rejected_batch.errors.len(), 1);
    assert_eq!(rejected_batch.errors[0].path, "calls[1].id");
    let c3 = store
        .list_calls(
            project.id,
            &CallFilter {
                external_id: Some("c3".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(c3.data.is_empty(), "nothing of a rejected batch is stored");

    // Reads are scoped to the project.
    let listed = store.list_calls(project.id, &page(10)).await.unwrap();
    assert_eq!(listed.data.len(), 1);
    assert!(store.call(other.id, &call_id).await.unwrap().is_none());
    let detail = store.call(project.id, &call_id).await.unwrap().unwrap();
    assert_eq!(detail.messages.len(), 1);
    assert_eq!(detail.summary.ended_reason, "customer-hungup");
    assert_eq!(detail.summary.duration_seconds, 60.0);
    assert_eq!(detail.summary.match_outcome, MatchOutcome::Unmatched);
    assert_eq!(detail.raw["id"], "c1");

    let deliveries = store
        .list_deliveries(
            project.id,
            &DeliveryFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let statuses: Vec<u16> = deliveries.data.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [409, 400, 409, 202, 202]);
    let logged = store
        .delivery(project.id, deliveries.data[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(logged.summary.outcome, "rejected");
    assert!(logged.body.unwrap().contains("\"c3\""));
    assert!(!logged.body_truncated);
    assert!(store
        .delivery(other.id, deliveries.data[0].id)
        .await
        .unwrap()
        .is_none());
    let rejected_page = store
        .list_deliveries(
            project.id,
            &DeliveryFilter {
                outcome: Some(DeliveryOutcome::Rejected),
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(rejected_page.data.len(), 1);
    let next = store
        .list_deliveries(
            project.id,
            &DeliveryFilter {
                outcome: Some(DeliveryOutcome::Rejected),
                limit: 1,
                cursor: rejected_page.next_cursor.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(next.data[0].status, 400);
    assert!(next.next_cursor.is_some());

    // A request refused before ingest is logged too.
    let logged_id = store
        .record_delivery(
            delivery(project.id, "{not json"),
            RejectedDelivery::invalid_payload(vec![callgrade_core::FieldError::new("$", "bad")]),
        )
        .await
        .unwrap();
    let logged = store
        .delivery(project.id, logged_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(logged.summary.status, 400);
    assert_eq!(logged.summary.errors[0].path, "$");

    // Retention keeps the newest entries per project.
    let deleted = store.prune_deliveries(0, 2).await.unwrap();
    assert_eq!(deleted, 4);
    let left = store
        .list_deliveries(
            project.id,
            &DeliveryFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(left.data.len(), 2);
    // Calls are never pruned with their log entries.
    assert!(store.call(project.id, &call_id).await.unwrap().is_some());

    // Pagination of calls, newest start first.
    let calls: Vec<Value> = (0..5)
        .map(|i| {
            with(
                call(&format!("p{i}")),
                "startedAt",
                json!(format!("2025-10-15T09:0{i}:00Z")),
            )
        })
        .collect();
    accepted(send(store, project.id, Utc::now(), Some(agent.id), calls).await);
    let first = store.list_calls(project.id, &page(4)).await.unwrap();
    assert_eq!(first.data.len(), 4);
    let second = store
        .list_calls(
            project.id,
            &CallFilter {
                cursor: first.next_cursor.clone(),
                limit: 4,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ids: Vec<&str> = first
        .data
        .iter()
        .chain(&second.data)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ids, ["c1", "p4", "p3", "p2", "p1", "p0"]);
    assert!(second.next_cursor.is_none());
    assert!(matches!(
        store
            .list_calls(
                project.id,
                &CallFilter {
                    cursor: Some("garbage".into()),
                    limit: 4,
                    ..Default::default()
                }
            )
            .await,
        Err(StoreError::InvalidInput(_))
    ));
    let early = store
        .list_calls(
            project.id,
            &CallFilter {
                agent_id: Some(agent.id),
                started_from_ms: Some(t("2025-10-15T09:01:00Z").timestamp_millis()),
                started_before_ms: Some(t("2025-10-15T09:03:00Z").timestamp_millis()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ids: Vec<&str> = early.data.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["p2", "p1"]);
    store.ping().await.unwrap();
}

async fn story_scenarios_and_runs(store: &dyn Store) {
    let (project, _) = store.create_project("runs").await.unwrap();
    let (other, _) = store.create_project("other").await.unwrap();
    let agent = store
        .create_agent(project.id, "Alex", Some(&phone("+14155550000")), None)
        .await
        .unwrap();
    let stranger = store
        .create_agent(other.id, "Stranger", None, None)
        .await
        .unwrap();

    // Scenarios, with tags in byte order whatever the database's collation.
    let inbound = scenario(
        store,
        project.id,
        agent.id,
        "refund",
        Direction::Inbound,
        "+15550000001",
        &["smoke", "bb", "B", "b-c"],
    )
    .await;
    assert_eq!(inbound.tags, ["B", "b-c", "bb", "smoke"]);
    assert_eq!(inbound.direction, Direction::Inbound);
    let outbound = scenario(
        store,
        project.id,
        agent.id,
        "callback",
        Direction::Outbound,
        "+15550000002",
        &["smoke"],
    )
    .await;
    let untagged = scenario(
        store,
        project.id,
        agent.id,
        "plain",
        Direction::Inbound,
        "+15550000003",
        &[],
    )
    .await;
    assert!(untagged.tags.is_empty());
    assert_eq!(
        store
            .scenario(project.id, outbound.id)
            .await
            .unwrap()
            .unwrap()
            .tester_phone_number
            .as_deref(),
        Some("+15550000002")
    );
    assert!(store
        .scenario(other.id, outbound.id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .list_scenarios(project.id, Some(agent.id))
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        store.list_scenarios(project.id, None).await.unwrap().len(),
        3
    );
    assert!(matches!(
        store
            .create_scenario(
                project.id,
                &NewScenario {
                    agent_id: stranger.id,
                    name: "x".into(),
                    instructions: String::new(),
                    expected_outcome_prompt: String::new(),
                    tags: Vec::new(),
                    direction: Direction::Inbound,
                    tester_phone_number: None,
                }
            )
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Results: scenarios by id and by tag, each once, times the frequency.
    let result = store
        .create_result(
            project.id,
            &NewTestResult {
                agent_id: agent.id,
                scenario_ids: vec![inbound.id],
                tags: vec!["smoke".into()],
                frequency: 2,
                name: Some("nightly".into()),
            },
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(result.runs.len(), 4);
    assert_eq!(result.counts.pending, 4);
    assert!(!result.finished);
    let scenario_ids: Vec<i64> = result.runs.iter().map(|r| r.scenario_id).collect();
    assert_eq!(
        scenario_ids,
        [inbound.id, inbound.id, outbound.id, outbound.id]
    );
    let first = &result.runs[0];
    assert_eq!(first.scenario_name, "refund");
    assert_eq!(first.status, RunStatus::Pending);
    assert_eq!(first.agent_phone_number.as_deref(), Some("+14155550000"));
    assert_eq!(first.deadline_at, t0() + TimeDelta::seconds(1800));
    assert!(first.listen_until.is_none());
    for bad in [
        runs_of(agent.id, vec![999_999], 1),
        runs_of(stranger.id, vec![inbound.id], 1),
        NewTestResult {
            tags: vec!["nothing".into()],
            ..runs_of(agent.id, Vec::new(), 1)
        },
    ] {
        assert!(matches!(
            store.create_result(project.id, &bad, t0()).await,
            Err(StoreError::InvalidInput(_))
        ));
    }
    assert!(store.result(other.id, result.id).await.unwrap().is_none());

    // Listing, newest first, by page and by filter.
    let page1 = store
        .list_runs(
            project.id,
            &RunFilter {
                limit: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let page2 = store
        .list_runs(
            project.id,
            &RunFilter {
                limit: 3,
                cursor: page1.next_cursor.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ids: Vec<i64> = page1.data.iter().chain(&page2.data).map(|r| r.id).collect();
    let mut expected: Vec<i64> = result.runs.iter().map(|r| r.id).collect();
    expected.reverse();
    assert_eq!(ids, expected);
    assert!(page2.next_cursor.is_none());

    // What the harness reports.
    let id = first.id;
    let started = t("2025-10-15T09:22:20Z");
    let ended = t("2025-10-15T09:23:21Z");
    let r = store
        .run_event(project.id, id, RunEvent::CallStarted(started), t0())
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.call_started_at),
        (RunStatus::InProgress, Some(started))
    );
    let r = store
        .run_event(project.id, id, RunEvent::CallEnded(ended), t0())
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::AwaitingTranscript);
    assert_eq!(r.listen_until, Some(ended + TimeDelta::seconds(300)));
    assert!(matches!(
        store
            .run_event(project.id, id, RunEvent::CallStarted(started), t0())
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.run_event(other.id, id, RunEvent::Cancel, t0()).await,
        Err(StoreError::NotFound(_))
    ));

    // The window is per project, and read live.
    let settings = ProjectSettings {
        listening_window_seconds: Some(60),
        run_deadline_seconds: None,
    };
    let updated = store
        .update_project_settings(project.id, &settings)
        .await
        .unwrap();
    assert_eq!(
        (
            updated.listening_window_seconds,
            updated.run_deadline_seconds
        ),
        (60, 1800)
    );
    assert_eq!(
        run(store, project.id, id).await.listen_until,
        Some(ended + TimeDelta::seconds(60))
    );
    assert!(matches!(
        store.update_project_settings(999_999, &settings).await,
        Err(StoreError::NotFound(_))
    ));

    // Cancel only while waiting.
    let cancel = result.runs[1].id;
    let r = store
        .run_event(project.id, cancel, RunEvent::Cancel, t0())
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Cancelled);
    assert_eq!(r.finished_at, Some(t0()));
    for event in [
        RunEvent::Cancel,
        RunEvent::CallStarted(started),
        RunEvent::CallEnded(ended),
    ] {
        assert!(matches!(
            store.run_event(project.id, cancel, event, t0()).await,
            Err(StoreError::Conflict(_))
        ));
    }
    let cancelled = store
        .list_runs(
            project.id,
            &RunFilter {
                status: Some(RunStatus::Cancelled),
                agent_id: Some(agent.id),
                result_id: Some(result.id),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cancelled.data.len(), 1);
    let counts = store
        .result(project.id, result.id)
        .await
        .unwrap()
        .unwrap()
        .counts;
    assert_eq!(
        (counts.cancelled, counts.awaiting_transcript, counts.pending),
        (1, 1, 2)
    );
}

async fn story_matching(store: &dyn Store) {
    let (project, _) = store.create_project("matching").await.unwrap();
    let agent = store
        .create_agent(project.id, "Alex", Some(&phone("+14155550000")), None)
        .await
        .unwrap();
    let other_agent = store
        .create_agent(project.id, "Blake", None, None)
        .await
        .unwrap();
    let s = |name: &'static str, direction, tester: &'static str| {
        scenario(store, project.id, agent.id, name, direction, tester, &[])
    };
    let inbound = s("in", Direction::Inbound, "+15550000001").await;
    let outbound = s("out", Direction::Outbound, "+15550000002").await;
    let twins = s("twins", Direction::Inbound, "+15550000003").await;
    let slow = s("slow", Direction::Inbound, "+15550000004").await;
    let doomed = s("doomed", Direction::Inbound, "+15550000005").await;
    let other = scenario(
        store,
        project.id,
        other_agent.id,
        "theirs",
        Direction::Inbound,
        "+15550000009",
        &[],
    )
    .await;
    let r_in = start_runs(store, project.id, agent.id, inbound.id, 1).await[0];
    let r_out = start_runs(store, project.id, agent.id, outbound.id, 1).await[0];
    let twin_runs = start_runs(store, project.id, agent.id, twins.id, 2).await;
    let r_slow = start_runs(store, project.id, agent.id, slow.id, 1).await[0];
    let r_other = start_runs(store, project.id, other_agent.id, other.id, 1).await[0];
    let r_cancelled = start_runs(store, project.id, agent.id, doomed.id, 1).await[0];
    let in_time = t("2025-10-15T09:23:30Z");

    // By run_id (no agent_id needed): matched.
    let by_run = send_one(
        store,
        project.id,
        in_time,
        None,
        with(call("by-run"), "run_id", json!(r_out)),
    )
    .await;
    assert_eq!(by_run.match_outcome, MatchOutcome::Matched);
    assert_eq!(
        (by_run.run_id, by_run.matched_by, by_run.agent_id),
        (Some(r_out), Some(MatchedBy::RunId), Some(agent.id))
    );
    let out = run(store, project.id, r_out).await;
    assert_eq!(out.status, RunStatus::Evaluating);
    assert_eq!(out.call_id.as_deref(), Some(by_run.call_id.as_str()));
    assert_eq!(out.matched_by, Some(MatchedBy::RunId));
    let detail = store
        .call(project.id, &by_run.call_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.summary.run_id, Some(r_out));
    assert_eq!(detail.summary.matched_by, Some(MatchedBy::RunId));

    // A resend keeps the first decision.
    let resent = send_one(
        store,
        project.id,
        in_time,
        None,
        with(call("by-run"), "run_id", json!(r_out)),
    )
    .await;
    assert_eq!(resent.status, CallStatus::Duplicate);
    assert_eq!(
        (resent.run_id, resent.matched_by, resent.match_outcome),
        (Some(r_out), Some(MatchedBy::RunId), MatchOutcome::Matched)
    );

    // The run already has a call: the next one naming it is a production call.
    let second = send_one(
        store,
        project.id,
        in_time,
        None,
        with(call("by-run-2"), "run_id", json!(r_out)),
    )
    .await;
    assert_eq!(second.match_outcome, MatchOutcome::Unmatched);
    assert!(second.reason.unwrap().contains("already has a call"));

    // Unknown runs and runs of another agent reject the request.
    let unknown = rejected(
        send(
            store,
            project.id,
            in_time,
            Some(agent.id),
            vec![with(call("ghost"), "run_id", json!(999_999))],
        )
        .await,
    );
    assert_eq!(unknown.errors[0].path, "calls[0].run_id");
    assert!(unknown.errors[0].message.contains("Run IDs not found"));
    let foreign = rejected(
        send(
            store,
            project.id,
            in_time,
            Some(agent.id),
            vec![with(call("theirs"), "run_id", json!(r_other))],
        )
        .await,
    );
    assert!(foreign.errors[0].message.contains("belongs to agent"));

    // By phone number, on the tester's side of the call.
    let by_phone = send_one(
        store,
        project.id,
        in_time,
        Some(agent.id),
        with(
            from_number("by-phone", "+15550000001"),
            "to_phone_number",
            json!("+14155550000"),
        ),
    )
    .await;
    assert_eq!(by_phone.match_outcome, MatchOutcome::Matched);
    assert_eq!(
        (by_phone.run_id, by_phone.matched_by),
        (Some(r_in), Some(MatchedBy::PhoneNumber))
    );
    assert_eq!(
        run(store, project.id, r_in).await.status,
        RunStatus::Evaluating
    );

    // Two listening runs fit: ambiguous, then attached by hand.
    let twin_call = send_one(
        store,
        project.id,
        in_time,
        Some(agent.id),
        from_number("twin", "+15550000003"),
    )
    .await;
    assert_eq!(twin_call.match_outcome, MatchOutcome::Ambiguous);
    assert_eq!(twin_call.candidates, twin_runs);
    assert_eq!(twin_call.run_id, None);
    let detail = store
        .call(project.id, &twin_call.call_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.match_candidates, twin_runs);
    let attached = store
        .attach_call(project.id, twin_runs[0], &twin_call.call_id, in_time)
        .await
        .unwrap();
    assert_eq!(attached.status, RunStatus::Evaluating);
    assert_eq!(attached.matched_by, Some(MatchedBy::Manual));
    let detail = store
        .call(project.id, &twin_call.call_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.summary.match_outcome, MatchOutcome::Matched);
    assert_eq!(detail.summary.run_id, Some(twin_runs[0]));
    assert!(detail.match_candidates.is_empty());
    // Attaching again to the same run is harmless; elsewhere it is refused.
    store
        .attach_call(project.id, twin_runs[0], &twin_call.call_id, in_time)
        .await
        .unwrap();
    assert!(matches!(
        store
            .attach_call(project.id, twin_runs[1], &twin_call.call_id, in_time)
            .await,
        Err(StoreError::Conflict(_))
    ));

    // Unmatched: wrong number, or nothing to match on.
    let stray = send_one(
        store,
        project.id,
        in_time,
        Some(agent.id),
        from_number("stray", "+19999999999"),
    )
    .await;
    assert_eq!(stray.match_outcome, MatchOutcome::Unmatched);
    assert!(stray.reason.unwrap().contains("+19999999999"));
    let bare = send_one(store, project.id, in_time, Some(agent.id), call("bare")).await;
    assert_eq!(bare.match_outcome, MatchOutcome::Unmatched);
    assert!(matches!(
        store
            .attach_call(project.id, twin_runs[0], &stray.call_id, in_time)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let theirs = send_one(store, project.id, in_time, Some(other_agent.id), call("b1")).await;
    assert!(matches!(
        store
            .attach_call(project.id, twin_runs[1], &theirs.call_id, in_time)
            .await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        store
            .attach_call(project.id, twin_runs[1], "no-such-call", in_time)
            .await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        store
            .attach_call(project.id, 999_999, &stray.call_id, in_time)
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Late: the harness reported the end, the transcript came after the window.
    store
        .run_event(
            project.id,
            r_slow,
            RunEvent::CallEnded(t("2025-10-15T09:23:21Z")),
            t0(),
        )
        .await
        .unwrap();
    let late = send_one(
        store,
        project.id,
        t("2025-10-15T09:30:00Z"),
        Some(agent.id),
        from_number("late", "+15550000004"),
    )
    .await;
    assert_eq!(late.match_outcome, MatchOutcome::Late);
    assert_eq!(late.run_id, Some(r_slow));
    assert!(late.reason.unwrap().contains("listening window closed"));
    let slow_run = run(store, project.id, r_slow).await;
    assert_eq!(slow_run.status, RunStatus::Timeout);
    assert!(slow_run.late);
    assert_eq!(slow_run.call_id.as_deref(), Some(late.call_id.as_str()));
    assert!(slow_run.error_message.unwrap().contains("late"));
    // Attaching it by hand completes the run; it stays late.
    let completed = store
        .attach_call(project.id, r_slow, &late.call_id, t("2025-10-15T09:31:00Z"))
        .await
        .unwrap();
    assert_eq!(completed.status, RunStatus::Evaluating);
    assert!(completed.late);
    assert_eq!(completed.matched_by, Some(MatchedBy::Manual));
    assert_eq!(completed.error_message, None);

    // A cancelled run takes no call.
    store
        .run_event(project.id, r_cancelled, RunEvent::Cancel, t0())
        .await
        .unwrap();
    let to_cancelled = send_one(
        store,
        project.id,
        in_time,
        None,
        with(call("to-cancelled"), "run_id", json!(r_cancelled)),
    )
    .await;
    assert_eq!(to_cancelled.match_outcome, MatchOutcome::Unmatched);
    assert!(to_cancelled.reason.unwrap().contains("cancelled"));
    assert!(matches!(
        store
            .attach_call(project.id, r_cancelled, &to_cancelled.call_id, in_time)
            .await,
        Err(StoreError::Conflict(_))
    ));

    // The report of a call's end after its transcript only records the time.
    let ended = t("2025-10-15T09:23:25Z");
    let r = store
        .run_event(project.id, r_in, RunEvent::CallEnded(ended), in_time)
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.call_ended_at),
        (RunStatus::Evaluating, Some(ended))
    );
}

async fn story_sweep(store: &dyn Store) {
    let (project, _) = store.create_project("sweep").await.unwrap();
    let agent = store
        .create_agent(project.id, "Alex", None, None)
        .await
        .unwrap();
    let sc = scenario(
        store,
        project.id,
        agent.id,
        "s",
        Direction::Inbound,
        "+15550000001",
        &[],
    )
    .await;
    let ids = start_runs(store, project.id, agent.id, sc.id, 4).await;
    let (ended, silent, answered, cancelled) = (ids[0], ids[1], ids[2], ids[3]);
    let end = t0() + TimeDelta::seconds(60);
    store
        .run_event(project.id, ended, RunEvent::CallEnded(end), t0())
        .await
        .unwrap();
    send_one(
        store,
        project.id,
        t0() + TimeDelta::seconds(90),
        None,
        with(call("answer"), "run_id", json!(answered)),
    )
    .await;
    store
        .run_event(project.id, cancelled, RunEvent::Cancel, t0())
        .await
        .unwrap();

    assert!(store
        .sweep_runs(t0() + TimeDelta::seconds(100))
        .await
        .unwrap()
        .is_empty());
    // The window closes 300 s after the reported end; exactly then is still in time.
    assert!(store
        .sweep_runs(end + TimeDelta::seconds(300))
        .await
        .unwrap()
        .is_empty());
    let after_window = end + TimeDelta::seconds(301);
    assert_eq!(store.sweep_runs(after_window).await.unwrap(), [ended]);
    assert!(store.sweep_runs(after_window).await.unwrap().is_empty());
    let timed_out = run(store, project.id, ended).await;
    assert_eq!(timed_out.status, RunStatus::Timeout);
    assert_eq!(timed_out.finished_at, Some(after_window));
    assert!(timed_out
        .error_message
        .unwrap()
        .contains("300 s listening window"));

    let after_deadline = t0() + TimeDelta::seconds(1801);
    assert_eq!(store.sweep_runs(after_deadline).await.unwrap(), [silent]);
    assert!(store.sweep_runs(after_deadline).await.unwrap().is_empty());
    assert!(run(store, project.id, silent)
        .await
        .error_message
        .unwrap()
        .contains("deadline"));
    assert_eq!(
        run(store, project.id, answered).await.status,
        RunStatus::Evaluating
    );
    assert_eq!(
        run(store, project.id, cancelled).await.status,
        RunStatus::Cancelled
    );

    // A transcript for a timed-out run is linked to it as late.
    let late = send_one(
        store,
        project.id,
        after_deadline,
        None,
        with(call("late"), "run_id", json!(ended)),
    )
    .await;
    assert_eq!(late.match_outcome, MatchOutcome::Late);
    assert!(late.reason.unwrap().contains("already timed out"));
    let r = run(store, project.id, ended).await;
    assert_eq!((r.status, r.late), (RunStatus::Timeout, true));
    assert_eq!(r.finished_at, Some(after_window), "the first end is kept");
    let result = store
        .result(project.id, r.result_id)
        .await
        .unwrap()
        .unwrap();
    assert!(!result.finished, "the answered run is still evaluating");
    assert_eq!(result.counts.timeout, 2);
}

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
        success,
        rules: Vec::new(),
    }
}

async fn story_job_queue(store: &dyn Store) {
    let (project, _) = store.create_project("jobs").await.unwrap();
    let agent = store
        .create_agent(project.id, "Alex", None, None)
        .await
        .unwrap();
    let sc = scenario(
        store,
        project.id,
        agent.id,
        "s",
        Direction::Inbound,
        "+15550000001",
        &[],
    )
    .await;
    let runs = start_runs(store, project.id, agent.id, sc.id, 2).await;
    let metric = store.list_metrics(project.id).await.unwrap().remove(0);
    // Inside the runs' listening windows.
    let now = t("2025-10-15T09:23:30Z");
    let lease = TimeDelta::seconds(30);

    // Storing a call queues its evaluation.
    let first = send_one(
        store,
        project.id,
        now,
        None,
        with(call("first"), "run_id", json!(runs[0])),
    )
    .await;
    let counts = store.job_counts(Some(project.id)).await.unwrap();
    assert_eq!((counts.queued, counts.running), (1, 0));
    assert_eq!(store.job_counts(None).await.unwrap().queued, 1);
    assert_eq!(store.job_counts(Some(999_999)).await.unwrap().queued, 0);

    // Claim, renew, complete with results and the verdict.
    let job = store.claim_job("w1", now, lease).await.unwrap().unwrap();
    assert_eq!(
        (job.project_id, job.call_id.as_str(), job.attempts),
        (project.id, first.call_id.as_str(), 1)
    );
    assert!(store.claim_job("w2", now, lease).await.unwrap().is_none());
    assert_eq!(store.job_counts(None).await.unwrap().running, 1);
    assert!(store
        .renew_lease(&job, now + TimeDelta::seconds(10))
        .await
        .unwrap());
    let outcome = CallEvaluation {
        evaluations: vec![evaluation(&metric, json!(1.5), true, now)],
        verdict: verdict(true),
    };
    assert!(store.complete_job(&job, &outcome, now).await.unwrap());
    assert!(!store.complete_job(&job, &outcome, now).await.unwrap());
    assert!(!store.renew_lease(&job, now).await.unwrap());
    // List pages read chosen metric values of many calls in one query.
    let values = store
        .metric_values(
            project.id,
            std::slice::from_ref(&first.call_id),
            &[metric.spec.name.as_str(), "other"],
        )
        .await
        .unwrap();
    assert_eq!(
        values,
        [(first.call_id.clone(), metric.spec.name.clone(), json!(1.5))]
    );
    assert!(store
        .metric_values(project.id, &[], &["x"])
        .await
        .unwrap()
        .is_empty());
    let detail = store
        .call(project.id, &first.call_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.summary.success, Some(true));
    assert!(detail.summary.evaluated_at.is_some());
    assert_eq!(detail.rubric.as_ref().map(|v| v.success), Some(true));
    assert_eq!(detail.evaluations.len(), 1);
    let stored = &detail.evaluations[0];
    assert_eq!(stored.value, Some(json!(1.5)));
    assert_eq!(stored.details, json!({"samples": 3}));
    assert_eq!(
        (stored.metric_id, stored.status, stored.passed),
        (metric.id, EvaluationStatus::Ok, Some(true))
    );
    let completed = run(store, project.id, runs[0]).await;
    assert_eq!(
        (completed.status, completed.success),
        (RunStatus::Completed, Some(true))
    );
    assert_eq!(completed.finished_at, Some(now));

    // Re-evaluation queues a call once while it waits.
    let none = ReevaluateFilter::default();
    assert_eq!(
        store
            .enqueue_evaluations(project.id, &none, Some(&first.call_id), now)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .enqueue_evaluations(project.id, &none, None, now)
            .await
            .unwrap(),
        0
    );
    assert!(matches!(
        store
            .enqueue_evaluations(project.id, &none, Some("nope"), now)
            .await,
        Err(StoreError::NotFound(_))
    ));

    // A failure is retried later; a job that keeps failing is dead.
    let retry = store.claim_job("w1", now, lease).await.unwrap().unwrap();
    let retry_at = now + TimeDelta::seconds(60);
    store
        .fail_job(&retry, "judge unavailable", Some(retry_at), now)
        .await
        .unwrap();
    assert_eq!(store.job_counts(None).await.unwrap().queued, 1);
    assert!(store.claim_job("w2", now, lease).await.unwrap().is_none());
    let again = store
        .claim_job("w2", retry_at, lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id, again.attempts), (retry.id, 2));
    store
        .fail_job(&again, "judge still unavailable", None, retry_at)
        .await
        .unwrap();
    let counts = store.job_counts(Some(project.id)).await.unwrap();
    assert_eq!(
        (counts.queued, counts.running, counts.done, counts.dead),
        (0, 0, 1, 1)
    );
    // The run had its verdict already: a dead re-evaluation leaves it be.
    assert_eq!(
        run(store, project.id, runs[0]).await.status,
        RunStatus::Completed
    );

    // A run waiting on a dead evaluation fails, with the reason.
    let second = send_one(
        store,
        project.id,
        now,
        None,
        with(call("second"), "run_id", json!(runs[1])),
    )
    .await;
    let job = store.claim_job("w1", now, lease).await.unwrap().unwrap();
    assert_eq!(job.call_id, second.call_id);
    store.fail_job(&job, "boom", None, now).await.unwrap();
    let failed = run(store, project.id, runs[1]).await;
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("evaluation failed: boom")
    );

    // A worker that stops renewing loses its job to another, and then writes nothing.
    store
        .enqueue_evaluations(project.id, &none, Some(&first.call_id), now)
        .await
        .unwrap();
    let stale = store.claim_job("w1", now, lease).await.unwrap().unwrap();
    assert!(store
        .claim_job("w2", now + TimeDelta::seconds(10), lease)
        .await
        .unwrap()
        .is_none());
    let later = now + TimeDelta::seconds(31);
    let taken = store.claim_job("w2", later, lease).await.unwrap().unwrap();
    assert_eq!((taken.id, taken.attempts), (stale.id, 2));
    assert!(!store.renew_lease(&stale, later).await.unwrap());
    let worse = CallEvaluation {
        evaluations: vec![evaluation(&metric, json!(9.0), false, later)],
        verdict: verdict(false),
    };
    assert!(!store.complete_job(&stale, &worse, later).await.unwrap());
    store
        .fail_job(&stale, "ignored", None, later)
        .await
        .unwrap();
    let better = CallEvaluation {
        evaluations: vec![evaluation(&metric, json!(2.5), true, later)],
        verdict: verdict(true),
    };
    assert!(store.complete_job(&taken, &better, later).await.unwrap());
    let detail = store
        .call(project.id, &first.call_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.evaluations.len(), 1, "a rerun replaces the results");
    assert_eq!(detail.evaluations[0].value, Some(json!(2.5)));
    assert_eq!(detail.summary.success, Some(true));

    // The summary aggregates stored results.
    let summary = store
        .metrics_summary(project.id, Some(agent.id), None, None)
        .await
        .unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].metric_id, metric.id);
    assert_eq!((summary[0].count, summary[0].without_value), (1, 0));
    assert_eq!(summary[0].avg, Some(2.5));
    assert_eq!(summary[0].pass_rate, Some(1.0));
    assert!(store
        .metrics_summary(project.id, None, Some(i64::MAX), None)
        .await
        .unwrap()
        .is_empty());
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

async fn story_metrics(store: &dyn Store) {
    let (project, _) = store.create_project("metrics").await.unwrap();
    let (other, _) = store.create_project("other").await.unwrap();

    // A new project starts with the builtin catalogue.
    let builtins = store.list_metrics(project.id).await.unwrap();
    assert_eq!(builtins.len(), BUILTIN_METRICS.len());
    assert!(builtins.iter().all(|m| m.version == 1));
    let silence = builtins
        .iter()
        .find(|m| m.spec.name == "silence_detected")
        .unwrap();
    assert_eq!(silence.spec.config()["pass"]["value"], json!(false));

    // Create, update (version bump), rename clash, delete.
    let created = store
        .create_metric(project.id, &script_metric("refund", "mentions refunds"))
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.spec, script_metric("refund", "mentions refunds"));
    assert!(matches!(
        store
            .create_metric(project.id, &script_metric("refund", "again"))
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    store
        .create_metric(other.id, &script_metric("refund", "other project"))
        .await
        .unwrap();
    let updated = store
        .update_metric(project.id, created.id, &script_metric("refund", "v2"))
        .await
        .unwrap();
    assert_eq!(
        (updated.version, updated.spec.description.as_str()),
        (2, "v2")
    );
    assert!(matches!(
        store
            .update_metric(
                project.id,
                created.id,
                &script_metric("silence_detected", "x")
            )
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        store
            .update_metric(other.id, created.id, &script_metric("refund", "x"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    store.delete_metric(project.id, created.id).await.unwrap();
    assert!(store
        .metric(project.id, created.id)
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        store.delete_metric(project.id, created.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.list_metrics(project.id).await.unwrap().len(),
        BUILTIN_METRICS.len()
    );
    let recreated = store
        .create_metric(project.id, &script_metric("refund", "back"))
        .await
        .unwrap();
    assert_ne!(recreated.id, created.id);

    // Apply by name: created, updated, unchanged; applying again changes nothing.
    let mut changed = silence.spec.clone();
    changed.description = "quiet".into();
    let kept = builtins.iter().find(|m| m.id != silence.id).unwrap();
    let specs = vec![
        kept.spec.clone(),
        changed.clone(),
        script_metric("new_one", "fresh"),
    ];
    let summary = store.apply_metrics(project.id, &specs).await.unwrap();
    assert_eq!(summary.created, ["new_one"]);
    assert_eq!(summary.updated, ["silence_detected"]);
    assert_eq!(summary.unchanged, [kept.spec.name.as_str()]);
    let again = store.apply_metrics(project.id, &specs).await.unwrap();
    assert!(again.created.is_empty() && again.updated.is_empty());
    assert_eq!(again.unchanged.len(), 3);
    assert_eq!(
        store
            .metric(project.id, silence.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );

    // Rubric and judge settings.
    assert!(store.rubric(project.id).await.unwrap().is_empty());
    let rules = vec![RubricRule {
        metric: "new_one".into(),
        op: Op::Eq,
        value: json!(true),
    }];
    store.set_rubric(project.id, &rules).await.unwrap();
    assert_eq!(store.rubric(project.id).await.unwrap(), rules);
    let judge = store.judge_settings(project.id).await.unwrap();
    assert_eq!(judge.concurrency, 4);
    assert!(!judge.api_key_set && judge.base_url.is_none());
    store
        .set_judge_settings(
            project.id,
            &JudgeSettingsPatch {
                base_url: Some("http://judge.local/v1".into()),
                model: Some("small".into()),
                api_key: Some("sk-secret".into()),
                concurrency: Some(2),
            },
        )
        .await
        .unwrap();
    store
        .set_judge_settings(
            project.id,
            &JudgeSettingsPatch {
                api_key: Some(String::new()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let judge = store.judge_settings(project.id).await.unwrap();
    assert_eq!(judge.base_url.as_deref(), Some("http://judge.local/v1"));
    assert_eq!(judge.model.as_deref(), Some("small"));
    assert_eq!(
        (judge.api_key, judge.api_key_set, judge.concurrency),
        (None, false, 2)
    );

    // What an evaluation is given.
    let agent = store
        .create_agent(project.id, "Alex", None, Some("helps"))
        .await
        .unwrap();
    let sc = scenario(
        store,
        project.id,
        agent.id,
        "s",
        Direction::Outbound,
        "+15550000001",
        &[],
    )
    .await;
    let run_id = start_runs(store, project.id, agent.id, sc.id, 1).await[0];
    let test_call = send_one(
        store,
        project.id,
        Utc::now(),
        None,
        with(call("test"), "run_id", json!(run_id)),
    )
    .await;
    let input = store
        .evaluation_input(project.id, &test_call.call_id)
        .await
        .unwrap()
        .unwrap();
    assert!(input.is_test_call());
    assert_eq!(input.agent.unwrap().description.as_deref(), Some("helps"));
    assert_eq!(input.scenario.unwrap().id, sc.id);
    assert_eq!(input.metrics.len(), BUILTIN_METRICS.len() + 2);
    assert_eq!(input.rubric, rules);
    assert_eq!(input.judge.model.as_deref(), Some("small"));
    let production = send_one(store, project.id, Utc::now(), Some(agent.id), call("prod")).await;
    let input = store
        .evaluation_input(project.id, &production.call_id)
        .await
        .unwrap()
        .unwrap();
    assert!(!input.is_test_call() && input.scenario.is_none());
    assert!(store
        .evaluation_input(other.id, &production.call_id)
        .await
        .unwrap()
        .is_none());

    // The judge cache.
    assert!(store.judge_cache_get("k").await.unwrap().is_none());
    store
        .judge_cache_put("k", "{\"verdict\":true}", Utc::now())
        .await
        .unwrap();
    store
        .judge_cache_put("k", "{\"verdict\":false}", Utc::now())
        .await
        .unwrap();
    assert_eq!(
        store.judge_cache_get("k").await.unwrap().as_deref(),
        Some("{\"verdict\":false}")
    );
}

/// JSON strings may hold U+0000; a call carrying one is stored (PostgreSQL keeps it as U+FFFD
/// in plain text columns) and its resend is a duplicate, not an error.
async fn story_text_with_nul(store: &dyn Store) {
    let (project, _) = store.create_project("nul").await.unwrap();
    let agent = store
        .create_agent(project.id, "Alex", None, Some("a\u{0}b"))
        .await
        .unwrap();
    let odd = with(call("id\u{0}x"), "endedReason", json!("hung\u{0}up"));
    let first = send_one(store, project.id, Utc::now(), Some(agent.id), odd.clone()).await;
    assert_eq!(first.status, CallStatus::Created);
    let again = send_one(store, project.id, Utc::now(), Some(agent.id), odd).await;
    assert_eq!(
        (again.status, again.call_id.as_str()),
        (CallStatus::Duplicate, first.call_id.as_str())
    );
    let detail = store
        .call(project.id, &first.call_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        detail.raw["id"],
        json!("id\u{0}x"),
        "raw JSON keeps it exactly"
    );
    let logged = store
        .record_delivery(
            delivery(project.id, "\u{0}garbage"),
            RejectedDelivery::invalid_payload(Vec::new()),
        )
        .await
        .unwrap();
    assert!(store.delivery(project.id, logged).await.unwrap().is_some());
}

const RACERS: usize = 8;

/// (a) The same new call, received by several instances at once: one creation.
async fn story_concurrent_resends(store: &dyn Store) {
    let (project, _) = store.create_project("resends").await.unwrap();
    let agent = store
        .create_agent(project.id, "Alex", None, None)
        .await
        .unwrap();
    let (b, body) = batch(agent.id, "same", "customer-hungup");
    let receipts: Vec<Receipt> =
        join_all((0..RACERS).map(|_| store.ingest(b.clone(), delivery(project.id, &body))))
            .await
            .into_iter()
            .map(|outcome| accepted(outcome.unwrap()))
            .collect();
    let created = receipts.iter().filter(|r| r.created == 1).count();
    let duplicates = receipts.iter().filter(|r| r.duplicates == 1).count();
    assert_eq!((created, duplicates), (1, RACERS - 1));
    let call_id = &receipts[0].calls[0].call_id;
    assert!(receipts.iter().all(|r| &r.calls[0].call_id == call_id));
    assert_eq!(
        store
            .list_calls(project.id, &page(10))
            .await
            .unwrap()
            .data
            .len(),
        1
    );
    assert_eq!(store.job_counts(Some(project.id)).await.unwrap().queued, 1);
    let logged = store
        .list_deliveries(
            project.id,
            &DeliveryFilter {
                outcome: Some(DeliveryOutcome::Accepted),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(logged.data.len(), RACERS);
}

/// (b) Different calls from the tester's number race for one listening run: one takes it.
async fn story_concurrent_phone_race(store: &dyn Store) {
    let (project, _) = store.create_project("race").await.unwrap();
    let agent = store
        .create_agent(project.id, "Alex", None, None)
        .await
        .unwrap();
    let sc = scenario(
        store,
        project.id,
        agent.id,
        "s",
        Direction::Inbound,
        "+15550000001",
        &[],
    )
    .await;
    let run_id = start_runs(store, project.id, agent.id, sc.id, 1).await[0];
    let at = t("2025-10-15T09:23:30Z");
    let receipts: Vec<CallReceipt> = join_all((0..RACERS).map(|i| {
        send_one(
            store,
            project.id,
            at,
            Some(agent.id),
            from_number(&format!("racer-{i}"), "+15550000001"),
        )
    }))
    .await;
    let matched: Vec<&CallReceipt> = receipts
        .iter()
        .filter(|r| r.match_outcome == MatchOutcome::Matched)
        .collect();
    assert_eq!(matched.len(), 1, "{receipts:#?}");
    assert!(receipts
        .iter()
        .filter(|r| r.match_outcome != MatchOutcome::Matched)
        .all(|r| r.match_outcome == MatchOutcome::Unmatched && r.run_id.is_none()));
    let r = run(store, project.id, run_id).await;
    assert_eq!(r.call_id.as_deref(), Some(matched[0].call_id.as_str()));
    assert_eq!(r.status, RunStatus::Evaluating);
}

/// Workers of several instances claim at once: each job goes to one of them.
async fn story_concurrent_claims(store: &dyn Store) {
    let (project, _) = store.create_project("claims").await.unwrap();
    let agent = store
        .create_agent(project.id, "Alex", None, None)
        .await
        .unwrap();
    let calls = (0..3).map(|i| call(&format!("job-{i}"))).collect();
    accepted(send(store, project.id, Utc::now(), Some(agent.id), calls).await);
    let now = Utc::now();
    let workers: Vec<String> = (0..RACERS).map(|i| format!("w{i}")).collect();
    let claimed: Vec<Job> = join_all(
        workers
            .iter()
            .map(|w| store.claim_job(w, now, TimeDelta::seconds(30))),
    )
    .await
    .into_iter()
    .filter_map(|claim| claim.unwrap())
    .collect();
    let mut ids: Vec<i64> = claimed.iter().map(|j| j.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((claimed.len(), ids.len()), (3, 3));
    assert_eq!(store.job_counts(None).await.unwrap().running, 3);
}

/// Sweepers of several instances run at once: each run times out once.
async fn story_concurrent_sweeps(store: &dyn Store) {
    let (project, _) = store.create_project("sweeps").await.unwrap();
    let agent = store
        .create_agent(project.id, "Alex", None, None)
        .await
        .unwrap();
    let sc = scenario(
        store,
        project.id,
        agent.id,
        "s",
        Direction::Inbound,
        "+15550000001",
        &[],
    )
    .await;
    let mut runs = start_runs(store, project.id, agent.id, sc.id, 20).await;
    let later = t0() + TimeDelta::hours(1);
    let mut swept: Vec<i64> = join_all((0..4).map(|_| store.sweep_runs(later)))
        .await
        .into_iter()
        .flat_map(|s| s.unwrap())
        .collect();
    // A sweeper that skipped locked rows leaves them to the next round.
    swept.extend(store.sweep_runs(later).await.unwrap());
    swept.sort_unstable();
    runs.sort_unstable();
    assert_eq!(swept, runs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wakes_job_listeners() {
    let Some(db) = TestDb::create("postgres_wakes_job_listeners").await else {
        return;
    };
    let store = &db.store().await;
    let (project, _) = store.create_project("wake").await.unwrap();
    let agent = store
        .create_agent(project.id, "Alex", None, None)
        .await
        .unwrap();
    // Another instance's listener: its own store on the same database.
    let other_instance = db.store().await;
    let wake = other_instance.job_signal();
    other_instance.listen_for_jobs().await.unwrap();

    for id in ["n1", "n2"] {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        send_one(store, project.id, Utc::now(), Some(agent.id), call(id)).await;
        tokio::time::timeout(Duration::from_secs(10), notified)
            .await
            .expect("a committed job wakes the other instance");
    }
    // Re-evaluation requests wake it too.
    let notified = wake.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let queued = store
        .enqueue_evaluations(project.id, &ReevaluateFilter::default(), None, Utc::now())
        .await
        .unwrap();
    assert_eq!(queued, 0, "both calls are still waiting");
    let job = store
        .claim_job("w", Utc::now(), TimeDelta::seconds(30))
        .await
        .unwrap()
        .unwrap();
    store.fail_job(&job, "x", None, Utc::now()).await.unwrap();
    let queued = store
        .enqueue_evaluations(project.id, &ReevaluateFilter::default(), None, Utc::now())
        .await
        .unwrap();
    assert_eq!(queued, 1);
    tokio::time::timeout(Duration::from_secs(10), notified)
        .await
        .expect("a re-evaluation wakes the other instance");
}

#[tokio::test]
async fn sqlite_listening_is_a_no_op() {
    let (_dir, store) = sqlite().await;
    store.listen_for_jobs().await.unwrap();
}
