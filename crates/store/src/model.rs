//! What the store takes and gives back.

use callgrade_core::access::Scopes;
use callgrade_core::privacy::RedactionPolicy;
pub use callgrade_core::{
    Agent, Answer, CallEvaluation, CallForEvaluation, Channel, Connector, Evaluation,
    EvaluationInput, EvaluationStatus, JudgeSettings, Metric, MetricSummary, NewScenario,
    NewTestResult, Rejection, RejectionKind, RunEvent, RunMode, Scenario, SimulatorSettings,
    StopReason, Usage,
};
use callgrade_core::{
    Direction, FieldError, MatchOutcome, MatchedBy, Message, MessageTimes, Persona, RubricVerdict,
    RunStatus, StopRules, ToolMock,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// How long after a test call ends its transcript may still arrive and match.
    pub listening_window_seconds: i64,
    /// How long after its creation a run without a reported call end times out.
    pub run_deadline_seconds: i64,
    /// What is redacted from calls before they are stored.
    pub redaction: RedactionPolicy,
}

/// One of a project's API keys, as listed: never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProjectKey {
    pub id: i64,
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub key_prefix: String,
    /// What the key may do: `ingest`, `read`, `write`, `admin`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, example = json!(["ingest"])))]
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
    /// When it stops working (set when created, or by a rotation's overlap); `null`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request, to the minute.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ProjectKey {
    /// Whether the key authenticates requests at `now`.
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// What a presented key proved: whose it is, which key, and what it may do.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    pub project: Project,
    pub key: ProjectKey,
}

/// Changes to a project's settings; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct ProjectSettings {
    pub listening_window_seconds: Option<i64>,
    pub run_deadline_seconds: Option<i64>,
    /// A new policy; the project's hash key is made with the first one.
    pub redaction: Option<RedactionPolicy>,
}

impl ProjectSettings {
    /// Values out of range, each with its field's name.
    pub fn problems(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut check = |path: &str, value: Option<i64>, min: i64, max: i64| {
            if let Some(v) = value.filter(|v| !(min..=max).contains(v)) {
                errors.push(FieldError::new(
                    path,
                    format!("must be between {min} and {max} seconds (got {v})"),
                ));
            }
        };
        check(
            "listening_window_seconds",
            self.listening_window_seconds,
            1,
            86_400,
        );
        check(
            "run_deadline_seconds",
            self.run_deadline_seconds,
            60,
            604_800,
        );
        errors
    }
}

/// A webhook request as received, for the delivery log.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub project_id: i64,
    pub received_at: DateTime<Utc>,
    pub route: String,
    pub body_size: usize,
    /// The body as text, cut at the log's cap.
    pub body: String,
    pub body_truncated: bool,
    /// How the edge answers this request; the log records the status it gives.
    pub answer: Answer,
    /// The shape the body is in (the route names it in the log; the receipt says it).
    pub format: callgrade_core::Format,
}

impl NewDelivery {
    /// Keeps at most `cap` bytes of the body (cut on a character boundary).
    pub fn new(
        project_id: i64,
        received_at: DateTime<Utc>,
        route: &str,
        body: &[u8],
        cap: usize,
        answer: Answer,
    ) -> Self {
        let text = String::from_utf8_lossy(body);
        let mut end = text.len().min(cap);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            project_id,
            received_at,
            route: route.to_owned(),
            body_size: body.len(),
            body: text[..end].to_owned(),
            body_truncated: end < text.len(),
            answer,
            format: callgrade_core::Format::Custom,
        }
    }
}

#[derive(Debug, Clone)]
pub enum IngestOutcome {
    Accepted(Receipt),
    Rejected(Rejection),
}

/// What a trace export stored.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SpanReceipt {
    /// Spans new to the store.
    pub stored: usize,
    /// Spans it had already (an exporter's retry).
    pub duplicates: usize,
    /// Our ids of the calls these spans belong to, whose evaluation was queued again.
    pub calls: Vec<String>,
    /// This request's entry in the delivery log.
    pub delivery_id: i64,
}

/// The most spans of one trace read back (for the call page and evaluation).
pub const MAX_TRACE_SPANS: i64 = 10_000;

