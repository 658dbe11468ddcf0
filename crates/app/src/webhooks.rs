//! Outbound webhooks: the endpoints a project keeps, events signed per Standard Webhooks and
//! delivered at least once from the database (`send_due`), every attempt logged, replays; and
//! announcing finished runs and results (`announce_finished`).
//!
//! Events are written in the transaction of what they report (the store's outbox), so a crash
//! loses none: a delivery leased by a process that died is claimed again once its lease ends,
//! and keeps its `webhook-id`.

use callgrade_core::outbound::{
    judge_status, next_attempt, parse_retry_after, should_disable, signature_header,
    AttemptFailure, EndpointDraft, EndpointPatch, EventType, SigningSecret, RESPONSE_SNIPPET_BYTES,
    SECRET_BYTES,
};
use callgrade_core::FieldError;
use callgrade_store::{
    AttemptNext, AttemptRecord, DueDelivery, NewEvent, Notice, OutboundDelivery,
    OutboundDeliveryDetail, OutboundFilter, Page, Run, RunToNotify, TestResult, WebhookEndpoint,
};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::fetch::{FetchError, FetchPolicy};
use crate::{App, AppError, Result};

/// How a process sends webhooks.
#[derive(Debug, Clone)]
pub struct OutboundSettings {
    /// Deliveries attempted at once by this process; 0 sends none (another process does).
    pub senders: usize,
    /// What an endpoint may be (public addresses unless `--allow-webhooks-to` names the
    /// network), and how long a receiver has to answer.
    pub policy: FetchPolicy,
    /// How often an idle sender looks for due deliveries.
    pub poll: Duration,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            senders: 8,
            policy: FetchPolicy {
                allowed: Vec::new(),
                timeout: Duration::from_secs(15),
                allow_flag: "--allow-webhooks-to",
            },
            poll: Duration::from_secs(1),
        }
    }
}

/// The default overlap of a rotated secret: the old one signs beside the new one for a day.
pub const DEFAULT_OVERLAP: TimeDelta = TimeDelta::hours(24);

/// The longest overlap a rotation may ask for.
pub const MAX_OVERLAP_MINUTES: i64 = 7 * 24 * 60;

/// An endpoint and its signing secret, shown this once.
#[derive(Debug, Clone)]
pub struct WithSecret {
    pub endpoint: WebhookEndpoint,
    pub secret: String,
}

fn new_secret() -> SigningSecret {
    SigningSecret::from_key(rand::random::<[u8; SECRET_BYTES]>())
}

/// The endpoint's URL passes the forgery guard (checked again at every attempt: DNS changes).
async fn check_url(app: &App, url: &str) -> Result<()> {
    match app.settings.outbound.policy.check(url).await {
        Ok(()) => Ok(()),
        Err(FetchError::Refused(why) | FetchError::Failed(why)) => {
            Err(AppError::Invalid(vec![FieldError::new("url", why)]))
        }
    }
}

pub async fn create_endpoint(app: &App, project_id: i64, body: &Value) -> Result<WithSecret> {
    let draft = EndpointDraft::parse(body).map_err(AppError::Invalid)?;
    check_url(app, &draft.url).await?;
    let secret = new_secret().expose();
    let endpoint = app
        .store
        .create_endpoint(project_id, &draft, &secret, app.now())
        .await?;
    tracing::info!(
        project_id,
        endpoint = endpoint.id,
        "webhook endpoint created"
    );
    Ok(WithSecret { endpoint, secret })
}

pub async fn endpoint(app: &App, project_id: i64, id: i64) -> Result<WebhookEndpoint> {
    app.store
        .endpoint(project_id, id)
        .await?
        .ok_or_else(|| no_endpoint(id))
}

fn no_endpoint(id: i64) -> AppError {
    AppError::not_found(format!("webhook endpoint {id} not found in this project"))
}

