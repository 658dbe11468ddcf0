//! Rows to model values, for every backend. Both schemas use the same column names and the
//! same value kinds (64-bit integers, text, booleans, JSON as text), so one decoder per model
//! type serves SQLite and PostgreSQL alike; the column lists here are plain SQL both accept.

use callgrade_core::{
    AppliesTo, Channel, Connector, Direction, MatchOutcome, MessageTimes, MetricSpec, NewCall,
    OutputType, RubricVerdict, RunFacts, RunMode, RunStatus, StopReason,
};
use chrono::TimeDelta;
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::codec::{from_json, matched_by, opt_time, parse_column, time};
use crate::evaluation_document;
use crate::metric_document;
use crate::model::*;
use crate::Result;

/// Typed column access over any backend's row.
pub(crate) trait Columns {
    fn int(&self, column: &str) -> Result<i64>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
    fn text(&self, column: &str) -> Result<String>;
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    fn flag(&self, column: &str) -> Result<bool>;
    fn opt_flag(&self, column: &str) -> Result<Option<bool>>;
}

impl<R> Columns for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn int(&self, column: &str) -> Result<i64> {
        Ok(self.try_get(column)?)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        Ok(self.try_get(column)?)
    }
    fn text(&self, column: &str) -> Result<String> {
        Ok(self.try_get(column)?)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.try_get(column)?)
    }
    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.try_get(column)?)
    }
    fn opt_flag(&self, column: &str) -> Result<Option<bool>> {
        Ok(self.try_get(column)?)
    }
}

/// Fetches `limit + 1` rows to learn whether a next page exists.
pub(crate) fn paginate<R, T>(
    rows: Vec<R>,
    limit: u32,
    item: impl Fn(&R) -> Result<T>,
    cursor: impl Fn(&R) -> Result<String>,
) -> Result<Page<T>> {
    let limit = limit as usize;
    let next_cursor = match rows.len() > limit {
        true if limit > 0 => Some(cursor(&rows[limit - 1])?),
        _ => None,
    };
    let data = rows.iter().take(limit).map(item).collect::<Result<_>>()?;
    Ok(Page { data, next_cursor })
}

pub(crate) const PROJECT_COLUMNS: &str =
    "id, name, created_at, listening_window_seconds, run_deadline_seconds, redaction";

pub(crate) fn project_from(row: &impl Columns) -> Result<Project> {
    Ok(Project {
        id: row.int("id")?,
        name: row.text("name")?,
        created_at: time(row.int("created_at")?)?,
        listening_window_seconds: row.int("listening_window_seconds")?,
        run_deadline_seconds: row.int("run_deadline_seconds")?,
        redaction: row
            .opt_text("redaction")?
            .map(|doc| from_json(&doc))
            .transpose()?
            .unwrap_or_default(),
    })
}

pub(crate) const KEY_COLUMNS: &str =
    "id, name, key_prefix, scopes, created_at, expires_at, last_used_at, revoked_at";

fn scopes_from(row: &impl Columns) -> Result<callgrade_core::access::Scopes> {
    let bits = row.int("scopes")?;
    callgrade_core::access::Scopes::from_bits(bits)
        .ok_or_else(|| crate::StoreError::Corrupt(format!("unknown key scopes {bits}")))
}

pub(crate) fn key_from(row: &impl Columns) -> Result<ProjectKey> {
    Ok(ProjectKey {
        id: row.int("id")?,
        name: row.text("name")?,
        key_prefix: row.text("key_prefix")?,
        scopes: scopes_from(row)?,
        created_at: time(row.int("created_at")?)?,
        expires_at: opt_time(row.opt_int("expires_at")?)?,
        last_used_at: opt_time(row.opt_int("last_used_at")?)?,
        revoked_at: opt_time(row.opt_int("revoked_at")?)?,
    })
}

/// The columns of a key with its project (`authenticate`): the key's own renamed, so the
/// project's read as in [`project_from`].
pub(crate) const GRANT_QUERY: &str = "SELECT projects.id, projects.name, projects.created_at,
        listening_window_seconds, run_deadline_seconds, redaction, k.key_id, k.key_name, k.key_prefix,
        k.scopes, k.key_created_at, k.expires_at, k.last_used_at, k.key_hash
    FROM projects JOIN (
        SELECT id AS key_id, project_id, name AS key_name, key_prefix, scopes,
            created_at AS key_created_at, expires_at, last_used_at, key_hash
        FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL) k
    ON k.project_id = projects.id";

