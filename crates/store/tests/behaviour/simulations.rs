//! Simulated runs: the simulator endpoint, claims within each project's concurrency, progress
//! under a lease, failing with the reason, abandoned conversations, and a transcript matched
//! as `simulation`.

use super::*;
use callgrade_core::{Connector, Message, Role, StopReason, Usage};

async fn simulated_agent(store: &dyn Store, project_id: i64) -> Agent {
    let connector = Connector::parse(
        &json!({"kind": "http_turn", "url": "http://127.0.0.1:9/turn", "headers": {"X-Key": "s3cret"}}),
        None,
        "connector",
    )
    .unwrap();
    store
        .create_agent(
            project_id,
            &NewAgent {
                connector: Some(connector),
                ..NewAgent::named("sim")
            },
        )
        .await
        .unwrap()
}

pub(super) async fn story_simulations(store: &dyn Store) {
    let (project, _) = store.create_project("simulated").await.unwrap();
    let agent = simulated_agent(store, project.id).await;
    assert_eq!(
        agent.connector.as_ref().unwrap().fields["headers"]["X-Key"],
        "***"
    );
    let (_, stored) = store.agent(project.id, agent.id).await.unwrap().unwrap();
    let Some(Connector::HttpTurn(c)) = stored else {
        panic!("{stored:?}")
    };
    assert_eq!(c.headers["X-Key"], "s3cret");

    // The simulator endpoint: defaults, a patch, a key never shown.
    let defaults = store.simulator_settings(project.id).await.unwrap();
    assert_eq!((defaults.concurrency, defaults.token_budget), (4, 200_000));
    store
        .set_simulator_settings(
            project.id,
            &SimulatorSettingsPatch {
                base_url: Some("http://llm/v1".into()),
                api_key: Some("sk-1".into()),
                concurrency: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let settings = store.simulator_settings(project.id).await.unwrap();
    assert_eq!((settings.concurrency, settings.api_key_set), (2, true));
    assert!(!serde_json::to_string(&settings).unwrap().contains("sk-1"));

    let scenario = scenario(
        store,
        project.id,
        agent.id,
        "refund",
        Direction::Inbound,
        "+14155550000",
        &[],
    )
    .await;
    let result = store
        .create_result(project.id, &runs_of(agent.id, vec![scenario.id], 3), t0())
        .await
        .unwrap();
    assert_eq!(result.mode, RunMode::Simulate, "the agent has a connector");
    assert!(result.runs.iter().all(|r| r.mode == RunMode::Simulate));
    // A simulated run is never swept: its simulation owns it.
    assert!(store
        .sweep_runs(t0() + TimeDelta::days(1))
        .await
        .unwrap()
        .is_empty());

    // Claims stop at the project's concurrency, however many slots the worker has.
    let lease = TimeDelta::seconds(30);
    let first = store
        .claim_simulations("w1", t0(), lease, 10)
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].run.status, RunStatus::InProgress);
    assert_eq!(first[0].scenario.id, scenario.id);
    assert!(matches!(first[0].connector, Some(Connector::HttpTurn(_))));
    assert!(store
        .claim_simulations("w2", t0(), lease, 10)
        .await
        .unwrap()
        .is_empty());

    // Progress is written under the lease; another worker's renewal is refused.
    let said = Message {
        role: Role::User,
        content: "Refund, please.".into(),
        start_offset: Some(1.0),
        end_offset: Some(1.0),
        start_at_ms: None,
        end_at_ms: None,
        data: None,
    };
    let progress = SimulationProgress {
        messages: vec![said],
        usage: Usage {
            caller_requests: 1,
            caller_tokens: 40,
            ..Usage::default()
        },
        stop_reason: None,
    };
    let (a, b) = (first[0].run.id, first[1].run.id);
    assert!(store
        .renew_simulation(a, "w1", &progress, t0(), lease)
        .await
        .unwrap());
    assert!(!store
        .renew_simulation(a, "w2", &progress, t0(), lease)
        .await
        .unwrap());
    let live = store.run(project.id, a).await.unwrap().unwrap();
    assert_eq!(
        (live.live_messages.len(), live.usage.caller_tokens),
        (1, 40)
    );

    // Failing keeps what was said and why; the freed slot lets the third run be claimed.
    assert!(store
        .fail_simulation(a, "w1", "the agent answered HTTP 500", &progress, t0())
        .await
        .unwrap());
    let failed = store.run(project.id, a).await.unwrap().unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("simulation failed: the agent answered HTTP 500")
    );
    assert_eq!(failed.live_messages.len(), 1);
    let third = store
        .claim_simulations("w2", t0(), lease, 10)
        .await
        .unwrap();
    assert_eq!(third.len(), 1);

    // Run b's instance stops renewing: once its lease is over it is failed with why.
    assert!(store
        .fail_abandoned_simulations(t0() + TimeDelta::seconds(29), &[])
        .await
        .unwrap()
        .is_empty());
    let keep_c = store
        .renew_simulation(
            third[0].run.id,
            "w2",
            &progress,
            t0() + TimeDelta::seconds(20),
            lease,
        )
        .await
        .unwrap();
    assert!(keep_c);
    // The instance that plays a run knows it is alive, lease or not.
    let later = t0() + TimeDelta::seconds(31);
    let spared = store.fail_abandoned_simulations(later, &[b]).await.unwrap();
    assert!(spared.is_empty());
    let abandoned = store.fail_abandoned_simulations(later, &[]).await.unwrap();
    assert_eq!(abandoned, [b]);
    let b_run = store.run(project.id, b).await.unwrap().unwrap();
    assert!(b_run.error_message.unwrap().contains("lease expired"));

    // The conversation's transcript comes in by run_id and is matched as the simulation.
    let c = third[0].run.id;
    let ended = SimulationProgress {
        stop_reason: Some(StopReason::CallerEnded),
        ..progress
    };
    assert!(store
        .renew_simulation(c, "w2", &ended, t0() + TimeDelta::seconds(25), lease)
        .await
        .unwrap());
    let mut transcript = super::call("sim-run-c");
    transcript["run_id"] = json!(c);
    transcript["channel"] = json!("text");
    let receipt = send_one(
        store,
        project.id,
        t0() + TimeDelta::seconds(26),
        Some(agent.id),
        transcript,
    )
    .await;
    assert_eq!(receipt.matched_by, Some(MatchedBy::Simulation));
    store.release_simulation(c, "w2").await.unwrap();
    let done = store.run(project.id, c).await.unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Evaluating);
    assert_eq!(done.stop_reason, Some(StopReason::CallerEnded));
    assert!(
        done.live_messages.is_empty(),
        "the call holds the transcript now"
    );
    let call = store
        .call(project.id, &receipt.call_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(call.summary.channel, Channel::Text);

    // An external result of the same agent is not simulated, and asking for a simulation of
    // an agent without a connector is refused.
    let mut external = runs_of(agent.id, vec![scenario.id], 1);
    external.mode = Some(RunMode::External);
    let external = store
        .create_result(project.id, &external, t0())
        .await
        .unwrap();
    assert_eq!(external.mode, RunMode::External);
    let plain = store
        .create_agent(project.id, &NewAgent::named("plain"))
        .await
        .unwrap();
    let plain_scenario = scenario_for(store, project.id, plain.id).await;
    let mut wants_simulation = runs_of(plain.id, vec![plain_scenario], 1);
    wants_simulation.mode = Some(RunMode::Simulate);
    let refused = store
        .create_result(project.id, &wants_simulation, t0())
        .await;
    assert!(
        matches!(refused, Err(StoreError::InvalidInput(ref m)) if m.contains("has no connector")),
        "{refused:?}"
    );
    // Labels find the newest finished result, never the one being gated.
    let latest = |except: i64| store.latest_finished_result(project.id, "nightly", except);
    assert_eq!(latest(0).await.unwrap(), None);
    let mut labelled = runs_of(plain.id, vec![plain_scenario], 1);
    labelled.label = Some("nightly".into());
    let older = store
        .create_result(project.id, &labelled, t0())
        .await
        .unwrap();
    let newer = store
        .create_result(project.id, &labelled, t0())
        .await
        .unwrap();
    assert_eq!(
        latest(0).await.unwrap(),
        None,
        "unfinished results are no baseline"
    );
    for result in [&older, &newer] {
        let run = result.runs[0].id;
        store
            .run_event(project.id, run, RunEvent::Cancel, t0())
            .await
            .unwrap();
    }
    assert_eq!(latest(0).await.unwrap(), Some(newer.id));
    assert_eq!(latest(newer.id).await.unwrap(), Some(older.id));
    assert_eq!(latest(older.id).await.unwrap(), Some(newer.id));
}

async fn scenario_for(store: &dyn Store, project_id: i64, agent_id: i64) -> i64 {
    scenario(
        store,
        project_id,
        agent_id,
        "plain",
        Direction::Inbound,
        "+14155550001",
        &[],
    )
    .await
    .id
}
