//! The evaluation job queue: claims, leases, retries, wake-ups.
use callgrade_store::NewAgent;

use super::*;

/// The store signals its own job signal after every commit that queued jobs, whoever asked:
/// ingest, a re-evaluation, a manual attach. Nothing else has to remember to wake workers.
pub(super) async fn story_job_signal(store: &dyn Store) {
    let (project, _) = store.create_project("signal").await.unwrap();
    let agent = store
        .create_agent(project.id, &NewAgent::named("Alex"))
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

pub(super) async fn story_job_queue(store: &dyn Store) {
    let (project, _) = store.create_project("jobs").await.unwrap();
    let agent = store
        .create_agent(project.id, &NewAgent::named("Alex"))
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
    assert_eq!(detail.rubric.as_ref().and_then(|v| v.success), Some(true));
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

    // Two evaluations of one call at once (a re-evaluation queued while one runs): the older,
    // finishing last, does not put back what the newer wrote.
    store
        .enqueue_evaluations(project.id, &none, Some(&first.call_id), later)
        .await
        .unwrap();
    let older = store.claim_job("w1", later, lease).await.unwrap().unwrap();
    store
        .enqueue_evaluations(project.id, &none, Some(&first.call_id), later)
        .await
        .unwrap();
    let newer = store.claim_job("w2", later, lease).await.unwrap().unwrap();
    assert!(newer.id > older.id);
    assert!(store.complete_job(&newer, &better, later).await.unwrap());
    assert!(store.complete_job(&older, &worse, later).await.unwrap());
    let detail = store
        .call(project.id, &first.call_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.evaluations[0].value, Some(json!(2.5)));
    assert_eq!(store.job_counts(Some(project.id)).await.unwrap().running, 0);

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

    // The rubric's verdicts over a range: one call passed (the other's evaluation died).
    let counts = store
        .verdict_counts(project.id, Some(agent.id), None, None)
        .await
        .unwrap();
    assert_eq!(
        counts,
        VerdictCounts {
            passed: 1,
            failed: 0,
            undecided: 0
        }
    );
    assert_eq!(counts.pass_rate(), Some(1.0));
    let none = store
        .verdict_counts(project.id, None, Some(i64::MAX), None)
        .await
        .unwrap();
    assert_eq!((none, none.pass_rate()), (VerdictCounts::default(), None));
}

/// Workers of several instances claim at once: each job goes to one of them.
pub(super) async fn story_concurrent_claims(store: &dyn Store) {
    let (project, _) = store.create_project("claims").await.unwrap();
    let agent = store
        .create_agent(project.id, &NewAgent::named("Alex"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set CALLGRADE_TEST_POSTGRES_URL, run with --include-ignored"]
pub(super) async fn postgres_wakes_job_listeners() {
    let db = TestDb::create("postgres_wakes_job_listeners").await;
    let store = &db.store().await;
    let (project, _) = store.create_project("wake").await.unwrap();
    let agent = store
        .create_agent(project.id, &NewAgent::named("Alex"))
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
pub(super) async fn sqlite_listening_is_a_no_op() {
    let (_dir, store) = sqlite().await;
    store.listen_for_jobs().await.unwrap();
}
