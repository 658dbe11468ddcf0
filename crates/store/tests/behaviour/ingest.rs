//! Ingest: batches, resends, conflicts, NUL in text, call filters.
use callgrade_core::access::{KeyDraft, Scope, Scopes};
use callgrade_store::NewAgent;

use super::*;

pub(super) async fn story_call_filters(store: &dyn Store) {
    let (project, _) = store.create_project("filters").await.unwrap();
    let agent = store
        .create_agent(project.id, &NewAgent::named("a"))
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
        let mut ids: Vec<String> = page.data.into_iter().map(|c| c.external_id).collect();
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

pub(super) async fn story_ingest(store: &dyn Store) {
    // Projects and keys.
    let (project, key) = store.create_project("staging").await.unwrap();
    assert!(matches!(
        store.create_project("staging").await,
        Err(StoreError::AlreadyExists(_))
    ));
    let grant = store.authenticate(key.expose()).await.unwrap().unwrap();
    assert_eq!(grant.project.id, project.id);
    assert_eq!(
        (grant.key.name.as_str(), grant.key.scopes),
        ("default", Scopes::ALL)
    );
    let default_id = grant.key.id;
    assert!(store.authenticate("cg_nope").await.unwrap().is_none());

    // More keys, with scopes and an expiry; rotation with an overlap, then revocation.
    let now: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
    let draft = KeyDraft {
        name: "sender".into(),
        scopes: Scopes::of([Scope::Ingest]),
        expires_at: Some(now + TimeDelta::days(30)),
    };
    let (sender, sender_key) = store.create_key(project.id, &draft, now).await.unwrap();
    assert!(sender_key.expose().starts_with(&sender.key_prefix));
    let grant = store
        .authenticate(sender_key.expose())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grant.key.id, sender.id);
    assert_eq!(grant.key.expires_at, draft.expires_at);
    let soon = now + TimeDelta::minutes(10);
    let (next, next_key) = store
        .rotate_key(project.id, sender.id, soon, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((next.name.as_str(), next.scopes), ("sender", draft.scopes));
    assert_eq!(
        next.expires_at, draft.expires_at,
        "the successor keeps the expiry"
    );
    let old = store
        .authenticate(sender_key.expose())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        old.key.expires_at,
        Some(soon),
        "the overlap shortens the old key's life"
    );
    assert!(old.key.active_at(now) && !old.key.active_at(soon));
    assert!(
        store
            .rotate_key(project.id, sender.id, soon, soon)
            .await
            .unwrap()
            .is_none(),
        "an expired key has no successor"
    );
    store.touch_key(next.id, now).await.unwrap();
    let revoked = store
        .revoke_key(project.id, next.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (revoked.revoked_at, revoked.last_used_at),
        (Some(now), Some(now))
    );
    assert!(store
        .authenticate(next_key.expose())
        .await
        .unwrap()
        .is_none());
    let again = store
        .revoke_key(project.id, next.id, soon)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.revoked_at,
        Some(now),
        "a second revocation keeps the first time"
    );
    let listed = store.list_keys(project.id).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|k| k.id).collect();
    assert_eq!(ids, [next.id, sender.id, default_id]);
    assert_eq!(
        store
            .project_key(project.id, sender.id)
            .await
            .unwrap()
            .unwrap()
            .id,
        sender.id
    );
    let other = 999_999; // another project's id: the key is not reached through it
    assert!(store.project_key(other, sender.id).await.unwrap().is_none());
    assert!(store
        .revoke_key(other, sender.id, now)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .rotate_key(other, sender.id, now, now)
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        store.create_key(other, &draft, now).await,
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
            &NewAgent {
                phone_number: Some(phone("+14155551234")),
                description: Some("support".into()),
                ..NewAgent::named("Alex")
            },
        )
        .await
        .unwrap();
    assert_eq!(agent.phone_number.as_deref(), Some("+14155551234"));
    let foreign_agent = store
        .create_agent(other.id, &NewAgent::named("Other"))
        .await
        .unwrap();
    assert_eq!(store.list_agents(project.id).await.unwrap().len(), 1);
    assert!(matches!(
        store.create_agent(999_999, &NewAgent::named("Ghost")).await,
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
    // The store decides the kind; the edge answers it (409 here, by `answer`).
    assert_eq!(conflict.kind, RejectionKind::Conflict);
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
            Rejection::invalid_payload(vec![callgrade_core::FieldError::new("$", "bad")]),
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
        .map(|c| c.external_id.as_str())
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
    let ids: Vec<&str> = early.data.iter().map(|c| c.external_id.as_str()).collect();
    assert_eq!(ids, ["p2", "p1"]);
    store.ping().await.unwrap();
}

/// JSON strings may hold U+0000; a call carrying one is stored (PostgreSQL keeps it as U+FFFD
/// in plain text columns) and its resend is a duplicate, not an error.
pub(super) async fn story_text_with_nul(store: &dyn Store) {
    let (project, _) = store.create_project("nul").await.unwrap();
    let agent = store
        .create_agent(
            project.id,
            &NewAgent {
                phone_number: None,
                description: Some("a\u{0}b".into()),
                ..NewAgent::named("Alex")
            },
        )
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
            Rejection::invalid_payload(Vec::new()),
        )
        .await
        .unwrap();
    assert!(store.delivery(project.id, logged).await.unwrap().is_some());
}

/// (a) The same new call, received by several instances at once: one creation.
pub(super) async fn story_concurrent_resends(store: &dyn Store) {
    let (project, _) = store.create_project("resends").await.unwrap();
    let agent = store
        .create_agent(project.id, &NewAgent::named("Alex"))
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