pub(crate) fn grant_from(row: &impl Columns) -> Result<KeyGrant> {
    Ok(KeyGrant {
        project: project_from(row)?,
        key: ProjectKey {
            id: row.int("key_id")?,
            name: row.text("key_name")?,
            key_prefix: row.text("key_prefix")?,
            scopes: scopes_from(row)?,
            created_at: time(row.int("key_created_at")?)?,
            expires_at: opt_time(row.opt_int("expires_at")?)?,
            last_used_at: opt_time(row.opt_int("last_used_at")?)?,
            revoked_at: None,
        },
    })
}

pub(crate) const AGENT_COLUMNS: &str =
    "id, project_id, name, phone_number, description, connector, external_ids, created_at";

/// An agent, with its connector's secrets redacted, and the connector whole.
pub(crate) fn agent_and_connector_from(row: &impl Columns) -> Result<(Agent, Option<Connector>)> {
    let connector = row
        .opt_text("connector")?
        .map(|text| Connector::from_document(&text).map_err(crate::StoreError::Corrupt))
        .transpose()?;
    let agent = Agent {
        id: row.int("id")?,
        project_id: row.int("project_id")?,
        name: row.text("name")?,
        phone_number: row.opt_text("phone_number")?,
        description: row.opt_text("description")?,
        connector: connector.as_ref().map(Connector::view),
        external_ids: from_json(&row.text("external_ids")?)?,
        created_at: time(row.int("created_at")?)?,
    };
    Ok((agent, connector))
}

pub(crate) fn vendor_secret_from(row: &impl Columns) -> Result<VendorSecretView> {
    Ok(VendorSecretView {
        vendor: row.text("vendor")?,
        updated_at: time(row.int("updated_at")?)?,
    })
}

pub(crate) fn agent_from(row: &impl Columns) -> Result<Agent> {
    Ok(agent_and_connector_from(row)?.0)
}

/// What a resent call's receipt repeats from its first storing.
pub(crate) const DUPLICATE_COLUMNS: &str =
    "id, content_hash, agent_id, run_id, matched_by, match_outcome, match_reason, match_candidates";

/// The receipt of a resent call: what was decided when it was first stored.
pub(crate) fn duplicate_receipt(call: &NewCall, row: &impl Columns) -> Result<CallReceipt> {
    Ok(CallReceipt {
        external_id: call.external_id.clone(),
        call_id: row.text("id")?,
        status: CallStatus::Duplicate,
        agent_id: row.opt_int("agent_id")?,
        message_times: call.message_times,
        warnings: call.warnings.clone(),
        run_id: row.opt_int("run_id")?,
        matched_by: matched_by(row.opt_text("matched_by")?)?,
        match_outcome: parse_column(&row.text("match_outcome")?, MatchOutcome::parse)?,
        candidates: from_json(&row.text("match_candidates")?)?,
        reason: row.opt_text("match_reason")?,
        redactions: call.redactions.clone(),
    })
}

/// Calls with their evaluation, where they have one. The evaluation has a row of its own, so
/// evaluating a call never rewrites the call's (large) row. Filters name `calls.project_id`:
/// both tables have one.
pub(crate) const CALLS: &str = "calls LEFT JOIN call_evaluations v ON v.call_id = calls.id";

/// Selected from [`CALLS`].
pub(crate) const CALL_SUMMARY_COLUMNS: &str =
    "calls.seq, calls.id, calls.external_id, calls.agent_id, calls.started_at, calls.ended_at,
    calls.to_phone_number, calls.from_phone_number, calls.ended_reason, calls.run_id,
    calls.matched_by, calls.match_outcome, calls.message_count, calls.received_at,
    calls.delivery_id, calls.channel, v.success, v.evaluated_at";

/// [`CALL_SUMMARY_COLUMNS`] plus what [`call_detail_from`] reads.
pub(crate) const CALL_DETAIL_COLUMNS: &str = "calls.trace_id, calls.message_times,
    calls.messages, calls.metadata, calls.warnings, calls.raw, calls.match_reason,
    calls.match_candidates, calls.redactions, v.rubric";

