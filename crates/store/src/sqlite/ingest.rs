//! Webhook deliveries on SQLite, applied by the writer thread: validation against stored state,
//! idempotency, matching, the call row, its evaluation job and the delivery log, in one
//! savepoint of the group's transaction.

use super::jobs::enqueue;
use super::lite::LiteRow;
use super::webhooks::{emit, has_subscribers};
use super::writer::{undo_this_write, Apply};
use crate::codec::{from_json, to_json};
use crate::errors::run_taken;
use crate::lifecycle::MATCHABLE;
use crate::outbound_rows::{call_received, delivery_rejected};
use crate::receipts::{call_facts, created_receipt, receipt};
use crate::rows::{duplicate_receipt, facts_from, Columns, DUPLICATE_COLUMNS, FACT_COLUMNS};
use crate::{
    CallStatus, DeliveryOutcome, Ingest, IngestOutcome, NewDelivery, Rejection, Result,
    SqliteStore, StoredRecording,
};
use async_trait::async_trait;
use callgrade_core::outbound::EventType;
use callgrade_core::RunChange;
use callgrade_core::{check_named_run, content_conflict, unknown_agent};
use callgrade_core::{
    match_by_phone, match_by_run_id, Batch, CallFacts, Decision, MatchedBy, NewCall, PhoneNumber,
    RunFacts, CLOCK_SKEW,
};
use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;

/// A call with its JSON columns serialised beforehand, on the request's own task, so the
/// single writer spends its time on SQL only.
pub(super) struct PreparedCall {
    call: NewCall,
    messages: String,
    metadata: String,
    warnings: String,
    raw: String,
    transcript: String,
}

impl From<NewCall> for PreparedCall {
    fn from(call: NewCall) -> Self {
        Self {
            messages: to_json(&call.messages),
            metadata: to_json(&call.metadata),
            warnings: to_json(&call.warnings),
            raw: to_json(&call.raw),
            transcript: call.transcript_text(),
            call,
        }
    }
}

pub(super) struct IngestWrite {
    agent_id: Option<i64>,
    calls: Vec<PreparedCall>,
    delivery: NewDelivery,
}

impl IngestWrite {
    pub(super) fn new(batch: Batch, delivery: NewDelivery) -> Self {
        Self {
            agent_id: batch.agent_id,
            calls: batch.calls.into_iter().map(PreparedCall::from).collect(),
            delivery,
        }
    }
}

impl Apply for IngestWrite {
    type Output = IngestOutcome;

    fn run(&self, conn: &Connection) -> Result<IngestOutcome> {
        match apply_ingest(conn, self)? {
            // Nothing of a refused request stays, but the refusal is logged.
            IngestOutcome::Rejected(rejection) => {
                undo_this_write(conn)?;
                insert_delivery(conn, &self.delivery, Some(&rejection), 0)?;
                Ok(IngestOutcome::Rejected(rejection))
            }
            accepted => Ok(accepted),
        }
    }
}

/// A request refused before its calls were read: only the delivery log keeps it.
pub(super) struct DeliveryWrite {
    pub delivery: NewDelivery,
    pub rejection: Rejection,
}

impl Apply for DeliveryWrite {
    type Output = i64;

    fn run(&self, conn: &Connection) -> Result<i64> {
        insert_delivery(conn, &self.delivery, Some(&self.rejection), 0)
    }
}

