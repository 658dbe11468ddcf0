//! The job table's states, shared by both backends: how a failure is recorded, how the queue
//! is counted.

use chrono::{DateTime, Utc};

use crate::model::*;

/// Whether a newer evaluation of the job's call has already been written (parameters: call id,
/// job id). Two jobs of one call can run at once (a re-evaluation queued while one runs); the
/// older one, finishing last, must not put back what the newer replaced. Job ids are issued in
/// the order jobs are queued, and a job reads its inputs after it is claimed. One text for
/// both backends (SQLite reads `$n` as the n-th parameter here).
pub(crate) const SUPERSEDED: &str =
    "SELECT EXISTS (SELECT 1 FROM jobs WHERE call_id = $1 AND id > $2 AND status = 'done')";

/// A job's status and run time after a failure: requeued for `retry_at`, or dead.
pub(crate) fn failed_job_state(
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (&'static str, i64, Option<i64>) {
    match retry_at {
        Some(at) => ("queued", at.timestamp_millis(), None),
        None => ("dead", now.timestamp_millis(), Some(now.timestamp_millis())),
    }
}

pub(crate) fn job_counts(rows: Vec<(String, i64)>) -> JobCounts {
    let mut counts = JobCounts::default();
    for (status, n) in rows {
        match status.as_str() {
            "queued" => counts.queued = n,
            "running" => counts.running = n,
            "done" => counts.done = n,
            "dead" => counts.dead = n,
            _ => {}
        }
    }
    counts
}

/// A call's judge requests and tokens, as the run's usage columns take them.
pub(crate) fn judge_columns(outcome: &callgrade_core::CallEvaluation) -> (i64, i64) {
    let (requests, tokens) = outcome.judge_usage();
    let column = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    (column(requests), column(tokens))
}