/// The answer to an accepted webhook request.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Receipt {
    /// Calls of this request now stored (created, updated and duplicates).
    pub accepted: usize,
    pub created: usize,
    /// Calls stored before that this request added to (Retell's analysis).
    pub updated: usize,
    pub duplicates: usize,
    /// The format the body was read as: `custom`, `observe`, `vapi`, `retell` or
    /// `elevenlabs`.
    pub format: &'static str,
    /// This request's entry in the delivery log.
    pub delivery_id: i64,
    pub calls: Vec<CallReceipt>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CallReceipt {
    /// The sender's id.
    // `id` on the wire, as in Cekura's payload.
    #[serde(rename = "id")]
    pub external_id: String,
    /// Our id, for `GET /api/v1/calls/{call_id}`.
    pub call_id: String,
    pub status: CallStatus,
    pub agent_id: Option<i64>,
    /// How the message times were read.
    pub message_times: MessageTimes,
    pub warnings: Vec<FieldError>,
    /// The test run the call is attached to, if any.
    pub run_id: Option<i64>,
    pub matched_by: Option<MatchedBy>,
    /// What matching concluded: matched, late, ambiguous or unmatched.
    #[serde(rename = "match")]
    pub match_outcome: MatchOutcome,
    /// The runs that fit, when ambiguous.
    pub candidates: Vec<i64>,
    /// Why the call was not matched, or why it is late.
    pub reason: Option<String>,
    /// What the project's redaction policy replaced in the call, by kind; left out when
    /// nothing was.
    #[serde(skip_serializing_if = "callgrade_core::redact::Counts::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub redactions: callgrade_core::redact::Counts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// Stored by this request.
    Created,
    /// An identical call with this id was already stored; nothing changed.
    Duplicate,
    /// The call was stored before; this request added what a later event of it carries
    /// (Retell's analysis), and it is evaluated again.
    Updated,
}

#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub agent_id: Option<i64>,
    /// The sender's call id.
    pub external_id: Option<String>,
    /// Calls that started at or after this time (epoch ms).
    pub started_from_ms: Option<i64>,
    /// Calls that started before this time (epoch ms).
    pub started_before_ms: Option<i64>,
    pub ended_reason: Option<String>,
    /// The rubric's verdict.
    pub success: Option<bool>,
    /// Test calls (attached to a run) or production calls.
    pub kind: Option<CallKind>,
    /// Calls on which this metric failed: its own pass condition, or the rubric's rule on it.
    pub failing_metric: Option<String>,
    /// Text anywhere in the transcript (case-insensitive; tool data included).
    pub text: Option<String>,
    pub cursor: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// Attached to a test run.
    Test,
    /// Matched no run.
    Production,
}

/// `%`-wrapped LIKE pattern for `text`, with the wildcards in it escaped (escape char `\`).
pub fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Accepted,
    Rejected,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub outcome: Option<DeliveryOutcome>,
    pub cursor: Option<String>,
    pub limit: u32,
}

/// One page of a newest-first list.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CallSummary {
    /// Our id.
    pub call_id: String,
    /// The sender's id.
    // `id` on the wire, as in Cekura's payload.
    #[serde(rename = "id")]
    pub external_id: String,
    pub agent_id: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub to_phone_number: Option<String>,
    pub from_phone_number: Option<String>,
    pub ended_reason: String,
    /// The test run the call is attached to; null for a production call.
    pub run_id: Option<i64>,
    pub matched_by: Option<MatchedBy>,
    #[serde(rename = "match")]
    pub match_outcome: MatchOutcome,
    pub message_count: i64,
    /// `voice`, or `text` for a written conversation (a text simulation).
    pub channel: Channel,
    /// The rubric's verdict; null until evaluated.
    pub success: Option<bool>,
    pub evaluated_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub delivery_id: i64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CallDetail {
    #[serde(flatten)]
    pub summary: CallSummary,
    /// Why the call was not matched, or why it is late.
    pub match_reason: Option<String>,
    /// The runs that fit, when ambiguous.
    pub match_candidates: Vec<i64>,
    pub trace_id: Option<String>,
    pub message_times: MessageTimes,
    pub messages: Vec<Message>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Value,
    pub warnings: Vec<FieldError>,
    /// The call object exactly as received, unknown fields included.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub raw: Value,
    /// Every metric's result, once evaluated.
    pub evaluations: Vec<Evaluation>,
    /// The rubric's per-rule breakdown, once evaluated.
    pub rubric: Option<RubricVerdict>,
    /// What the project's redaction policy replaced before the call was stored, by kind:
    /// `{"email": 1, "card": 2}`; `{}` when nothing.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub redactions: callgrade_core::redact::Counts,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeliverySummary {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub route: String,
    /// The HTTP status we answered.
    pub status: u16,
    /// `accepted` or `rejected`.
    pub outcome: String,
    pub error: Option<String>,
    pub detail: Option<String>,
    pub errors: Vec<FieldError>,
    pub body_size: i64,
    pub accepted_calls: i64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Delivery {
    #[serde(flatten)]
    pub summary: DeliverySummary,
    /// The request body as received, cut at the log's cap.
    pub body: Option<String>,
    pub body_truncated: bool,
}

/// One batch of test runs (a test suite execution).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TestResult {
    pub id: i64,
    pub project_id: i64,
    pub agent_id: i64,
    pub name: Option<String>,
    /// Who places the calls: callgrade's simulated callers, or something else.
    pub mode: RunMode,
    /// What `--baseline-label` finds this result by.
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    /// True when every run is final.
    pub finished: bool,
    pub counts: RunCounts,
    pub runs: Vec<Run>,
}

