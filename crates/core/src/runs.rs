//! Test runs and the matching ladder: which run, if any, a received call belongs to.
//!
//! Pure rules over plain facts; the store gathers the facts inside the transaction that stores
//! the call and applies the decision.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Who dials whom in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The tester calls the agent: the tester's number is the call's `from_phone_number`.
    Inbound,
    /// The agent calls the tester: the tester's number is the call's `to_phone_number`.
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inbound" => Some(Self::Inbound),
            "outbound" => Some(Self::Outbound),
            _ => None,
        }
    }

    /// The call's number on the tester's side.
    pub fn tester_side<'a>(self, call: &CallFacts<'a>) -> Option<&'a str> {
        match self {
            Self::Inbound => call.from_phone_number,
            Self::Outbound => call.to_phone_number,
        }
    }
}

/// Where a run is in its life. See docs/runs.md for the transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created; no call yet.
    Pending,
    /// The harness reported the call started.
    InProgress,
    /// The harness reported the call ended; the listening window is open.
    AwaitingTranscript,
    /// The transcript arrived; metrics are being computed.
    Evaluating,
    /// The transcript arrived (and was evaluated).
    Completed,
    /// Evaluation could not be done.
    Failed,
    /// No transcript within the listening window or before the deadline.
    Timeout,
    /// Cancelled by the harness or a user.
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        Self::Pending,
        Self::InProgress,
        Self::AwaitingTranscript,
        Self::Evaluating,
        Self::Completed,
        Self::Failed,
        Self::Timeout,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in_progress",
            Self::AwaitingTranscript => "awaiting_transcript",
            Self::Evaluating => "evaluating",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Still waiting for its transcript.
    pub fn is_listening(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::InProgress | Self::AwaitingTranscript
        )
    }

    /// Nothing more will happen to it by itself.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Timeout | Self::Cancelled
        )
    }
}

/// Who places a run's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// callgrade plays the caller through the agent's connector.
    Simulate,
    /// Something else places the call and reports it; its transcript arrives by webhook.
    External,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simulate => "simulate",
            Self::External => "external",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "simulate" => Some(Self::Simulate),
            "external" => Some(Self::External),
            _ => None,
        }
    }
}

/// How a call came to be attached to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    RunId,
    PhoneNumber,
    Manual,
    /// The transcript of callgrade's own simulated conversation.
    Simulation,
}

impl MatchedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunId => "run_id",
            Self::PhoneNumber => "phone_number",
            Self::Manual => "manual",
            Self::Simulation => "simulation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "run_id" => Some(Self::RunId),
            "phone_number" => Some(Self::PhoneNumber),
            "manual" => Some(Self::Manual),
            "simulation" => Some(Self::Simulation),
            _ => None,
        }
    }
}

/// What matching concluded for one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MatchOutcome {
    /// Attached to a run inside its listening window.
    Matched,
    /// Attached to a run whose listening window had closed; the run stays `timeout`.
    Late,
    /// Several runs fit; kept as a production call, to attach by hand.
    Ambiguous,
    /// No run fits; a production call.
    Unmatched,
}

impl MatchOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::Late => "late",
            Self::Ambiguous => "ambiguous",
            Self::Unmatched => "unmatched",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "matched" => Some(Self::Matched),
            "late" => Some(Self::Late),
            "ambiguous" => Some(Self::Ambiguous),
            "unmatched" => Some(Self::Unmatched),
            _ => None,
        }
    }
}

/// The facts of a run that matching looks at.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub id: i64,
    pub direction: Direction,
    pub tester_phone_number: Option<String>,
    pub status: RunStatus,
    pub created_at: DateTime<Utc>,
    pub deadline_at: DateTime<Utc>,
    pub call_started_at: Option<DateTime<Utc>>,
    pub call_ended_at: Option<DateTime<Utc>>,
    pub has_call: bool,
    /// callgrade simulates this run's call.
    pub simulated: bool,
}

/// The facts of a received call that matching looks at.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub to_phone_number: Option<&'a str>,
    pub from_phone_number: Option<&'a str>,
}

/// The decision for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: MatchOutcome,
    pub run_id: Option<i64>,
    pub matched_by: Option<MatchedBy>,
    /// Runs that fit when the outcome is ambiguous.
    pub candidates: Vec<i64>,
    /// Why the call was not matched, or why it is late.
    pub reason: Option<String>,
}

impl Decision {
    /// Whether the call is linked to its run as late (the run stays timed out).
    pub fn is_late(&self) -> bool {
        self.outcome == MatchOutcome::Late
    }

