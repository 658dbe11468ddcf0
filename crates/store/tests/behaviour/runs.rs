//! Scenarios, results, runs, matching and the sweeper.
use callgrade_store::NewAgent;

use super::*;

pub(super) async fn story_scenarios_and_runs(store: &dyn Store) {
    let (project, _) = store.create_project("runs").await.unwrap();
    let (other, _) = store.create_project("other").await.unwrap();
    let agent = store
        .create_agent(
            project.id,
            &NewAgent {
                phone_number: Some(phone("+14155550000")),
                description: None,
                ..NewAgent::named("Alex")
            },
        )
        .await
        .unwrap();
    let stranger = store
        .create_agent(other.id, &NewAgent::named("Stranger"))
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
                    persona: None,
                    first_message: None,
                    tool_mocks: Vec::new(),
                    unmatched_tool_result: None,
                    stop_rules: Default::default(),
                    quarantined: false,
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
                mode: None,
                label: None,
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
        ..Default::default()
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

pub(super) async fn story_matching(store: &dyn Store) {
    let (project, _) = store.create_project("matching").await.unwrap();
    let agent = store
        .create_agent(
            project.id,
            &NewAgent {
                phone_number: Some(phone("+14155550000")),
                description: None,
                ..NewAgent::named("Alex")
            },
        )
        .await
        .unwrap();
    let other_agent = store
        .create_agent(project.id, &NewAgent::named("Blake"))
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

pub(super) async fn story_sweep(store: &dyn Store) {
    let (project, _) = store.create_project("sweep").await.unwrap();
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

/// (b) Different calls from the tester's number race for one listening run: one takes it.
pub(super) async fn story_concurrent_phone_race(store: &dyn Store) {
    let (project, _) = store.create_project("race").await.unwrap();
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

/// Sweepers of several instances run at once: each run times out once.
pub(super) async fn story_concurrent_sweeps(store: &dyn Store) {
    let (project, _) = store.create_project("sweeps").await.unwrap();
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