/// How many runs are in each state.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RunCounts {
    pub total: usize,
    pub pending: usize,
    pub in_progress: usize,
    pub awaiting_transcript: usize,
    pub evaluating: usize,
    pub completed: usize,
    pub failed: usize,
    pub timeout: usize,
    pub cancelled: usize,
}

impl RunCounts {
    pub fn of(runs: &[Run]) -> Self {
        let mut c = Self {
            total: runs.len(),
            ..Self::default()
        };
        for run in runs {
            *match run.status {
                RunStatus::Pending => &mut c.pending,
                RunStatus::InProgress => &mut c.in_progress,
                RunStatus::AwaitingTranscript => &mut c.awaiting_transcript,
                RunStatus::Evaluating => &mut c.evaluating,
                RunStatus::Completed => &mut c.completed,
                RunStatus::Failed => &mut c.failed,
                RunStatus::Timeout => &mut c.timeout,
                RunStatus::Cancelled => &mut c.cancelled,
            } += 1;
        }
        c
    }
}

/// One test call of one scenario.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Run {
    /// The id senders put in `run_id`.
    pub id: i64,
    pub result_id: i64,
    pub scenario_id: i64,
    pub scenario_name: String,
    pub agent_id: i64,
    pub direction: Direction,
    pub tester_phone_number: Option<String>,
    pub agent_phone_number: Option<String>,
    pub status: RunStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Without a reported call end, the run times out after this.
    pub deadline_at: DateTime<Utc>,
    /// As the harness reported it.
    pub call_started_at: Option<DateTime<Utc>>,
    /// As the harness reported it.
    pub call_ended_at: Option<DateTime<Utc>>,
    /// The end of the listening window, once the call's end is known.
    pub listen_until: Option<DateTime<Utc>>,
    /// The attached call (our id).
    pub call_id: Option<String>,
    pub matched_by: Option<MatchedBy>,
    /// The attached transcript arrived after the listening window.
    pub late: bool,
    pub error_message: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The rubric's verdict on its call; null until evaluated.
    pub success: Option<bool>,
    pub mode: RunMode,
    /// Its scenario is quarantined: reported, never gating.
    pub quarantined: bool,
    /// Why a simulated conversation ended.
    pub stop_reason: Option<StopReason>,
    /// LLM requests and tokens a simulated run spent.
    pub usage: Usage,
    /// A simulated conversation as it happens; empty once its call is stored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub live_messages: Vec<Message>,
}

/// What a scenario stores for its simulated callers, as one document.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub(crate) struct ScenarioSimulation {
    pub persona: Option<Persona>,
    pub first_message: Option<String>,
    pub tool_mocks: Vec<ToolMock>,
    pub unmatched_tool_result: Option<Value>,
    pub stop_rules: StopRules,
}