    /// The run's `error_message` when a late transcript is linked to it.
    pub fn late_message(&self) -> String {
        format!(
            "{}; the transcript is linked to this run as late — attach it by hand to complete the run",
            self.reason.as_deref().unwrap_or("the transcript arrived late")
        )
    }

    fn attach(run: &RunFacts, by: MatchedBy, late: Option<String>) -> Self {
        Self {
            outcome: if late.is_some() {
                MatchOutcome::Late
            } else {
                MatchOutcome::Matched
            },
            run_id: Some(run.id),
            matched_by: Some(by),
            candidates: Vec::new(),
            reason: late,
        }
    }

    fn unmatched(reason: String) -> Self {
        Self {
            outcome: MatchOutcome::Unmatched,
            run_id: None,
            matched_by: None,
            candidates: Vec::new(),
            reason: Some(reason),
        }
    }

    fn ambiguous(candidates: Vec<i64>, reason: String) -> Self {
        Self {
            outcome: MatchOutcome::Ambiguous,
            run_id: None,
            matched_by: None,
            candidates,
            reason: Some(reason),
        }
    }
}

/// Clock skew tolerated between the tester's, the agent's and our clocks.
pub const CLOCK_SKEW: TimeDelta = TimeDelta::seconds(60);
/// How far a transcript's start or end may be from the times the harness reported.
pub const REPORTED_TIME_TOLERANCE: TimeDelta = TimeDelta::seconds(120);

/// The end of a run's listening window: the call's end (as the harness reported it, else as
/// the transcript says) plus the window.
pub fn listen_until(
    run: &RunFacts,
    transcript_ended_at: DateTime<Utc>,
    window: TimeDelta,
) -> DateTime<Utc> {
    run.call_ended_at.unwrap_or(transcript_ended_at) + window
}

/// Why an attachment at `now` is late, or `None` when it is inside the window.
fn lateness(
    run: &RunFacts,
    call: &CallFacts,
    now: DateTime<Utc>,
    window: TimeDelta,
) -> Option<String> {
    let until = listen_until(run, call.ended_at, window);
    if run.status == RunStatus::Timeout {
        Some(format!(
            "run {} had already timed out; the transcript arrived at {}, after its listening window",
            run.id,
            now.to_rfc3339()
        ))
    } else if now > until {
        Some(format!(
            "the transcript arrived at {}, {} s after run {}'s listening window closed at {}",
            now.to_rfc3339(),
            (now - until).num_seconds(),
            run.id,
            until.to_rfc3339()
        ))
    } else {
        None
    }
}

/// Step a of the ladder: the sender named the run.
pub fn match_by_run_id(
    run: &RunFacts,
    call: &CallFacts,
    now: DateTime<Utc>,
    window: TimeDelta,
) -> Decision {
    if run.has_call {
        return Decision::unmatched(format!(
            "run {} already has a call; this one is kept as a production call (attach it by hand to replace)",
            run.id
        ));
    }
    match run.status {
        RunStatus::Cancelled => Decision::unmatched(format!(
            "run {} was cancelled; the call is kept as a production call",
            run.id
        )),
        s if s.is_listening() || s == RunStatus::Timeout => {
            let by = match run.simulated {
                true => MatchedBy::Simulation,
                false => MatchedBy::RunId,
            };
            Decision::attach(run, by, lateness(run, call, now, window))
        }
        s => Decision::unmatched(format!("run {} is already {}", run.id, s.as_str())),
    }
}

/// Whether a run's times fit the call: the call started after the run was created (with clock
/// skew), before its deadline, and near the times the harness reported, if any.
pub fn times_fit(run: &RunFacts, call: &CallFacts) -> bool {
    let near = |reported: Option<DateTime<Utc>>, actual: DateTime<Utc>| {
        reported.is_none_or(|r| (actual - r).abs() <= REPORTED_TIME_TOLERANCE)
    };
    call.started_at >= run.created_at - CLOCK_SKEW
        && call.started_at <= run.deadline_at
        && near(run.call_started_at, call.started_at)
        && near(run.call_ended_at, call.ended_at)
}

