//! Metrics, evaluations, the job queue and the judge cache on PostgreSQL.

use callgrade_core::{MetricSpec, RubricRule};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Postgres, QueryBuilder};

use super::{notify_jobs, opt_text, text};
use crate::common::{
    apply_step, evaluation_failed_message, failed_job_state, from_json, job_counts as counts_from,
    judge_field, metric_name_taken, no_call, no_metric, summarize, to_json, ApplyStep,
};
use crate::evaluation_document;
use crate::model::*;
use crate::rows::{
    judge_settings_from, metric_from, summary_row_from, JUDGE_COLUMNS, METRIC_COLUMNS,
};
use crate::Result;

pub(super) async fn insert_metric(
    conn: &mut PgConnection,
    project_id: i64,
    spec: &MetricSpec,
    now: i64,
) -> Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO metrics (project_id, name, kind, output, enum_values, applies_to, agent_ids,
            description, config, enabled, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
    )
    .bind(project_id)
    .bind(text(&spec.name))
    .bind(spec.kind.as_str())
    .bind(spec.output.as_str())
    .bind(to_json(&spec.enum_values))
    .bind(spec.applies_to.as_str())
    .bind(to_json(&spec.agent_ids))
    .bind(text(&spec.description))
    .bind(to_json(&spec.config))
    .bind(spec.enabled)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| metric_name_taken(e, &spec.name))?;
    Ok(id)
}

async fn update_metric_row(
    conn: &mut PgConnection,
    id: i64,
    spec: &MetricSpec,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE metrics SET name = $1, kind = $2, output = $3, enum_values = $4, applies_to = $5,
            agent_ids = $6, description = $7, config = $8, enabled = $9, version = version + 1,
            updated_at = $10
         WHERE id = $11",
    )
    .bind(text(&spec.name))
    .bind(spec.kind.as_str())
    .bind(spec.output.as_str())
    .bind(to_json(&spec.enum_values))
    .bind(spec.applies_to.as_str())
    .bind(to_json(&spec.agent_ids))
    .bind(text(&spec.description))
    .bind(to_json(&spec.config))
    .bind(spec.enabled)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(|e| metric_name_taken(e, &spec.name))?;
    Ok(())
}

