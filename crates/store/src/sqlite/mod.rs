//! The SQLite backend: WAL, `synchronous=FULL`, a pool of reading connections, and one writer
//! thread (`writer.rs`) that commits concurrent webhook requests and job updates together.

use async_trait::async_trait;
use callgrade_core::{Batch, MetricSpec, PhoneNumber, RubricRule};
use chrono::TimeDelta;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, QueryBuilder, Row, Sqlite};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

use crate::common::{
    decode_cursor, default_metrics, encode_cursor, existing_metric, existing_project, existing_run,
    no_project, now_ms, project_name_taken,
};
use crate::inputs::{claimed_evaluations, evaluation_inputs};
use crate::key::{hash_key, hashes_match, ApiKey};
use crate::model::*;
use crate::rows::{
    agent_from, call_for_evaluation_from, call_summary_from, call_with_evaluations_from,
    delivery_from, delivery_summary_from, paginate, project_from, Columns, AGENT_COLUMNS, CALLS,
    CALL_DETAIL_COLUMNS, CALL_SUMMARY_COLUMNS, DELIVERY_SUMMARY_COLUMNS, EVALUATED_CALL_COLUMNS,
    PROJECT_COLUMNS,
};
use crate::{Result, Store, StoreError};

mod eval;
mod ingest;
mod jobs;
mod lite;
mod runs;
mod writer;

use ingest::{DeliveryWrite, IngestWrite};
use lite::LiteRow;
use writer::Writer;

pub struct SqliteStore {
    pool: SqlitePool,
    writer: Writer,
    /// Signalled after a commit that queued jobs (see [`Store::job_signal`]).
    jobs_ready: Arc<Notify>,
    /// A reading connection of its own for authentication, which every webhook request does:
    /// looking one indexed row up in place costs less than the hand-off to a pooled
    /// connection's thread.
    keys: Mutex<rusqlite::Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite:path` or `sqlite://path`) and
    /// applies pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .disable_statement_logging();
        if options.get_filename() == Path::new(":memory:") {
            return Err(StoreError::InvalidInput(
                "an in-memory SQLite database cannot be shared by the reader pool and the writer; give a file path".into(),
            ));
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let writer = Writer::start(options.get_filename())?;
        let keys = lite::open_reader(options.get_filename())?;
        Ok(Self {
            pool,
            writer,
            jobs_ready: Arc::new(Notify::new()),
            keys: Mutex::new(keys),
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_project(&self, name: &str) -> Result<(Project, ApiKey)> {
        let key = ApiKey::generate();
        let now = now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(&format!(
            "INSERT INTO projects (name, key_hash, key_prefix, created_at) VALUES (?, ?, ?, ?)
             RETURNING {PROJECT_COLUMNS}"
        ))
        .bind(name)
        .bind(key.hash())
        .bind(key.prefix())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| project_name_taken(e, name))?;
        let project = project_from(&row)?;
        for spec in default_metrics() {
            eval::insert_metric(&mut tx, project.id, &spec, now).await?;
        }
        tx.commit().await?;
        Ok((project, key))
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(project_from)
        .collect()
    }

    async fn project(&self, id: i64) -> Result<Option<Project>> {
        sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(project_from)
        .transpose()
    }

    async fn find_project(&self, name_or_id: &str) -> Result<Option<Project>> {
        if let Ok(id) = name_or_id.parse::<i64>() {
            return self.project(id).await;
        }
        sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE name = ?"
        ))
        .bind(name_or_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(project_from)
        .transpose()
    }

    async fn rotate_key(&self, project_id: i64) -> Result<ApiKey> {
        let key = ApiKey::generate();
        let updated = sqlx::query(
            "UPDATE projects SET key_hash = ?, key_prefix = ?, key_rotated_at = ? WHERE id = ?",
        )
        .bind(key.hash())
        .bind(key.prefix())
        .bind(now_ms())
        .bind(project_id)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(no_project(project_id));
        }
        Ok(key)
    }

    async fn authenticate(&self, key: &str) -> Result<Option<Project>> {
        let hash = hash_key(key);
        let conn = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let mut select = conn.prepare_cached(&format!(
            "SELECT {PROJECT_COLUMNS}, key_hash FROM projects WHERE key_hash = ?"
        ))?;
        let mut rows = select.query([&hash])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let row = LiteRow(row);
        match hashes_match(&row.text("key_hash")?, &hash) {
            true => Ok(Some(project_from(&row)?)),
            false => Ok(None),
        }
    }

