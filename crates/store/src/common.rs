//! Backend-neutral pieces of the store: JSON and time conversions, cursors, the rules that
//! decide what a write does (messages included), and aggregation. Each backend keeps only its
//! SQL, so both give the same answers by construction.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use callgrade_core::{
    CallFacts, Decision, FieldError, MatchOutcome, MatchedBy, MetricSpec, NewCall, PhoneNumber,
};
use chrono::{DateTime, Utc};

use crate::model::*;
use crate::{Result, Store, StoreError};

pub(crate) fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn time(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("time out of range: {ms}")))
}

pub(crate) fn opt_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    ms.map(time).transpose()
}

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn encode_cursor(parts: &[i64]) -> String {
    let text: Vec<String> = parts.iter().map(i64::to_string).collect();
    URL_SAFE_NO_PAD.encode(text.join(":"))
}

pub(crate) fn decode_cursor(cursor: &str, len: usize) -> Result<Vec<i64>> {
    let invalid = || StoreError::InvalidInput("cursor is not one this server gave out".into());
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let parts: Vec<i64> = text
        .split(':')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| invalid())?;
    if parts.len() != len {
        return Err(invalid());
    }
    Ok(parts)
}

pub(crate) fn parse_column<T>(text: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    parse(text).ok_or_else(|| StoreError::Corrupt(format!("unexpected value {text:?}")))
}

pub(crate) fn matched_by(text: Option<String>) -> Result<Option<MatchedBy>> {
    text.map(|t| parse_column(&t, MatchedBy::parse)).transpose()
}

pub(crate) fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

pub(crate) fn project_name_taken(e: sqlx::Error, name: &str) -> StoreError {
    if unique_violation(&e) {
        StoreError::AlreadyExists(format!("a project named {name:?} already exists"))
    } else {
        e.into()
    }
}

pub(crate) fn metric_name_taken(e: sqlx::Error, name: &str) -> StoreError {
    if unique_violation(&e) {
        StoreError::AlreadyExists(format!("a metric named {name:?} already exists"))
    } else {
        e.into()
    }
}

pub(crate) fn no_project(project_id: i64) -> StoreError {
    StoreError::NotFound(format!("no project with id {project_id}"))
}

pub(crate) fn no_run(run_id: i64) -> StoreError {
    StoreError::NotFound(format!("no run with id {run_id} in this project"))
}

pub(crate) fn no_metric(id: i64) -> StoreError {
    StoreError::NotFound(format!("no metric {id} in this project"))
}

pub(crate) fn no_call(call_id: &str) -> StoreError {
    StoreError::NotFound(format!("no call {call_id:?} in this project"))
}

pub(crate) fn no_agent(agent_id: i64) -> StoreError {
    StoreError::NotFound(format!("no agent with id {agent_id} in this project"))
}

// ---- Ingest ----

/// The webhook's `agent_id` names no agent of the key's project.
pub(crate) fn unknown_agent(agent_id: i64) -> FieldError {
    FieldError::new(
        "agent_id",
        format!("no agent with id {agent_id} in this project (`callgrade agent list --project …` shows the ids)"),
    )
}

/// Checks a call's `run_id` against the run's agent (`None`: no such run in the project); as
/// Cekura does, one bad run rejects the whole batch. Gives the agent the call belongs to.
pub(crate) fn check_named_run(
    call: &NewCall,
    run_id: i64,
    run_agent: Option<i64>,
    batch_agent: Option<i64>,
) -> std::result::Result<i64, FieldError> {
    let path = format!("calls[{}].run_id", call.index);
    match (run_agent, batch_agent) {
        (None, _) => Err(FieldError::new(
            path,
            format!("Run IDs not found or deleted: [{run_id}]"),
        )),
        (Some(run_agent), Some(agent_id)) if run_agent != agent_id => Err(FieldError::new(
            path,
            format!("run {run_id} belongs to agent {run_agent}, not to agent_id {agent_id}"),
        )),
        (Some(run_agent), _) => Ok(run_agent),
    }
}

/// A resent call whose content differs from what was stored under its id.
pub(crate) fn content_conflict(call: &NewCall) -> FieldError {
    FieldError::new(
        format!("calls[{}].id", call.index),
        format!(
            "{:?} was already received with different content; send a new id, or resend it unchanged",
            call.external_id
        ),
    )
}

/// What matching looks at in a received call.
pub(crate) fn call_facts(call: &NewCall) -> CallFacts<'_> {
    CallFacts {
        started_at: call.started_at,
        ended_at: call.ended_at,
        to_phone_number: call.to_phone_number.as_ref().map(PhoneNumber::as_str),
        from_phone_number: call.from_phone_number.as_ref().map(PhoneNumber::as_str),
    }
}