impl ScenarioSimulation {
    pub(crate) fn of(new: &NewScenario) -> String {
        serde_json::to_string(&Self {
            persona: new.persona.clone(),
            first_message: new.first_message.clone(),
            tool_mocks: new.tool_mocks.clone(),
            unmatched_tool_result: new.unmatched_tool_result.clone(),
            stop_rules: new.stop_rules,
        })
        .expect("a scenario's simulation serialises")
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub agent_id: Option<i64>,
    pub result_id: Option<i64>,
    pub cursor: Option<String>,
    pub limit: u32,
}

/// What `apply_metrics` did, by metric name.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApplySummary {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
}

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub project_id: i64,
    pub call_id: String,
    /// Including this one.
    pub attempts: i64,
    pub worker: String,
}

/// A claimed job with everything its evaluation reads, or why that could not be read (the
/// call was deleted, its row could not be decoded); the worker fails such a job with the reason.
#[derive(Debug, Clone)]
pub struct ClaimedEvaluation {
    pub job: Job,
    pub input: std::result::Result<EvaluationInput, String>,
}

/// How the queue stands.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub dead: i64,
}

/// A change to the judge settings; `None` keeps a field, `Some("")` clears it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct JudgeSettingsPatch {
    /// An http:// or https:// URL, e.g. https://api.openai.com/v1.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(?:$|https?://)"))]
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub api_key: Option<String>,
    /// Judge requests in flight at once for this project.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 256))]
    pub concurrency: Option<u32>,
}

/// A change to the simulator endpoint; `None` keeps a field, `Some("")` clears it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SimulatorSettingsPatch {
    /// An http:// or https:// URL, e.g. https://api.openai.com/v1.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(?:$|https?://)"))]
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub api_key: Option<String>,
    /// Simulated runs of this project in flight at once.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 64))]
    pub concurrency: Option<u32>,
    /// Caller and agent LLM tokens one run may spend.
    #[cfg_attr(feature = "openapi", schema(minimum = 1000, maximum = 10000000))]
    pub token_budget: Option<u64>,
    /// Text to speech and speech to text for voice runs.
    #[serde(default)]
    pub voice: Option<VoiceSettingsPatch>,
}

/// A change to the voice endpoints; `None` keeps a field, `Some("")` clears it (back to its
/// fallback).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VoiceSettingsPatch {
    /// An OpenAI-compatible base URL for `POST {base}/audio/speech` (default: the simulator's).
    #[cfg_attr(feature = "openapi", schema(pattern = "^(?:$|https?://)"))]
    pub tts_base_url: Option<String>,
    #[cfg_attr(feature = "openapi", schema(pattern = "^$|\\S"))]
    pub tts_model: Option<String>,
    /// The caller's voice when its persona names none (default `alloy`).
    #[cfg_attr(feature = "openapi", schema(pattern = "^$|\\S"))]
    pub voice: Option<String>,
    pub tts_api_key: Option<String>,
    /// An OpenAI-compatible base URL for `POST {base}/audio/transcriptions`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(?:$|https?://)"))]
    pub stt_base_url: Option<String>,
    #[cfg_attr(feature = "openapi", schema(pattern = "^$|\\S"))]
    pub stt_model: Option<String>,
    pub stt_api_key: Option<String>,
}

impl VoiceSettingsPatch {
    /// Each field as (set, value) in the column order of the migration.
    pub(crate) fn columns(&self) -> [(bool, Option<String>); 7] {
        use crate::codec::judge_field;
        [
            judge_field(&self.tts_base_url),
            judge_field(&self.tts_model),
            judge_field(&self.voice),
            judge_field(&self.tts_api_key),
            judge_field(&self.stt_base_url),
            judge_field(&self.stt_model),
            judge_field(&self.stt_api_key),
        ]
    }
}

/// The voice columns, in [`VoiceSettingsPatch::columns`] order.
pub(crate) const VOICE_COLUMNS: [&str; 7] = [
    "simulator_tts_base_url",
    "simulator_tts_model",
    "simulator_voice",
    "simulator_tts_api_key",
    "simulator_stt_base_url",
    "simulator_stt_model",
    "simulator_stt_api_key",
];

/// A new agent, or an agent's replacement.
#[derive(Debug, Clone)]
pub struct NewAgent {
    pub name: String,
    pub phone_number: Option<callgrade_core::PhoneNumber>,
    pub description: Option<String>,
    pub connector: Option<Connector>,
    /// The ids vendors know it by (a Vapi assistant, a Retell agent), unique in the project.
    pub external_ids: Vec<String>,
}

