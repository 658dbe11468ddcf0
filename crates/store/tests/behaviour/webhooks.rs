//! Outbound webhooks: events written only for enabled endpoints subscribed to them, in the
//! ingest transaction; deliveries claimed by one sender at a time and taken over when a lease
//! runs out; a stale sender's answer changes nothing; replays; another project sees nothing.

use super::*;
use callgrade_core::outbound::{EndpointDraft, EndpointPatch, EventType};

fn draft(events: &[EventType]) -> EndpointDraft {
    EndpointDraft {
        url: "https://hooks.example.com/in".into(),
        events: events.iter().copied().collect(),
        enabled: true,
        description: String::new(),
        cekura_secret_header: false,
    }
}

fn attempt(delivery_id: i64, worker: &str, at: DateTime<Utc>, next: AttemptNext) -> AttemptRecord {
    AttemptRecord {
        delivery_id,
        worker: worker.into(),
        attempted_at: at,
        request_headers: json!({"webhook-id": "msg_x"}),
        status: Some(500),
        response: Some("no".into()),
        duration_ms: 3,
        error: Some("answered 500".into()),
        next,
    }
}

pub(super) async fn story_webhooks(store: &dyn Store) {
    let (project, _) = store.create_project("hooks").await.unwrap();
    let (other, _) = store.create_project("other hooks").await.unwrap();
    let agent = store
        .create_agent(project.id, &NewAgent::named("a"))
        .await
        .unwrap();
    // No endpoint: ingest writes no event.
    accepted(send(store, project.id, t0(), Some(agent.id), vec![call("quiet")]).await);
    let lease = TimeDelta::seconds(30);
    assert!(store
        .claim_deliveries("s1", t0(), lease, 10)
        .await
        .unwrap()
        .is_empty());

    let received = store
        .create_endpoint(
            project.id,
            &draft(&[EventType::CallReceived]),
            "whsec_AAAA",
            t0(),
        )
        .await
        .unwrap();
    let evaluated = store
        .create_endpoint(
            project.id,
            &draft(&[EventType::CallEvaluated]),
            "whsec_BBBB",
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(received.events, ["call.received"]);
    let theirs = store
        .create_endpoint(
            other.id,
            &draft(&[EventType::CallReceived]),
            "whsec_CCCC",
            t0(),
        )
        .await
        .unwrap();
    assert!(store
        .endpoint(project.id, theirs.id)
        .await
        .unwrap()
        .is_none());

    // A stored call: one delivery, to the subscribed endpoint; a resend adds none.
    accepted(send(store, project.id, t0(), Some(agent.id), vec![call("loud")]).await);
    accepted(send(store, project.id, t0(), Some(agent.id), vec![call("loud")]).await);
    let claimed = store.claim_deliveries("s1", t0(), lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let d = &claimed[0];
    assert_eq!((d.endpoint_id, d.attempts), (received.id, 0));
    assert_eq!(d.secrets, ["whsec_AAAA"]);
    let body: Value = serde_json::from_str(&d.payload).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["data"]["id"].as_str()),
        (Some("call.received"), Some("loud"))
    );
    // Leased: another sender gets nothing until the lease ends, then takes it over.
    assert!(store
        .claim_deliveries("s2", t0(), lease, 10)
        .await
        .unwrap()
        .is_empty());
    let later = t0() + TimeDelta::seconds(31);
    let taken = store
        .claim_deliveries("s2", later, lease, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].msg_id, d.msg_id, "the same webhook-id");
    // The first sender's late answer is logged but moves nothing; the second's does.
    store
        .record_attempt(attempt(d.id, "s1", later, AttemptNext::Delivered))
        .await
        .unwrap();
    let retry = later + TimeDelta::seconds(5);
    store
        .record_attempt(attempt(d.id, "s2", later, AttemptNext::RetryAt(retry)))
        .await
        .unwrap();
    let detail = store
        .outbound_delivery(project.id, d.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.delivery.status, OutboundStatus::Pending);
    assert_eq!(detail.delivery.next_attempt_at, Some(retry));
    assert_eq!(
        (detail.delivery.attempt_count, detail.attempts.len()),
        (1, 2)
    );
    let ep = store
        .endpoint(project.id, received.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ep.failing_since, Some(later));
    assert!(store
        .outbound_delivery(other.id, d.id)
        .await
        .unwrap()
        .is_none());

    // A disabled endpoint's deliveries wait, and it gets no new ones.
    let off = EndpointPatch {
        enabled: Some(false),
        ..Default::default()
    };
    store
        .update_endpoint(project.id, received.id, &off, later)
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .claim_deliveries("s2", retry, lease, 10)
        .await
        .unwrap()
        .is_empty());
    accepted(
        send(
            store,
            project.id,
            t0(),
            Some(agent.id),
            vec![call("while off")],
        )
        .await,
    );
    let on = EndpointPatch {
        enabled: Some(true),
        ..Default::default()
    };
    let ep = store
        .update_endpoint(project.id, received.id, &on, later)
        .await
        .unwrap()
        .unwrap();
    assert!(ep.enabled && ep.failing_since.is_none());
    let due = store
        .claim_deliveries("s2", retry, lease, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "only the one queued before");

    // Given up and disabling: the endpoint says why; a replay starts over.
    store
        .record_attempt(attempt(
            d.id,
            "s2",
            retry,
            AttemptNext::Failed { disable: true },
        ))
        .await
        .unwrap();
    let ep = store
        .endpoint(project.id, received.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!ep.enabled);
    assert!(ep.disabled_reason.unwrap().contains("answered 500"));
    let replayed = store
        .replay_delivery(project.id, d.id, retry)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (replayed.status, replayed.attempt_count),
        (OutboundStatus::Pending, 0)
    );
    assert!(matches!(
        store.replay_delivery(project.id, d.id, retry).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .replay_failed(project.id, None, t0(), retry)
            .await
            .unwrap(),
        0,
        "nothing else failed"
    );

    // A test event goes to one endpoint whatever it subscribes to.
    let test = NewEvent::new(EventType::Test, t0(), json!({}));
    assert_eq!(
        store
            .emit_event(project.id, test.clone(), Some(evaluated.id))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .emit_event(project.id, test, Some(theirs.id))
            .await
            .unwrap(),
        0
    );
    let page = store
        .list_outbound(
            project.id,
            &OutboundFilter {
                endpoint_id: Some(evaluated.id),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.data.len(), 1);
    assert_eq!(page.data[0].event_type, "test");

    // Rotation keeps the old secret signing until its time.
    let until = t0() + TimeDelta::hours(1);
    store
        .rotate_endpoint_secret(project.id, evaluated.id, "whsec_DDDD", Some(until), t0())
        .await
        .unwrap()
        .unwrap();
    let due = store.claim_deliveries("s3", t0(), lease, 10).await.unwrap();
    let mine = due.iter().find(|d| d.endpoint_id == evaluated.id).unwrap();
    assert_eq!(mine.secrets, ["whsec_DDDD", "whsec_BBBB"]);

    // Pruning takes finished deliveries older than the cut-off, never pending ones.
    let delivered = mine.id;
    store
        .record_attempt(attempt(delivered, "s3", t0(), AttemptNext::Delivered))
        .await
        .unwrap();
    assert_eq!(
        store.prune_outbound(t0()).await.unwrap(),
        0,
        "not older than the cut-off"
    );
    let cut = t0() + TimeDelta::seconds(1);
    assert_eq!(store.prune_outbound(cut).await.unwrap(), 1);
    assert!(store
        .outbound_delivery(project.id, delivered)
        .await
        .unwrap()
        .is_none());
    assert!(
        store
            .outbound_delivery(project.id, d.id)
            .await
            .unwrap()
            .is_some(),
        "a pending delivery stays"
    );

    assert!(store
        .delete_endpoint(project.id, received.id)
        .await
        .unwrap());
    assert!(!store
        .delete_endpoint(project.id, received.id)
        .await
        .unwrap());
    assert!(store
        .outbound_delivery(project.id, d.id)
        .await
        .unwrap()
        .is_none());
}
