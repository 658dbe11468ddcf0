//! A run's lifecycle as one state machine: every change a run can undergo (a harness report,
//! matching, a manual attach, evaluation, the sweeper) goes through [`RunStatus::apply`], which
//! refuses it or says what the run becomes. The store reads the run, applies the change and
//! writes the result with a compare-and-set on the status it read, on every backend.

use chrono::{DateTime, Utc};

use crate::RunStatus;

/// What a test harness reports about a run's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEvent {
    CallStarted(DateTime<Utc>),
    CallEnded(DateTime<Utc>),
    Cancel,
}

/// Everything that moves a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunChange<'a> {
    /// The harness reported on the run's call.
    Report(RunEvent),
    /// Matching gave the run its transcript: in time, or late with the reason.
    Matched { late: Option<&'a str> },
    /// A user attached a stored call by hand.
    Attached,
    /// The evaluation of the run's call finished.
    Evaluated,
    /// The evaluation of the run's call gave up, with why.
    EvaluationFailed(&'a str),
    /// The sweeper found the listening window or the deadline passed, with what was missing.
    TimedOut(&'a str),
    /// callgrade's simulated caller could not finish the conversation (the agent failed, the
    /// server stopped mid-call), with why.
    SimulationFailed(&'a str),
}

/// What the run becomes: its status, and what happens to its error message and finish time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub status: RunStatus,
    pub error_message: Field<String>,
    pub finished_at: Finish,
}

/// A column's fate in a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field<T> {
    Keep,
    Set(T),
    Clear,
}

/// The finish time's fate in a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Keep,
    /// Now, unless the run already finished (a late transcript keeps the timeout's time).
    NowUnlessSet,
    Now,
    Clear,
}

impl Transition {
    fn to(status: RunStatus) -> Self {
        Self {
            status,
            error_message: Field::Keep,
            finished_at: Finish::Keep,
        }
    }

    fn error(mut self, message: impl Into<String>) -> Self {
        self.error_message = Field::Set(message.into());
        self
    }

    fn finished(mut self, finish: Finish) -> Self {
        self.finished_at = finish;
        self
    }

    fn no_error(mut self) -> Self {
        self.error_message = Field::Clear;
        self
    }

    /// The run's error message and finish time after this transition, from what they were
    /// (times in ms since the epoch).
    pub fn columns(
        &self,
        error_message: Option<String>,
        finished_at: Option<i64>,
        now_ms: i64,
    ) -> (Option<String>, Option<i64>) {
        let error_message = match &self.error_message {
            Field::Keep => error_message,
            Field::Set(m) => Some(m.clone()),
            Field::Clear => None,
        };
        let finished_at = match self.finished_at {
            Finish::Keep => finished_at,
            Finish::NowUnlessSet => finished_at.or(Some(now_ms)),
            Finish::Now => Some(now_ms),
            Finish::Clear => None,
        };
        (error_message, finished_at)
    }
}

/// A change the run's state does not allow, and why (a conflict for whoever asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl RunStatus {
    /// What `change` does to a run in this status that already has a call or not.
    pub fn apply(self, has_call: bool, change: RunChange<'_>) -> Result<Transition, Refusal> {
        use RunStatus::*;
        let refuse = |what: &str| Err(Refusal(format!("{}; {what}", self.as_str())));
        let stay = Ok(Transition::to(self));
        match change {
            RunChange::Report(RunEvent::CallStarted(_)) => match self {
                Pending | InProgress => Ok(Transition::to(InProgress)),
                _ => refuse("its call can no longer start"),
            },
            // The transcript may arrive before the harness reports the end: record the time only.
            RunChange::Report(RunEvent::CallEnded(_)) if has_call => stay,
            RunChange::Report(RunEvent::CallEnded(_)) if self.is_listening() => {
                Ok(Transition::to(AwaitingTranscript))
            }
            RunChange::Report(RunEvent::CallEnded(_)) => {
                refuse("its call's end can no longer be reported")
            }
            RunChange::Report(RunEvent::Cancel) if self.is_listening() => {
                Ok(Transition::to(Cancelled)
                    .error("cancelled")
                    .finished(Finish::Now))
            }
            RunChange::Report(RunEvent::Cancel) => {
                refuse("only a run that is still waiting can be cancelled")
            }
            RunChange::Matched { .. } if has_call => refuse("it already has a call"),
            RunChange::Matched { late: None } if self.is_listening() => {
                Ok(Transition::to(Evaluating).no_error())
            }
            RunChange::Matched { late: Some(reason) } if self.is_listening() || self == Timeout => {
                Ok(Transition::to(Timeout)
                    .error(reason)
                    .finished(Finish::NowUnlessSet))
            }
            RunChange::Matched { .. } => refuse("it no longer waits for a transcript"),
            RunChange::Attached if self == Cancelled => refuse("it was cancelled"),
            RunChange::Attached => Ok(Transition::to(Evaluating)
                .no_error()
                .finished(Finish::Clear)),
            // A late run's call is evaluated too; the run stays timed out.
            RunChange::Evaluated if self == Evaluating => {
                Ok(Transition::to(Completed).finished(Finish::Now))
            }
            RunChange::Evaluated => stay,
            RunChange::EvaluationFailed(reason) if self == Evaluating => Ok(Transition::to(Failed)
                .error(format!("evaluation failed: {reason}"))
                .finished(Finish::Now)),
            RunChange::EvaluationFailed(_) => stay,
            RunChange::TimedOut(reason) if self.is_listening() && !has_call => {
                Ok(Transition::to(Timeout).error(reason).finished(Finish::Now))
            }
            RunChange::TimedOut(_) => refuse("it no longer waits for a transcript"),
            RunChange::SimulationFailed(reason) if self.is_listening() && !has_call => {
                Ok(Transition::to(Failed)
                    .error(format!("simulation failed: {reason}"))
                    .finished(Finish::Now))
            }
            RunChange::SimulationFailed(_) => refuse("its conversation is over"),
        }
    }
}