fn apply_ingest(conn: &Connection, write: &IngestWrite) -> Result<IngestOutcome> {
    let (batch_agent, delivery) = (write.agent_id, &write.delivery);
    let project_id = delivery.project_id;
    let mut errors = Vec::new();
    if let Some(agent_id) = batch_agent {
        let found = conn
            .prepare_cached("SELECT 1 FROM agents WHERE id = ? AND project_id = ?")?
            .exists(params![agent_id, project_id])?;
        if !found {
            errors.push(unknown_agent(agent_id));
        }
    }
    // Every named run must exist in this project (and belong to agent_id when given).
    let mut run_agents = HashMap::new();
    for PreparedCall { call, .. } in &write.calls {
        let Some(run_id) = call.run_id else { continue };
        let agent: Option<i64> = conn
            .prepare_cached("SELECT agent_id FROM runs WHERE id = ? AND project_id = ?")?
            .query_row(params![run_id, project_id], |row| row.get(0))
            .optional()?;
        match check_named_run(call, run_id, agent, batch_agent) {
            Ok(run_agent) => drop(run_agents.insert(call.index, run_agent)),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Ok(IngestOutcome::Rejected(Rejection::invalid_payload(errors)));
    }

    let mut existing = Vec::with_capacity(write.calls.len());
    let mut conflicts = Vec::new();
    for prepared @ PreparedCall { call, .. } in &write.calls {
        let mut lookup = conn.prepare_cached(&format!(
            "SELECT {DUPLICATE_COLUMNS} FROM calls WHERE project_id = ? AND external_id = ?"
        ))?;
        let mut rows = lookup.query(params![project_id, call.external_id])?;
        let stored = match rows.next()? {
            Some(row) => {
                let row = LiteRow(row);
                if row.text("content_hash")? != call.content_hash {
                    conflicts.push(content_conflict(call));
                    continue;
                }
                let receipt = duplicate_receipt(call, &row)?;
                let amended = amended_metadata(conn, call, &receipt.call_id)?;
                Some((receipt, amended.map(|m| (m, prepared.raw.as_str()))))
            }
            None => None,
        };
        existing.push(stored);
    }
    if !conflicts.is_empty() {
        return Ok(IngestOutcome::Rejected(Rejection::conflict(conflicts)));
    }

    let delivery_id = insert_delivery(conn, delivery, None, write.calls.len())?;
    let now = delivery.received_at;
    // Read once, and only if some call has a run to be matched against.
    let mut window = None;
    let mut receipts = Vec::with_capacity(write.calls.len());
    for (prepared, existing) in write.calls.iter().zip(existing) {
        let call = &prepared.call;
        let receipt = match existing {
            Some((duplicate, None)) => duplicate,
            Some((mut receipt, Some((metadata, raw)))) => {
                conn.prepare_cached("UPDATE calls SET metadata = ?, raw = ? WHERE id = ?")?
                    .execute(params![metadata, raw, receipt.call_id])?;
                enqueue(conn, project_id, &receipt.call_id, now.timestamp_millis())?;
                receipt.status = CallStatus::Updated;
                receipt
            }
            None => {
                let agent_id = batch_agent.or(run_agents.get(&call.index).copied());
                let decision = decide(conn, call, agent_id, project_id, &mut window, now)?;
                let call_id = uuid::Uuid::now_v7().to_string();
                let stored = StoredCall {
                    project_id,
                    agent_id,
                    id: &call_id,
                    delivery_id,
                    received_at: now.timestamp_millis(),
                    decision: &decision,
                };
                insert_call(conn, prepared, &stored)?;
                if let Some(audio) = &call.recording {
                    let recording = StoredRecording {
                        call_id: call_id.clone(),
                        project_id,
                        audio: (**audio).clone(),
                        created_at: now,
                    };
                    super::recordings::upsert_recording(conn, &recording)?;
                } else if let Some(request) = &call.recording_request {
                    let at = now.timestamp_millis();
                    super::recordings::insert_recording_request(
                        conn, project_id, &call_id, request, at,
                    )?;
                }
                attach_decided(conn, &decision, &call_id, now)?;
                enqueue(conn, project_id, &call_id, now.timestamp_millis())?;
                created_receipt(call, call_id, agent_id, decision)
            }
        };
        receipts.push(receipt);
    }
    if has_subscribers(conn, project_id, EventType::CallReceived)? {
        for r in receipts
            .iter()
            .filter(|r| r.status != CallStatus::Duplicate)
        {
            emit(conn, project_id, &call_received(r, now), None)?;
        }
    }
    Ok(IngestOutcome::Accepted(receipt(
        delivery,
        delivery_id,
        receipts,
    )))
}

/// The stored call's metadata with the resent call's amendment, when that changes it.
fn amended_metadata(conn: &Connection, call: &NewCall, call_id: &str) -> Result<Option<String>> {
    if call.amendment.is_empty() {
        return Ok(None);
    }
    let stored: String = conn
        .prepare_cached("SELECT metadata FROM calls WHERE id = ?")?
        .query_row([call_id], |row| row.get(0))?;
    let mut metadata: serde_json::Map<String, serde_json::Value> = from_json(&stored)?;
    Ok(call.amend(&mut metadata).then(|| to_json(&metadata)))
}

/// The matching ladder for one new call: its run_id, else its phone numbers, else none.
fn decide(
    conn: &Connection,
    call: &NewCall,
    agent_id: Option<i64>,
    project_id: i64,
    window: &mut Option<TimeDelta>,
    now: DateTime<Utc>,
) -> Result<Decision> {
    let facts = call_facts(call);
    if let Some(run_id) = call.run_id {
        let run = load_run_facts(conn, run_id)?;
        let window = project_window(conn, project_id, window)?;
        return Ok(match_by_run_id(&run, &facts, now, window));
    }
    let candidates = match agent_id {
        Some(agent_id) => phone_candidates(conn, agent_id, &facts)?,
        None => Vec::new(),
    };
    // Without candidates the window does not matter: the call is a production call.
    let window = if candidates.is_empty() {
        TimeDelta::zero()
    } else {
        project_window(conn, project_id, window)?
    };
    Ok(match_by_phone(&candidates, &facts, now, window))
}

fn project_window(
    conn: &Connection,
    project_id: i64,
    cached: &mut Option<TimeDelta>,
) -> Result<TimeDelta> {
    if let Some(w) = cached {
        return Ok(*w);
    }
    let seconds: i64 = conn
        .prepare_cached("SELECT listening_window_seconds FROM projects WHERE id = ?")?
        .query_row([project_id], |row| row.get(0))?;
    let w = TimeDelta::seconds(seconds);
    *cached = Some(w);
    Ok(w)
}

fn load_run_facts(conn: &Connection, run_id: i64) -> Result<RunFacts> {
    let mut select =
        conn.prepare_cached(&format!("SELECT {FACT_COLUMNS} FROM runs WHERE id = ?"))?;
    let mut rows = select.query([run_id])?;
    match rows.next()? {
        Some(row) => facts_from(&LiteRow(row)),
        None => Err(rusqlite::Error::QueryReturnedNoRows.into()),
    }
}

/// The agent's runs that could take this call by phone number: without a call, listening or
/// timed out, with a tester number on either side of the call, and created around its time.
/// The core decides among them.
fn phone_candidates(
    conn: &Connection,
    agent_id: i64,
    call: &CallFacts<'_>,
) -> Result<Vec<RunFacts>> {
    let mut numbers = [call.to_phone_number, call.from_phone_number]
        .into_iter()
        .flatten();
    let Some(first) = numbers.next() else {
        return Ok(Vec::new());
    };
    // One statement for one or two numbers: a lone number is bound twice.
    let second = numbers.next().unwrap_or(first);
    let mut select = conn.prepare_cached(&format!(
        "SELECT {FACT_COLUMNS} FROM runs WHERE agent_id = ?
            AND call_id IS NULL AND status IN {matchable}
            AND created_at <= ? AND deadline_at >= ? AND tester_phone_number IN (?, ?)
         ORDER BY id",
        matchable = *MATCHABLE
    ))?;
    let mut rows = select.query(params![
        agent_id,
        (call.started_at + CLOCK_SKEW).timestamp_millis(),
        call.started_at.timestamp_millis(),
        first,
        second,
    ])?;
    let mut candidates = Vec::new();
    while let Some(row) = rows.next()? {
        candidates.push(facts_from(&LiteRow(row))?);
    }
    Ok(candidates)
}

/// Applies a matching decision to its run, in the transaction that stores the call.
fn attach_decided(
    conn: &Connection,
    decision: &Decision,
    call_id: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let (Some(run_id), Some(by)) = (decision.run_id, decision.matched_by) else {
        return Ok(());
    };
    let now = now.timestamp_millis();
    let late = decision.is_late().then(|| decision.late_message());
    let w = super::runs::run_state_in_place(conn, "id = ?", [run_id])?
        .ok_or_else(|| run_taken(run_id))?
        .apply(
            RunChange::Matched {
                late: late.as_deref(),
            },
            now,
        )
        .map_err(|_| run_taken(run_id))?;
    let updated = conn
        .prepare_cached(
            "UPDATE runs SET call_id = ?, matched_by = ?, late = ?, status = ?, error_message = ?,
                finished_at = ?, updated_at = ?
             WHERE id = ? AND call_id IS NULL AND status = ?",
        )?
        .execute(params![
            call_id,
            by.as_str(),
            late.is_some(),
            w.status.as_str(),
            w.error_message,
            w.finished_at,
            now,
            run_id,
            w.from.as_str()
        ])?;
    if updated != 1 {
        return Err(run_taken(run_id));
    }
    Ok(())
}

/// Where a new call goes and what matching decided for it.
struct StoredCall<'a> {
    project_id: i64,
    agent_id: Option<i64>,
    id: &'a str,
    delivery_id: i64,
    received_at: i64,
    decision: &'a Decision,
}