/// [`CALL_SUMMARY_COLUMNS`] plus what [`call_for_evaluation_from`] reads: not the raw payload,
/// the largest column of a call, which evaluating does not read.
pub(crate) const EVALUATED_CALL_COLUMNS: &str = "calls.messages, calls.metadata, calls.trace_id";

pub(crate) fn call_summary_from(row: &impl Columns) -> Result<CallSummary> {
    let started_at = row.int("started_at")?;
    let ended_at = row.int("ended_at")?;
    Ok(CallSummary {
        call_id: row.text("id")?,
        external_id: row.text("external_id")?,
        agent_id: row.opt_int("agent_id")?,
        started_at: time(started_at)?,
        ended_at: time(ended_at)?,
        duration_seconds: (ended_at - started_at) as f64 / 1000.0,
        to_phone_number: row.opt_text("to_phone_number")?,
        from_phone_number: row.opt_text("from_phone_number")?,
        ended_reason: row.text("ended_reason")?,
        run_id: row.opt_int("run_id")?,
        matched_by: matched_by(row.opt_text("matched_by")?)?,
        match_outcome: parse_column(&row.text("match_outcome")?, MatchOutcome::parse)?,
        message_count: row.int("message_count")?,
        channel: parse_column(&row.text("channel")?, Channel::parse)?,
        success: row.opt_flag("success")?,
        evaluated_at: opt_time(row.opt_int("evaluated_at")?)?,
        received_at: time(row.int("received_at")?)?,
        delivery_id: row.int("delivery_id")?,
    })
}

pub(crate) fn call_detail_from(
    row: &impl Columns,
    evaluations: Vec<Evaluation>,
) -> Result<CallDetail> {
    let times = row.text("message_times")?;
    Ok(CallDetail {
        summary: call_summary_from(row)?,
        match_reason: row.opt_text("match_reason")?,
        match_candidates: from_json(&row.text("match_candidates")?)?,
        trace_id: row.opt_text("trace_id")?,
        message_times: MessageTimes::parse(&times)
            .ok_or_else(|| crate::StoreError::Corrupt(format!("message_times {times:?}")))?,
        messages: from_json(&row.text("messages")?)?,
        metadata: from_json(&row.text("metadata")?)?,
        warnings: from_json(&row.text("warnings")?)?,
        raw: from_json(&row.text("raw")?)?,
        rubric: verdict(row.opt_text("rubric")?)?,
        redactions: row
            .opt_text("redactions")?
            .map(|doc| from_json(&doc))
            .transpose()?
            .unwrap_or_default(),
        evaluations,
    })
}

/// A call as evaluation reads it, from [`CALL_SUMMARY_COLUMNS`] and [`EVALUATED_CALL_COLUMNS`].
pub(crate) fn call_for_evaluation_from(row: &impl Columns) -> Result<CallForEvaluation> {
    let summary = call_summary_from(row)?;
    Ok(CallForEvaluation {
        call_id: summary.call_id,
        agent_id: summary.agent_id,
        run_id: summary.run_id,
        started_at: summary.started_at,
        ended_at: summary.ended_at,
        duration_seconds: summary.duration_seconds,
        from_phone_number: summary.from_phone_number,
        to_phone_number: summary.to_phone_number,
        ended_reason: summary.ended_reason,
        channel: summary.channel,
        messages: from_json(&row.text("messages")?)?,
        metadata: from_json(&row.text("metadata")?)?,
        trace_id: row.opt_text("trace_id")?,
        // Read beside the call's agent and scenario (`inputs.rs`).
        audio: None,
        trace: None,
    })
}

/// [`call_detail_from`] for a row that also selected `v.evaluations` from [`CALLS`].
pub(crate) fn call_with_evaluations_from(row: &impl Columns) -> Result<CallDetail> {
    let evaluations = match row.opt_text("evaluations")? {
        Some(document) => evaluation_document::evaluations(&document)?,
        None => Vec::new(),
    };
    call_detail_from(row, evaluations)
}

/// The verdict stored on a call, if evaluated.
fn verdict(text: Option<String>) -> Result<Option<RubricVerdict>> {
    text.as_deref().map(from_json).transpose()
}

