//! The PostgreSQL backend, for several server instances on one database.
//!
//! Unlike SQLite there is no writer task: every write is its own transaction and PostgreSQL
//! arbitrates. Where a read decides a write, the rows read are locked first (`FOR UPDATE`, in id
//! order), and unique constraints settle races that locks cannot (two requests inserting the same
//! call). Queued jobs are announced with `NOTIFY callgrade_jobs`, delivered at commit.

use async_trait::async_trait;
use callgrade_core::{
    match_by_phone, match_by_run_id, Batch, Decision, FieldError, MatchedBy, MetricSpec, NewCall,
    PhoneNumber, RubricRule,
};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Postgres, QueryBuilder, Row};
use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

use crate::common::{
    call_facts, check_named_run, content_conflict, created_receipt, decode_cursor, default_metrics,
    encode_cursor, existing_metric, existing_project, existing_run, no_project, now_ms,
    project_name_taken, receipt, to_json, unknown_agent,
};
use crate::inputs::{claimed_evaluations, evaluation_inputs};
use crate::key::{hash_key, hashes_match, ApiKey};
use crate::model::*;
use crate::rows::{
    agent_from, call_for_evaluation_from, call_summary_from, call_with_evaluations_from,
    delivery_from, delivery_summary_from, duplicate_receipt, paginate, project_from, AGENT_COLUMNS,
    CALLS, CALL_DETAIL_COLUMNS, CALL_SUMMARY_COLUMNS, DELIVERY_SUMMARY_COLUMNS, DUPLICATE_COLUMNS,
    EVALUATED_CALL_COLUMNS, PROJECT_COLUMNS,
};
use crate::{Result, Store, StoreError};

mod eval;
mod runs;

/// The channel on which committed job inserts are announced.
const JOBS_CHANNEL: &str = "callgrade_jobs";

/// Connections per instance; each request holds one for its transaction only.
const POOL_SIZE: u32 = 10;

/// How often an ingest transaction is retried after PostgreSQL aborted it to break a deadlock
/// (two multi-call requests locking the same runs in different orders).
const INGEST_ATTEMPTS: u32 = 3;

