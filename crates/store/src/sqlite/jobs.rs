//! The evaluation job queue's writes on SQLite. They run in the writer thread like every
//! write, so workers never wait on SQLite's lock and their commits share the group's fsync.

use super::lite::OwnedRow;
use super::webhooks::{emit, has_subscribers};
use super::writer::{in_place, Apply};
use crate::codec::to_json;
use crate::errors::no_call;
use crate::inputs::{claimed_evaluations, evaluation_inputs};
use crate::model::*;
use crate::queue::{failed_job_state, job_counts as counts_from, SUPERSEDED};
use crate::rows::{call_for_evaluation_from, CALLS, CALL_SUMMARY_COLUMNS, EVALUATED_CALL_COLUMNS};
use crate::{
    evaluation_document, ClaimedEvaluation, Job, JobCounts, JobQueue, ReevaluateFilter, Result,
    SqliteStore,
};
use async_trait::async_trait;
use callgrade_core::outbound::{call_evaluated, EventType};
use callgrade_core::RunChange;
use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{params, Connection};
use sqlx::{QueryBuilder, Sqlite};
use std::sync::Arc;
use tokio::sync::Notify;

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
    /// `call.evaluated`'s data but the call's ids, which the write reads.
    outcome: CallEvaluation,
    evaluations: String,
    success: Option<bool>,
    verdict: String,
    /// Judge requests and tokens, for the run's usage.
    judge: (i64, i64),
    now: i64,
}