fn insert_call(conn: &Connection, prepared: &PreparedCall, at: &StoredCall<'_>) -> Result<()> {
    let (call, decision) = (&prepared.call, at.decision);
    conn.prepare_cached(
        "INSERT INTO calls (id, project_id, agent_id, external_id, content_hash, started_at,
            ended_at, to_phone_number, from_phone_number, ended_reason, run_id, trace_id,
            message_times, message_count, messages, metadata, warnings, raw, delivery_id,
            received_at, match_outcome, matched_by, match_reason, match_candidates, transcript,
            channel, redactions)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        at.id,
        at.project_id,
        at.agent_id,
        call.external_id,
        call.content_hash,
        call.started_at.timestamp_millis(),
        call.ended_at.timestamp_millis(),
        call.to_phone_number.as_ref().map(PhoneNumber::as_str),
        call.from_phone_number.as_ref().map(PhoneNumber::as_str),
        call.ended_reason,
        decision.run_id,
        call.trace_id,
        call.message_times.as_str(),
        call.messages.len() as i64,
        prepared.messages,
        prepared.metadata,
        prepared.warnings,
        prepared.raw,
        at.delivery_id,
        at.received_at,
        decision.outcome.as_str(),
        decision.matched_by.map(MatchedBy::as_str),
        decision.reason,
        to_json(&decision.candidates),
        prepared.transcript,
        call.channel.as_str(),
        (!call.redactions.is_empty()).then(|| to_json(&call.redactions)),
    ])?;
    Ok(())
}

