//! The values of evaluation: stored metrics, what one metric concluded about one call, and
//! everything an evaluation reads. The evaluation crate computes them, the store keeps them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::{
    Agent, Message, MetricKind, MetricSpec, OutputType, RubricRule, RubricVerdict, Scenario,
};

/// A stored metric definition.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Metric {
    pub id: i64,
    pub project_id: i64,
    #[serde(flatten)]
    pub spec: MetricSpec,
    /// Bumped by every change; each evaluation keeps the version it used.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How one metric's evaluation of one call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EvaluationStatus {
    /// A value was produced.
    Ok,
    /// The data cannot support the metric (e.g. no message times); the explanation says why.
    NotComputable,
    /// Not run (e.g. no judge endpoint configured); the explanation says why.
    Skipped,
    /// The metric has no meaning for this kind of conversation (speech timing in a text
    /// conversation); the explanation says why.
    NotApplicable,
    /// The metric failed (a script error, malformed judge output).
    Error,
}

impl EvaluationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotComputable => "not_computable",
            Self::Skipped => "skipped",
            Self::NotApplicable => "not_applicable",
            Self::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(Self::Ok),
            "not_computable" => Some(Self::NotComputable),
            "skipped" => Some(Self::Skipped),
            "not_applicable" => Some(Self::NotApplicable),
            "error" => Some(Self::Error),
            _ => None,
        }
    }
}

/// One metric's result on one call.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Evaluation {
    pub metric_id: i64,
    pub metric_name: String,
    pub metric_version: i64,
    pub kind: MetricKind,
    pub output: OutputType,
    pub status: EvaluationStatus,
    /// A boolean, number or string as `output` says for builtins and judges; whatever JSON a
    /// script set. Null when none was produced.
    pub value: Option<Value>,
    /// The metric's own pass condition, where it has one.
    pub passed: Option<bool>,
    pub explanation: String,
    /// Statistics, and for judges the model, prompt hash, reasoning, token usage and time.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: Value,
    pub evaluated_at: DateTime<Utc>,
}

/// Everything one evaluation job writes, all at once.
#[derive(Debug, Clone)]
pub struct CallEvaluation {
    pub evaluations: Vec<Evaluation>,
    pub verdict: RubricVerdict,
}

impl CallEvaluation {
    /// Judge requests made (cached verdicts cost none) and the tokens they reported.
    pub fn judge_usage(&self) -> (u64, u64) {
        self.evaluations
            .iter()
            .filter(|e| e.kind == MetricKind::LlmJudge)
            .filter(|e| e.details.get("cached") != Some(&Value::Bool(true)))
            .filter(|e| e.details.get("model").is_some())
            .fold((0, 0), |(requests, tokens), e| {
                let used = e
                    .details
                    .pointer("/usage/total_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                (requests + 1, tokens + used)
            })
    }
}

/// Where a project's judge metrics send their prompts. Missing fields fall back to the server's
/// defaults. The key is never serialised.
#[derive(Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct JudgeSettings {
    pub base_url: Option<String>,
    pub model: Option<String>,
    #[serde(skip)]
    pub api_key: Option<String>,
    /// Whether a key is set (the key itself is never shown).
    pub api_key_set: bool,
    /// Judge requests in flight at once for this project.
    pub concurrency: u32,
}

impl std::fmt::Debug for JudgeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgeSettings")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// Everything needed to evaluate one call.
#[derive(Debug, Clone)]
pub struct EvaluationInput {
    pub call: CallForEvaluation,
    pub agent: Option<Agent>,
    /// The scenario of the run the call is attached to.
    pub scenario: Option<Scenario>,
    pub metrics: Vec<Metric>,
    pub rubric: Vec<RubricRule>,
    pub judge: JudgeSettings,
}

impl EvaluationInput {
    pub fn is_test_call(&self) -> bool {
        self.call.run_id.is_some()
    }
}

/// What evaluating a call reads of it: no earlier results, no payload as received.
#[derive(Debug, Clone)]
pub struct CallForEvaluation {
    /// Our id.
    pub call_id: String,
    pub agent_id: Option<i64>,
    /// The test run the call is attached to; `None` for a production call.
    pub run_id: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub from_phone_number: Option<String>,
    pub to_phone_number: Option<String>,
    pub ended_reason: String,
    pub messages: Vec<Message>,
    pub metadata: Value,
    pub channel: crate::Channel,
    /// The speech in the call's stereo recording, when it has one.
    pub audio: Option<crate::AudioTimeline>,
    /// The trace id its sender gave, linking it to spans.
    pub trace_id: Option<String>,
    /// Its turns' stages, from the spans with its `trace_id`, when there are any.
    pub trace: Option<crate::TraceBreakdown>,
}