pub struct PgStore {
    pool: PgPool,
    /// Signalled after this process commits jobs and, once listening, when others do.
    jobs_ready: Arc<Notify>,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:pass@host/db`) and applies pending
    /// migrations (PostgreSQL's advisory lock keeps concurrent starts from racing).
    pub async fn open(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?.disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            jobs_ready: Arc::new(Notify::new()),
        })
    }
}

/// PostgreSQL text cannot hold U+0000, which JSON strings (so senders) can: it is stored as
/// U+FFFD, as invalid UTF-8 in a logged body already is. JSON columns need nothing: serde_json
/// escapes it.
fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn opt_text(s: Option<&str>) -> Option<Cow<'_, str>> {
    s.map(text)
}

/// Wakes the listeners of every instance once the surrounding transaction commits (PostgreSQL
/// folds repeated identical notifications of one transaction into one).
async fn notify_jobs(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(JOBS_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A transaction PostgreSQL aborted to break a deadlock or a serialization conflict; running it
/// again is safe.
fn retryable(e: &StoreError) -> bool {
    let StoreError::Database(e) = e else {
        return false;
    };
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

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

/// The outcome of claiming one call's id in the request's transaction.
enum Claim {
    /// Inserted by this request; matching is still to be decided.
    New(String),
    /// Already stored with the same content.
    Duplicate(PgRow),
}

async fn apply_ingest(
    conn: &mut PgConnection,
    batch: &Batch,
    delivery: &NewDelivery,
) -> Result<IngestOutcome> {
    let project_id = delivery.project_id;
    let mut errors = Vec::new();
    if let Some(agent_id) = batch.agent_id {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM agents WHERE id = $1 AND project_id = $2")
                .bind(agent_id)
                .bind(project_id)
                .fetch_optional(&mut *conn)
                .await?;
        if found.is_none() {
            errors.push(unknown_agent(agent_id));
        }
    }
    // Every named run must exist in this project (and belong to agent_id when given). Runs are
    // never deleted and never change agent, so this read needs no lock.
    let mut run_agents = HashMap::new();
    for call in &batch.calls {
        let Some(run_id) = call.run_id else { continue };
        let agent: Option<i64> =
            sqlx::query_scalar("SELECT agent_id FROM runs WHERE id = $1 AND project_id = $2")
                .bind(run_id)
                .bind(project_id)
                .fetch_optional(&mut *conn)
                .await?;
        match check_named_run(call, run_id, agent, batch.agent_id) {
            Ok(run_agent) => drop(run_agents.insert(call.index, run_agent)),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Ok(IngestOutcome::Rejected(RejectedDelivery::invalid_payload(
            errors,
        )));
    }

    // The calls reference their delivery; a rejection below rolls this entry back.
    let delivery_id = insert_delivery(conn, delivery, None, batch.calls.len()).await?;
    let now = delivery.received_at;
    let agent_of = |call: &NewCall| batch.agent_id.or(run_agents.get(&call.index).copied());

    // Claim every id first, by inserting. A concurrent request with the same id waits on the
    // unique constraint until this one ends, then finds our row: never two creations, never a
    // read-then-write race. Ids are claimed in sorted order so two overlapping batches cannot
    // deadlock on each other's ids.
    let mut by_id: Vec<&NewCall> = batch.calls.iter().collect();
    by_id.sort_by(|a, b| a.external_id.cmp(&b.external_id));
    let mut claims = HashMap::with_capacity(batch.calls.len());
    let mut conflicts = Vec::new();
    for call in by_id {
        let call_id = uuid::Uuid::now_v7().to_string();
        let stored = StoredCall {
            project_id,
            agent_id: agent_of(call),
            id: &call_id,
            delivery_id,
            received_at: now.timestamp_millis(),
        };
        if insert_call(conn, call, &stored).await? {
            claims.insert(call.index, Claim::New(call_id));
            continue;
        }
        let row = sqlx::query(&format!(
            "SELECT {DUPLICATE_COLUMNS} FROM calls WHERE project_id = $1 AND external_id = $2"
        ))
        .bind(project_id)
        .bind(text(&call.external_id))
        .fetch_one(&mut *conn)
        .await?;
        if row.try_get::<String, _>("content_hash")? == call.content_hash {
            claims.insert(call.index, Claim::Duplicate(row));
        } else {
            conflicts.push((call.index, content_conflict(call)));
        }
    }
    if !conflicts.is_empty() {
        conflicts.sort_by_key(|(index, _)| *index);
        let errors: Vec<FieldError> = conflicts.into_iter().map(|(_, e)| e).collect();
        return Ok(IngestOutcome::Rejected(RejectedDelivery::conflict(errors)));
    }

    // Then match the new calls in the request's order, as SQLite does.
    let window = listening_window(conn, project_id).await?;
    let mut receipts = Vec::with_capacity(batch.calls.len());
    for call in &batch.calls {
        let receipt = match claims.remove(&call.index) {
            Some(Claim::Duplicate(row)) => duplicate_receipt(call, &row)?,
            Some(Claim::New(call_id)) => {
                let agent_id = agent_of(call);
                let decision = decide(conn, call, agent_id, window, now).await?;
                record_decision(conn, &call_id, &decision).await?;
                runs::attach_decided(conn, &decision, &call_id, now).await?;
                eval::enqueue(conn, project_id, &call_id, now.timestamp_millis()).await?;
                created_receipt(call, call_id, agent_id, decision)
            }
            None => {
                return Err(StoreError::Corrupt(format!(
                    "call {:?} was neither stored nor found",
                    call.external_id
                )))
            }
        };
        receipts.push(receipt);
    }
    let outcome = receipt(delivery_id, receipts);
    if outcome.created > 0 {
        notify_jobs(conn).await?;
    }
    Ok(IngestOutcome::Accepted(outcome))
}

async fn listening_window(conn: &mut PgConnection, project_id: i64) -> Result<TimeDelta> {
    let seconds: i64 =
        sqlx::query_scalar("SELECT listening_window_seconds FROM projects WHERE id = $1")
            .bind(project_id)
            .fetch_one(&mut *conn)
            .await?;
    Ok(TimeDelta::seconds(seconds))
}

/// The matching ladder for one new call: its run_id, else its phone numbers, else none. The
/// runs looked at stay locked until the transaction ends, so no other instance decides on them
/// meanwhile.
async fn decide(
    conn: &mut PgConnection,
    call: &NewCall,
    agent_id: Option<i64>,
    window: TimeDelta,
    now: DateTime<Utc>,
) -> Result<Decision> {
    let facts = call_facts(call);
    if let Some(run_id) = call.run_id {
        let run = runs::lock_run_facts(conn, run_id).await?;
        return Ok(match_by_run_id(&run, &facts, now, window));
    }
    let candidates = match agent_id {
        Some(agent_id) => runs::lock_phone_candidates(conn, agent_id, &facts).await?,
        None => Vec::new(),
    };
    Ok(match_by_phone(&candidates, &facts, now, window))
}

/// Where a new call goes.
struct StoredCall<'a> {
    project_id: i64,
    agent_id: Option<i64>,
    id: &'a str,
    delivery_id: i64,
    received_at: i64,
}

/// Inserts a call unless its id is already stored in the project; true when inserted. Its
/// matching fields keep their defaults until [`record_decision`].
async fn insert_call(conn: &mut PgConnection, call: &NewCall, at: &StoredCall<'_>) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO calls (id, project_id, agent_id, external_id, content_hash, started_at,
            ended_at, to_phone_number, from_phone_number, ended_reason, trace_id, message_times,
            message_count, messages, metadata, warnings, raw, delivery_id, received_at, transcript)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
            $19, $20)
         ON CONFLICT (project_id, external_id) DO NOTHING",
    )
    .bind(at.id)
    .bind(at.project_id)
    .bind(at.agent_id)
    .bind(text(&call.external_id))
    .bind(&call.content_hash)
    .bind(call.started_at.timestamp_millis())
    .bind(call.ended_at.timestamp_millis())
    .bind(call.to_phone_number.as_ref().map(PhoneNumber::as_str))
    .bind(call.from_phone_number.as_ref().map(PhoneNumber::as_str))
    .bind(text(&call.ended_reason))
    .bind(opt_text(call.trace_id.as_deref()))
    .bind(call.message_times.as_str())
    .bind(call.messages.len() as i64)
    .bind(to_json(&call.messages))
    .bind(to_json(&call.metadata))
    .bind(to_json(&call.warnings))
    .bind(to_json(&call.raw))
    .bind(at.delivery_id)
    .bind(at.received_at)
    .bind(text(&call.transcript_text()).into_owned())
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

async fn record_decision(
    conn: &mut PgConnection,
    call_id: &str,
    decision: &Decision,
) -> Result<()> {
    sqlx::query(
        "UPDATE calls SET run_id = $1, match_outcome = $2, matched_by = $3, match_reason = $4,
            match_candidates = $5
         WHERE id = $6",
    )
    .bind(decision.run_id)
    .bind(decision.outcome.as_str())
    .bind(decision.matched_by.map(MatchedBy::as_str))
    .bind(&decision.reason)
    .bind(to_json(&decision.candidates))
    .bind(call_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_delivery(
    conn: &mut PgConnection,
    delivery: &NewDelivery,
    rejection: Option<&RejectedDelivery>,
    accepted_calls: usize,
) -> Result<i64> {
    let (status, outcome) = match rejection {
        Some(r) => (r.status, DeliveryOutcome::Rejected),
        None => (202, DeliveryOutcome::Accepted),
    };
    let id = sqlx::query_scalar(
        "INSERT INTO deliveries (project_id, received_at, route, status, outcome, error, detail,
            errors, body_size, body, body_truncated, accepted_calls)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(delivery.project_id)
    .bind(delivery.received_at.timestamp_millis())
    .bind(text(&delivery.route))
    .bind(i64::from(status))
    .bind(outcome.as_str())
    .bind(opt_text(rejection.map(|r| r.error.as_str())))
    .bind(opt_text(rejection.map(|r| r.detail.as_str())))
    .bind(rejection.map_or_else(|| "[]".to_owned(), |r| to_json(&r.errors)))
    .bind(delivery.body_size as i64)
    .bind(text(&delivery.body))
    .bind(delivery.body_truncated)
    .bind(accepted_calls as i64)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

impl PgStore {
    /// One attempt at an ingest transaction. A rejection rolls everything back, then logs the
    /// rejected delivery on its own.
    async fn try_ingest(&self, batch: &Batch, delivery: &NewDelivery) -> Result<IngestOutcome> {
        let mut tx = self.pool.begin().await?;
        match apply_ingest(&mut tx, batch, delivery).await? {
            IngestOutcome::Accepted(receipt) => {
                tx.commit().await?;
                Ok(IngestOutcome::Accepted(receipt))
            }
            IngestOutcome::Rejected(rejection) => {
                tx.rollback().await?;
                let mut conn = self.pool.acquire().await?;
                insert_delivery(&mut conn, delivery, Some(&rejection), 0).await?;
                Ok(IngestOutcome::Rejected(rejection))
            }
        }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn create_project(&self, name: &str) -> Result<(Project, ApiKey)> {
        let key = ApiKey::generate();
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        // A concurrent creation of the same name waits on the unique index, then fails here.
        let row = sqlx::query(&format!(
            "INSERT INTO projects (name, key_hash, key_prefix, created_at) VALUES ($1, $2, $3, $4)
             RETURNING {PROJECT_COLUMNS}"
        ))
        .bind(text(name))
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
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"
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
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE name = $1"
        ))
        .bind(text(name_or_id))
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(project_from)
        .transpose()
    }

    async fn rotate_key(&self, project_id: i64) -> Result<ApiKey> {
        let key = ApiKey::generate();
        let updated = sqlx::query(
            "UPDATE projects SET key_hash = $1, key_prefix = $2, key_rotated_at = $3 WHERE id = $4",
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

    async fn update_project_settings(
        &self,
        project_id: i64,
        settings: &ProjectSettings,
    ) -> Result<Project> {
        runs::update_project_settings(&self.pool, project_id, settings).await?;
        existing_project(self, project_id).await
    }

    async fn authenticate(&self, key: &str) -> Result<Option<Project>> {
        let hash = hash_key(key);
        let row = sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS}, key_hash FROM projects WHERE key_hash = $1"
        ))
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("key_hash")?;
        if hashes_match(&stored, &hash) {
            Ok(Some(project_from(&row)?))
        } else {
            Ok(None)
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
             VALUES ($1, $2, $3, $4, $5)
             RETURNING {AGENT_COLUMNS}"
        ))
        .bind(project_id)
        .bind(text(name))
        .bind(phone_number.map(PhoneNumber::as_str))
        .bind(opt_text(description))
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
            "UPDATE agents SET name = $1, phone_number = $2, description = $3
             WHERE id = $4 AND project_id = $5 RETURNING {AGENT_COLUMNS}"
        ))
        .bind(text(name))
        .bind(phone_number.map(PhoneNumber::as_str))
        .bind(opt_text(description))
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
            "SELECT {AGENT_COLUMNS} FROM agents WHERE project_id = $1 ORDER BY id"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(agent_from)
        .collect()
    }

    async fn ingest(&self, batch: Batch, delivery: NewDelivery) -> Result<IngestOutcome> {
        let mut attempt = 1;
        loop {
            match self.try_ingest(&batch, &delivery).await {
                Err(e) if retryable(&e) && attempt < INGEST_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "ingest transaction aborted; retrying");
                    attempt += 1;
                }
                other => {
                    if matches!(&other, Ok(IngestOutcome::Accepted(r)) if r.created > 0) {
                        self.jobs_ready.notify_waiters();
                    }
                    return other;
                }
            }
        }
    }

    async fn record_delivery(
        &self,
        delivery: NewDelivery,
        rejection: RejectedDelivery,
    ) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        insert_delivery(&mut conn, &delivery, Some(&rejection), 0).await
    }

    async fn list_calls(&self, project_id: i64, filter: &CallFilter) -> Result<Page<CallSummary>> {
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {CALL_SUMMARY_COLUMNS} FROM {CALLS} WHERE calls.project_id = "
        ));
        q.push_bind(project_id);
        if let Some(agent_id) = filter.agent_id {
            q.push(" AND agent_id = ").push_bind(agent_id);
        }
        if let Some(external_id) = &filter.external_id {
            q.push(" AND external_id = ")
                .push_bind(text(external_id).into_owned());
        }
        if let Some(from) = filter.started_from_ms {
            q.push(" AND started_at >= ").push_bind(from);
        }
        if let Some(before) = filter.started_before_ms {
            q.push(" AND started_at < ").push_bind(before);
        }
        if let Some(reason) = &filter.ended_reason {
            q.push(" AND ended_reason = ")
                .push_bind(text(reason).into_owned());
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
                " AND EXISTS (SELECT 1 FROM json_array_elements(v.evaluations::json) j
                    WHERE j ->> 'passed' = 'false' AND j ->> 'metric_name' = ",
            )
            .push_bind(text(metric).into_owned())
            .push(")");
        }
        if let Some(search) = &filter.text {
            q.push(" AND transcript ILIKE ")
                .push_bind(like_pattern(search))
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
             FROM {CALLS} WHERE calls.project_id = $1 AND calls.id = $2"
        ))
        .bind(project_id)
        .bind(text(call_id))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(call_with_evaluations_from).transpose()
    }

    async fn list_deliveries(
        &self,
        project_id: i64,
        filter: &DeliveryFilter,
    ) -> Result<Page<DeliverySummary>> {
        let mut q = QueryBuilder::<Postgres>::new(format!(
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
             FROM deliveries WHERE project_id = $1 AND id = $2"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(delivery_from).transpose()
    }

    async fn prune_deliveries(&self, older_than_ms: i64, keep_per_project: u32) -> Result<u64> {
        let mut deleted = sqlx::query("DELETE FROM deliveries WHERE received_at < $1")
            .bind(older_than_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let projects: Vec<i64> = sqlx::query_scalar("SELECT id FROM projects")
            .fetch_all(&self.pool)
            .await?;
        for project_id in projects {
            deleted += sqlx::query(
                "DELETE FROM deliveries WHERE project_id = $1 AND id <= (
                    SELECT id FROM deliveries WHERE project_id = $1
                    ORDER BY id DESC LIMIT 1 OFFSET $2)",
            )
            .bind(project_id)
            .bind(i64::from(keep_per_project))
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(deleted)
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
        let jobs = eval::claim_jobs(&self.pool, worker, now, lease, limit).await?;
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
            eval::inputs(&self.pool, project_id)
        })
        .await)
    }

    async fn renew_lease(&self, job: &Job, now: DateTime<Utc>) -> Result<bool> {
        eval::renew_lease(&self.pool, job, now).await
    }

    async fn complete_job(
        &self,
        job: &Job,
        outcome: &CallEvaluation,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        eval::complete_job(&self.pool, job, outcome, now).await
    }

    async fn fail_job(
        &self,
        job: &Job,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        eval::fail_job(&self.pool, job, error, retry_at, now).await
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

    async fn metric_values(
        &self,
        project_id: i64,
        call_ids: &[String],
        metric_names: &[&str],
    ) -> Result<Vec<(String, String, serde_json::Value)>> {
        if call_ids.is_empty() || metric_names.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT e.call_id, j ->> 'metric_name', (j -> 'value')::text
             FROM call_evaluations e CROSS JOIN LATERAL json_array_elements(e.evaluations::json) j
             WHERE json_typeof(j -> 'value') <> 'null' AND e.project_id = ",
        );
        q.push_bind(project_id).push(" AND e.call_id IN (");
        let mut ids = q.separated(", ");
        for id in call_ids {
            ids.push_bind(text(id).into_owned());
        }
        q.push(") AND j ->> 'metric_name' IN (");
        let mut names = q.separated(", ");
        for name in metric_names {
            names.push_bind(text(name).into_owned());
        }
        q.push(")");
        let rows: Vec<(String, String, String)> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|(call, metric, value)| Ok((call, metric, crate::common::from_json(&value)?)))
            .collect()
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