async fn live_metrics(conn: &mut PgConnection, project_id: i64) -> Result<Vec<Metric>> {
    sqlx::query(&format!(
        "SELECT {METRIC_COLUMNS} FROM metrics WHERE project_id = $1 AND deleted_at IS NULL
         ORDER BY id"
    ))
    .bind(project_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(metric_from)
    .collect()
}

pub(super) async fn list_metrics(pool: &PgPool, project_id: i64) -> Result<Vec<Metric>> {
    live_metrics(&mut *pool.acquire().await?, project_id).await
}

pub(super) async fn metric(pool: &PgPool, project_id: i64, id: i64) -> Result<Option<Metric>> {
    sqlx::query(&format!(
        "SELECT {METRIC_COLUMNS} FROM metrics
         WHERE project_id = $1 AND id = $2 AND deleted_at IS NULL"
    ))
    .bind(project_id)
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(metric_from)
    .transpose()
}

pub(super) async fn create_metric(
    pool: &PgPool,
    project_id: i64,
    spec: &MetricSpec,
    now: DateTime<Utc>,
) -> Result<i64> {
    let mut conn = pool.acquire().await?;
    insert_metric(&mut conn, project_id, spec, now.timestamp_millis()).await
}

pub(super) async fn update_metric(
    pool: &PgPool,
    project_id: i64,
    id: i64,
    spec: &MetricSpec,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    // Locked, so a concurrent delete cannot slip between the check and the update.
    let exists: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM metrics WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL
         FOR UPDATE",
    )
    .bind(id)
    .bind(project_id)
    .fetch_optional(&mut *tx)
    .await?;
    if exists.is_none() {
        return Err(no_metric(id));
    }
    update_metric_row(&mut tx, id, spec, now.timestamp_millis()).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn delete_metric(
    pool: &PgPool,
    project_id: i64,
    id: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    let deleted = sqlx::query(
        "UPDATE metrics SET deleted_at = $1
         WHERE id = $2 AND project_id = $3 AND deleted_at IS NULL",
    )
    .bind(now.timestamp_millis())
    .bind(id)
    .bind(project_id)
    .execute(pool)
    .await?;
    if deleted.rows_affected() == 0 {
        return Err(no_metric(id));
    }
    Ok(())
}

/// Creates or updates metrics by name, in one transaction; an unchanged one keeps its version.
pub(super) async fn apply_metrics(
    pool: &PgPool,
    project_id: i64,
    specs: &[MetricSpec],
    now: DateTime<Utc>,
) -> Result<ApplySummary> {
    let now = now.timestamp_millis();
    let mut tx = pool.begin().await?;
    // The whole comparison decides the writes: applies to one project run one at a time, as
    // they do under SQLite's single writer.
    sqlx::query("SELECT 1 FROM projects WHERE id = $1 FOR UPDATE")
        .bind(project_id)
        .execute(&mut *tx)
        .await?;
    let existing = live_metrics(&mut tx, project_id).await?;
    let mut summary = ApplySummary::default();
    for spec in specs {
        match apply_step(&existing, spec) {
            ApplyStep::Unchanged => summary.unchanged.push(spec.name.clone()),
            ApplyStep::Update(m) => {
                update_metric_row(&mut tx, m.id, spec, now).await?;
                summary.updated.push(spec.name.clone());
            }
            ApplyStep::Create => {
                insert_metric(&mut tx, project_id, spec, now).await?;
                summary.created.push(spec.name.clone());
            }
        }
    }
    tx.commit().await?;
    Ok(summary)
}

pub(super) async fn rubric(conn: &mut PgConnection, project_id: i64) -> Result<Vec<RubricRule>> {
    let text: String = sqlx::query_scalar("SELECT rubric FROM projects WHERE id = $1")
        .bind(project_id)
        .fetch_one(&mut *conn)
        .await?;
    from_json(&text)
}

pub(super) async fn set_rubric(pool: &PgPool, project_id: i64, rules: &[RubricRule]) -> Result<()> {
    sqlx::query("UPDATE projects SET rubric = $1 WHERE id = $2")
        .bind(to_json(&rules))
        .bind(project_id)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn judge_settings(
    conn: &mut PgConnection,
    project_id: i64,
) -> Result<JudgeSettings> {
    let row = sqlx::query(&format!(
        "SELECT {JUDGE_COLUMNS} FROM projects WHERE id = $1"
    ))
    .bind(project_id)
    .fetch_one(&mut *conn)
    .await?;
    judge_settings_from(&row)
}

pub(super) async fn set_judge_settings(
    pool: &PgPool,
    project_id: i64,
    patch: &JudgeSettingsPatch,
) -> Result<()> {
    let (set_url, url) = judge_field(&patch.base_url);
    let (set_model, model) = judge_field(&patch.model);
    let (set_key, key) = judge_field(&patch.api_key);
    sqlx::query(
        "UPDATE projects SET
            judge_base_url = CASE WHEN $1 THEN $2 ELSE judge_base_url END,
            judge_model = CASE WHEN $3 THEN $4 ELSE judge_model END,
            judge_api_key = CASE WHEN $5 THEN $6 ELSE judge_api_key END,
            judge_concurrency = COALESCE($7, judge_concurrency)
         WHERE id = $8",
    )
    .bind(set_url)
    .bind(opt_text(url.as_deref()))
    .bind(set_model)
    .bind(opt_text(model.as_deref()))
    .bind(set_key)
    .bind(opt_text(key.as_deref()))
    .bind(patch.concurrency.map(i64::from))
    .bind(project_id)
    .execute(pool)
    .await?;
    Ok(())
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

/// Renews a running job's lease; false when another worker has taken it over.
pub(super) async fn renew_lease(pool: &PgPool, job: &Job, now: DateTime<Utc>) -> Result<bool> {
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
    // Running a job again replaces its results; two jobs of one call take turns on its row.
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
    sqlx::query(
        "UPDATE runs SET success = $1, updated_at = $2,
            status = CASE WHEN status = 'evaluating' THEN 'completed' ELSE status END,
            finished_at = CASE WHEN status = 'evaluating' THEN $2 ELSE finished_at END
         WHERE call_id = $3",
    )
    .bind(outcome.verdict.success)
    .bind(now_ms)
    .bind(&job.call_id)
    .execute(&mut *tx)
    .await?;
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
        sqlx::query(
            "UPDATE runs SET status = 'failed', error_message = $1, finished_at = $2,
                updated_at = $2
             WHERE call_id = $3 AND status = 'evaluating'",
        )
        .bind(text(&evaluation_failed_message(error)).into_owned())
        .bind(now.timestamp_millis())
        .bind(&job.call_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn job_counts(pool: &PgPool, project_id: Option<i64>) -> Result<JobCounts> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, COUNT(*) FROM jobs WHERE $1::BIGINT IS NULL OR project_id = $1
         GROUP BY status",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await?;
    Ok(counts_from(rows))
}

pub(super) async fn inputs(
    pool: &PgPool,
    project_id: i64,
) -> Result<(Vec<Metric>, Vec<RubricRule>, JudgeSettings)> {
    let mut conn = pool.acquire().await?;
    let metrics = live_metrics(&mut conn, project_id).await?;
    let rules = rubric(&mut conn, project_id).await?;
    let judge = judge_settings(&mut conn, project_id).await?;
    Ok((metrics, rules, judge))
}

pub(super) async fn cache_get(pool: &PgPool, key: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT response FROM judge_cache WHERE key = $1")
            .bind(text(key))
            .fetch_optional(pool)
            .await?,
    )
}

pub(super) async fn cache_put(
    pool: &PgPool,
    key: &str,
    response: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO judge_cache (key, response, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET response = EXCLUDED.response,
            created_at = EXCLUDED.created_at",
    )
    .bind(text(key))
    .bind(text(response))
    .bind(now.timestamp_millis())
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn metrics_summary(
    pool: &PgPool,
    project_id: i64,
    agent_id: Option<i64>,
    from_ms: Option<i64>,
    before_ms: Option<i64>,
) -> Result<Vec<MetricSummary>> {
    // `json`, not `jsonb`: an explanation may hold U+0000, which `jsonb` refuses.
    let mut q = QueryBuilder::<Postgres>::new(
        "SELECT (j ->> 'metric_id')::bigint AS metric_id, j ->> 'metric_name' AS metric_name,
            j ->> 'output' AS output,
            CASE WHEN json_typeof(j -> 'value') <> 'null' THEN (j -> 'value')::text END AS value,
            (j ->> 'passed')::boolean AS passed
         FROM call_evaluations e JOIN calls c ON c.id = e.call_id
            CROSS JOIN LATERAL json_array_elements(e.evaluations::json) j
         WHERE e.project_id = ",
    );
    q.push_bind(project_id);
    if let Some(a) = agent_id {
        q.push(" AND c.agent_id = ").push_bind(a);
    }
    if let Some(f) = from_ms {
        q.push(" AND c.started_at >= ").push_bind(f);
    }
    if let Some(b) = before_ms {
        q.push(" AND c.started_at < ").push_bind(b);
    }
    q.push(" ORDER BY metric_id");
    let rows = q.build().fetch_all(pool).await?;
    summarize(rows.iter().map(summary_row_from))
}