/// Steps b and c of the ladder: among the agent's runs, those whose tester number is on the
/// tester's side of the call and whose times fit. One listening candidate matches; several are
/// ambiguous; none leaves a production call. A run whose window closed can still take the call
/// as late, when it is the only one that fits.
pub fn match_by_phone(
    runs: &[RunFacts],
    call: &CallFacts,
    now: DateTime<Utc>,
    window: TimeDelta,
) -> Decision {
    if call.to_phone_number.is_none() && call.from_phone_number.is_none() {
        return Decision::unmatched(
            "the call has no run_id and no phone numbers, so no test run can be matched; kept as a production call".into(),
        );
    }
    let fitting: Vec<&RunFacts> = runs
        .iter()
        // A simulated run's transcript comes from its simulation, never from a phone match.
        .filter(|r| !r.simulated && !r.has_call)
        .filter(|r| r.status.is_listening() || r.status == RunStatus::Timeout)
        .filter(|r| {
            r.tester_phone_number.is_some()
                && r.direction.tester_side(call) == r.tester_phone_number.as_deref()
        })
        .filter(|r| times_fit(r, call))
        .collect();
    let (listening, late): (Vec<&RunFacts>, Vec<&RunFacts>) = fitting
        .into_iter()
        .partition(|r| lateness(r, call, now, window).is_none());
    match (listening.as_slice(), late.as_slice()) {
        ([run], _) => Decision::attach(run, MatchedBy::PhoneNumber, None),
        ([], [run]) => Decision::attach(
            run,
            MatchedBy::PhoneNumber,
            lateness(run, call, now, window),
        ),
        ([], []) => Decision::unmatched(format!(
            "no listening test run of this agent has tester number {} (the from_phone_number of inbound runs, the to_phone_number of outbound runs) at this time; kept as a production call",
            [call.from_phone_number, call.to_phone_number]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" or ")
        )),
        (several, _) if !several.is_empty() => Decision::ambiguous(
            several.iter().map(|r| r.id).collect(),
            format!(
                "{} listening runs fit this call; kept as a production call, attach it by hand",
                several.len()
            ),
        ),
        (_, several) => Decision::ambiguous(
            several.iter().map(|r| r.id).collect(),
            format!(
                "{} timed-out runs fit this late call; kept as a production call, attach it by hand",
                several.len()
            ),
        ),
    }
}

/// Why the sweeper ends a run at `now`, or `None` while it may still get its transcript.
pub fn timeout_reason(run: &RunFacts, now: DateTime<Utc>, window: TimeDelta) -> Option<String> {
    if !run.status.is_listening() || run.has_call {
        return None;
    }
    match run.call_ended_at {
        Some(ended) if now > ended + window => Some(format!(
            "the call ended at {} but no transcript arrived within the {} s listening window; check the sender's logs and the delivery log",
            ended.to_rfc3339(),
            window.num_seconds()
        )),
        Some(_) => None,
        None if now > run.deadline_at => Some(format!(
            "no transcript arrived before the run's deadline ({}); the harness never reported the call's end — did the call happen?",
            run.deadline_at.to_rfc3339()
        )),
        None => None,
    }
}

#[cfg(test)]
mod tests;

/// The run side of a manual attach: the call it has, and its agent.
pub struct AttachRun {
    pub call_id: Option<String>,
    pub agent_id: i64,
}

/// The call side of a manual attach: its agent, and the run it is attached to.
pub struct AttachCall {
    pub agent_id: Option<i64>,
    pub run_id: Option<i64>,
}

/// Why a call cannot be attached to a run by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachRefusal {
    /// The call does not fit the run (missing, another agent's): the request is wrong.
    Unfit(String),
    /// The call or the run is taken by another.
    Taken(String),
}

/// Whether the call `call_id` (`None`: not in the project) may be attached to `run_id` by
/// hand. The run's own state is the lifecycle's to judge ([`crate::RunChange::Attached`]).
pub fn check_attach(
    run_id: i64,
    call_id: &str,
    run: &AttachRun,
    call: Option<&AttachCall>,
) -> Result<(), AttachRefusal> {
    let call =
        call.ok_or_else(|| AttachRefusal::Unfit(format!("no call {call_id:?} in this project")))?;
    if call.agent_id != Some(run.agent_id) {
        return Err(AttachRefusal::Unfit(format!(
            "call {call_id:?} is of agent {}, run {run_id} of agent {}",
            call.agent_id.map_or("none".into(), |a| a.to_string()),
            run.agent_id
        )));
    }
    if let Some(other) = call.run_id.filter(|&r| r != run_id) {
        return Err(AttachRefusal::Taken(format!(
            "call {call_id:?} is already attached to run {other}"
        )));
    }
    if let Some(other) = run.call_id.as_deref().filter(|&c| c != call_id) {
        return Err(AttachRefusal::Taken(format!(
            "run {run_id} already has call {other:?}"
        )));
    }
    Ok(())
}
