//! Projects, keys and server-wide settings.
use callgrade_store::NewAgent;

use super::*;

pub(super) async fn story_settings(store: &dyn Store) {
    let (project, _) = store.create_project("edits").await.unwrap();
    let agent = store
        .create_agent(project.id, &NewAgent::named("old"))
        .await
        .unwrap();
    let phone = callgrade_core::PhoneNumber::parse("+14155550101").unwrap();
    let changed = store
        .update_agent(
            project.id,
            agent.id,
            &NewAgent {
                phone_number: Some(phone),
                description: Some("sells".into()),
                ..NewAgent::named("new")
            },
        )
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
            .update_agent(other.id, agent.id, &NewAgent::named("x"))
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

/// Vendors' calls: agents found by the ids vendors know them by, signing secrets kept
/// write-only, and a later event of a call (Retell's analysis) amending it once.
pub(super) async fn story_vendor_ingest(store: &dyn Store) {
    use callgrade_core::{parse_vendor, Vendor, VendorBody};
    let (project, _) = store.create_project("vendors").await.unwrap();
    let agent = store
        .create_agent(
            project.id,
            &NewAgent {
                external_ids: vec!["agent_retell_1".into(), "asst_vapi_1".into()],
                ..NewAgent::named("front desk")
            },
        )
        .await
        .unwrap();
    assert_eq!(agent.external_ids, ["agent_retell_1", "asst_vapi_1"]);
    let found = store
        .agent_by_external_id(project.id, "asst_vapi_1")
        .await
        .unwrap();
    assert_eq!(found, Some(agent.id));
    let (other, _) = store.create_project("other vendors").await.unwrap();
    assert_eq!(
        store
            .agent_by_external_id(other.id, "asst_vapi_1")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .agent_by_external_id(project.id, "asst")
            .await
            .unwrap(),
        None
    );

    assert_eq!(
        store
            .vendor_secret(project.id, Vendor::Retell)
            .await
            .unwrap(),
        None
    );
    assert!(store
        .set_vendor_secret(project.id, Vendor::Retell, Some("k1"))
        .await
        .unwrap());
    assert!(store
        .set_vendor_secret(project.id, Vendor::Retell, Some("k2"))
        .await
        .unwrap());
    assert_eq!(
        store
            .vendor_secret(project.id, Vendor::Retell)
            .await
            .unwrap()
            .as_deref(),
        Some("k2")
    );
    let listed = store.vendor_secrets(project.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|v| v.vendor.as_str()).collect::<Vec<_>>(),
        ["retell"]
    );
    assert!(store.vendor_secrets(other.id).await.unwrap().is_empty());
    assert!(store
        .set_vendor_secret(project.id, Vendor::Retell, None)
        .await
        .unwrap());
    assert!(!store
        .set_vendor_secret(project.id, Vendor::Retell, None)
        .await
        .unwrap());

    let ended = json!({"event": "call_ended", "call": {
        "call_id": "r-1", "agent_id": "agent_retell_1",
        "start_timestamp": 1_764_496_800_000_i64, "end_timestamp": 1_764_496_830_000_i64,
        "transcript_object": [{"role": "agent", "content": "Hi", "words": [{"word": "Hi", "start": 0.4, "end": 0.7}]}]
    }});
    let mut analyzed = ended.clone();
    analyzed["event"] = json!("call_analyzed");
    analyzed["call"]["call_analysis"] = json!({"call_successful": true});
    let ingest = |body: Value| async move {
        let Ok(VendorBody::Call(found)) = parse_vendor(
            Vendor::Retell,
            body.clone(),
            Some(agent.id),
            &callgrade_core::Limits::default(),
        ) else {
            panic!("a Retell call");
        };
        let batch = callgrade_core::Batch {
            agent_id: Some(agent.id),
            calls: vec![found.call],
        };
        match store
            .ingest(batch, delivery(project.id, &body.to_string()))
            .await
            .unwrap()
        {
            IngestOutcome::Accepted(r) => r,
            IngestOutcome::Rejected(r) => panic!("{r:?}"),
        }
    };
    let first = ingest(ended.clone()).await;
    assert_eq!((first.created, first.updated), (1, 0));
    let call_id = first.calls[0].call_id.clone();
    let second = ingest(analyzed.clone()).await;
    assert_eq!(
        (second.created, second.updated, second.duplicates),
        (0, 1, 0)
    );
    assert_eq!(second.calls[0].status, CallStatus::Updated);
    for again in [analyzed, ended] {
        let r = ingest(again).await;
        assert_eq!((r.updated, r.duplicates), (0, 1));
    }
    let call = store.call(project.id, &call_id).await.unwrap().unwrap();
    assert_eq!(call.metadata["call_analysis"]["call_successful"], true);
    assert_eq!(call.raw["event"], "call_analyzed");
    // The queue holds one job per call while it waits, and the amended call's is it.
    let counts = store.job_counts(Some(project.id)).await.unwrap();
    assert_eq!(counts.queued, 1, "{counts:?}");
}