impl NewAgent {
    /// An agent with only a name.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            phone_number: None,
            description: None,
            connector: None,
            external_ids: Vec::new(),
        }
    }
}

/// That a vendor's signing secret is saved for a project, and since when; the secret itself
/// is never read back.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VendorSecretView {
    /// `vapi`, `retell` or `elevenlabs`.
    pub vendor: String,
    pub updated_at: DateTime<Utc>,
}

/// A simulated run claimed by an instance, with everything its conversation needs.
#[derive(Debug, Clone)]
pub struct ClaimedSimulation {
    pub project_id: i64,
    pub run: Run,
    pub scenario: Scenario,
    pub agent: Agent,
    /// The agent's connector, secrets included; `None` when it was removed after the run was
    /// created (the run then fails with that reason).
    pub connector: Option<Connector>,
    pub simulator: SimulatorSettings,
}

/// Where a simulated conversation stands, written as it goes.
#[derive(Debug, Clone, Default)]
pub struct SimulationProgress {
    pub messages: Vec<Message>,
    pub usage: Usage,
    pub stop_reason: Option<StopReason>,
}

/// How the rubric judged the evaluated calls of a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerdictCounts {
    pub passed: u64,
    pub failed: u64,
    /// Evaluated, but the rubric could check none of its rules.
    pub undecided: u64,
}

impl VerdictCounts {
    /// The share of decided calls that passed; none when no call was decided.
    pub fn pass_rate(&self) -> Option<f64> {
        let decided = self.passed + self.failed;
        (decided > 0).then(|| self.passed as f64 / decided as f64)
    }
}

/// Which calls to re-evaluate.
#[derive(Debug, Clone, Default)]
pub struct ReevaluateFilter {
    pub agent_id: Option<i64>,
    pub started_from_ms: Option<i64>,
    pub started_before_ms: Option<i64>,
}

/// How fetching a call's `recording_url` ended: its recording, or why there is none (a warning
/// the call keeps).
#[derive(Debug, Clone, PartialEq)]
pub enum FetchOutcome {
    Fetched(Box<StoredRecording>),
    Refused(callgrade_core::FieldError),
}

/// A call's recording: where its audio is and what its analysis found.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecording {
    pub call_id: String,
    pub project_id: i64,
    pub audio: callgrade_core::AnalysedRecording,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// An outbound webhook endpoint, without its secret (shown once, when created or rotated).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WebhookEndpoint {
    pub id: i64,
    pub project_id: i64,
    pub url: String,
    pub description: String,
    /// The event types it receives.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub events: Vec<&'static str>,
    pub enabled: bool,
    /// Also sends the signing secret in `X-CEKURA-SECRET`, for consumers written for Cekura.
    pub cekura_secret_header: bool,
    /// Why callgrade disabled it (every attempt failed for a day); cleared when re-enabled.
    pub disabled_reason: Option<String>,
    /// Until when the secret before the last rotation still signs, beside the new one.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// Since when every attempt has failed; null after a success.
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An event to write for the endpoints subscribed to it, in the transaction of what it reports.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: callgrade_core::outbound::EventType,
    /// The body as it is posted and signed: `{type, timestamp, data}`.
    pub payload: String,
    pub at: DateTime<Utc>,
}

impl NewEvent {
    /// The event `kind` at `at` with its `data`, as posted: `{type, timestamp, data}`.
    pub fn new(kind: callgrade_core::outbound::EventType, at: DateTime<Utc>, data: Value) -> Self {
        Self {
            kind,
            payload: callgrade_core::outbound::envelope(kind, at, data),
            at,
        }
    }
}

/// Where an outbound delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OutboundStatus {
    /// Waiting for its next attempt.
    Pending,
    /// An attempt is under way.
    Sending,
    Delivered,
    /// Given up: the retries ran out, or an answer that retrying cannot change.
    Failed,
}