/// The receipt of a call stored by this request.
pub(crate) fn created_receipt(
    call: &NewCall,
    call_id: String,
    agent_id: Option<i64>,
    decision: Decision,
) -> CallReceipt {
    CallReceipt {
        id: call.external_id.clone(),
        call_id,
        status: CallStatus::Created,
        agent_id,
        message_times: call.message_times,
        warnings: call.warnings.clone(),
        run_id: decision.run_id,
        matched_by: decision.matched_by,
        match_outcome: decision.outcome,
        candidates: decision.candidates,
        reason: decision.reason,
    }
}

pub(crate) fn receipt(delivery_id: i64, calls: Vec<CallReceipt>) -> Receipt {
    let created = calls
        .iter()
        .filter(|r| r.status == CallStatus::Created)
        .count();
    Receipt {
        accepted: calls.len(),
        created,
        duplicates: calls.len() - created,
        delivery_id,
        calls,
    }
}

/// The run's `error_message` when a late transcript is linked to it.
pub(crate) fn late_run_message(decision: &Decision) -> String {
    format!(
        "{}; the transcript is linked to this run as late — attach it by hand to complete the run",
        decision
            .reason
            .as_deref()
            .unwrap_or("the transcript arrived late")
    )
}

/// Applying a decision to its run found the run taken (a guard, never expected under locks).
pub(crate) fn run_taken(run_id: i64) -> StoreError {
    StoreError::Conflict(format!("run {run_id} took another call meanwhile"))
}

/// Whether a decision links the call to a run as late (the run stays timed out).
pub(crate) fn is_late(decision: &Decision) -> bool {
    decision.outcome == MatchOutcome::Late
}

// ---- Runs ----

/// The run side of a manual attach, as read (and locked) by the backend.
pub(crate) struct AttachRun {
    pub call_id: Option<String>,
    pub agent_id: i64,
}

/// The call side of a manual attach: its agent and the run it is attached to.
pub(crate) struct AttachCall {
    pub agent_id: Option<i64>,
    pub run_id: Option<i64>,
}

/// Whether `call_id` may be attached to `run_id` by hand.
pub(crate) fn check_attach(
    run_id: i64,
    call_id: &str,
    run: Option<AttachRun>,
    call: Option<AttachCall>,
) -> Result<()> {
    let run = run.ok_or_else(|| no_run(run_id))?;
    let call = call
        .ok_or_else(|| StoreError::InvalidInput(format!("no call {call_id:?} in this project")))?;
    if call.agent_id != Some(run.agent_id) {
        return Err(StoreError::InvalidInput(format!(
            "call {call_id:?} is of agent {}, run {run_id} of agent {}",
            call.agent_id.map_or("none".into(), |a| a.to_string()),
            run.agent_id
        )));
    }
    if let Some(other) = call.run_id.filter(|&r| r != run_id) {
        return Err(StoreError::Conflict(format!(
            "call {call_id:?} is already attached to run {other}"
        )));
    }
    if let Some(other) = run.call_id.as_deref().filter(|&c| c != call_id) {
        return Err(StoreError::Conflict(format!(
            "run {run_id} already has call {other:?}"
        )));
    }
    Ok(())
}

/// Keeps the scenarios in the order named, each once.
pub(crate) fn dedup_scenarios<T>(scenarios: &mut Vec<(i64, T, Option<String>)>) {
    let mut seen = std::collections::HashSet::new();
    scenarios.retain(|(id, _, _)| seen.insert(*id));
}

pub(crate) fn no_tagged_scenario(new: &NewTestResult) -> StoreError {
    StoreError::InvalidInput(format!(
        "no scenario of agent {} has any of the tags {:?}",
        new.agent_id, new.tags
    ))
}

pub(crate) fn unknown_scenario(id: i64, agent_id: i64) -> StoreError {
    StoreError::InvalidInput(format!(
        "no scenario with id {id} for agent {agent_id} in this project"
    ))
}

/// A result names an agent that is not the project's: the request is wrong, not the URL.
pub(crate) fn as_invalid_input(e: StoreError) -> StoreError {
    match e {
        StoreError::NotFound(m) => StoreError::InvalidInput(m),
        other => other,
    }
}

// ---- Evaluation ----

/// What `apply_metrics` does with one spec, given the live metrics.
pub(crate) enum ApplyStep<'a> {
    Unchanged,
    Update(&'a Metric),
    Create,
}

pub(crate) fn apply_step<'a>(existing: &'a [Metric], spec: &MetricSpec) -> ApplyStep<'a> {
    match existing.iter().find(|m| m.spec.name == spec.name) {
        Some(m) if &m.spec == spec => ApplyStep::Unchanged,
        Some(m) => ApplyStep::Update(m),
        None => ApplyStep::Create,
    }
}

/// A judge settings field to write: `None` keeps it, `Some("")` clears it. Gives (set, value).
pub(crate) fn judge_field(v: &Option<String>) -> (bool, Option<String>) {
    match v {
        None => (false, None),
        Some(s) if s.is_empty() => (true, None),
        Some(s) => (true, Some(s.clone())),
    }
}