impl CompleteJob {
    pub(super) fn new(job: &Job, outcome: &CallEvaluation, now: DateTime<Utc>) -> Self {
        Self {
            job: job.clone(),
            outcome: outcome.clone(),
            evaluations: evaluation_document::document(&outcome.evaluations),
            success: outcome.verdict.success,
            verdict: to_json(&outcome.verdict),
            judge: crate::queue::judge_columns(outcome),
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
        let superseded: bool = conn
            .prepare_cached(SUPERSEDED)?
            .query_row(params![job.call_id, job.id], |row| row.get(0))?;
        if superseded {
            return Ok(true);
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
        if let Some(run) = super::runs::run_state_in_place(conn, "call_id = ?", [&job.call_id])? {
            let w = run.apply(RunChange::Evaluated, now_ms)?;
            conn.prepare_cached(
                "UPDATE runs SET success = ?, status = ?, error_message = ?, finished_at = ?,
                    updated_at = ?,
                    usage = json_set(usage, '$.judge_requests', ?, '$.judge_tokens', ?)
                 WHERE id = ? AND status = ?",
            )?
            .execute(params![
                self.success,
                w.status.as_str(),
                w.error_message,
                w.finished_at,
                now_ms,
                self.judge.0,
                self.judge.1,
                run.id,
                w.from.as_str()
            ])?;
        }
        if has_subscribers(conn, job.project_id, EventType::CallEvaluated)? {
            let (external_id, agent_id, run_id): (String, Option<i64>, Option<i64>) = conn
                .prepare_cached(
                    "SELECT external_id, agent_id, (SELECT id FROM runs WHERE call_id = calls.id)
                     FROM calls WHERE id = ?",
                )?
                .query_row([&job.call_id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
            let data = call_evaluated(&job.call_id, &external_id, agent_id, run_id, &self.outcome);
            let at = DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
            emit(
                conn,
                job.project_id,
                &NewEvent::new(EventType::CallEvaluated, at, data),
                None,
            )?;
        }
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
            let run = super::runs::run_state_in_place(conn, "call_id = ?", [&self.job.call_id])?;
            if let Some(run) = run {
                let w = run.apply(RunChange::EvaluationFailed(&self.error), now)?;
                conn.prepare_cached(
                    "UPDATE runs SET status = ?, error_message = ?, finished_at = ?, updated_at = ?
                     WHERE id = ? AND status = ?",
                )?
                .execute(params![
                    w.status.as_str(),
                    w.error_message,
                    w.finished_at,
                    now,
                    run.id,
                    w.from.as_str()
                ])?;
            }
        }
        Ok(())
    }
}

/// Queues the matching calls (one call when `call_id` is given) on the writer's connection;
/// how many were queued.
fn enqueue_calls(
    conn: &Connection,
    project_id: i64,
    filter: &ReevaluateFilter,
    call_id: Option<&str>,
    now: i64,
) -> Result<usize> {
    let mut sql = String::from("SELECT id FROM calls WHERE project_id = ?");
    let mut args: Vec<rusqlite::types::Value> = vec![project_id.into()];
    let mut and = |clause: &str, value: rusqlite::types::Value| {
        sql.push_str(clause);
        args.push(value);
    };
    if let Some(id) = call_id {
        and(" AND id = ?", id.to_owned().into());
    }
    if let Some(agent_id) = filter.agent_id {
        and(" AND agent_id = ?", agent_id.into());
    }
    if let Some(from) = filter.started_from_ms {
        and(" AND started_at >= ?", from.into());
    }
    if let Some(before) = filter.started_before_ms {
        and(" AND started_at < ?", before.into());
    }
    let ids: Vec<String> = conn
        .prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(args), |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if let (Some(call_id), true) = (call_id, ids.is_empty()) {
        return Err(no_call(call_id));
    }
    let mut queued = 0;
    for id in &ids {
        if enqueue(conn, project_id, id, now)? {
            queued += 1;
        }
    }
    Ok(queued)
}

#[async_trait]
impl JobQueue for SqliteStore {
    async fn enqueue_evaluations(
        &self,
        project_id: i64,
        filter: &ReevaluateFilter,
        call_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let (filter, call_id) = (filter.clone(), call_id.map(str::to_owned));
        let now = now.timestamp_millis();
        let queued = self
            .writer
            .write(in_place(move |conn| {
                enqueue_calls(conn, project_id, &filter, call_id.as_deref(), now)
            }))
            .await?;
        if queued > 0 {
            self.jobs_ready.notify_waiters();
        }
        Ok(queued)
    }
    async fn claim_evaluations(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<ClaimedEvaluation>> {
        let claimed = self
            .writer
            .write(ClaimJobs {
                worker: worker.to_owned(),
                now,
                lease,
                limit,
            })
            .await?;
        // The writer read each call's row as it claimed: `None` means the call is gone.
        let claimed = claimed
            .into_iter()
            .map(|(job, row)| {
                let call = row
                    .map(|row| call_for_evaluation_from(&row))
                    .transpose()
                    .map_err(|e| e.to_string());
                (job, call)
            })
            .collect();
        Ok(claimed_evaluations(self, claimed, |project_id| {
            super::metrics::inputs(&self.pool, project_id)
        })
        .await)
    }
    async fn renew_lease(&self, job: &Job, now: DateTime<Utc>) -> Result<bool> {
        self.writer
            .write(RenewLease {
                job: job.clone(),
                now,
            })
            .await
    }
    async fn complete_job(
        &self,
        job: &Job,
        outcome: &CallEvaluation,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.writer.write(CompleteJob::new(job, outcome, now)).await
    }
    async fn fail_job(
        &self,
        job: &Job,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.writer
            .write(FailJob {
                job: job.clone(),
                error: error.to_owned(),
                retry_at,
                now,
            })
            .await
    }
    async fn job_counts(&self, project_id: Option<i64>) -> Result<JobCounts> {
        let pool = &self.pool;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM jobs WHERE ?1 IS NULL OR project_id = ?1 GROUP BY status",
        )
        .bind(project_id)
        .fetch_all(pool)
        .await?;
        Ok(counts_from(rows))
    }
    async fn evaluation_inputs(
        &self,
        project_id: i64,
        call_ids: &[String],
    ) -> Result<Vec<EvaluationInput>> {
        if call_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {CALL_SUMMARY_COLUMNS}, {EVALUATED_CALL_COLUMNS} FROM {CALLS} WHERE calls.project_id = "
        ));
        q.push_bind(project_id).push(" AND calls.id IN (");
        let mut ids = q.separated(", ");
        for id in call_ids {
            ids.push_bind(id);
        }
        q.push(")");
        let calls = q
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(call_for_evaluation_from)
            .collect::<Result<Vec<_>>>()?;
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let settings = super::metrics::inputs(&self.pool, project_id).await?;
        evaluation_inputs(self, project_id, calls, settings).await
    }
    fn job_signal(&self) -> Arc<Notify> {
        self.jobs_ready.clone()
    }
}
