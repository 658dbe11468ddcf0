//! How the backends persist a run's changes: read the run's state ([`RUN_STATE_COLUMNS`]),
//! let `callgrade_core::RunStatus::apply` decide, and write the outcome with
//! `… WHERE id = ? AND status = ?` (the status that was read), so a change decided on stale
//! state is never written.

use callgrade_core::{RunChange, RunStatus};
use std::sync::LazyLock;

use crate::codec::parse_column;
use crate::rows::Columns;
use crate::{Result, StoreError};

/// What a change reads of a run (select them from `runs`).
pub(crate) const RUN_STATE_COLUMNS: &str =
    "id, status, call_id IS NOT NULL AS has_call, error_message, finished_at";

/// A run's state as read.
pub(crate) struct RunState {
    pub id: i64,
    pub status: RunStatus,
    pub has_call: bool,
    pub error_message: Option<String>,
    pub finished_at: Option<i64>,
}

/// The columns a change writes, and the status it was decided on (for the compare-and-set).
pub(crate) struct Written {
    pub status: RunStatus,
    pub error_message: Option<String>,
    pub finished_at: Option<i64>,
    pub from: RunStatus,
}

impl RunState {
    pub(crate) fn from_row(row: &impl Columns) -> Result<Self> {
        Ok(Self {
            id: row.int("id")?,
            status: parse_column(&row.text("status")?, RunStatus::parse)?,
            has_call: row.flag("has_call")?,
            error_message: row.opt_text("error_message")?,
            finished_at: row.opt_int("finished_at")?,
        })
    }

    /// What `change` writes, or the conflict to answer with (`run 7 is completed; …`).
    pub(crate) fn apply(&self, change: RunChange<'_>, now_ms: i64) -> Result<Written> {
        let transition = self
            .status
            .apply(self.has_call, change)
            .map_err(|refusal| StoreError::Conflict(format!("run {} is {}", self.id, refusal.0)))?;
        let (error_message, finished_at) =
            transition.columns(self.error_message.clone(), self.finished_at, now_ms);
        Ok(Written {
            status: transition.status,
            error_message,
            finished_at,
            from: self.status,
        })
    }
}

/// Statuses as an SQL list, `('pending', 'in_progress')`, so queries name statuses through
/// `RunStatus::as_str` only.
fn status_list(keep: impl Fn(RunStatus) -> bool) -> String {
    let names: Vec<String> = RunStatus::ALL
        .into_iter()
        .filter(|s| keep(*s))
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("({})", names.join(", "))
}

/// The statuses of a run still waiting for its transcript (what the sweeper looks at).
pub(crate) static LISTENING: LazyLock<String> =
    LazyLock::new(|| status_list(RunStatus::is_listening));

/// The statuses of a run that is not final yet.
pub(crate) static UNFINISHED: LazyLock<String> = LazyLock::new(|| status_list(|s| !s.is_final()));

/// The statuses in which matching may give a run a transcript, in time or late: those the
/// lifecycle lets a late match into.
pub(crate) static MATCHABLE: LazyLock<String> = LazyLock::new(|| {
    status_list(|s| {
        s.apply(false, RunChange::Matched { late: Some("") })
            .is_ok()
    })
});

/// A compare-and-set that matched no row: the run changed between the read and the write.
pub(crate) fn changed_meanwhile(run_id: i64) -> StoreError {
    StoreError::Conflict(format!("run {run_id} changed meanwhile; retry"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lists_follow_the_lifecycle() {
        assert_eq!(
            *LISTENING,
            "('pending', 'in_progress', 'awaiting_transcript')"
        );
        assert_eq!(
            *MATCHABLE,
            "('pending', 'in_progress', 'awaiting_transcript', 'timeout')"
        );
    }
}