    async fn create_agent(
        &self,
        project_id: i64,
        name: &str,
        phone_number: Option<&PhoneNumber>,
        description: Option<&str>,
    ) -> Result<Agent> {
        existing_project(self, project_id).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO agents (project_id, name, phone_number, description, created_at)
             VALUES (?, ?, ?, ?, ?)
             RETURNING {AGENT_COLUMNS}"
        ))
        .bind(project_id)
        .bind(name)
        .bind(phone_number.map(PhoneNumber::as_str))
        .bind(description)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        agent_from(&row)
    }

    async fn update_agent(
        &self,
        project_id: i64,
        agent_id: i64,
        name: &str,
        phone_number: Option<&PhoneNumber>,
        description: Option<&str>,
    ) -> Result<Agent> {
        let row = sqlx::query(&format!(
            "UPDATE agents SET name = ?, phone_number = ?, description = ?
             WHERE id = ? AND project_id = ? RETURNING {AGENT_COLUMNS}"
        ))
        .bind(name)
        .bind(phone_number.map(PhoneNumber::as_str))
        .bind(description)
        .bind(agent_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!("no agent with id {agent_id} in this project"))
        })?;
        agent_from(&row)
    }

    async fn list_agents(&self, project_id: i64) -> Result<Vec<Agent>> {
        sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE project_id = ? ORDER BY id"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(agent_from)
        .collect()
    }

    async fn ingest(&self, batch: Batch, delivery: NewDelivery) -> Result<IngestOutcome> {
        let outcome = self.writer.write(IngestWrite::new(batch, delivery)).await?;
        if matches!(&outcome, IngestOutcome::Accepted(r) if r.created > 0) {
            self.jobs_ready.notify_waiters();
        }
        Ok(outcome)
    }

    async fn record_delivery(
        &self,
        delivery: NewDelivery,
        rejection: RejectedDelivery,
    ) -> Result<i64> {
        self.writer
            .write(DeliveryWrite {
                delivery,
                rejection,
            })
            .await
    }

    async fn list_calls(&self, project_id: i64, filter: &CallFilter) -> Result<Page<CallSummary>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {CALL_SUMMARY_COLUMNS} FROM {CALLS} WHERE calls.project_id = "
        ));
        q.push_bind(project_id);
        if let Some(agent_id) = filter.agent_id {
            q.push(" AND agent_id = ").push_bind(agent_id);
        }
        if let Some(external_id) = &filter.external_id {
            q.push(" AND external_id = ").push_bind(external_id.clone());
        }
        if let Some(from) = filter.started_from_ms {
            q.push(" AND started_at >= ").push_bind(from);
        }
        if let Some(before) = filter.started_before_ms {
            q.push(" AND started_at < ").push_bind(before);
        }
        if let Some(reason) = &filter.ended_reason {
            q.push(" AND ended_reason = ").push_bind(reason.clone());
        }
        if let Some(success) = filter.success {
            q.push(" AND v.success = ").push_bind(success);
        }
        match filter.kind {
            Some(CallKind::Test) => drop(q.push(" AND run_id IS NOT NULL")),
            Some(CallKind::Production) => drop(q.push(" AND run_id IS NULL")),
            None => {}
        }
        if let Some(metric) = &filter.failing_metric {
            q.push(
                " AND EXISTS (SELECT 1 FROM json_each(v.evaluations) j
                    WHERE j.value ->> 'passed' = 0 AND j.value ->> 'metric_name' = ",
            )
            .push_bind(metric.clone())
            .push(")");
        }
        if let Some(text) = &filter.text {
            q.push(" AND transcript LIKE ")
                .push_bind(like_pattern(text))
                .push(" ESCAPE '\\'");
        }
        if let Some(cursor) = &filter.cursor {
            let c = decode_cursor(cursor, 2)?;
            q.push(" AND (started_at, seq) < (")
                .push_bind(c[0])
                .push(", ")
                .push_bind(c[1])
                .push(")");
        }
        q.push(" ORDER BY started_at DESC, seq DESC LIMIT ")
            .push_bind(i64::from(filter.limit) + 1);
        let rows = q.build().fetch_all(&self.pool).await?;
        paginate(rows, filter.limit, call_summary_from, |row| {
            Ok(encode_cursor(&[
                row.try_get("started_at")?,
                row.try_get("seq")?,
            ]))
        })
    }

    async fn call(&self, project_id: i64, call_id: &str) -> Result<Option<CallDetail>> {
        let row = sqlx::query(&format!(
            "SELECT {CALL_SUMMARY_COLUMNS}, {CALL_DETAIL_COLUMNS}, v.evaluations
             FROM {CALLS} WHERE calls.project_id = ? AND calls.id = ?"
        ))
        .bind(project_id)
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(call_with_evaluations_from).transpose()
    }

    async fn list_deliveries(
        &self,
        project_id: i64,
        filter: &DeliveryFilter,
    ) -> Result<Page<DeliverySummary>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {DELIVERY_SUMMARY_COLUMNS} FROM deliveries WHERE project_id = "
        ));
        q.push_bind(project_id);
        if let Some(outcome) = filter.outcome {
            q.push(" AND outcome = ").push_bind(outcome.as_str());
        }
        if let Some(cursor) = &filter.cursor {
            q.push(" AND id < ").push_bind(decode_cursor(cursor, 1)?[0]);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(filter.limit) + 1);
        let rows = q.build().fetch_all(&self.pool).await?;
        paginate(rows, filter.limit, delivery_summary_from, |row| {
            Ok(encode_cursor(&[row.try_get("id")?]))
        })
    }

    async fn delivery(&self, project_id: i64, id: i64) -> Result<Option<Delivery>> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_SUMMARY_COLUMNS}, body, body_truncated
             FROM deliveries WHERE project_id = ? AND id = ?"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(delivery_from).transpose()
    }

    async fn prune_deliveries(&self, older_than_ms: i64, keep_per_project: u32) -> Result<u64> {
        let mut deleted = sqlx::query("DELETE FROM deliveries WHERE received_at < ?")
            .bind(older_than_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let projects: Vec<i64> = sqlx::query_scalar("SELECT id FROM projects")
            .fetch_all(&self.pool)
            .await?;
        for project_id in projects {
            deleted += sqlx::query(
                "DELETE FROM deliveries WHERE project_id = ?1 AND id <= (
                    SELECT id FROM deliveries WHERE project_id = ?1
                    ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            )
            .bind(project_id)
            .bind(i64::from(keep_per_project))
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(deleted)
    }

    async fn update_project_settings(
        &self,
        project_id: i64,
        settings: &ProjectSettings,
    ) -> Result<Project> {
        runs::update_project_settings(&self.pool, project_id, settings).await?;
        existing_project(self, project_id).await
    }

    async fn create_scenario(&self, project_id: i64, scenario: &NewScenario) -> Result<Scenario> {
        runs::create_scenario(&self.pool, project_id, scenario, Utc::now()).await
    }

    async fn list_scenarios(
        &self,
        project_id: i64,
        agent_id: Option<i64>,
    ) -> Result<Vec<Scenario>> {
        runs::list_scenarios(&self.pool, project_id, agent_id).await
    }

    async fn scenario(&self, project_id: i64, id: i64) -> Result<Option<Scenario>> {
        runs::scenario(&self.pool, project_id, id).await
    }

    async fn create_result(
        &self,
        project_id: i64,
        result: &NewTestResult,
        now: DateTime<Utc>,
    ) -> Result<TestResult> {
        let id = runs::create_result(&self.pool, project_id, result, now).await?;
        self.result(project_id, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("result {id} vanished")))
    }

    async fn result(&self, project_id: i64, id: i64) -> Result<Option<TestResult>> {
        runs::result(&self.pool, project_id, id).await
    }

    async fn run(&self, project_id: i64, id: i64) -> Result<Option<Run>> {
        runs::run(&self.pool, project_id, id).await
    }

    async fn list_runs(&self, project_id: i64, filter: &RunFilter) -> Result<Page<Run>> {
        runs::list_runs(&self.pool, project_id, filter).await
    }

    async fn run_event(
        &self,
        project_id: i64,
        run_id: i64,
        event: RunEvent,
        now: DateTime<Utc>,
    ) -> Result<Run> {
        runs::run_event(&self.pool, project_id, run_id, event, now).await?;
        existing_run(self, project_id, run_id).await
    }

    async fn attach_call(
        &self,
        project_id: i64,
        run_id: i64,
        call_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Run> {
        runs::attach_call(&self.pool, project_id, run_id, call_id, now).await?;
        self.jobs_ready.notify_waiters();
        existing_run(self, project_id, run_id).await
    }

    async fn sweep_runs(&self, now: DateTime<Utc>) -> Result<Vec<i64>> {
        runs::sweep_runs(&self.pool, now).await
    }

    async fn list_metrics(&self, project_id: i64) -> Result<Vec<Metric>> {
        eval::list_metrics(&self.pool, project_id).await
    }

    async fn metric(&self, project_id: i64, id: i64) -> Result<Option<Metric>> {
        eval::metric(&self.pool, project_id, id).await
    }

    async fn create_metric(&self, project_id: i64, spec: &MetricSpec) -> Result<Metric> {
        let id = eval::create_metric(&self.pool, project_id, spec, Utc::now()).await?;
        existing_metric(self, project_id, id).await
    }

    async fn update_metric(&self, project_id: i64, id: i64, spec: &MetricSpec) -> Result<Metric> {
        eval::update_metric(&self.pool, project_id, id, spec, Utc::now()).await?;
        existing_metric(self, project_id, id).await
    }

    async fn delete_metric(&self, project_id: i64, id: i64) -> Result<()> {
        eval::delete_metric(&self.pool, project_id, id, Utc::now()).await
    }

    async fn apply_metrics(&self, project_id: i64, specs: &[MetricSpec]) -> Result<ApplySummary> {
        eval::apply_metrics(&self.pool, project_id, specs, Utc::now()).await
    }

    async fn rubric(&self, project_id: i64) -> Result<Vec<RubricRule>> {
        eval::rubric(&mut *self.pool.acquire().await?, project_id).await
    }

    async fn set_rubric(&self, project_id: i64, rules: &[RubricRule]) -> Result<()> {
        eval::set_rubric(&self.pool, project_id, rules).await
    }

    async fn judge_settings(&self, project_id: i64) -> Result<JudgeSettings> {
        eval::judge_settings(&mut *self.pool.acquire().await?, project_id).await
    }

    async fn set_judge_settings(&self, project_id: i64, patch: &JudgeSettingsPatch) -> Result<()> {
        eval::set_judge_settings(&self.pool, project_id, patch).await
    }

    async fn enqueue_evaluations(
        &self,
        project_id: i64,
        filter: &ReevaluateFilter,
        call_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let queued = eval::enqueue_calls(&self.pool, project_id, filter, call_id, now).await?;
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
            .write(jobs::ClaimJobs {
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
            eval::inputs(&self.pool, project_id)
        })
        .await)
    }

    async fn renew_lease(&self, job: &Job, now: DateTime<Utc>) -> Result<bool> {
        self.writer
            .write(jobs::RenewLease {
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
        self.writer
            .write(jobs::CompleteJob::new(job, outcome, now))
            .await
    }

    async fn fail_job(
        &self,
        job: &Job,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.writer
            .write(jobs::FailJob {
                job: job.clone(),
                error: error.to_owned(),
                retry_at,
                now,
            })
            .await
    }

    async fn job_counts(&self, project_id: Option<i64>) -> Result<JobCounts> {
        eval::job_counts(&self.pool, project_id).await
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
        let settings = eval::inputs(&self.pool, project_id).await?;
        evaluation_inputs(self, project_id, calls, settings).await
    }

    async fn judge_cache_get(&self, key: &str) -> Result<Option<String>> {
        eval::cache_get(&self.pool, key).await
    }

    async fn judge_cache_put(&self, key: &str, response: &str, now: DateTime<Utc>) -> Result<()> {
        eval::cache_put(&self.pool, key, response, now).await
    }

    async fn metrics_summary(
        &self,
        project_id: i64,
        agent_id: Option<i64>,
        started_from_ms: Option<i64>,
        started_before_ms: Option<i64>,
    ) -> Result<Vec<MetricSummary>> {
        eval::metrics_summary(
            &self.pool,
            project_id,
            agent_id,
            started_from_ms,
            started_before_ms,
        )
        .await
    }

    async fn metric_values(
        &self,
        project_id: i64,
        call_ids: &[String],
        metric_names: &[&str],
    ) -> Result<Vec<(String, String, serde_json::Value)>> {
        if call_ids.is_empty() || metric_names.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT e.call_id, j.value ->> 'metric_name', j.value -> 'value'
             FROM call_evaluations e, json_each(e.evaluations) j
             WHERE j.value -> 'value' <> 'null' AND e.project_id = ",
        );
        q.push_bind(project_id).push(" AND e.call_id IN (");
        let mut ids = q.separated(", ");
        for id in call_ids {
            ids.push_bind(id.clone());
        }
        q.push(") AND j.value ->> 'metric_name' IN (");
        let mut names = q.separated(", ");
        for name in metric_names {
            names.push_bind(name.to_string());
        }
        q.push(")");
        let rows: Vec<(String, String, String)> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|(call, metric, value)| Ok((call, metric, crate::common::from_json(&value)?)))
            .collect()
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn job_signal(&self) -> Arc<Notify> {
        self.jobs_ready.clone()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
