//! One behaviour story for the storage seam. It runs on every backend the store implements.

use callgrade_core::{validate_batch, Limits, PhoneNumber};
use callgrade_store::*;
use chrono::Utc;
use serde_json::json;

async fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    (dir, SqliteStore::open(&url).await.unwrap())
}

fn delivery(project_id: i64, body: &str) -> NewDelivery {
    NewDelivery::new(project_id, Utc::now(), "/test", body.as_bytes(), 1 << 16)
}

fn batch(agent_id: i64, id: &str, reason: &str) -> (callgrade_core::Batch, String) {
    let body = json!({"agent_id": agent_id, "calls": [{
        "id": id, "startedAt": "2025-10-15T09:22:21Z", "endedAt": "2025-10-15T09:23:21Z",
        "endedReason": reason,
        "messages": [{"role": "bot", "content": "Hi", "start_time": 0.5, "end_time": 1.5}]
    }]});
    (
        validate_batch(&body, &Limits::default()).unwrap(),
        body.to_string(),
    )
}

#[tokio::test]
async fn sqlite_story() {
    let (_dir, store) = sqlite().await;
    story(&store).await;
}

async fn story(store: &dyn Store) {
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
    let (other, _) = store.create_project("production").await.unwrap();

    // Agents.
    let phone = PhoneNumber::parse("+14155551234").unwrap();
    let agent = store
        .create_agent(project.id, "Alex", Some(&phone), Some("support"))
        .await
        .unwrap();
    let foreign_agent = store
        .create_agent(other.id, "Other", None, None)
        .await
        .unwrap();
    assert_eq!(store.list_agents(project.id).await.unwrap().len(), 1);

    // Ingest, duplicate, conflict, unknown agent.
    let (b, body) = batch(agent.id, "c1", "customer-hungup");
    let IngestOutcome::Accepted(receipt) = store
        .ingest(b.clone(), delivery(project.id, &body))
        .await
        .unwrap()
    else {
        panic!("accepted expected")
    };
    assert_eq!(receipt.created, 1);
    let call_id = receipt.calls[0].call_id.clone();
    let IngestOutcome::Accepted(again) =
        store.ingest(b, delivery(project.id, &body)).await.unwrap()
    else {
        panic!("duplicate expected")
    };
    assert_eq!(again.calls[0].status, CallStatus::Duplicate);
    assert_eq!(again.calls[0].call_id, call_id);

    let (changed, body2) = batch(agent.id, "c1", "assistant-ended-call");
    let IngestOutcome::Rejected(conflict) = store
        .ingest(changed, delivery(project.id, &body2))
        .await
        .unwrap()
    else {
        panic!("conflict expected")
    };
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.errors[0].path, "calls[0].id");

    let (foreign, body3) = batch(foreign_agent.id, "c2", "x");
    let IngestOutcome::Rejected(unknown) = store
        .ingest(foreign, delivery(project.id, &body3))
        .await
        .unwrap()
    else {
        panic!("unknown agent expected")
    };
    assert_eq!(unknown.errors[0].path, "agent_id");

    // Reads are scoped to the project.
    let page = store
        .list_calls(
            project.id,
            &CallFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.data.len(), 1);
    assert!(store.call(other.id, &call_id).await.unwrap().is_none());
    let detail = store.call(project.id, &call_id).await.unwrap().unwrap();
    assert_eq!(detail.messages.len(), 1);
    assert_eq!(detail.summary.ended_reason, "customer-hungup");

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
    assert_eq!(statuses, [400, 409, 202, 202]);
    let rejected = store
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
    assert_eq!(rejected.data.len(), 1);
    let next = store
        .list_deliveries(
            project.id,
            &DeliveryFilter {
                outcome: Some(DeliveryOutcome::Rejected),
                limit: 1,
                cursor: rejected.next_cursor.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(next.data[0].status, 409);
    assert!(next.next_cursor.is_none());

    // Retention keeps the newest entries per project.
    let deleted = store.prune_deliveries(0, 2).await.unwrap();
    assert_eq!(deleted, 2);
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
}
