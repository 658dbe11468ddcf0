//! The pure domain of callgrade: no I/O, no HTTP, no SQL.
//!
//! The webhook body is parsed into typed, normalised values ([`Batch`], [`NewCall`],
//! [`Message`]) while collecting *every* problem with its JSON path ([`FieldError`]), so a
//! sender learns everything that is wrong with a request at once.

pub mod access;
mod agent;
pub mod alerts;
mod audio;
mod call_patch;
mod conversation;
mod drafts;
mod error;
mod evaluation;
mod formats;
pub mod gate;
mod ingest_checks;
mod metric_spec;
mod names;
pub mod outbound;
mod payload;
mod phone;
pub mod privacy;
pub mod redact;
mod rejection;
mod run_lifecycle;
mod runs;
mod simulation;
mod summary;
mod time;
mod traces;

pub use agent::{Agent, Scenario};
pub use audio::{AnalysedRecording, AudioTimeline, Detector, Span};
pub use call_patch::CallPatch;
pub use conversation::{
    builtin_metric, compute_all_builtins, compute_builtin, compute_one, evidence, BuiltinConfig,
    BuiltinKey, BuiltinMetric, BuiltinOutcome, BuiltinOutput, Conversation, Evidence, Interruption,
    Latency, MetricValue, ToolCall, BUILTIN_METRICS,
};
pub use drafts::{dedup_scenarios, NewScenario, NewTestResult, ResultDraft, ScenarioDraft};
pub use error::FieldError;
pub use evaluation::{
    CallEvaluation, CallForEvaluation, Evaluation, EvaluationInput, EvaluationStatus,
    JudgeSettings, Metric,
};
pub use formats::{
    parse_observe, parse_vendor, signature, AgentRef, Format, TranscriptType, Vendor, VendorBody,
    VendorCall,
};
pub use gate::{
    fisher_exact_one_sided, gate, tally, wilson_interval, Change, GateOptions, GateReport,
    GateVerdict, Interval, ResultTally, RunOutcome, RunVerdict, ScenarioComparison, Tally,
    DEFAULT_ALPHA,
};
pub use ingest_checks::{check_named_run, content_conflict, unknown_agent};
pub use metric_spec::{
    apply_rubric, apply_step, default_metrics, validate_rubric, AppliesTo, ApplyStep, Condition,
    MetricDefinition, MetricDraft, MetricKind, MetricSpec, MetricsFile, Op, OutputType, RubricRule,
    RubricVerdict, RuleOutcome,
};
#[cfg(feature = "openapi")]
pub use names::name_schema;
pub use names::{parse_name, parse_project_name, NAME_MAX_CHARS};
pub use payload::{
    json_len, json_values, parse_json, shown_url, validate_batch, validate_batch_owned, Batch,
    Channel, JsonSyntaxError, Limits, Message, NewCall, RecordingRequest, Role, CALL_ID_MAX_CHARS,
    RECORDING_URL_MAX_CHARS, TRACE_ID_MAX_CHARS,
};
#[cfg(feature = "openapi")]
pub use payload::{WebhookBody, WebhookCall, WebhookMessage};
pub use phone::PhoneNumber;
pub use rejection::{Answer, Rejection, RejectionKind};
pub use run_lifecycle::{lifecycle_table, Field, Finish, Refusal, RunChange, RunEvent, Transition};
pub use runs::{
    check_attach, listen_until, match_by_phone, match_by_run_id, timeout_reason, times_fit,
    AttachCall, AttachRefusal, AttachRun, CallFacts, Decision, Direction, MatchOutcome, MatchedBy,
    RunFacts, RunMode, RunStatus, CLOCK_SKEW, REPORTED_TIME_TOLERANCE,
};
#[cfg(feature = "openapi")]
pub use simulation::connector_schema;
pub use simulation::{
    answer_tool_call, caller_system_prompt, BargeIn, Connector, ConnectorView, HttpTurn,
    MediaStream, OpenaiChat, Persona, SimulatorSettings, StopReason, StopRules, ToolMock, Trait,
    Usage, VoiceSettings, VoiceTraits, REDACTED,
};
pub use summary::{histogram, percentile, summarize, MetricSummary, SummaryEntry};
#[cfg(feature = "openapi")]
pub use time::Rfc3339;
pub use time::{parse_datetime, MessageTimes};
pub use traces::{
    breakdown, normalise_trace_id, read_traces, OtlpEncoding, ReadTraces, SpanEvent, SpanRole,
    SpanStatus, TraceBreakdown, TraceLimits, TraceSpan, TurnMeasure, TurnTiming,
};