pub(crate) const DELIVERY_SUMMARY_COLUMNS: &str =
    "id, received_at, route, status, outcome, error, detail, errors, body_size, accepted_calls";

pub(crate) fn delivery_summary_from(row: &impl Columns) -> Result<DeliverySummary> {
    let status = row.int("status")?;
    Ok(DeliverySummary {
        id: row.int("id")?,
        received_at: time(row.int("received_at")?)?,
        route: row.text("route")?,
        status: u16::try_from(status)
            .map_err(|_| crate::StoreError::Corrupt(format!("HTTP status {status}")))?,
        outcome: row.text("outcome")?,
        error: row.opt_text("error")?,
        detail: row.opt_text("detail")?,
        errors: from_json(&row.text("errors")?)?,
        body_size: row.int("body_size")?,
        accepted_calls: row.int("accepted_calls")?,
    })
}

pub(crate) fn delivery_from(row: &impl Columns) -> Result<Delivery> {
    Ok(Delivery {
        summary: delivery_summary_from(row)?,
        body: row.opt_text("body")?,
        body_truncated: row.flag("body_truncated")?,
    })
}

/// Scenario columns without `tags`, which each backend aggregates its own way.
pub(crate) const SCENARIO_BASE_COLUMNS: &str = "id, project_id, agent_id, name, instructions,
    expected_outcome_prompt, direction, tester_phone_number, simulation, quarantined, created_at";

/// Reads a scenario whose `tags` column is a JSON array of strings.
pub(crate) fn scenario_from(row: &impl Columns) -> Result<Scenario> {
    let simulation: ScenarioSimulation = from_json(&row.text("simulation")?)?;
    Ok(Scenario {
        id: row.int("id")?,
        project_id: row.int("project_id")?,
        agent_id: row.int("agent_id")?,
        name: row.text("name")?,
        instructions: row.text("instructions")?,
        expected_outcome_prompt: row.text("expected_outcome_prompt")?,
        tags: from_json(&row.text("tags")?)?,
        direction: parse_column(&row.text("direction")?, Direction::parse)?,
        tester_phone_number: row.opt_text("tester_phone_number")?,
        persona: simulation.persona,
        first_message: simulation.first_message,
        tool_mocks: simulation.tool_mocks,
        unmatched_tool_result: simulation.unmatched_tool_result,
        stop_rules: simulation.stop_rules,
        quarantined: row.flag("quarantined")?,
        created_at: time(row.int("created_at")?)?,
    })
}

pub(crate) const RESULT_COLUMNS: &str = "id, project_id, agent_id, name, mode, label, created_at";

/// A result from [`RESULT_COLUMNS`] and its runs.
pub(crate) fn result_from(row: &impl Columns, runs: Vec<Run>) -> Result<TestResult> {
    Ok(TestResult {
        id: row.int("id")?,
        project_id: row.int("project_id")?,
        agent_id: row.int("agent_id")?,
        name: row.opt_text("name")?,
        mode: parse_column(&row.text("mode")?, RunMode::parse)?,
        label: row.opt_text("label")?,
        created_at: time(row.int("created_at")?)?,
        finished: runs.iter().all(|r| r.status.is_final()),
        counts: RunCounts::of(&runs),
        runs,
    })
}

pub(crate) const RUN_COLUMNS: &str = "r.id, r.result_id, r.scenario_id, s.name AS scenario_name,
    r.agent_id, r.direction, r.tester_phone_number, r.agent_phone_number, r.status, r.created_at,
    r.updated_at, r.deadline_at, r.call_started_at, r.call_ended_at, r.call_id, r.matched_by,
    r.late, r.error_message, r.finished_at, r.success, p.listening_window_seconds, r.mode,
    r.stop_reason, r.usage, r.live_transcript, s.quarantined";

pub(crate) const RUN_FROM: &str = "FROM runs r JOIN scenarios s ON s.id = r.scenario_id
    JOIN projects p ON p.id = r.project_id";

