//! The evaluation job queue on PostgreSQL.

use super::webhooks::{emit, has_subscribers};
use super::{notify_jobs, text, JOBS_CHANNEL};
use crate::codec::to_json;
use crate::errors::no_call;
use crate::inputs::{claimed_evaluations, evaluation_inputs};
use crate::model::*;
use crate::queue::{failed_job_state, job_counts as counts_from, SUPERSEDED};
use crate::rows::{call_for_evaluation_from, CALLS, CALL_SUMMARY_COLUMNS, EVALUATED_CALL_COLUMNS};
use crate::{
    evaluation_document, Arc, ClaimedEvaluation, Job, JobCounts, JobQueue, PgStore,
    ReevaluateFilter, Result, StoreError,
};
use async_trait::async_trait;
use callgrade_core::outbound::{call_evaluated, EventType};
use callgrade_core::RunChange;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::{PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Row};
use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;
use tokio::sync::Notify;

/// Relays notifications to `wake` until its store is dropped.
async fn relay_notifications(mut listener: PgListener, wake: Weak<Notify>) {
    const MIN_BACKOFF: Duration = Duration::from_millis(250);
    let mut backoff = MIN_BACKOFF;
    loop {
        let received = listener.try_recv().await;
        let Some(wake) = wake.upgrade() else { return };
        match received {
            Ok(Some(_)) => backoff = MIN_BACKOFF,
            // The connection was lost and re-established: what was sent meanwhile is gone, so
            // wake the workers anyway.
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "job notifications interrupted; reconnecting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        wake.notify_waiters();
    }
}

/// Queues an evaluation of a call, unless one is already waiting. The caller holds the call's
/// row (it just inserted it, or locked it), so two transactions cannot both find none waiting.
pub(super) async fn enqueue(
    conn: &mut PgConnection,
    project_id: i64,
    call_id: &str,
    now: i64,
) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO jobs (kind, project_id, call_id, status, run_at, created_at)
         SELECT 'evaluate_call', $1, $2, 'queued', $3, $3
         WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE call_id = $2 AND status = 'queued')",
    )
    .bind(project_id)
    .bind(call_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub(super) async fn enqueue_calls(
    pool: &PgPool,
    project_id: i64,
    filter: &ReevaluateFilter,
    call_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut tx = pool.begin().await?;
    let mut q = QueryBuilder::<Postgres>::new("SELECT id FROM calls WHERE project_id = ");
    q.push_bind(project_id);
    if let Some(id) = call_id {
        q.push(" AND id = ").push_bind(text(id).into_owned());
    }
    if let Some(agent_id) = filter.agent_id {
        q.push(" AND agent_id = ").push_bind(agent_id);
    }
    if let Some(from) = filter.started_from_ms {
        q.push(" AND started_at >= ").push_bind(from);
    }
    if let Some(before) = filter.started_before_ms {
        q.push(" AND started_at < ").push_bind(before);
    }
    // Locks the calls (in storage order) for `enqueue`'s check; a share lock would not do, as
    // two re-evaluations must not both see "nothing waiting".
    q.push(" ORDER BY seq FOR NO KEY UPDATE");
    let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *tx).await?;
    if let (Some(call_id), true) = (call_id, ids.is_empty()) {
        return Err(no_call(call_id));
    }
    let now = now.timestamp_millis();
    let mut queued = 0;
    for id in &ids {
        if enqueue(&mut tx, project_id, id, now).await? {
            queued += 1;
        }
    }
    if queued > 0 {
        notify_jobs(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(queued)
}

/// Claims the oldest ready job, or one whose worker stopped renewing its lease. Jobs another
/// worker is claiming right now are skipped, not waited for.
pub(super) async fn claim_jobs(
    pool: &PgPool,
    worker: &str,
    now: DateTime<Utc>,
    lease: TimeDelta,
    limit: u32,
) -> Result<Vec<Job>> {
    let now_ms = now.timestamp_millis();
    let rows: Vec<(i64, i64, String, i64)> = sqlx::query_as(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_at = $1,
            locked_by = $2
         WHERE id IN (
            SELECT id FROM jobs
            WHERE (status = 'queued' AND run_at <= $1) OR (status = 'running' AND locked_at < $3)
            ORDER BY id
            FOR UPDATE SKIP LOCKED
            LIMIT $4)
         RETURNING id, project_id, call_id, attempts",
    )
    .bind(now_ms)
    .bind(text(worker))
    .bind((now - lease).timestamp_millis())
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    let mut jobs: Vec<Job> = rows
        .into_iter()
        .map(|(id, project_id, call_id, attempts)| Job {
            id,
            project_id,
            call_id,
            attempts,
            worker: worker.to_owned(),
        })
        .collect();
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}

/// Writes a job's results and marks it done, atomically. False (and nothing written) when the
/// job's lease was lost to another worker.
pub(super) async fn complete_job(
    pool: &PgPool,
    job: &Job,
    outcome: &CallEvaluation,
    now: DateTime<Utc>,
) -> Result<bool> {
    let now_ms = now.timestamp_millis();
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE jobs SET status = 'done', finished_at = $1, last_error = NULL
         WHERE id = $2 AND status = 'running' AND locked_by = $3",
    )
    .bind(now_ms)
    .bind(job.id)
    .bind(text(&job.worker))
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    // Completions of one call's jobs take turns, so the check below sees a newer one that
    // finished while this one waited.
    sqlx::query("SELECT 1 FROM calls WHERE id = $1 FOR NO KEY UPDATE")
        .bind(&job.call_id)
        .execute(&mut *tx)
        .await?;
    let superseded: bool = sqlx::query_scalar(SUPERSEDED)
        .bind(&job.call_id)
        .bind(job.id)
        .fetch_one(&mut *tx)
        .await?;
    if superseded {
        tx.commit().await?;
        return Ok(true);
    }
    // Running a job again replaces its results.
    sqlx::query(
        "INSERT INTO call_evaluations
            (call_id, project_id, success, rubric, evaluations, evaluated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (call_id) DO UPDATE SET project_id = $2, success = $3, rubric = $4,
            evaluations = $5, evaluated_at = $6",
    )
    .bind(&job.call_id)
    .bind(job.project_id)
    .bind(outcome.verdict.success)
    .bind(to_json(&outcome.verdict))
    .bind(evaluation_document::document(&outcome.evaluations))
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    // The run the call completes takes the verdict; a late run keeps its timeout status.
    if let Some(run) = super::runs::state_of(&mut tx, "call_id = $1", &job.call_id).await? {
        let w = run.apply(RunChange::Evaluated, now_ms)?;
        let judge = crate::queue::judge_columns(outcome);
        sqlx::query(
            "UPDATE runs SET success = $1, status = $2, error_message = $3, finished_at = $4,
                updated_at = $5,
                usage = (usage::jsonb || jsonb_build_object('judge_requests', $8::bigint,
                    'judge_tokens', $9::bigint))::text
             WHERE id = $6 AND status = $7",
        )
        .bind(outcome.verdict.success)
        .bind(w.status.as_str())
        .bind(w.error_message.as_deref().map(text))
        .bind(w.finished_at)
        .bind(now_ms)
        .bind(run.id)
        .bind(w.from.as_str())
        .bind(judge.0)
        .bind(judge.1)
        .execute(&mut *tx)
        .await?;
    }
    if has_subscribers(&mut tx, job.project_id, EventType::CallEvaluated).await? {
        let row = sqlx::query(
            "SELECT external_id, agent_id, (SELECT id FROM runs WHERE call_id = calls.id) AS run_id
             FROM calls WHERE id = $1",
        )
        .bind(&job.call_id)
        .fetch_one(&mut *tx)
        .await?;
        let data = call_evaluated(
            &job.call_id,
            &row.try_get::<String, _>("external_id")?,
            row.try_get("agent_id")?,
            row.try_get("run_id")?,
            outcome,
        );
        let event = NewEvent::new(EventType::CallEvaluated, now, data);
        emit(&mut tx, job.project_id, &event, None).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Gives a failed job back to the queue for `retry_at`, or buries it (dead) when `None`.
pub(super) async fn fail_job(
    pool: &PgPool,
    job: &Job,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    let (status, run_at, finished) = failed_job_state(retry_at, now);
    let updated = sqlx::query(
        "UPDATE jobs SET status = $1, run_at = $2, finished_at = $3, last_error = $4,
            locked_at = NULL, locked_by = NULL
         WHERE id = $5 AND status = 'running' AND locked_by = $6",
    )
    .bind(status)
    .bind(run_at)
    .bind(finished)
    .bind(text(error))
    .bind(job.id)
    .bind(text(&job.worker))
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 1 && retry_at.is_none() {
        // A run waiting on this evaluation ends failed, with the reason.
        let now_ms = now.timestamp_millis();
        if let Some(run) = super::runs::state_of(&mut tx, "call_id = $1", &job.call_id).await? {
            let w = run.apply(RunChange::EvaluationFailed(error), now_ms)?;
            sqlx::query(
                "UPDATE runs SET status = $1, error_message = $2, finished_at = $3, updated_at = $4
                 WHERE id = $5 AND status = $6",
            )
            .bind(w.status.as_str())
            .bind(w.error_message.as_deref().map(text))
            .bind(w.finished_at)
            .bind(now_ms)
            .bind(run.id)
            .bind(w.from.as_str())
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl JobQueue for PgStore {
    async fn enqueue_evaluations(
        &self,
        project_id: i64,
        filter: &ReevaluateFilter,
        call_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let queued = enqueue_calls(&self.pool, project_id, filter, call_id, now).await?;
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
        let jobs = claim_jobs(&self.pool, worker, now, lease, limit).await?;
        // Each project's calls in one query.
        let mut ids: HashMap<i64, Vec<&str>> = HashMap::new();
        for job in &jobs {
            ids.entry(job.project_id).or_default().push(&job.call_id);
        }
        let mut calls: HashMap<(i64, String), CallForEvaluation> = HashMap::new();
        let mut failed: HashMap<i64, String> = HashMap::new();
        for (project_id, ids) in ids {
            let read = sqlx::query(&format!(
                "SELECT {CALL_SUMMARY_COLUMNS}, {EVALUATED_CALL_COLUMNS}
                 FROM {CALLS} WHERE calls.project_id = $1 AND calls.id = ANY($2)"
            ))
            .bind(project_id)
            .bind(&ids)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::from)
            .and_then(|rows| {
                rows.iter()
                    .map(call_for_evaluation_from)
                    .collect::<Result<Vec<_>>>()
            });
            match read {
                Ok(read) => calls.extend(
                    read.into_iter()
                        .map(|c| ((project_id, c.call_id.clone()), c)),
                ),
                Err(e) => {
                    failed.insert(project_id, e.to_string());
                }
            }
        }
        let claimed = jobs
            .into_iter()
            .map(|job| {
                let call = match failed.get(&job.project_id) {
                    Some(e) => Err(e.clone()),
                    None => Ok(calls.get(&(job.project_id, job.call_id.clone())).cloned()),
                };
                (job, call)
            })
            .collect();
        Ok(claimed_evaluations(self, claimed, |project_id| {
            super::metrics::inputs(&self.pool, project_id)
        })
        .await)
    }
    /// Renews a running job's lease; false when another worker has taken it over.
    async fn renew_lease(&self, job: &Job, now: DateTime<Utc>) -> Result<bool> {
        let pool = &self.pool;
        let updated = sqlx::query(
            "UPDATE jobs SET locked_at = $1 WHERE id = $2 AND status = 'running' AND locked_by = $3",
        )
        .bind(now.timestamp_millis())
        .bind(job.id)
        .bind(text(&job.worker))
        .execute(pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }
    async fn complete_job(
        &self,
        job: &Job,
        outcome: &CallEvaluation,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        complete_job(&self.pool, job, outcome, now).await
    }
    async fn fail_job(
        &self,
        job: &Job,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        fail_job(&self.pool, job, error, retry_at, now).await
    }
    async fn job_counts(&self, project_id: Option<i64>) -> Result<JobCounts> {
        let pool = &self.pool;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM jobs WHERE $1::BIGINT IS NULL OR project_id = $1
             GROUP BY status",
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
        let ids: Vec<&str> = call_ids.iter().map(String::as_str).collect();
        let calls = sqlx::query(&format!(
            "SELECT {CALL_SUMMARY_COLUMNS}, {EVALUATED_CALL_COLUMNS}
             FROM {CALLS} WHERE calls.project_id = $1 AND calls.id = ANY($2)"
        ))
        .bind(project_id)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(call_for_evaluation_from)
        .collect::<Result<_>>()?;
        let settings = super::metrics::inputs(&self.pool, project_id).await?;
        evaluation_inputs(self, project_id, calls, settings).await
    }
    fn job_signal(&self) -> Arc<Notify> {
        self.jobs_ready.clone()
    }
    async fn listen_for_jobs(&self) -> Result<()> {
        // A pool of its own: the listener keeps its connection for good and must not hold one
        // of the query pool's; the pool also reconnects it when the connection is lost.
        let options = (*self.pool.connect_options()).clone();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(options)
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(JOBS_CHANNEL).await?;
        tokio::spawn(relay_notifications(
            listener,
            Arc::downgrade(&self.jobs_ready),
        ));
        Ok(())
    }
}
