use super::*;

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_760_000_000 + s, 0).unwrap()
}

const WINDOW: TimeDelta = TimeDelta::seconds(300);

fn run(id: i64, direction: Direction, tester: &str) -> RunFacts {
    RunFacts {
        id,
        direction,
        tester_phone_number: Some(tester.into()),
        status: RunStatus::Pending,
        created_at: t(0),
        deadline_at: t(1800),
        call_started_at: None,
        call_ended_at: None,
        has_call: false,
        simulated: false,
    }
}

/// A call from 10 s to 70 s, from +1111 to +2222.
fn call() -> CallFacts<'static> {
    CallFacts {
        started_at: t(10),
        ended_at: t(70),
        to_phone_number: Some("+2222"),
        from_phone_number: Some("+1111"),
    }
}

#[test]
fn phone_match_in_both_directions() {
    let inbound = run(1, Direction::Inbound, "+1111");
    let d = match_by_phone(&[inbound], &call(), t(80), WINDOW);
    assert_eq!((d.outcome, d.run_id), (MatchOutcome::Matched, Some(1)));
    assert_eq!(d.matched_by, Some(MatchedBy::PhoneNumber));

    let outbound = run(2, Direction::Outbound, "+2222");
    let d = match_by_phone(&[outbound], &call(), t(80), WINDOW);
    assert_eq!(d.run_id, Some(2));

    // The tester's number on the wrong side does not match.
    let wrong_side = run(3, Direction::Outbound, "+1111");
    let d = match_by_phone(&[wrong_side], &call(), t(80), WINDOW);
    assert_eq!(d.outcome, MatchOutcome::Unmatched);
    assert!(d.reason.unwrap().contains("+1111"));
}

#[test]
fn several_candidates_are_ambiguous() {
    let runs = [
        run(1, Direction::Inbound, "+1111"),
        run(2, Direction::Inbound, "+1111"),
    ];
    let d = match_by_phone(&runs, &call(), t(80), WINDOW);
    assert_eq!(d.outcome, MatchOutcome::Ambiguous);
    assert_eq!(d.candidates, [1, 2]);
    assert_eq!(d.run_id, None);
}

#[test]
fn window_edges() {
    // Transcript end 70 s + 300 s window: listening until 370 s.
    let r = run(1, Direction::Inbound, "+1111");
    let inside = match_by_phone(std::slice::from_ref(&r), &call(), t(369), WINDOW);
    assert_eq!(inside.outcome, MatchOutcome::Matched);
    let edge = match_by_phone(std::slice::from_ref(&r), &call(), t(370), WINDOW);
    assert_eq!(edge.outcome, MatchOutcome::Matched);
    let outside = match_by_phone(std::slice::from_ref(&r), &call(), t(371), WINDOW);
    assert_eq!(outside.outcome, MatchOutcome::Late);
    assert!(outside.reason.unwrap().contains("1 s after"));

    // The harness's reported end wins over the transcript's.
    let mut reported = r.clone();
    reported.call_ended_at = Some(t(100));
    let d = match_by_phone(std::slice::from_ref(&reported), &call(), t(399), WINDOW);
    assert_eq!(d.outcome, MatchOutcome::Matched);
    let d = match_by_phone(&[reported], &call(), t(401), WINDOW);
    assert_eq!(d.outcome, MatchOutcome::Late);
}

#[test]
fn times_must_fit() {
    let mut before = run(1, Direction::Inbound, "+1111");
    before.created_at = t(200); // created long after the call started
    assert!(!times_fit(&before, &call()));
    let mut skew = run(1, Direction::Inbound, "+1111");
    skew.created_at = t(60); // within 60 s of clock skew
    assert!(times_fit(&skew, &call()));
    let mut past_deadline = run(1, Direction::Inbound, "+1111");
    past_deadline.deadline_at = t(5);
    assert!(!times_fit(&past_deadline, &call()));
    let mut far = run(1, Direction::Inbound, "+1111");
    far.call_started_at = Some(t(500));
    assert!(!times_fit(&far, &call()));
}

#[test]
fn listening_candidate_beats_late_ones() {
    let mut timed_out = run(1, Direction::Inbound, "+1111");
    timed_out.status = RunStatus::Timeout;
    let fresh = run(2, Direction::Inbound, "+1111");
    let d = match_by_phone(&[timed_out.clone(), fresh], &call(), t(80), WINDOW);
    assert_eq!((d.outcome, d.run_id), (MatchOutcome::Matched, Some(2)));
    let d = match_by_phone(&[timed_out], &call(), t(80), WINDOW);
    assert_eq!((d.outcome, d.run_id), (MatchOutcome::Late, Some(1)));
}

#[test]
fn runs_with_calls_or_cancelled_are_not_candidates() {
    let mut taken = run(1, Direction::Inbound, "+1111");
    taken.has_call = true;
    let mut cancelled = run(2, Direction::Inbound, "+1111");
    cancelled.status = RunStatus::Cancelled;
    let d = match_by_phone(&[taken, cancelled], &call(), t(80), WINDOW);
    assert_eq!(d.outcome, MatchOutcome::Unmatched);
}

#[test]
fn no_numbers_no_match() {
    let c = CallFacts {
        to_phone_number: None,
        from_phone_number: None,
        ..call()
    };
    let d = match_by_phone(&[run(1, Direction::Inbound, "+1111")], &c, t(80), WINDOW);
    assert_eq!(d.outcome, MatchOutcome::Unmatched);
    assert!(d.reason.unwrap().contains("no phone numbers"));
}

#[test]
fn run_id_ladder() {
    let r = run(7, Direction::Inbound, "+9999");
    let d = match_by_run_id(&r, &call(), t(80), WINDOW);
    assert_eq!(
        (d.outcome, d.matched_by),
        (MatchOutcome::Matched, Some(MatchedBy::RunId))
    );
    let d = match_by_run_id(&r, &call(), t(400), WINDOW);
    assert_eq!(d.outcome, MatchOutcome::Late);
    let mut timed_out = r.clone();
    timed_out.status = RunStatus::Timeout;
    assert_eq!(
        match_by_run_id(&timed_out, &call(), t(80), WINDOW).outcome,
        MatchOutcome::Late
    );
    let mut taken = r.clone();
    taken.has_call = true;
    let d = match_by_run_id(&taken, &call(), t(80), WINDOW);
    assert_eq!(d.outcome, MatchOutcome::Unmatched);
    assert!(d.reason.unwrap().contains("already has a call"));
    let mut cancelled = r;
    cancelled.status = RunStatus::Cancelled;
    assert_eq!(
        match_by_run_id(&cancelled, &call(), t(80), WINDOW).outcome,
        MatchOutcome::Unmatched
    );
}

#[test]
fn sweeper_reasons() {
    let mut r = run(1, Direction::Inbound, "+1111");
    assert_eq!(timeout_reason(&r, t(1800), WINDOW), None);
    assert!(timeout_reason(&r, t(1801), WINDOW)
        .unwrap()
        .contains("deadline"));
    r.call_ended_at = Some(t(100));
    r.status = RunStatus::AwaitingTranscript;
    assert_eq!(timeout_reason(&r, t(400), WINDOW), None);
    assert!(timeout_reason(&r, t(401), WINDOW)
        .unwrap()
        .contains("listening window"));
    r.has_call = true;
    assert_eq!(timeout_reason(&r, t(401), WINDOW), None);
}