pub async fn update_endpoint(
    app: &App,
    project_id: i64,
    id: i64,
    body: &Value,
) -> Result<WebhookEndpoint> {
    let patch = EndpointPatch::parse(body).map_err(AppError::Invalid)?;
    if let Some(url) = &patch.url {
        check_url(app, url).await?;
    }
    app.store
        .update_endpoint(project_id, id, &patch, app.now())
        .await?
        .ok_or_else(|| no_endpoint(id))
}

pub async fn delete_endpoint(app: &App, project_id: i64, id: i64) -> Result<()> {
    match app.store.delete_endpoint(project_id, id).await? {
        true => Ok(()),
        false => Err(no_endpoint(id)),
    }
}

/// A new secret; the old one keeps signing for `overlap_minutes` (a day when not given; 0
/// stops it at once).
pub async fn rotate_secret(
    app: &App,
    project_id: i64,
    id: i64,
    overlap_minutes: Option<i64>,
) -> Result<WithSecret> {
    let overlap = match overlap_minutes {
        None => DEFAULT_OVERLAP,
        Some(m) if (0..=MAX_OVERLAP_MINUTES).contains(&m) => TimeDelta::minutes(m),
        Some(_) => {
            return Err(AppError::Invalid(vec![FieldError::new(
                "overlap_minutes",
                format!("must be 0–{MAX_OVERLAP_MINUTES} (a week)"),
            )]))
        }
    };
    let now = app.now();
    let until = (overlap > TimeDelta::zero()).then(|| now + overlap);
    let secret = new_secret().expose();
    let endpoint = app
        .store
        .rotate_endpoint_secret(project_id, id, &secret, until, now)
        .await?
        .ok_or_else(|| no_endpoint(id))?;
    tracing::info!(project_id, endpoint = id, "webhook secret rotated");
    Ok(WithSecret { endpoint, secret })
}

/// Queues a `test` event to one endpoint, whatever it subscribes to; the delivery's id.
pub async fn send_test(app: &App, project_id: i64, id: i64) -> Result<OutboundDelivery> {
    let endpoint = endpoint(app, project_id, id).await?;
    if !endpoint.enabled {
        return Err(AppError::Conflict(format!(
            "webhook endpoint {id} is disabled; enable it (PATCH {{\"enabled\": true}}) to send \
             it a test"
        )));
    }
    let now = app.now();
    let data = json!({
        "message": "a test event from callgrade: your endpoint receives and verifies events",
        "endpoint_id": id,
        "project_id": project_id,
    });
    let event = NewEvent::new(EventType::Test, now, data);
    app.store.emit_event(project_id, event, Some(id)).await?;
    app.outbound_ready.notify_waiters();
    let filter = OutboundFilter {
        endpoint_id: Some(id),
        limit: 1,
        ..Default::default()
    };
    let page = app.store.list_outbound(project_id, &filter).await?;
    page.data.into_iter().next().ok_or(AppError::Internal)
}

pub async fn deliveries(
    app: &App,
    project_id: i64,
    filter: &OutboundFilter,
) -> Result<Page<OutboundDelivery>> {
    if let Some(id) = filter.endpoint_id {
        endpoint(app, project_id, id).await?;
    }
    Ok(app.store.list_outbound(project_id, filter).await?)
}

pub async fn delivery(app: &App, project_id: i64, id: i64) -> Result<OutboundDeliveryDetail> {
    app.store
        .outbound_delivery(project_id, id)
        .await?
        .ok_or_else(|| no_delivery(id))
}

fn no_delivery(id: i64) -> AppError {
    AppError::not_found(format!("outbound delivery {id} not found in this project"))
}

/// Sends a delivered or failed delivery again, from the start of the schedule.
pub async fn replay(app: &App, project_id: i64, id: i64) -> Result<OutboundDelivery> {
    let replayed = app
        .store
        .replay_delivery(project_id, id, app.now())
        .await?
        .ok_or_else(|| no_delivery(id))?;
    app.outbound_ready.notify_waiters();
    Ok(replayed)
}