impl OutboundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Sending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OutboundDelivery {
    pub id: i64,
    pub endpoint_id: i64,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `webhook-id`: the same on every attempt and replay, for the receiver to deduplicate.
    pub msg_id: String,
    pub status: OutboundStatus,
    /// Attempts made since it was created or last replayed.
    pub attempt_count: i64,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The receiver's last HTTP status.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One attempt of a delivery, as it was sent and answered.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OutboundAttempt {
    pub attempted_at: DateTime<Utc>,
    /// The request's headers, without `X-CEKURA-SECRET`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub request_headers: Value,
    pub status: Option<i64>,
    /// The start of the answer's body.
    pub response: Option<String>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

/// A delivery with the body it sends and every attempt.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OutboundDeliveryDetail {
    #[serde(flatten)]
    pub delivery: OutboundDelivery,
    /// The event as posted.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Value,
    pub attempts: Vec<OutboundAttempt>,
}

/// Which deliveries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct OutboundFilter {
    pub endpoint_id: Option<i64>,
    pub status: Option<OutboundStatus>,
    pub cursor: Option<String>,
    pub limit: u32,
}

/// A delivery whose attempt is due, with what the attempt needs.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub project_id: i64,
    pub endpoint_id: i64,
    /// Attempts made before this one.
    pub attempts: u32,
    pub url: String,
    /// The secrets that sign: the current one, and the previous one during an overlap.
    pub secrets: Vec<String>,
    pub cekura_secret_header: bool,
    /// Since when every attempt to the endpoint has failed.
    pub failing_since: Option<DateTime<Utc>>,
    pub msg_id: String,
    pub payload: String,
}

/// What an attempt did, and what follows for its delivery.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: i64,
    /// The worker that claimed the delivery (a delivery reclaimed meanwhile keeps its state).
    pub worker: String,
    pub attempted_at: DateTime<Utc>,
    pub request_headers: Value,
    pub status: Option<u16>,
    pub response: Option<String>,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub next: AttemptNext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptNext {
    Delivered,
    RetryAt(DateTime<Utc>),
    /// Given up; `disable` also disables the endpoint (it has failed for a day).
    Failed {
        disable: bool,
    },
}

/// A run (and its result) in a final status not announced yet.
#[derive(Debug, Clone)]
pub struct RunToNotify {
    pub project_id: i64,
    pub run_id: i64,
    pub result_id: i64,
    pub status: RunStatus,
    /// The status the run's result was last announced in.
    pub result_notified: Option<String>,
}

/// What announcing one run writes: its events, and the statuses now announced.
#[derive(Debug, Clone)]
pub struct Notice {
    pub project_id: i64,
    pub run_id: i64,
    pub run_status: RunStatus,
    /// The result's status when it finished with this run.
    pub result: Option<(i64, String)>,
    pub events: Vec<NewEvent>,
}

/// An alert rule with its state.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AlertRuleRow {
    pub id: i64,
    pub project_id: i64,
    /// The rule as written: `{name, kind, metric, agent_id, calls, cooldown_minutes,
    /// slack_webhook_url, enabled, …the kind's parameters}` (docs/alerts.md).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub rule: callgrade_core::alerts::AlertRule,
    /// Whether an alert of it is open.
    pub firing: bool,
    pub last_opened_at: Option<DateTime<Utc>>,
    pub last_checked_at: Option<DateTime<Utc>>,
    /// What the last check found.
    pub last_summary: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One alert a rule opened.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Alert {
    pub id: i64,
    pub rule_id: i64,
    pub rule_name: String,
    pub opened_at: DateTime<Utc>,
    /// Null while it fires.
    pub resolved_at: Option<DateTime<Utc>>,
    /// The figure that breached (the failing value, the breach count, the EWMA, the calls).
    pub value: Option<f64>,
    pub summary: String,
    /// The calls that caused it (our ids), newest first.
    pub call_ids: Vec<String>,
    /// Why Slack was not told, when it was not.
    pub slack_error: Option<String>,
}

/// What a check of a rule writes.
#[derive(Debug, Clone)]
pub enum AlertChange {
    /// An alert opens, with the events that announce it.
    Open {
        value: Option<f64>,
        summary: String,
        call_ids: Vec<String>,
        events: Vec<NewEvent>,
    },
    /// The open alert resolves.
    Resolve {
        summary: String,
        events: Vec<NewEvent>,
    },
    /// Nothing changes but what the check found.
    Checked { summary: String },
}
