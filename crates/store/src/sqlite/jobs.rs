//! The evaluation job queue's writes on SQLite. They run in the writer thread like every
//! write, so workers never wait on SQLite's lock and their commits share the group's fsync.

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{params, Connection};

use crate::common::{evaluation_failed_message, failed_job_state, to_json};
use crate::evaluation_document;
use crate::model::*;
use crate::Result;

use crate::rows::{CALLS, CALL_SUMMARY_COLUMNS, EVALUATED_CALL_COLUMNS};
use std::sync::Arc;

use super::lite::OwnedRow;
use super::writer::Apply;

/// Queues an evaluation of a call unless one is already waiting (parameters: project id, call
/// id, now in ms).
pub(super) const ENQUEUE: &str =
    "INSERT INTO jobs (kind, project_id, call_id, status, run_at, created_at)
     SELECT 'evaluate_call', ?1, ?2, 'queued', ?3, ?3
     WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE call_id = ?2 AND status = 'queued')";

pub(super) fn enqueue(conn: &Connection, project_id: i64, call_id: &str, now: i64) -> Result<bool> {
    let inserted = conn
        .prepare_cached(ENQUEUE)?
        .execute(params![project_id, call_id, now])?;
    Ok(inserted == 1)
}

/// Claims the oldest ready jobs, or ones whose worker stopped renewing its lease. Each comes
/// with its call's row, read here from the writer's page cache, where the call usually still
/// is: a reading connection would have to fetch it again from the WAL file.
pub(super) struct ClaimJobs {
    pub worker: String,
    pub now: DateTime<Utc>,
    pub lease: TimeDelta,
    pub limit: u32,
}

impl Apply for ClaimJobs {
    type Output = Vec<(Job, Option<OwnedRow>)>;

    fn run(&self, conn: &Connection) -> Result<Self::Output> {
        let mut claim = conn.prepare_cached(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_at = ?1, locked_by = ?2
             WHERE id IN (
                SELECT id FROM jobs
                WHERE (status = 'queued' AND run_at <= ?1) OR (status = 'running' AND locked_at < ?3)
                ORDER BY id LIMIT ?4)
             RETURNING id, project_id, call_id, attempts",
        )?;
        let mut rows = claim.query(params![
            self.now.timestamp_millis(),
            self.worker,
            (self.now - self.lease).timestamp_millis(),
            i64::from(self.limit),
        ])?;
        let mut jobs = Vec::new();
        while let Some(row) = rows.next()? {
            jobs.push(Job {
                id: row.get(0)?,
                project_id: row.get(1)?,
                call_id: row.get(2)?,
                attempts: row.get(3)?,
                worker: self.worker.clone(),
            });
        }
        drop(rows);
        jobs.sort_by_key(|j| j.id);
        let mut select = conn.prepare_cached(&format!(
            "SELECT {CALL_SUMMARY_COLUMNS}, {EVALUATED_CALL_COLUMNS} FROM {CALLS} WHERE calls.id = ?"
        ))?;
        let names: Arc<[String]> = select
            .column_names()
            .into_iter()
            .map(String::from)
            .collect();
        jobs.into_iter()
            .map(|job| {
                let mut rows = select.query([&job.call_id])?;
                let row = rows
                    .next()?
                    .map(|row| OwnedRow::copy(&names, row))
                    .transpose()?;
                Ok((job, row))
            })
            .collect()
    }
}

/// Renews a running job's lease; false when another worker has taken it over.
pub(super) struct RenewLease {
    pub job: Job,
    pub now: DateTime<Utc>,
}

impl Apply for RenewLease {
    type Output = bool;

    fn run(&self, conn: &Connection) -> Result<bool> {
        let updated = conn
            .prepare_cached(
                "UPDATE jobs SET locked_at = ? WHERE id = ? AND status = 'running' AND locked_by = ?",
            )?
            .execute(params![self.now.timestamp_millis(), self.job.id, self.job.worker])?;
        Ok(updated == 1)
    }
}

/// Writes a job's results and marks it done, atomically. False (and nothing written) when the
/// job's lease was lost to another worker. Built on the worker's task, with every JSON column
/// serialised there.
pub(super) struct CompleteJob {
    job: Job,
    evaluations: String,
    success: bool,
    verdict: String,
    now: i64,
}

impl CompleteJob {
    pub(super) fn new(job: &Job, outcome: &CallEvaluation, now: DateTime<Utc>) -> Self {
        Self {
            job: job.clone(),
            evaluations: evaluation_document::document(&outcome.evaluations),
            success: outcome.verdict.success,
            verdict: to_json(&outcome.verdict),
            now: now.timestamp_millis(),
        }
    }
}

impl Apply for CompleteJob {
    type Output = bool;

    fn run(&self, conn: &Connection) -> Result<bool> {
        let (job, now_ms) = (&self.job, self.now);
        let done = conn
            .prepare_cached(
                "UPDATE jobs SET status = 'done', finished_at = ?, last_error = NULL
                 WHERE id = ? AND status = 'running' AND locked_by = ?",
            )?
            .execute(params![now_ms, job.id, job.worker])?;
        if done != 1 {
            return Ok(false);
        }
        // Running a job again replaces its results.
        conn.prepare_cached(
            "INSERT INTO call_evaluations
                (call_id, project_id, success, rubric, evaluations, evaluated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (call_id) DO UPDATE SET project_id = ?2, success = ?3, rubric = ?4,
                evaluations = ?5, evaluated_at = ?6",
        )?
        .execute(params![
            job.call_id,
            job.project_id,
            self.success,
            self.verdict,
            self.evaluations,
            now_ms
        ])?;
        // The run the call completes takes the verdict; a late run keeps its timeout status.
        conn.prepare_cached(
            "UPDATE runs SET success = ?1, updated_at = ?2,
                status = CASE WHEN status = 'evaluating' THEN 'completed' ELSE status END,
                finished_at = CASE WHEN status = 'evaluating' THEN ?2 ELSE finished_at END
             WHERE call_id = ?3",
        )?
        .execute(params![self.success, now_ms, job.call_id])?;
        Ok(true)
    }
}

/// Gives a failed job back to the queue for `retry_at`, or buries it (dead) when `None`.
pub(super) struct FailJob {
    pub job: Job,
    pub error: String,
    pub retry_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

impl Apply for FailJob {
    type Output = ();

    fn run(&self, conn: &Connection) -> Result<()> {
        let (status, run_at, finished) = failed_job_state(self.retry_at, self.now);
        let updated = conn
            .prepare_cached(
                "UPDATE jobs SET status = ?, run_at = ?, finished_at = ?, last_error = ?, locked_at = NULL,
                    locked_by = NULL
                 WHERE id = ? AND status = 'running' AND locked_by = ?",
            )?
            .execute(params![status, run_at, finished, self.error, self.job.id, self.job.worker])?;
        if updated == 1 && self.retry_at.is_none() {
            // A run waiting on this evaluation ends failed, with the reason.
            let now = self.now.timestamp_millis();
            conn.prepare_cached(
                "UPDATE runs SET status = 'failed', error_message = ?, finished_at = ?, updated_at = ?
                 WHERE call_id = ? AND status = 'evaluating'",
            )?
            .execute(params![evaluation_failed_message(&self.error), now, now, self.job.call_id])?;
        }
        Ok(())
    }
}
