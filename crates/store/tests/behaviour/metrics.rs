//! Metrics, the rubric, judge settings and summaries.
use callgrade_store::NewAgent;

use super::*;

pub(super) async fn story_metrics(store: &dyn Store) {
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
        .create_agent(
            project.id,
            &NewAgent {
                phone_number: None,
                description: Some("helps".into()),
                ..NewAgent::named("Alex")
            },
        )
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
