//! What both backends share about outbound webhooks: column lists and row decoders, the
//! secrets in force, and message ids.

use callgrade_core::outbound::{EventSet, EventType};
use chrono::{DateTime, Utc};
use rand::{distributions::Alphanumeric, Rng};

use crate::codec::{from_json, opt_time, parse_column, time};
use crate::model::*;
use crate::rows::Columns;
use crate::Result;

pub(crate) const ENDPOINT_COLUMNS: &str = "id, project_id, url, description, events, enabled, \
     cekura_secret_header, disabled_reason, previous_until, failing_since, created_at, updated_at";

pub(crate) fn endpoint_from(row: &impl Columns) -> Result<WebhookEndpoint> {
    Ok(WebhookEndpoint {
        id: row.int("id")?,
        project_id: row.int("project_id")?,
        url: row.text("url")?,
        description: row.text("description")?,
        events: EventSet::from_bits(row.int("events")?).names(),
        enabled: row.flag("enabled")?,
        cekura_secret_header: row.flag("cekura_secret_header")?,
        disabled_reason: row.opt_text("disabled_reason")?,
        previous_secret_until: opt_time(row.opt_int("previous_until")?)?,
        failing_since: opt_time(row.opt_int("failing_since")?)?,
        created_at: time(row.int("created_at")?)?,
        updated_at: time(row.int("updated_at")?)?,
    })
}

/// Select from `webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id`.
pub(crate) const OUTBOUND_COLUMNS: &str = "d.id, d.endpoint_id, e.type, e.msg_id, d.status, \
     d.attempts, d.run_at, d.last_status, d.last_error, d.created_at, d.finished_at";

pub(crate) fn outbound_from(row: &impl Columns) -> Result<OutboundDelivery> {
    let status = parse_column(&row.text("status")?, OutboundStatus::parse)?;
    Ok(OutboundDelivery {
        id: row.int("id")?,
        endpoint_id: row.int("endpoint_id")?,
        event_type: row.text("type")?,
        msg_id: row.text("msg_id")?,
        status,
        attempt_count: row.int("attempts")?,
        next_attempt_at: match status {
            OutboundStatus::Pending => Some(time(row.int("run_at")?)?),
            _ => None,
        },
        last_status: row.opt_int("last_status")?,
        last_error: row.opt_text("last_error")?,
        created_at: time(row.int("created_at")?)?,
        finished_at: opt_time(row.opt_int("finished_at")?)?,
    })
}

pub(crate) const ATTEMPT_COLUMNS: &str =
    "attempted_at, request_headers, status, response, duration_ms, error";

pub(crate) fn attempt_from(row: &impl Columns) -> Result<OutboundAttempt> {
    Ok(OutboundAttempt {
        attempted_at: time(row.int("attempted_at")?)?,
        request_headers: from_json(&row.text("request_headers")?)?,
        status: row.opt_int("status")?,
        response: row.opt_text("response")?,
        duration_ms: row.int("duration_ms")?,
        error: row.opt_text("error")?,
    })
}

/// Select from `webhook_deliveries d JOIN webhook_events e … JOIN webhook_endpoints p …`.
pub(crate) const DUE_COLUMNS: &str = "d.id, d.project_id, d.endpoint_id, d.attempts, p.url, \
     p.secret, p.previous_secret, p.previous_until, p.cekura_secret_header, p.failing_since, \
     e.msg_id, e.payload";

pub(crate) fn due_from(row: &impl Columns, now: DateTime<Utc>) -> Result<DueDelivery> {
    let mut secrets = vec![row.text("secret")?];
    if let (Some(previous), Some(until)) = (
        row.opt_text("previous_secret")?,
        row.opt_int("previous_until")?,
    ) {
        if until > now.timestamp_millis() {
            secrets.push(previous);
        }
    }
    Ok(DueDelivery {
        id: row.int("id")?,
        project_id: row.int("project_id")?,
        endpoint_id: row.int("endpoint_id")?,
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        url: row.text("url")?,
        secrets,
        cekura_secret_header: row.flag("cekura_secret_header")?,
        failing_since: opt_time(row.opt_int("failing_since")?)?,
        msg_id: row.text("msg_id")?,
        payload: row.text("payload")?,
    })
}