/// A job's status and run time after a failure: requeued for `retry_at`, or dead.
pub(crate) fn failed_job_state(
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (&'static str, i64, Option<i64>) {
    match retry_at {
        Some(at) => ("queued", at.timestamp_millis(), None),
        None => ("dead", now.timestamp_millis(), Some(now.timestamp_millis())),
    }
}

pub(crate) fn job_counts(rows: Vec<(String, i64)>) -> JobCounts {
    let mut counts = JobCounts::default();
    for (status, n) in rows {
        match status.as_str() {
            "queued" => counts.queued = n,
            "running" => counts.running = n,
            "done" => counts.done = n,
            "dead" => counts.dead = n,
            _ => {}
        }
    }
    counts
}

/// Linear interpolation between closest ranks (numpy's default).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

/// One evaluation as `metrics_summary` reads it.
pub(crate) struct SummaryRow {
    pub metric_id: i64,
    pub metric_name: String,
    pub output: String,
    pub value: Option<String>,
    pub passed: Option<bool>,
}

/// Aggregates evaluations ordered by metric id into one summary per metric.
pub(crate) fn summarize(
    rows: impl IntoIterator<Item = Result<SummaryRow>>,
) -> Result<Vec<MetricSummary>> {
    struct Acc {
        summary: MetricSummary,
        numbers: Vec<f64>,
        judged: usize,
        passed: usize,
    }
    let mut out: Vec<Acc> = Vec::new();
    for row in rows {
        let row = row?;
        let acc = match out.last_mut() {
            Some(acc) if acc.summary.metric_id == row.metric_id => acc,
            _ => {
                out.push(Acc {
                    summary: MetricSummary {
                        metric_id: row.metric_id,
                        metric_name: row.metric_name,
                        output: parse_column(&row.output, callgrade_core::OutputType::parse)?,
                        count: 0,
                        without_value: 0,
                        pass_rate: None,
                        avg: None,
                        p50: None,
                        p90: None,
                    },
                    numbers: Vec::new(),
                    judged: 0,
                    passed: 0,
                });
                out.last_mut().expect("pushed above")
            }
        };
        match row
            .value
            .as_deref()
            .map(from_json::<serde_json::Value>)
            .transpose()?
        {
            Some(v) => {
                acc.summary.count += 1;
                if let Some(n) = v.as_f64() {
                    acc.numbers.push(n);
                }
            }
            None => acc.summary.without_value += 1,
        }
        if let Some(p) = row.passed {
            acc.judged += 1;
            acc.passed += usize::from(p);
        }
    }
    Ok(out
        .into_iter()
        .map(|mut acc| {
            let s = &mut acc.summary;
            acc.numbers.sort_by(f64::total_cmp);
            if !acc.numbers.is_empty() {
                s.avg = Some(acc.numbers.iter().sum::<f64>() / acc.numbers.len() as f64);
            }
            s.p50 = percentile(&acc.numbers, 50.0);
            s.p90 = percentile(&acc.numbers, 90.0);
            s.pass_rate = (acc.judged > 0).then(|| acc.passed as f64 / acc.judged as f64);
            acc.summary
        })
        .collect())
}

pub(crate) async fn existing_run(
    store: &(impl Store + ?Sized),
    project_id: i64,
    run_id: i64,
) -> Result<Run> {
    store
        .run(project_id, run_id)
        .await?
        .ok_or_else(|| no_run(run_id))
}

pub(crate) async fn existing_metric(
    store: &(impl Store + ?Sized),
    project_id: i64,
    id: i64,
) -> Result<Metric> {
    store
        .metric(project_id, id)
        .await?
        .ok_or_else(|| no_metric(id))
}

pub(crate) async fn existing_project(
    store: &(impl Store + ?Sized),
    project_id: i64,
) -> Result<Project> {
    store
        .project(project_id)
        .await?
        .ok_or_else(|| no_project(project_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(&[1_760_520_142_852, 42]);
        assert_eq!(decode_cursor(&c, 2).unwrap(), [1_760_520_142_852, 42]);
        assert!(decode_cursor(&c, 1).is_err());
        assert!(decode_cursor("not base64!", 1).is_err());
    }

    #[test]
    fn summaries_aggregate_per_metric() {
        let row = |id: i64, value: Option<&str>, passed: Option<bool>| {
            Ok(SummaryRow {
                metric_id: id,
                metric_name: format!("m{id}"),
                output: "numeric".into(),
                value: value.map(str::to_owned),
                passed,
            })
        };
        let out = summarize([
            row(1, Some("1.0"), Some(true)),
            row(1, Some("3.0"), Some(false)),
            row(1, None, None),
            row(2, Some("true"), Some(true)),
        ])
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].count, out[0].without_value), (2, 1));
        assert_eq!(out[0].avg, Some(2.0));
        assert_eq!(out[0].pass_rate, Some(0.5));
        assert_eq!(out[1].avg, None);
    }
}