/// Replays every failed delivery created since `since` (of one endpoint when given).
pub async fn replay_failed(
    app: &App,
    project_id: i64,
    endpoint_id: Option<i64>,
    since: DateTime<Utc>,
) -> Result<u64> {
    if let Some(id) = endpoint_id {
        endpoint(app, project_id, id).await?;
    }
    let n = app
        .store
        .replay_failed(project_id, endpoint_id, since, app.now())
        .await?;
    if n > 0 {
        app.outbound_ready.notify_waiters();
    }
    Ok(n)
}

/// How long a claimed delivery is ours: every redirect may take the whole timeout.
fn lease(app: &App) -> TimeDelta {
    let timeout = app.settings.outbound.policy.timeout;
    TimeDelta::from_std(timeout * 7).unwrap_or(TimeDelta::minutes(5))
}

/// Starts this process's sender, unless it sends none.
pub fn spawn(app: &App) -> Vec<tokio::task::JoinHandle<()>> {
    if app.settings.outbound.senders == 0 {
        return Vec::new();
    }
    let name = format!(
        "{}-{:06x}-outbound",
        std::process::id(),
        rand::random::<u32>() & 0xFF_FFFF
    );
    vec![tokio::spawn(send_forever(app.clone(), name))]
}

async fn send_forever(app: App, name: String) {
    loop {
        // Listen before looking, so a wake-up between the two is not lost.
        let woken = app.outbound_ready.notified();
        let mut busy = false;
        match announce_finished(&app).await {
            Ok(n) => busy |= n > 0,
            Err(e) => tracing::warn!(error = %e, "could not announce finished runs"),
        }
        match send_due(&app, &name).await {
            Ok(n) => busy |= n > 0,
            Err(e) => tracing::warn!(error = %e, "could not send webhooks"),
        }
        if !busy {
            let _ = tokio::time::timeout(app.settings.outbound.poll, woken).await;
        }
    }
}

/// One round: claims the due deliveries (as many as there are senders), attempts them at once
/// and records each attempt; how many were attempted.
pub async fn send_due(app: &App, worker: &str) -> Result<usize> {
    let limit = u32::try_from(app.settings.outbound.senders.max(1)).unwrap_or(u32::MAX);
    let due = app
        .store
        .claim_deliveries(worker, app.now(), lease(app), limit)
        .await?;
    let attempts = due.iter().map(|d| attempt(app, d, worker));
    let records = futures_util::future::join_all(attempts).await;
    let n = records.len();
    for record in records {
        // One failed write leaves that delivery to be taken again when its lease ends; the
        // others are still recorded.
        if let Err(e) = app.store.record_attempt(record).await {
            tracing::warn!(error = %e, "could not record a webhook attempt");
        }
    }
    Ok(n)
}