pub(crate) fn run_from(row: &impl Columns) -> Result<Run> {
    let call_ended_at = opt_time(row.opt_int("call_ended_at")?)?;
    let window = TimeDelta::seconds(row.int("listening_window_seconds")?);
    Ok(Run {
        id: row.int("id")?,
        result_id: row.int("result_id")?,
        scenario_id: row.int("scenario_id")?,
        scenario_name: row.text("scenario_name")?,
        agent_id: row.int("agent_id")?,
        direction: parse_column(&row.text("direction")?, Direction::parse)?,
        tester_phone_number: row.opt_text("tester_phone_number")?,
        agent_phone_number: row.opt_text("agent_phone_number")?,
        status: parse_column(&row.text("status")?, RunStatus::parse)?,
        created_at: time(row.int("created_at")?)?,
        updated_at: time(row.int("updated_at")?)?,
        deadline_at: time(row.int("deadline_at")?)?,
        call_started_at: opt_time(row.opt_int("call_started_at")?)?,
        call_ended_at,
        listen_until: call_ended_at.map(|t| t + window),
        call_id: row.opt_text("call_id")?,
        matched_by: matched_by(row.opt_text("matched_by")?)?,
        late: row.flag("late")?,
        error_message: row.opt_text("error_message")?,
        finished_at: opt_time(row.opt_int("finished_at")?)?,
        success: row.opt_flag("success")?,
        mode: parse_column(&row.text("mode")?, RunMode::parse)?,
        quarantined: row.flag("quarantined")?,
        stop_reason: row
            .opt_text("stop_reason")?
            .map(|s| parse_column(&s, StopReason::parse))
            .transpose()?,
        usage: from_json(&row.text("usage")?)?,
        live_messages: row
            .opt_text("live_transcript")?
            .map(|t| from_json(&t))
            .transpose()?
            .unwrap_or_default(),
    })
}

/// What matching and the sweeper read of a run (unqualified, or qualified by `r.` in joins).
pub(crate) const FACT_COLUMNS: &str = "id, direction, tester_phone_number, status, created_at,
    deadline_at, call_started_at, call_ended_at, call_id, mode";

pub(crate) fn facts_from(row: &impl Columns) -> Result<RunFacts> {
    Ok(RunFacts {
        id: row.int("id")?,
        direction: parse_column(&row.text("direction")?, Direction::parse)?,
        tester_phone_number: row.opt_text("tester_phone_number")?,
        status: parse_column(&row.text("status")?, RunStatus::parse)?,
        created_at: time(row.int("created_at")?)?,
        deadline_at: time(row.int("deadline_at")?)?,
        call_started_at: opt_time(row.opt_int("call_started_at")?)?,
        call_ended_at: opt_time(row.opt_int("call_ended_at")?)?,
        has_call: row.opt_text("call_id")?.is_some(),
        simulated: row.text("mode")? == RunMode::Simulate.as_str(),
    })
}

pub(crate) const METRIC_COLUMNS: &str = "id, project_id, name, kind, output, enum_values,
    applies_to, agent_ids, description, config, enabled, version, created_at, updated_at";

pub(crate) fn metric_from(row: &impl Columns) -> Result<Metric> {
    Ok(Metric {
        id: row.int("id")?,
        project_id: row.int("project_id")?,
        spec: {
            let (definition, pass) = metric_document::definition(&row.text("config")?)?;
            MetricSpec {
                name: row.text("name")?,
                output: parse_column(&row.text("output")?, OutputType::parse)?,
                enum_values: from_json(&row.text("enum_values")?)?,
                applies_to: parse_column(&row.text("applies_to")?, AppliesTo::parse)?,
                agent_ids: from_json(&row.text("agent_ids")?)?,
                description: row.text("description")?,
                definition,
                pass,
                enabled: row.flag("enabled")?,
            }
        },
        version: row.int("version")?,
        created_at: time(row.int("created_at")?)?,
        updated_at: time(row.int("updated_at")?)?,
    })
}

pub(crate) const SIMULATOR_COLUMNS: &str = "simulator_base_url, simulator_model,
    simulator_api_key, simulator_concurrency, simulator_token_budget, simulator_tts_base_url,
    simulator_tts_model, simulator_voice, simulator_tts_api_key, simulator_stt_base_url,
    simulator_stt_model, simulator_stt_api_key";

