//! Ingest on PostgreSQL: a validated batch, its run matching and its delivery record in one transaction.

use super::webhooks::{emit, has_subscribers};
use super::{notify_jobs, opt_text, text};
use crate::codec::{from_json, to_json};
use crate::outbound_rows::{call_received, delivery_rejected};
use crate::receipts::{call_facts, created_receipt, receipt};
use crate::rows::{duplicate_receipt, DUPLICATE_COLUMNS};
use crate::{
    CallStatus, DeliveryOutcome, Ingest, IngestOutcome, NewDelivery, PgStore, Rejection, Result,
    StoreError, StoredRecording,
};
use async_trait::async_trait;
use callgrade_core::outbound::EventType;
use callgrade_core::{check_named_run, content_conflict, unknown_agent};
use callgrade_core::{
    match_by_phone, match_by_run_id, Batch, Decision, FieldError, MatchedBy, NewCall, PhoneNumber,
};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::Row;
use std::collections::HashMap;

/// How often an ingest transaction is retried after PostgreSQL aborted it to break a deadlock
/// (two multi-call requests locking the same runs in different orders).
const INGEST_ATTEMPTS: u32 = 3;

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
        return Ok(IngestOutcome::Rejected(Rejection::invalid_payload(errors)));
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
        return Ok(IngestOutcome::Rejected(Rejection::conflict(errors)));
    }

    // Then match the new calls in the request's order, as SQLite does.
    let window = listening_window(conn, project_id).await?;
    let mut receipts = Vec::with_capacity(batch.calls.len());
    for call in &batch.calls {
        let receipt = match claims.remove(&call.index) {
            Some(Claim::Duplicate(row)) => {
                let mut receipt = duplicate_receipt(call, &row)?;
                if amend(conn, call, &receipt.call_id).await? {
                    super::jobs::enqueue(
                        conn,
                        project_id,
                        &receipt.call_id,
                        now.timestamp_millis(),
                    )
                    .await?;
                    receipt.status = CallStatus::Updated;
                }
                receipt
            }
            Some(Claim::New(call_id)) => {
                let agent_id = agent_of(call);
                let decision = decide(conn, call, agent_id, window, now).await?;
                record_decision(conn, &call_id, &decision).await?;
                if let Some(audio) = &call.recording {
                    let recording = StoredRecording {
                        call_id: call_id.clone(),
                        project_id,
                        audio: (**audio).clone(),
                        created_at: now,
                    };
                    super::recordings::upsert_recording(&mut *conn, &recording).await?;
                } else if let Some(request) = &call.recording_request {
                    let at = now.timestamp_millis();
                    super::recordings::insert_recording_request(
                        &mut *conn, project_id, &call_id, request, at,
                    )
                    .await?;
                }
                super::runs::attach_decided(conn, &decision, &call_id, now).await?;
                super::jobs::enqueue(conn, project_id, &call_id, now.timestamp_millis()).await?;
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
    if has_subscribers(conn, project_id, EventType::CallReceived).await? {
        for r in receipts
            .iter()
            .filter(|r| r.status != CallStatus::Duplicate)
        {
            emit(conn, project_id, &call_received(r, now), None).await?;
        }
    }
    let outcome = receipt(delivery, delivery_id, receipts);
    if outcome.created + outcome.updated > 0 {
        notify_jobs(conn).await?;
    }
    Ok(IngestOutcome::Accepted(outcome))
}

/// Adds a resent call's amendment to the stored call (its row locked), with the newer raw
/// form; whether anything changed.
async fn amend(conn: &mut PgConnection, call: &NewCall, call_id: &str) -> Result<bool> {
    if call.amendment.is_empty() {
        return Ok(false);
    }
    let stored: String = sqlx::query_scalar("SELECT metadata FROM calls WHERE id = $1 FOR UPDATE")
        .bind(call_id)
        .fetch_one(&mut *conn)
        .await?;
    let mut metadata: serde_json::Map<String, serde_json::Value> = from_json(&stored)?;
    if !call.amend(&mut metadata) {
        return Ok(false);
    }
    sqlx::query("UPDATE calls SET metadata = $1, raw = $2 WHERE id = $3")
        .bind(to_json(&metadata))
        .bind(to_json(&call.raw))
        .bind(call_id)
        .execute(&mut *conn)
        .await?;
    Ok(true)
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
        let run = super::runs::lock_run_facts(conn, run_id).await?;
        return Ok(match_by_run_id(&run, &facts, now, window));
    }
    let candidates = match agent_id {
        Some(agent_id) => super::runs::lock_phone_candidates(conn, agent_id, &facts).await?,
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
            message_count, messages, metadata, warnings, raw, delivery_id, received_at, transcript,
            channel, redactions)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
            $19, $20, $21, $22)
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
    .bind(call.channel.as_str())
    .bind((!call.redactions.is_empty()).then(|| to_json(&call.redactions)))
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

pub(super) async fn insert_delivery(
    conn: &mut PgConnection,
    delivery: &NewDelivery,
    rejection: Option<&Rejection>,
    accepted_calls: usize,
) -> Result<i64> {
    // The status is the one the edge answers this outcome with.
    let status = (delivery.answer)(rejection.map(|r| r.kind));
    let outcome = match rejection {
        Some(_) => DeliveryOutcome::Rejected,
        None => DeliveryOutcome::Accepted,
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
    .bind(rejection.map(|r| r.kind.code()))
    .bind(opt_text(rejection.map(|r| r.detail.as_str())))
    .bind(rejection.map_or_else(|| "[]".to_owned(), |r| to_json(&r.errors)))
    .bind(delivery.body_size as i64)
    .bind(text(&delivery.body))
    .bind(delivery.body_truncated)
    .bind(accepted_calls as i64)
    .fetch_one(&mut *conn)
    .await?;
    if let Some(rejection) = rejection {
        if has_subscribers(conn, delivery.project_id, EventType::DeliveryRejected).await? {
            let event = delivery_rejected(delivery, rejection, id, status);
            emit(conn, delivery.project_id, &event, None).await?;
        }
    }
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
impl Ingest for PgStore {
    async fn ingest(&self, batch: Batch, delivery: NewDelivery) -> Result<IngestOutcome> {
        let mut attempt = 1;
        loop {
            match self.try_ingest(&batch, &delivery).await {
                Err(e) if retryable(&e) && attempt < INGEST_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "ingest transaction aborted; retrying");
                    attempt += 1;
                }
                other => {
                    if matches!(&other, Ok(IngestOutcome::Accepted(r)) if r.created + r.updated > 0)
                    {
                        self.jobs_ready.notify_waiters();
                    }
                    return other;
                }
            }
        }
    }
    async fn record_delivery(&self, delivery: NewDelivery, rejection: Rejection) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        insert_delivery(&mut conn, &delivery, Some(&rejection), 0).await
    }
}
