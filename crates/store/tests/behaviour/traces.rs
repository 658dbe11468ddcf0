//! Traces: spans kept once per project, found by a call's trace id in any case; a trace that
//! grows queues its calls' evaluation again, and evaluation reads its breakdown. A call's
//! metadata patched in one transaction.

use super::*;
use callgrade_core::{read_traces, CallPatch, OtlpEncoding, TraceLimits};

const TRACE: &str = "5b8efff798038103d269b633813fc60c";

fn pipecat_spans() -> Vec<callgrade_core::TraceSpan> {
    let export = include_bytes!("../../../core/tests/fixtures/traces/pipecat.json");
    read_traces(export, OtlpEncoding::Json, &TraceLimits::default())
        .unwrap()
        .spans
}

pub(super) async fn story_traces(store: &dyn Store) {
    let (project, _) = store.create_project("traces").await.unwrap();
    let (other, _) = store.create_project("other traces").await.unwrap();
    let agent = store
        .create_agent(project.id, &NewAgent::named("a"))
        .await
        .unwrap();
    // A call whose sender wrote the trace id in capitals; its first evaluation under way.
    let traced = with(call("traced"), "trace_id", json!(TRACE.to_uppercase()));
    let receipt = accepted(send(store, project.id, t0(), Some(agent.id), vec![traced]).await);
    let call_id = receipt.calls[0].call_id.clone();
    let lease = TimeDelta::seconds(30);
    let job = store
        .claim_job("w", Utc::now(), lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.call_id, call_id);

    let first = store
        .store_spans(project.id, pipecat_spans(), delivery(project.id, "{}"))
        .await
        .unwrap();
    assert_eq!((first.stored, first.duplicates), (11, 0));
    assert_eq!(first.calls, std::slice::from_ref(&call_id));
    assert_eq!(
        store.job_counts(Some(project.id)).await.unwrap().queued,
        1,
        "the call is evaluated again with its trace"
    );
    // An exporter's retry: kept once, nothing queued.
    let again = store
        .store_spans(project.id, pipecat_spans(), delivery(project.id, "{}"))
        .await
        .unwrap();
    assert_eq!(
        (again.stored, again.duplicates, again.calls.len()),
        (0, 11, 0)
    );
    // The same trace id in another project is another trace.
    let theirs = store
        .store_spans(other.id, pipecat_spans(), delivery(other.id, "{}"))
        .await
        .unwrap();
    assert_eq!((theirs.stored, theirs.calls.len()), (11, 0));

    let trace = store
        .trace(project.id, &TRACE.to_uppercase())
        .await
        .unwrap();
    let mut sent = pipecat_spans();
    sent.sort_by(|a, b| (a.start_unix_nano, &a.span_id).cmp(&(b.start_unix_nano, &b.span_id)));
    assert_eq!(trace, sent, "every span back as sent, in start order");
    assert!(store
        .trace(project.id, "00000000000000000000000000000001")
        .await
        .unwrap()
        .is_empty());

    // The evaluation queued reads the trace's breakdown.
    let claimed = store
        .claim_evaluations("w", Utc::now() + TimeDelta::seconds(1), lease, 10)
        .await
        .unwrap();
    let input = claimed[0].input.as_ref().unwrap();
    let breakdown = input.call.trace.as_ref().expect("the trace is read");
    assert_eq!(breakdown.turns.len(), 2);
    assert_eq!(breakdown.turns[0].llm_ttft.as_ref().unwrap().ms, 700.0);
}

pub(super) async fn story_patch_call(store: &dyn Store) {
    let (project, _) = store.create_project("patches").await.unwrap();
    let agent = store
        .create_agent(project.id, &NewAgent::named("a"))
        .await
        .unwrap();
    let with_metadata = with(
        call("patched"),
        "metadata",
        json!({"plan": "basic", "keep": 1}),
    );
    let receipt =
        accepted(send(store, project.id, t0(), Some(agent.id), vec![with_metadata]).await);
    let id = receipt.calls[0].call_id.clone();
    let lease = TimeDelta::seconds(30);
    store
        .claim_job("w", Utc::now(), lease)
        .await
        .unwrap()
        .unwrap();

    let patch = CallPatch::parse(&json!({
        "metadata": {"plan": "gold", "keep": null}, "ended_reason": "agent-transferred", "reevaluate": true
    }))
    .unwrap();
    let changed = store
        .patch_call(project.id, &id, &patch, 1024, Utc::now())
        .await
        .unwrap();
    assert_eq!(changed, Some(true));
    let stored = store.call(project.id, &id).await.unwrap().unwrap();
    assert_eq!(stored.metadata, json!({"plan": "gold"}));
    assert_eq!(stored.summary.ended_reason, "agent-transferred");
    assert_eq!(store.job_counts(Some(project.id)).await.unwrap().queued, 1);
    // The same again changes nothing; over the limit is refused and changes nothing.
    let unchanged = store
        .patch_call(
            project.id,
            &id,
            &CallPatch {
                reevaluate: false,
                ..patch.clone()
            },
            1024,
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(unchanged, Some(false));
    let big = CallPatch::parse(&json!({"metadata": {"big": "x".repeat(2000)}})).unwrap();
    let refused = store
        .patch_call(project.id, &id, &big, 1024, Utc::now())
        .await;
    assert!(
        matches!(refused, Err(StoreError::InvalidInput(_))),
        "{refused:?}"
    );
    assert_eq!(
        store.call(project.id, &id).await.unwrap().unwrap().metadata,
        json!({"plan": "gold"})
    );
    // Another project's call is not there.
    let (other, _) = store.create_project("other patches").await.unwrap();
    assert_eq!(
        store
            .patch_call(other.id, &id, &patch, 1024, Utc::now())
            .await
            .unwrap(),
        None
    );
}