/// One attempt of a delivery: signed, posted behind the forgery guard, judged.
async fn attempt(app: &App, d: &DueDelivery, worker: &str) -> AttemptRecord {
    let now = app.now();
    let timestamp = now.timestamp();
    let secrets: Vec<SigningSecret> = d
        .secrets
        .iter()
        .filter_map(|s| SigningSecret::parse(s))
        .collect();
    let body = d.payload.as_bytes();
    let mut headers: Vec<(&str, String)> = vec![
        ("content-type", "application/json".into()),
        (
            "user-agent",
            concat!("callgrade/", env!("CARGO_PKG_VERSION")).into(),
        ),
        ("webhook-id", d.msg_id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        (
            "webhook-signature",
            signature_header(&secrets, &d.msg_id, timestamp, body),
        ),
    ];
    // The log keeps every header but this one, which is the secret itself.
    let logged: Map<String, Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
        .collect();
    if d.cekura_secret_header {
        if let Some(current) = d.secrets.first() {
            headers.push(("x-cekura-secret", current.clone()));
        }
    }
    let started = Instant::now();
    let posted = app
        .settings
        .outbound
        .policy
        .post(&d.url, &headers, body, RESPONSE_SNIPPET_BYTES)
        .await;
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let attempted_at = app.now();
    let (status, response, failure, retry_after) = match posted {
        Ok(p) => (
            Some(p.status),
            Some(p.body),
            judge_status(p.status),
            p.retry_after
                .and_then(|r| parse_retry_after(&r, attempted_at)),
        ),
        Err(FetchError::Failed(why)) => (None, None, Some(AttemptFailure::Transient(why)), None),
        Err(FetchError::Refused(why)) => (None, None, Some(AttemptFailure::Permanent(why)), None),
    };
    let made = d.attempts + 1;
    let (next, error) = match failure {
        None => (AttemptNext::Delivered, None),
        Some(AttemptFailure::Transient(why)) => {
            let seed = (d.id as u64).wrapping_mul(31).wrapping_add(u64::from(made));
            match next_attempt(made, attempted_at, retry_after, seed) {
                Some(at) => (AttemptNext::RetryAt(at), Some(why)),
                None => (give_up(d, attempted_at), Some(why)),
            }
        }
        Some(AttemptFailure::Permanent(why)) => (AttemptNext::Failed { disable: false }, Some(why)),
    };
    match &error {
        None => tracing::debug!(
            delivery = d.id,
            endpoint = d.endpoint_id,
            "webhook delivered"
        ),
        Some(e) => {
            tracing::info!(delivery = d.id, endpoint = d.endpoint_id, attempt = made, error = %e, "webhook attempt failed")
        }
    }
    let outcome = match next {
        AttemptNext::Delivered => "delivered",
        AttemptNext::RetryAt(_) => "retry",
        AttemptNext::Failed { .. } => "failed",
    };
    app.telemetry.count(
        "callgrade_webhook_attempts_total",
        &[("outcome", outcome)],
        1,
    );
    if next == (AttemptNext::Failed { disable: true }) {
        tracing::warn!(
            endpoint = d.endpoint_id,
            project_id = d.project_id,
            "webhook endpoint disabled: every attempt has failed for a day"
        );
    }
    AttemptRecord {
        delivery_id: d.id,
        worker: worker.to_owned(),
        attempted_at,
        request_headers: Value::Object(logged),
        status,
        response,
        duration_ms,
        error,
        next,
    }
}

/// The schedule ran out: the delivery fails, and disables its endpoint when every attempt
/// to it has failed for a day.
fn give_up(d: &DueDelivery, now: DateTime<Utc>) -> AttemptNext {
    AttemptNext::Failed {
        disable: should_disable(d.failing_since, now),
    }
}

/// How many finished runs one round announces.
const ANNOUNCE_BATCH: u32 = 100;

/// Announces runs (and the results they finish) in a final status not announced yet:
/// `run.completed` and `result.completed` to the endpoints subscribed; how many runs.
pub async fn announce_finished(app: &App) -> Result<usize> {
    let runs = app.store.runs_to_notify(ANNOUNCE_BATCH).await?;
    if runs.is_empty() {
        return Ok(0);
    }
    let now = app.now();
    let mut notices = Vec::with_capacity(runs.len());
    let mut results_done = HashSet::new();
    // A project without an endpoint for these events has its runs marked, nothing built.
    let mut wanted: HashMap<i64, (bool, bool)> = HashMap::new();
    for r in &runs {
        let (run_wanted, result_wanted) = match wanted.get(&r.project_id) {
            Some(w) => *w,
            None => {
                let endpoints = app.store.list_endpoints(r.project_id).await?;
                let takes = |t: EventType| {
                    endpoints
                        .iter()
                        .any(|e| e.enabled && e.events.contains(&t.as_str()))
                };
                let w = (
                    takes(EventType::RunCompleted),
                    takes(EventType::ResultCompleted),
                );
                wanted.insert(r.project_id, w);
                w
            }
        };
        if !result_wanted {
            // Announced as nothing: the result is not announced later either.
            results_done.insert(r.result_id);
        }
        notices.push(notice(app, r, now, run_wanted, &mut results_done).await?);
    }
    let n = notices.len();
    app.store.record_notices(notices).await?;
    Ok(n)
}

async fn notice(
    app: &App,
    r: &RunToNotify,
    now: DateTime<Utc>,
    run_wanted: bool,
    results_done: &mut HashSet<i64>,
) -> Result<Notice> {
    let mut events = Vec::new();
    let mut result_status = None;
    if run_wanted {
        if let Some(run) = app.store.run(r.project_id, r.run_id).await? {
            events.push(NewEvent::new(EventType::RunCompleted, now, json!(run)));
        }
    }
    if !results_done.contains(&r.result_id) {
        if let Some(result) = app.store.result(r.project_id, r.result_id).await? {
            let status = result_status_of(&result);
            if result.finished && r.result_notified.as_deref() != Some(status) {
                let data = result_completed(app, &result, status).await?;
                events.push(NewEvent::new(EventType::ResultCompleted, now, data));
                result_status = Some((result.id, status.to_owned()));
                results_done.insert(result.id);
            }
        }
    }
    Ok(Notice {
        project_id: r.project_id,
        run_id: r.run_id,
        run_status: r.status,
        result: result_status,
        events,
    })
}

/// A finished result's status as Cekura words it: `cancelled` when every run was cancelled,
/// `failed` when none completed, `completed` otherwise.
fn result_status_of(result: &TestResult) -> &'static str {
    let c = &result.counts;
    if c.total > 0 && c.cancelled == c.total {
        "cancelled"
    } else if c.completed == 0 {
        "failed"
    } else {
        "completed"
    }
}