/// A fresh `webhook-id`: `msg_` and 26 random characters, unique across servers (a receiver
/// may deduplicate on it alone).
pub(crate) fn new_msg_id() -> String {
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(26)
        .map(char::from)
        .collect();
    format!("msg_{random}")
}

/// The `WHERE` test for endpoints subscribed to `event`, on `events`.
pub(crate) fn subscribed(event: EventType) -> String {
    format!("(events & {}) <> 0", event.bit())
}

/// What an attempt writes to its delivery: status, next run, finished time.
pub(crate) fn after_attempt(next: AttemptNext, at: i64) -> (&'static str, i64, Option<i64>) {
    match next {
        AttemptNext::Delivered => (OutboundStatus::Delivered.as_str(), at, Some(at)),
        AttemptNext::RetryAt(t) => (OutboundStatus::Pending.as_str(), t.timestamp_millis(), None),
        AttemptNext::Failed { .. } => (OutboundStatus::Failed.as_str(), at, Some(at)),
    }
}

/// Why an endpoint was disabled.
pub(crate) fn disabled_reason(error: Option<&str>, failing_since: Option<i64>) -> String {
    let since = failing_since
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "a day".into());
    format!(
        "every attempt has failed since {since} (last: {}); fix the receiver, then enable the \
         endpoint and replay the failed deliveries",
        error.unwrap_or("no answer")
    )
}

/// Runs in a final status not announced yet, oldest first, with their result's last announced
/// status (append `LIMIT`).
pub(crate) const RUNS_TO_NOTIFY: &str = "SELECT r.id, r.project_id, r.result_id, r.status, \
     res.notified_status AS result_notified FROM runs r JOIN results res ON res.id = r.result_id \
     WHERE r.finished_at IS NOT NULL \
        AND (r.notified_status IS NULL OR r.notified_status <> r.status) \
     ORDER BY r.id";

pub(crate) fn run_to_notify(row: &impl Columns) -> Result<RunToNotify> {
    Ok(RunToNotify {
        project_id: row.int("project_id")?,
        run_id: row.int("id")?,
        result_id: row.int("result_id")?,
        status: parse_column(&row.text("status")?, callgrade_core::RunStatus::parse)?,
        result_notified: row.opt_text("result_notified")?,
    })
}

/// How many of a rejection's problems `delivery.rejected` carries (the delivery log has all).
const REJECTED_ERRORS_SHOWN: usize = 20;

/// `delivery.rejected`: what was refused and why, without the body (the delivery log keeps it).
pub(crate) fn delivery_rejected(
    delivery: &NewDelivery,
    rejection: &Rejection,
    delivery_id: i64,
    status: u16,
) -> NewEvent {
    let errors: Vec<_> = rejection
        .errors
        .iter()
        .take(REJECTED_ERRORS_SHOWN)
        .collect();
    let data = serde_json::json!({
        "delivery_id": delivery_id,
        "route": delivery.route,
        "status": status,
        "error": rejection.kind.code(),
        "detail": rejection.detail,
        "errors": errors,
        "error_count": rejection.errors.len(),
        "received_at": delivery.received_at,
    });
    NewEvent::new(EventType::DeliveryRejected, delivery.received_at, data)
}

/// `call.received`: the call's receipt, as its sender got it.
pub(crate) fn call_received(receipt: &CallReceipt, at: DateTime<Utc>) -> NewEvent {
    let data = serde_json::to_value(receipt).unwrap_or_default();
    NewEvent::new(EventType::CallReceived, at, data)
}

/// What `prune_outbound` runs, in order, each with the cut-off as its one parameter (`$1`, which
/// SQLite reads as the first parameter too). A finished delivery's `run_at` is its last
/// attempt, so the ready index finds them.
pub(crate) const PRUNE_OUTBOUND: [&str; 3] = [
    "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries
        WHERE status IN ('delivered', 'failed') AND run_at < $1)",
    "DELETE FROM webhook_deliveries WHERE status IN ('delivered', 'failed') AND run_at < $1",
    "DELETE FROM webhook_events WHERE created_at < $1
        AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
];
