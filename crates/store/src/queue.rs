//! The job table's states, shared by both backends: how a failure is recorded, how the queue
//! is counted.

use chrono::{DateTime, Utc};

use crate::model::*;

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