pub(super) fn insert_delivery(
    conn: &Connection,
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
    conn.prepare_cached(
        "INSERT INTO deliveries (project_id, received_at, route, status, outcome, error, detail,
            errors, body_size, body, body_truncated, accepted_calls)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        delivery.project_id,
        delivery.received_at.timestamp_millis(),
        delivery.route,
        i64::from(status),
        outcome.as_str(),
        rejection.map(|r| r.kind.code()),
        rejection.map(|r| r.detail.as_str()),
        rejection.map_or_else(|| "[]".to_owned(), |r| to_json(&r.errors)),
        delivery.body_size as i64,
        delivery.body,
        delivery.body_truncated,
        accepted_calls as i64,
    ])?;
    let id = conn.last_insert_rowid();
    if let Some(rejection) = rejection {
        if has_subscribers(conn, delivery.project_id, EventType::DeliveryRejected)? {
            let event = delivery_rejected(delivery, rejection, id, status);
            emit(conn, delivery.project_id, &event, None)?;
        }
    }
    Ok(id)
}

#[async_trait]
impl Ingest for SqliteStore {
    async fn ingest(&self, batch: Batch, delivery: NewDelivery) -> Result<IngestOutcome> {
        let outcome = self.writer.write(IngestWrite::new(batch, delivery)).await?;
        if matches!(&outcome, IngestOutcome::Accepted(r) if r.created + r.updated > 0) {
            self.jobs_ready.notify_waiters();
        }
        Ok(outcome)
    }
    async fn record_delivery(&self, delivery: NewDelivery, rejection: Rejection) -> Result<i64> {
        self.writer
            .write(DeliveryWrite {
                delivery,
                rejection,
            })
            .await
    }
}