/// The statement that applies a [`crate::VoiceSettingsPatch`]: `set` and value per column,
/// then the project's id; `placeholder(i)` is the backend's i-th parameter (from 1).
pub(crate) fn voice_update(placeholder: impl Fn(usize) -> String) -> String {
    let sets: Vec<String> = crate::model::VOICE_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{c} = CASE WHEN {} THEN {} ELSE {c} END",
                placeholder(2 * i + 1),
                placeholder(2 * i + 2)
            )
        })
        .collect();
    format!(
        "UPDATE projects SET {} WHERE id = {}",
        sets.join(", "),
        placeholder(2 * crate::model::VOICE_COLUMNS.len() + 1)
    )
}

pub(crate) fn simulator_settings_from(row: &impl Columns) -> Result<SimulatorSettings> {
    let api_key = row.opt_text("simulator_api_key")?;
    Ok(SimulatorSettings {
        base_url: row.opt_text("simulator_base_url")?,
        model: row.opt_text("simulator_model")?,
        api_key_set: api_key.is_some(),
        api_key,
        concurrency: u32::try_from(row.int("simulator_concurrency")?.max(1)).unwrap_or(u32::MAX),
        token_budget: u64::try_from(row.int("simulator_token_budget")?.max(0)).unwrap_or(0),
        voice: {
            let tts_api_key = row.opt_text("simulator_tts_api_key")?;
            let stt_api_key = row.opt_text("simulator_stt_api_key")?;
            callgrade_core::VoiceSettings {
                tts_base_url: row.opt_text("simulator_tts_base_url")?,
                tts_model: row.opt_text("simulator_tts_model")?,
                voice: row.opt_text("simulator_voice")?,
                tts_api_key_set: tts_api_key.is_some(),
                tts_api_key,
                stt_base_url: row.opt_text("simulator_stt_base_url")?,
                stt_model: row.opt_text("simulator_stt_model")?,
                stt_api_key_set: stt_api_key.is_some(),
                stt_api_key,
            }
        },
    })
}

pub(crate) const JUDGE_COLUMNS: &str =
    "judge_base_url, judge_model, judge_api_key, judge_concurrency";

pub(crate) fn judge_settings_from(row: &impl Columns) -> Result<JudgeSettings> {
    let api_key = row.opt_text("judge_api_key")?;
    Ok(JudgeSettings {
        base_url: row.opt_text("judge_base_url")?,
        model: row.opt_text("judge_model")?,
        api_key_set: api_key.is_some(),
        api_key,
        concurrency: u32::try_from(row.int("judge_concurrency")?.max(1)).unwrap_or(u32::MAX),
    })
}

/// Each backend's metric summary selects one row per evaluation out of the documents, with
/// these names: `metric_id`, `metric_name`, `output`, `value` (JSON text, null as NULL) and
/// `passed`.
pub(crate) fn summary_entry_from(row: &impl Columns) -> Result<callgrade_core::SummaryEntry> {
    Ok(callgrade_core::SummaryEntry {
        metric_id: row.int("metric_id")?,
        metric_name: row.text("metric_name")?,
        output: parse_column(&row.text("output")?, OutputType::parse)?,
        value: row
            .opt_text("value")?
            .as_deref()
            .map(from_json)
            .transpose()?,
        passed: row.opt_flag("passed")?,
    })
}

pub(crate) const RECORDING_COLUMNS: &str = "call_id, project_id, object_key, content_type,
    size_bytes, sample_rate, channels, duration_ms, agent_channel, origin, timeline, envelope,
    bucket_ms, created_at";

/// Stores a call's recording, replacing the one it had; nothing when the call is not in the
/// project. One text for both backends: SQLite reads `$n` as a parameter numbered in order of
/// first use, which here is `n`.
pub(crate) const UPSERT_RECORDING: &str = "INSERT INTO recordings (call_id, project_id,
        object_key, content_type, size_bytes, sample_rate, channels, duration_ms, agent_channel,
        origin, timeline, envelope, bucket_ms, created_at)
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
     WHERE EXISTS (SELECT 1 FROM calls WHERE id = $1 AND project_id = $2)
     ON CONFLICT (call_id) DO UPDATE SET object_key = excluded.object_key,
        content_type = excluded.content_type, size_bytes = excluded.size_bytes,
        sample_rate = excluded.sample_rate, channels = excluded.channels,
        duration_ms = excluded.duration_ms, agent_channel = excluded.agent_channel,
        origin = excluded.origin, timeline = excluded.timeline,
        envelope = excluded.envelope, bucket_ms = excluded.bucket_ms,
        created_at = excluded.created_at";