/// `result.completed`'s data in the shape of Cekura's, so a consumer written for Cekura keeps
/// working: `success_rate` 0–100, `runs` keyed by run id with each run's metrics and
/// transcript.
async fn result_completed(app: &App, result: &TestResult, status: &str) -> Result<Value> {
    let succeeded = result
        .runs
        .iter()
        .filter(|r| r.success == Some(true))
        .count();
    let total = result.runs.len();
    let mut runs = Map::new();
    for run in &result.runs {
        runs.insert(
            run.id.to_string(),
            cekura_run(app, result.project_id, run).await?,
        );
    }
    Ok(json!({
        "id": result.id,
        "name": result.name,
        "agent": result.agent_id,
        "status": status,
        "success_rate": if total == 0 { 0.0 } else { 100.0 * succeeded as f64 / total as f64 },
        "met_expected_outcome_count": succeeded,
        "total_expected_outcome_count": total,
        "run_as_text": result.mode == callgrade_core::RunMode::Simulate,
        "is_cronjob": false,
        "created_at": result.created_at,
        "runs": runs,
    }))
}

async fn cekura_run(app: &App, project_id: i64, run: &Run) -> Result<Value> {
    let call = match &run.call_id {
        Some(id) => app.store.call(project_id, id).await?,
        None => None,
    };
    let (metrics, transcript) = match &call {
        Some(c) => (
            c.evaluations
                .iter()
                .map(|e| {
                    json!({
                        "id": e.metric_id,
                        "name": e.metric_name,
                        "type": e.output.as_str(),
                        "score": e.value,
                        "passed": e.passed,
                        "explanation": [e.explanation],
                    })
                })
                .collect::<Vec<_>>(),
            c.messages
                .iter()
                .map(|m| {
                    json!({
                        "role": m.role,
                        "content": m.content,
                        "start_time": m.start_offset,
                        "end_time": m.end_offset,
                    })
                })
                .collect::<Vec<_>>(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    Ok(json!({
        "id": run.id,
        "scenario": {"id": run.scenario_id, "name": run.scenario_name},
        "status": run.status.as_str(),
        "success": run.success,
        "evaluation": {"metrics": metrics},
        "transcript_object": transcript,
        "call_id": run.call_id,
        "timestamp": run.call_started_at,
        "executed_at": run.finished_at,
        "error_message": run.error_message,
    }))
}
