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