/// Reads a call's waiting recording request (parameters: project id, call id).
pub(crate) const RECORDING_REQUEST: &str =
    "SELECT url, agent_channel FROM recording_requests WHERE project_id = $1 AND call_id = $2";

/// A [`RECORDING_REQUEST`] row.
pub(crate) fn recording_request_from(
    (url, agent_channel): (String, i64),
) -> callgrade_core::RecordingRequest {
    callgrade_core::RecordingRequest {
        url,
        agent_channel: u32::try_from(agent_channel).unwrap_or(1),
    }
}

/// A recording's timeline and envelope as their columns hold them.
pub(crate) fn recording_documents(r: &StoredRecording) -> (String, String) {
    let timeline = serde_json::to_string(&r.audio.timeline).expect("a timeline serialises");
    let envelope = serde_json::to_string(&r.audio.envelope).expect("an envelope serialises");
    (timeline, envelope)
}

pub(crate) fn recording_from(row: &impl Columns) -> Result<StoredRecording> {
    let timeline = row.text("timeline")?;
    let envelope = row.text("envelope")?;
    let small = |c: &str| -> Result<u32> { Ok(u32::try_from(row.int(c)?.max(0)).unwrap_or(0)) };
    let audio = callgrade_core::AnalysedRecording {
        object_key: row.text("object_key")?,
        content_type: row.text("content_type")?,
        size_bytes: u64::try_from(row.int("size_bytes")?.max(0)).unwrap_or(0),
        sample_rate: small("sample_rate")?,
        channels: small("channels")?,
        duration_ms: u64::try_from(row.int("duration_ms")?.max(0)).unwrap_or(0),
        agent_channel: small("agent_channel")?,
        origin: row.text("origin")?,
        timeline: serde_json::from_str(&timeline)
            .map_err(|e| crate::StoreError::Corrupt(format!("a recording's timeline: {e}")))?,
        envelope: serde_json::from_str(&envelope)
            .map_err(|e| crate::StoreError::Corrupt(format!("a recording's envelope: {e}")))?,
        bucket_ms: small("bucket_ms")?,
    };
    Ok(StoredRecording {
        call_id: row.text("call_id")?,
        project_id: row.int("project_id")?,
        audio,
        created_at: time(row.int("created_at")?)?,
    })
}

/// The columns of a span, in [`span_from`]'s and the inserts' order.
pub(crate) const SPAN_COLUMNS: &str = "trace_id, span_id, parent_span_id, name, service_name,
    start_ns, end_ns, status, status_message, attributes, events";

pub(crate) fn span_from(row: &impl Columns) -> Result<callgrade_core::TraceSpan> {
    let status = row.text("status")?;
    Ok(callgrade_core::TraceSpan {
        trace_id: row.text("trace_id")?,
        span_id: row.text("span_id")?,
        parent_span_id: row.opt_text("parent_span_id")?,
        name: row.text("name")?,
        service_name: row.opt_text("service_name")?,
        start_unix_nano: row.int("start_ns")?,
        end_unix_nano: row.int("end_ns")?,
        status: callgrade_core::SpanStatus::parse(&status)
            .ok_or_else(|| crate::StoreError::Corrupt(format!("span status {status:?}")))?,
        status_message: row.opt_text("status_message")?,
        attributes: from_json(&row.text("attributes")?)?,
        events: from_json(&row.text("events")?)?,
    })
}

/// A call's stored metadata and end reason with `patch` applied: `None` when nothing changes.
pub(crate) fn patched(
    metadata: &str,
    ended_reason: &str,
    patch: &callgrade_core::CallPatch,
    max_metadata_bytes: usize,
) -> Result<Option<(String, String)>> {
    let mut value: serde_json::Value = from_json(metadata)?;
    let changed = patch
        .apply(&mut value, max_metadata_bytes)
        .map_err(|e| crate::StoreError::InvalidInput(e.message))?;
    let reason = patch.ended_reason.as_deref().unwrap_or(ended_reason);
    Ok((changed || reason != ended_reason)
        .then(|| (crate::codec::to_json(&value), reason.to_owned())))
}
