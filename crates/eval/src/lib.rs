//! Evaluation: every applicable metric of a project on one call, then the rubric.
//!
//! Builtin metrics are exact computations over message times (`callgrade_core`); judges go
//! through any OpenAI-compatible endpoint ([`judge`]); scripts run in a sandboxed Rhai engine
//! ([`script`]). [`Evaluator::evaluate`] ties them together and never fails because one metric
//! did: a metric's failure is that metric's result. Only a judge endpoint that stays unreachable
//! fails the whole evaluation, so the job is retried later.

pub mod judge;
mod render;
pub mod script;
pub mod templates;

use callgrade_core::{
    apply_rubric, compute_all_builtins, compute_one, BuiltinConfig, BuiltinKey, BuiltinOutcome,
    Channel, Conversation, MetricDefinition, MetricKind, MetricValue,
};
use callgrade_core::{
    CallEvaluation, Evaluation, EvaluationInput, EvaluationStatus, JudgeSettings, Metric,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

pub use judge::{JudgeCache, JudgeClient, JudgeDefaults, JudgeError};
pub use render::{render_prompt, transcript_text, Variables};
pub use script::{run_script, ScriptLimits, ScriptOutcome};

/// Why an evaluation could not finish; the job is retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// Evaluates calls with a judge client and its cache.
pub struct Evaluator {
    pub judge: JudgeClient,
    pub cache: std::sync::Arc<dyn JudgeCache>,
    pub script_limits: ScriptLimits,
}

/// What one metric produced before it is stamped with its metric.
struct Produced {
    status: EvaluationStatus,
    value: Option<Value>,
    explanation: String,
    details: Value,
}

impl Produced {
    fn from_builtin(outcome: BuiltinOutcome) -> Self {
        let mut details = outcome.details;
        if !outcome.warnings.is_empty() {
            if let Some(map) = details.as_object_mut() {
                map.insert("warnings".into(), json!(outcome.warnings));
            } else {
                details = json!({ "value": details, "warnings": outcome.warnings });
            }
        }
        match (outcome.value, outcome.not_computable) {
            (None, Some(reason)) if outcome.not_applicable => Self {
                status: EvaluationStatus::NotApplicable,
                value: None,
                explanation: outcome.explanation,
                details: json!({ "reason": reason }),
            },
            (Some(v), _) => Self {
                status: EvaluationStatus::Ok,
                value: Some(metric_value_json(v)),
                explanation: outcome.explanation,
                details,
            },
            (None, reason) => Self {
                status: EvaluationStatus::NotComputable,
                value: None,
                explanation: reason.unwrap_or(outcome.explanation),
                details,
            },
        }
    }

    fn error(message: String) -> Self {
        Self {
            status: EvaluationStatus::Error,
            value: None,
            explanation: message,
            details: json!({}),
        }
    }
}

fn metric_value_json(v: MetricValue) -> Value {
    match v {
        MetricValue::Bool(b) => Value::Bool(b),
        MetricValue::Number(n) => json!(n),
        MetricValue::Text(t) => Value::String(t),
    }
}

impl Evaluator {
    /// Evaluates every metric that applies to the call, then the rubric.
    pub async fn evaluate(
        &self,
        input: &EvaluationInput,
        now: DateTime<Utc>,
    ) -> Result<CallEvaluation, EvalError> {
        let call = &input.call;
        let conversation = Conversation {
            duration_seconds: call.duration_seconds,
            messages: &call.messages,
            ended_reason: &call.ended_reason,
            audio: call.audio.as_ref(),
            trace: call.trace.as_ref(),
        };
        let defaults = BuiltinConfig::default();
        let builtins: HashMap<BuiltinKey, BuiltinOutcome> =
            compute_all_builtins(&conversation, &defaults)
                .into_iter()
                .collect();
        let applicable: Vec<&Metric> = input
            .metrics
            .iter()
            .filter(|m| m.spec.applies(call.agent_id, input.is_test_call()))
            .collect();

        let mut produced: Vec<(&Metric, Produced)> = Vec::with_capacity(applicable.len());
        // Builtins first: scripts see their values.
        for metric in &applicable {
            let MetricDefinition::Builtin { key, config, .. } = &metric.spec.definition else {
                continue;
            };
            // Metrics with settings of their own are computed apart; the rest share the pass.
            let outcome = match config {
                _ if call.channel == Channel::Text && key.measures_speech() => {
                    BuiltinOutcome::not_applicable_to_text(*key)
                }
                Some(cfg) => compute_one(*key, &conversation, cfg),
                None => builtins[key].clone(),
            };
            produced.push((metric, Produced::from_builtin(outcome)));
        }
        let builtin_values: Map<String, Value> = builtins
            .iter()
            .filter_map(|(k, o)| {
                o.value
                    .clone()
                    .map(|v| (k.as_str().to_owned(), metric_value_json(v)))
            })
            .collect();

        for metric in &applicable {
            let MetricDefinition::Script { source } = &metric.spec.definition else {
                continue;
            };
            let data = script::script_data(input, &builtin_values);
            let p = match run_script(source, data, self.script_limits).await {
                Ok(out) => Produced {
                    status: if out.value.is_some() {
                        EvaluationStatus::Ok
                    } else {
                        EvaluationStatus::NotComputable
                    },
                    value: out.value,
                    explanation: out.explanation,
                    details: json!({ "operations": out.operations }),
                },
                Err(e) => Produced::error(format!("script error: {e}")),
            };
            produced.push((metric, p));
        }

        let judges: Vec<&Metric> = applicable
            .iter()
            .copied()
            .filter(|m| m.spec.kind() == MetricKind::LlmJudge)
            .collect();
        // The prompt variables (the transcript as text, among others) only judges read.
        if !judges.is_empty() {
            let variables = Variables::of(input, now);
            for metric in judges {
                let p = self.judge_metric(metric, &variables, &input.judge).await?;
                produced.push((metric, p));
            }
        }

        let evaluations: Vec<Evaluation> = produced
            .into_iter()
            .map(|(metric, p)| Evaluation {
                metric_id: metric.id,
                metric_name: metric.spec.name.clone(),
                metric_version: metric.version,
                kind: metric.spec.kind(),
                output: metric.spec.output,
                status: p.status,
                passed: p.value.as_ref().and_then(|v| metric.spec.passed(v)),
                value: p.value,
                explanation: p.explanation,
                details: p.details,
                evaluated_at: now,
            })
            .collect();
        let verdict = apply_rubric(&input.rubric, |name| {
            evaluations
                .iter()
                .find(|e| e.metric_name == name)
                .and_then(|e| e.value.as_ref())
        });
        Ok(CallEvaluation {
            evaluations,
            verdict,
        })
    }

    async fn judge_metric(
        &self,
        metric: &Metric,
        variables: &Variables,
        settings: &JudgeSettings,
    ) -> Result<Produced, EvalError> {
        let spec = &metric.spec;
        let template = spec.definition.template().and_then(templates::template);
        let prompt_source = if spec.description.trim().is_empty() {
            template.map(|t| t.prompt).unwrap_or_default()
        } else {
            spec.description.as_str()
        };
        let endpoint = match self.judge.endpoint(settings, &spec.definition) {
            Ok(e) => e,
            Err(reason) => {
                return Ok(Produced {
                    status: EvaluationStatus::Skipped,
                    value: None,
                    explanation: reason,
                    details: json!({}),
                })
            }
        };
        let (prompt, missing) = render_prompt(prompt_source, variables);
        let request = judge::JudgeRequest {
            system: templates::SYSTEM_PROMPT.to_owned(),
            prompt,
            schema: judge::verdict_schema(spec, template),
        };
        match self
            .judge
            .judge(
                &endpoint,
                &request,
                metric.project_id,
                settings.concurrency,
                self.cache.as_ref(),
            )
            .await
        {
            Ok(answer) => {
                let verdict = answer.verdict.get("verdict").cloned();
                let explanation = answer.verdict["explanation"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let checked = verdict.and_then(|v| judge::check_verdict(spec, v));
                let mut details = json!({
                    "model": answer.model,
                    "prompt_sha256": answer.prompt_hash,
                    "usage": answer.usage,
                    "elapsed_ms": answer.elapsed_ms,
                    "cached": answer.cached,
                    "response": answer.verdict,
                });
                if !missing.is_empty() {
                    details["missing_variables"] = json!(missing);
                }
                Ok(match checked {
                    Some(value) => Produced {
                        status: EvaluationStatus::Ok,
                        value: Some(value),
                        explanation,
                        details,
                    },
                    None => Produced {
                        status: EvaluationStatus::Error,
                        value: None,
                        explanation: format!(
                            "the judge's verdict does not fit a {} metric",
                            spec.output.as_str()
                        ),
                        details,
                    },
                })
            }
            Err(JudgeError::Invalid(message)) => Ok(Produced::error(message)),
            Err(JudgeError::Transient(message)) => Err(EvalError(format!(
                "judge endpoint unavailable for metric {:?}: {message}",
                spec.name
            ))),
        }
    }
}

/// Validates a metric draft against the builtin catalogue and the judge templates.
pub fn validate_metric(
    draft: callgrade_core::MetricDraft,
) -> Result<callgrade_core::MetricSpec, Vec<callgrade_core::FieldError>> {
    let spec = draft.validate(
        |key| callgrade_core::builtin_metric(key).map(|b| b.output.into()),
        |name| {
            templates::template(name).map(|t| {
                (
                    t.output,
                    t.enum_values.iter().map(|v| (*v).to_owned()).collect(),
                )
            })
        },
    )?;
    // A script that does not compile would fail on every call: refused when saved instead.
    if let callgrade_core::MetricDefinition::Script { source } = &spec.definition {
        script::compile_check(source)
            .map_err(|e| vec![callgrade_core::FieldError::new("config.script", e)])?;
    }
    Ok(spec)
}

/// Evaluates one metric on one call, outside the queue: "try this metric", `metrics test`.
impl Evaluator {
    /// Runs an unsaved metric definition of the call's project on the call; stores nothing.
    pub async fn try_metric(
        &self,
        input: &EvaluationInput,
        project_id: i64,
        spec: callgrade_core::MetricSpec,
        now: DateTime<Utc>,
    ) -> Result<Evaluation, EvalError> {
        let metric = Metric {
            id: 0,
            project_id,
            spec,
            version: 0,
            created_at: now,
            updated_at: now,
        };
        let mut one = input.clone();
        one.metrics = vec![metric];
        one.rubric = Vec::new();
        // Scope filters are for the queue; a user trying a metric wants its answer.
        one.metrics[0].spec.applies_to = callgrade_core::AppliesTo::Both;
        one.metrics[0].spec.agent_ids.clear();
        one.metrics[0].spec.enabled = true;
        let mut outcome = self.evaluate(&one, now).await?;
        outcome
            .evaluations
            .pop()
            .ok_or_else(|| EvalError("the metric produced no result".into()))
    }
}