/// The lifecycle as a Markdown table: for each status (rows) and change (columns), what the
/// run becomes, `–` where it stays as it is, and `refused`. docs/runs.md carries this table, and
/// a test keeps the two equal.
pub fn lifecycle_table() -> String {
    let at = DateTime::<Utc>::UNIX_EPOCH;
    let changes: [(&str, bool, RunChange<'_>); 11] = [
        (
            "call-started",
            false,
            RunChange::Report(RunEvent::CallStarted(at)),
        ),
        (
            "call-ended",
            false,
            RunChange::Report(RunEvent::CallEnded(at)),
        ),
        (
            "call-ended, transcript in",
            true,
            RunChange::Report(RunEvent::CallEnded(at)),
        ),
        ("cancel", false, RunChange::Report(RunEvent::Cancel)),
        ("matched", false, RunChange::Matched { late: None }),
        ("matched late", false, RunChange::Matched { late: Some("") }),
        ("attached by hand", true, RunChange::Attached),
        ("evaluated", true, RunChange::Evaluated),
        ("evaluation failed", true, RunChange::EvaluationFailed("")),
        ("swept", false, RunChange::TimedOut("")),
        ("simulation failed", false, RunChange::SimulationFailed("")),
    ];
    let mut table = String::from("| status |");
    for (name, _, _) in &changes {
        table.push_str(&format!(" {name} |"));
    }
    table.push_str("\n|---|");
    table.push_str(&"---|".repeat(changes.len()));
    for status in RunStatus::ALL {
        table.push_str(&format!("\n| `{}` |", status.as_str()));
        for (_, has_call, change) in &changes {
            let cell = match status.apply(*has_call, *change) {
                Err(_) => "refused".to_owned(),
                Ok(t) if t.status == status => "–".to_owned(),
                Ok(t) => format!("`{}`", t.status.as_str()),
            };
            table.push_str(&format!(" {cell} |"));
        }
    }
    table.push('\n');
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunStatus::*;

    fn at() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH
    }

    #[test]
    fn the_happy_path() {
        let started = Pending
            .apply(false, RunChange::Report(RunEvent::CallStarted(at())))
            .unwrap();
        assert_eq!(started.status, InProgress);
        let ended = InProgress
            .apply(false, RunChange::Report(RunEvent::CallEnded(at())))
            .unwrap();
        assert_eq!(ended.status, AwaitingTranscript);
        let matched = AwaitingTranscript
            .apply(false, RunChange::Matched { late: None })
            .unwrap();
        assert_eq!(
            (matched.status, &matched.error_message),
            (Evaluating, &Field::Clear)
        );
        let done = Evaluating.apply(true, RunChange::Evaluated).unwrap();
        assert_eq!((done.status, done.finished_at), (Completed, Finish::Now));
        assert_eq!(done.columns(None, None, 7), (None, Some(7)));
    }

    #[test]
    fn late_transcripts_keep_the_timeout_and_its_time() {
        let late = Timeout
            .apply(
                false,
                RunChange::Matched {
                    late: Some("too late"),
                },
            )
            .unwrap();
        assert_eq!(late.status, Timeout);
        assert_eq!(
            late.columns(Some("no transcript".into()), Some(3), 9),
            (Some("too late".into()), Some(3))
        );
        // Its call is evaluated; the run stays timed out.
        assert_eq!(
            Timeout.apply(true, RunChange::Evaluated).unwrap().status,
            Timeout
        );
    }

    #[test]
    fn refusals_say_the_status() {
        let Refusal(why) = Completed
            .apply(true, RunChange::Report(RunEvent::Cancel))
            .unwrap_err();
        assert_eq!(
            why,
            "completed; only a run that is still waiting can be cancelled"
        );
        assert!(Cancelled.apply(false, RunChange::Attached).is_err());
        assert!(Pending
            .apply(true, RunChange::Matched { late: None })
            .is_err());
        assert!(Evaluating.apply(true, RunChange::TimedOut("x")).is_err());
    }

    #[test]
    fn attaching_by_hand_reopens_a_finished_run() {
        let t = Timeout.apply(false, RunChange::Attached).unwrap();
        assert_eq!(t.status, Evaluating);
        assert_eq!(t.columns(Some("late".into()), Some(3), 9), (None, None));
    }

    #[test]
    fn failures_only_fail_a_run_being_evaluated() {
        let failed = Evaluating
            .apply(true, RunChange::EvaluationFailed("judge down"))
            .unwrap();
        assert_eq!(failed.status, Failed);
        assert_eq!(
            failed.columns(None, None, 5),
            (Some("evaluation failed: judge down".into()), Some(5))
        );
        assert_eq!(
            Completed
                .apply(true, RunChange::EvaluationFailed("x"))
                .unwrap()
                .status,
            Completed
        );
    }

    /// docs/runs.md shows the lifecycle as `lifecycle_table` renders it.
    #[test]
    fn the_docs_show_this_table() {
        let docs = include_str!("../../../docs/runs.md");
        let table = lifecycle_table();
        assert!(
            docs.contains(&table),
            "docs/runs.md must contain the lifecycle table as rendered:\n{table}"
        );
    }
}
