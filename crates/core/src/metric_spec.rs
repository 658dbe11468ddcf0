//! What a metric is: its kind, output type, scope and configuration, and the rubric rules that
//! turn metric results into a pass/fail verdict. Pure definitions and validation.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use serde_json::Map;

use crate::{parse_name, BuiltinConfig, BuiltinKey, FieldError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Computed exactly from the transcript and its times.
    Builtin,
    /// Judged by a model through an OpenAI-compatible endpoint.
    LlmJudge,
    /// A sandboxed Rhai script.
    Script,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    /// true / false.
    Binary,
    /// Any number.
    Numeric,
    /// A number from 0 to 5.
    Score,
    /// One of `enum_values`.
    Enum,
    /// Free text (e.g. the end reason).
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AppliesTo {
    /// Only calls that matched no test run.
    Production,
    /// Only calls attached to a test run.
    Test,
    #[default]
    Both,
}

impl AppliesTo {
    pub fn includes(self, is_test_call: bool) -> bool {
        match self {
            Self::Production => !is_test_call,
            Self::Test => is_test_call,
            Self::Both => true,
        }
    }
}

macro_rules! str_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
    };
}
str_enum!(MetricKind { Builtin => "builtin", LlmJudge => "llm_judge", Script => "script" });
str_enum!(OutputType { Binary => "binary", Numeric => "numeric", Score => "score", Enum => "enum", Text => "text" });
str_enum!(AppliesTo { Production => "production", Test => "test", Both => "both" });

/// Metric definitions kept in a team's repository, applied as a whole.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsFile {
    #[serde(default)]
    pub metrics: Vec<MetricDraft>,
    /// Replaces the rubric when present.
    pub rubric: Option<Vec<RubricRule>>,
}

/// A metric as submitted by the API, the CLI or a TOML file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MetricDraft {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::name_schema))]
    pub name: String,
    pub kind: MetricKind,
    /// Required for judges and scripts; a builtin's defaults to its catalogue type.
    pub output: Option<OutputType>,
    /// The allowed values of an enum metric (required when `output` is `enum`).
    #[serde(default)]
    pub enum_values: Vec<String>,
    #[serde(default)]
    pub applies_to: AppliesTo,
    /// Only these agents; empty means every agent of the project.
    #[serde(default)]
    pub agent_ids: Vec<i64>,
    /// For judges: the prompt, with {{variables}}. For others: what the metric means.
    #[serde(default)]
    pub description: String,
    /// Builtin: `{"builtin": KEY, …thresholds}`. Judge: `{"template": NAME}` and/or
    /// `{"model", "base_url"}`. Script: `{"script": SOURCE}`. Any kind: `{"pass": {"op", "value"}}`.
    #[serde(default = "empty_object")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub config: Value,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn yes() -> bool {
    true
}

/// A validated metric: what it computes ([`MetricDefinition`], parsed once) and how its value
/// is read (output type, pass condition, scope). It serialises in the draft's shape (`kind` and
/// `config`), so the API shows a metric as it was submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    pub name: String,
    pub output: OutputType,
    pub enum_values: Vec<String>,
    pub applies_to: AppliesTo,
    pub agent_ids: Vec<i64>,
    /// What the metric means; for a judge without a template, its prompt.
    pub description: String,
    pub definition: MetricDefinition,
    /// The metric's own pass condition (`config.pass`).
    pub pass: Option<Condition>,
    pub enabled: bool,
}

/// What a metric computes.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricDefinition {
    Builtin {
        key: BuiltinKey,
        /// The settings as given, shown back as given.
        knobs: Map<String, Value>,
        /// Those settings over the defaults; `None` when none is given, so the one shared pass
        /// over the defaults serves the metric.
        config: Option<BuiltinConfig>,
    },
    /// A sandboxed Rhai script.
    Script { source: String },
    /// A model's verdict; the prompt is the template's, or else the metric's description.
    LlmJudge {
        template: Option<String>,
        /// The metric's own model and endpoint, over the project's and the server's.
        model: Option<String>,
        base_url: Option<String>,
    },
}

/// The config keys a judge understands besides `pass`.
const JUDGE_KEYS: [&str; 3] = ["template", "model", "base_url"];

impl MetricDefinition {
    /// A builtin with its settings: every key must be a known setting with a valid value.
    /// Problems have paths under `config`.
    pub fn builtin(key: BuiltinKey, knobs: Map<String, Value>) -> Result<Self, Vec<FieldError>> {
        let config = builtin_config(&knobs)?;
        Ok(Self::Builtin { key, knobs, config })
    }

    /// A judge's template, if it names one.
    pub fn template(&self) -> Option<&str> {
        match self {
            Self::LlmJudge { template, .. } => template.as_deref(),
            _ => None,
        }
    }

    pub fn kind(&self) -> MetricKind {
        match self {
            Self::Builtin { .. } => MetricKind::Builtin,
            Self::Script { .. } => MetricKind::Script,
            Self::LlmJudge { .. } => MetricKind::LlmJudge,
        }
    }
}

impl MetricSpec {
    pub fn kind(&self) -> MetricKind {
        self.definition.kind()
    }

    /// The definition in the draft's shape: `{"builtin": KEY, …settings}`, `{"script": SOURCE}`
    /// or `{"template", "model", "base_url"}`, each with `pass` when the metric has one.
    pub fn config(&self) -> Value {
        let mut config = Map::new();
        match &self.definition {
            MetricDefinition::Builtin { key, knobs, .. } => {
                config.extend(knobs.clone());
                config.insert("builtin".into(), Value::from(key.as_str()));
            }
            MetricDefinition::Script { source } => {
                config.insert("script".into(), Value::from(source.as_str()));
            }
            MetricDefinition::LlmJudge {
                template,
                model,
                base_url,
            } => {
                for (key, value) in JUDGE_KEYS.iter().zip([template, model, base_url]) {
                    if let Some(v) = value {
                        config.insert((*key).into(), Value::from(v.as_str()));
                    }
                }
            }
        }
        if let Some(pass) = &self.pass {
            config.insert(
                "pass".into(),
                serde_json::to_value(pass).unwrap_or_default(),
            );
        }
        Value::Object(config)
    }
}

/// What applying a metrics file does with one definition, given the project's live metrics.
pub enum ApplyStep<'a> {
    Unchanged,
    Update(&'a crate::Metric),
    Create,
}

/// Decides [`ApplyStep`] by name: same definition, another one, or none yet.
pub fn apply_step<'a>(existing: &'a [crate::Metric], spec: &MetricSpec) -> ApplyStep<'a> {
    match existing.iter().find(|m| m.spec.name == spec.name) {
        Some(m) if &m.spec == spec => ApplyStep::Unchanged,
        Some(m) => ApplyStep::Update(m),
        None => ApplyStep::Create,
    }
}

/// The catalogue's deterministic metrics, installed in every new project.
pub fn default_metrics() -> Vec<MetricSpec> {
    crate::BUILTIN_METRICS
        .iter()
        .map(|b| MetricSpec {
            name: b.key.as_str().to_owned(),
            output: b.output.into(),
            enum_values: Vec::new(),
            applies_to: AppliesTo::Both,
            agent_ids: Vec::new(),
            description: b.description.to_owned(),
            definition: MetricDefinition::Builtin {
                key: b.key,
                knobs: Map::new(),
                config: None,
            },
            // Silence is the one builtin whose `true` is bad news.
            pass: (b.key == BuiltinKey::SilenceDetected).then_some(Condition {
                op: Op::Eq,
                value: Value::Bool(false),
            }),
            enabled: true,
        })
        .collect()
}

impl Serialize for MetricSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("MetricSpec", 9)?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("kind", &self.kind())?;
        s.serialize_field("output", &self.output)?;
        s.serialize_field("enum_values", &self.enum_values)?;
        s.serialize_field("applies_to", &self.applies_to)?;
        s.serialize_field("agent_ids", &self.agent_ids)?;
        s.serialize_field("description", &self.description)?;
        s.serialize_field("config", &self.config())?;
        s.serialize_field("enabled", &self.enabled)?;
        s.end()
    }
}

/// The rules of a draft that depend on its kind, which its derived schema cannot state; the
/// OpenAPI document adds them to `MetricDraft`. Each is one that [`MetricDraft::validate`]
/// enforces; the rest (a builtin's settings, a template's name, a pass operator that fits the
/// output) are described in docs/metrics.md.
#[cfg(feature = "openapi")]
impl MetricDraft {
    pub fn cross_field_rules() -> Vec<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
        use utoipa::openapi::Ref;
        use MetricKind::{Builtin, LlmJudge, Script};
        let kind_is = |kinds: &[MetricKind]| {
            ObjectBuilder::new().property(
                "kind",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(kinds.iter().map(|k| k.as_str()))),
            )
        };
        let with = |object: ObjectBuilder, field: &str, schema: ObjectBuilder| {
            object.required(field).property(field, schema)
        };
        let config_with = |key: &str, schema: ObjectBuilder| {
            let config = with(ObjectBuilder::new().schema_type(Type::Object), key, schema);
            with(ObjectBuilder::new(), "config", config)
        };
        let text = || {
            let space = crate::names::char_class(char::is_whitespace);
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!("[^{space}]")))
        };
        let builtin_keys = crate::BUILTIN_METRICS.iter().map(|b| b.key.as_str());
        vec![
            // Judges and scripts name their output; a builtin's is its catalogue's.
            AnyOfBuilder::new()
                .item(kind_is(&[Builtin]))
                .item(
                    ObjectBuilder::new()
                        .required("output")
                        .property("output", Ref::from_schema_name("OutputType")),
                )
                .into(),
            // A builtin names its computation.
            AnyOfBuilder::new()
                .item(kind_is(&[LlmJudge, Script]))
                .item(config_with(
                    "builtin",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(builtin_keys)),
                ))
                .into(),
            // A script has its source.
            AnyOfBuilder::new()
                .item(kind_is(&[Builtin, LlmJudge]))
                .item(config_with("script", text()))
                .into(),
            // A judge has a prompt: its description, or its template's.
            AnyOfBuilder::new()
                .item(kind_is(&[Builtin, Script]))
                .item(with(ObjectBuilder::new(), "description", text()))
                .item(config_with(
                    "template",
                    ObjectBuilder::new().schema_type(Type::String),
                ))
                .into(),
        ]
    }
}

/// A metric is shown in its draft's shape, so its schema is the draft's with every field present.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for MetricSpec {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{schema::Schema, RefOr};
        let mut schema = <MetricDraft as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.required = object.properties.keys().cloned().collect();
            object.additional_properties = None;
            object.description =
                Some("A metric's definition, in the shape it was submitted.".into());
        }
        schema
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for MetricSpec {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <MetricDraft as utoipa::ToSchema>::schemas(schemas);
    }
}

/// Rubric and pass-threshold comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
    Neq,
    In,
}

impl Op {
    /// Whether `actual op expected` holds. Numbers compare numerically, everything else by
    /// equality; `in` needs an array.
    pub fn holds(self, actual: &Value, expected: &Value) -> bool {
        let num = |v: &Value| v.as_f64();
        match self {
            Op::Eq => equal(actual, expected),
            Op::Neq => !equal(actual, expected),
            Op::In => expected
                .as_array()
                .is_some_and(|items| items.iter().any(|e| equal(actual, e))),
            _ => match (num(actual), num(expected)) {
                (Some(a), Some(e)) => match self {
                    Op::Gt => a > e,
                    Op::Gte => a >= e,
                    Op::Lt => a < e,
                    Op::Lte => a <= e,
                    _ => unreachable!("handled above"),
                },
                _ => false,
            },
        }
    }

    /// The operators that make sense for an output type.
    pub fn allowed_for(self, output: OutputType) -> bool {
        match output {
            OutputType::Numeric | OutputType::Score => {
                matches!(self, Op::Gt | Op::Gte | Op::Lt | Op::Lte | Op::Eq)
            }
            OutputType::Binary => matches!(self, Op::Eq | Op::Neq),
            OutputType::Enum | OutputType::Text => matches!(self, Op::Eq | Op::Neq | Op::In),
        }
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A threshold: `value op expected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Condition {
    pub op: Op,
    /// Any JSON value; `in` takes an array.
    pub value: Value,
}

/// One rubric rule: the named metric's value must satisfy the condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RubricRule {
    pub metric: String,
    pub op: Op,
    /// Any JSON value; `in` takes an array.
    pub value: Value,
}

/// The outcome of one rule on one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleOutcome {
    pub metric: String,
    pub op: Op,
    /// The rule's value.
    pub expected: Value,
    /// The metric's value; null when it produced none.
    pub actual: Option<Value>,
    /// null when skipped: the metric produced no value.
    pub passed: Option<bool>,
}

/// The rubric's verdict: every rule with a value holds (AND); rules without a value are skipped.
/// When the rubric has rules and none of them had a value, it could not decide: `success` is
/// null and `undecided` says why. No rules at all asks for nothing, so nothing fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RubricVerdict {
    pub success: Option<bool>,
    /// Why the rubric could not decide (only when `success` is null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undecided: Option<String>,
    pub rules: Vec<RuleOutcome>,
}

/// Applies the rubric to a call's metric values (by metric name).
pub fn apply_rubric<'a>(
    rules: &[RubricRule],
    value_of: impl Fn(&str) -> Option<&'a Value>,
) -> RubricVerdict {
    let rules: Vec<RuleOutcome> = rules
        .iter()
        .map(|r| {
            let actual = value_of(&r.metric).cloned();
            RuleOutcome {
                metric: r.metric.clone(),
                op: r.op,
                expected: r.value.clone(),
                passed: actual.as_ref().map(|a| r.op.holds(a, &r.value)),
                actual,
            }
        })
        .collect();
    if !rules.is_empty() && rules.iter().all(|r| r.passed.is_none()) {
        let metrics: Vec<&str> = rules.iter().map(|r| r.metric.as_str()).collect();
        return RubricVerdict {
            success: None,
            undecided: Some(format!(
                "no rubric rule could be checked: {} produced no value for this call",
                metrics.join(", ")
            )),
            rules,
        };
    }
    RubricVerdict {
        success: Some(rules.iter().all(|r| r.passed != Some(false))),
        undecided: None,
        rules,
    }
}

/// Checks a rubric against the project's metrics (name → output type).
pub fn validate_rubric(
    rules: &[RubricRule],
    output_of: impl Fn(&str) -> Option<OutputType>,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        match output_of(&rule.metric) {
            None => errors.push(FieldError::new(
                format!("{path}.metric"),
                format!("no metric named {:?} in this project", rule.metric),
            )),
            Some(output) if !rule.op.allowed_for(output) => errors.push(FieldError::new(
                format!("{path}.op"),
                format!(
                    "{:?} does not apply to a {} metric",
                    rule.op,
                    output.as_str()
                ),
            )),
            Some(_) if rule.op == Op::In && !rule.value.is_array() => errors.push(FieldError::new(
                format!("{path}.value"),
                "\"in\" needs an array of values",
            )),
            Some(_) => {}
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

impl MetricDraft {
    /// Validates a draft. `builtin_output` tells the catalogue type of a builtin key, or `None`
    /// for an unknown key; `judge_template` the output type and values of a judge template.
    pub fn validate(
        self,
        builtin_output: impl Fn(&str) -> Option<OutputType>,
        judge_template: impl Fn(&str) -> Option<(OutputType, Vec<String>)>,
    ) -> Result<MetricSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = parse_name(&self.name)
            .map_err(|e| errors.push(FieldError::new("name", e)))
            .unwrap_or_default();
        let config = match self.config {
            Value::Object(_) => self.config,
            Value::Null => empty_object(),
            _ => {
                errors.push(FieldError::new("config", "must be an object"));
                empty_object()
            }
        };
        let text = |key: &str| config.get(key).and_then(Value::as_str);
        let mut output = self.output;
        let mut enum_values = self.enum_values;
        // Keys other than the definition's own and `pass`.
        let others = |own: &[&str]| -> Map<String, Value> {
            config
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.as_str() != "pass" && !own.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let unknown = |errors: &mut Vec<FieldError>, own: &[&str], what: &str| {
            for key in others(own).keys() {
                errors.push(FieldError::new(
                    format!("config.{key}"),
                    format!("is not a setting of {what}; its settings are {own:?} and \"pass\""),
                ));
            }
        };
        let definition = match self.kind {
            MetricKind::Builtin => match text("builtin") {
                None => {
                    errors.push(FieldError::new(
                        "config.builtin",
                        "names the builtin computation, e.g. \"agent_latency\" (see docs/metrics.md)",
                    ));
                    None
                }
                Some(key) => match (BuiltinKey::parse(key), builtin_output(key)) {
                    (Some(key), Some(catalogue)) => {
                        output.get_or_insert(catalogue);
                        MetricDefinition::builtin(key, others(&["builtin"]))
                            .map_err(|e| errors.extend(e))
                            .ok()
                    }
                    _ => {
                        errors.push(FieldError::new(
                            "config.builtin",
                            format!("{key:?} is not a builtin metric (see docs/metrics.md)"),
                        ));
                        None
                    }
                },
            },
            MetricKind::LlmJudge => {
                unknown(&mut errors, &JUDGE_KEYS, "a judge");
                let field = |errors: &mut Vec<FieldError>, key: &str| match config.get(key) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => {
                        errors.push(FieldError::new(format!("config.{key}"), "must be a string"));
                        None
                    }
                };
                let template = field(&mut errors, "template");
                if let Some(t) = &template {
                    match judge_template(t) {
                        None => errors.push(FieldError::new(
                            "config.template",
                            format!("{t:?} is not a judge template (see docs/metrics.md)"),
                        )),
                        Some((template_output, values)) => {
                            if output.is_none_or(|o| o == template_output) && enum_values.is_empty()
                            {
                                enum_values = values;
                            }
                            output.get_or_insert(template_output);
                        }
                    }
                } else if self.description.trim().is_empty() {
                    errors.push(FieldError::new(
                        "description",
                        "a judge needs a prompt (the description) or config.template",
                    ));
                }
                Some(MetricDefinition::LlmJudge {
                    template,
                    model: field(&mut errors, "model"),
                    base_url: field(&mut errors, "base_url"),
                })
            }
            MetricKind::Script => {
                unknown(&mut errors, &["script"], "a script");
                match text("script").filter(|s| !s.trim().is_empty()) {
                    None => {
                        errors.push(FieldError::new(
                            "config.script",
                            "a script metric needs its Rhai source",
                        ));
                        None
                    }
                    Some(source) => Some(MetricDefinition::Script {
                        source: source.to_owned(),
                    }),
                }
            }
        };
        let output = output.unwrap_or_else(|| {
            if self.kind != MetricKind::Builtin {
                errors.push(FieldError::new(
                    "output",
                    "is required: binary, numeric, score, enum or text",
                ));
            }
            OutputType::Numeric
        });
        if output == OutputType::Enum && enum_values.is_empty() {
            errors.push(FieldError::new(
                "enum_values",
                "an enum metric lists its values",
            ));
        }
        let pass = match config.get("pass") {
            None => None,
            Some(pass) => match serde_json::from_value::<Condition>(pass.clone()) {
                Ok(c) if c.op.allowed_for(output) => Some(c),
                Ok(c) => {
                    errors.push(FieldError::new(
                        "config.pass.op",
                        format!("{:?} does not apply to a {} metric", c.op, output.as_str()),
                    ));
                    None
                }
                Err(e) => {
                    errors.push(FieldError::new(
                        "config.pass",
                        format!("must be {{\"op\": \"lte\", \"value\": 2.0}}-like: {e}"),
                    ));
                    None
                }
            },
        };
        match definition {
            Some(definition) if errors.is_empty() => Ok(MetricSpec {
                name,
                output,
                enum_values,
                applies_to: self.applies_to,
                agent_ids: self.agent_ids,
                description: self.description,
                definition,
                pass,
                enabled: self.enabled,
            }),
            _ => Err(errors),
        }
    }
}

/// A builtin metric's settings over the defaults, `None` when none is given. Every key must be a
/// known setting and every value valid: a mistyped setting is an error, not a silent default.
fn builtin_config(knobs: &Map<String, Value>) -> Result<Option<BuiltinConfig>, Vec<FieldError>> {
    if knobs.is_empty() {
        return Ok(None);
    }
    let defaults = serde_json::to_value(BuiltinConfig::default()).unwrap_or_default();
    let mut errors = Vec::new();
    for key in knobs.keys() {
        if defaults.get(key).is_none() {
            let known: Vec<&String> = defaults
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            errors.push(FieldError::new(
                format!("config.{key}"),
                format!("is not a builtin metric setting; the settings are {known:?}"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    match serde_json::from_value::<BuiltinConfig>(Value::Object(knobs.clone())) {
        Ok(cfg) => match cfg.validate() {
            Ok(()) => Ok(Some(cfg)),
            Err(problems) => Err(problems
                .into_iter()
                .map(|p| FieldError::new("config", p))
                .collect()),
        },
        Err(e) => Err(vec![FieldError::new("config", e.to_string())]),
    }
}

impl MetricSpec {
    /// Whether the metric's own pass condition holds for a value; `None` when it has none.
    /// Binary metrics pass when true unless `config.pass` says otherwise.
    pub fn passed(&self, value: &Value) -> Option<bool> {
        match &self.pass {
            Some(c) => Some(c.op.holds(value, &c.value)),
            None if self.output == OutputType::Binary => value.as_bool(),
            None => None,
        }
    }

    /// Whether the metric evaluates a call of this agent, test or production.
    pub fn applies(&self, agent_id: Option<i64>, is_test_call: bool) -> bool {
        self.enabled
            && self.applies_to.includes(is_test_call)
            && (self.agent_ids.is_empty() || agent_id.is_some_and(|a| self.agent_ids.contains(&a)))
    }
}

impl From<crate::BuiltinOutput> for OutputType {
    fn from(o: crate::BuiltinOutput) -> Self {
        match o {
            crate::BuiltinOutput::Numeric => Self::Numeric,
            crate::BuiltinOutput::Binary => Self::Binary,
            crate::BuiltinOutput::Score => Self::Score,
            crate::BuiltinOutput::Text => Self::Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft(kind: MetricKind, config: Value) -> MetricDraft {
        MetricDraft {
            name: "m".into(),
            kind,
            output: None,
            enum_values: vec![],
            applies_to: AppliesTo::Both,
            agent_ids: vec![],
            description: String::new(),
            config,
            enabled: true,
        }
    }

    fn sentiment(name: &str) -> Option<(OutputType, Vec<String>)> {
        (name == "sentiment")
            .then(|| (OutputType::Enum, vec!["positive".into(), "negative".into()]))
    }

    fn builtins(key: &str) -> Option<OutputType> {
        (key == "agent_latency").then_some(OutputType::Numeric)
    }

    #[test]
    fn drafts() {
        let ok = draft(
            MetricKind::Builtin,
            json!({"builtin": "agent_latency", "pass": {"op": "lte", "value": 2}}),
        )
        .validate(builtins, |_| None)
        .unwrap();
        assert_eq!(ok.output, OutputType::Numeric);
        assert_eq!(ok.passed(&json!(1.5)), Some(true));
        assert_eq!(ok.passed(&json!(2.5)), Some(false));

        let paths = |d: MetricDraft| -> Vec<String> {
            d.validate(builtins, sentiment)
                .unwrap_err()
                .into_iter()
                .map(|e| e.path)
                .collect()
        };
        assert_eq!(
            paths(draft(MetricKind::Builtin, json!({"builtin": "nope"}))),
            ["config.builtin"]
        );
        assert_eq!(
            paths(draft(MetricKind::LlmJudge, json!({}))),
            ["description", "output"]
        );
        assert_eq!(
            paths(draft(MetricKind::Script, json!({"script": " "}))),
            ["config.script", "output"]
        );
        let mut e = draft(MetricKind::LlmJudge, json!({}));
        e.description = "Rate the call".into();
        e.output = Some(OutputType::Enum);
        assert_eq!(paths(e), ["enum_values"]);
        let t = draft(MetricKind::LlmJudge, json!({"template": "sentiment"}))
            .validate(builtins, sentiment)
            .unwrap();
        assert_eq!((t.output, t.enum_values.len()), (OutputType::Enum, 2));
        assert_eq!(
            paths(draft(
                MetricKind::Builtin,
                json!({"builtin": "agent_latency", "pass": {"op": "in", "value": [1]}})
            )),
            ["config.pass.op"]
        );
    }

    /// The draft is parsed once into its typed definition, and shown back in the draft's shape.
    #[test]
    fn definitions_are_typed_and_shown_as_given() {
        let latency = draft(
            MetricKind::Builtin,
            json!({"builtin": "agent_latency", "latency_statistic": "p90",
                   "pass": {"op": "lte", "value": 2}}),
        )
        .validate(builtins, |_| None)
        .unwrap();
        let MetricDefinition::Builtin { key, config, .. } = &latency.definition else {
            panic!("{:?}", latency.definition)
        };
        assert_eq!(*key, BuiltinKey::AgentLatency);
        assert_eq!(config.as_ref().unwrap().latency_statistic, "p90");
        assert_eq!(
            latency.config(),
            json!({"builtin": "agent_latency", "latency_statistic": "p90",
                   "pass": {"op": "lte", "value": 2}})
        );
        let judge = draft(
            MetricKind::LlmJudge,
            json!({"template": "sentiment", "model": "m"}),
        )
        .validate(builtins, sentiment)
        .unwrap();
        assert_eq!(judge.definition.template(), Some("sentiment"));
        assert_eq!(judge.kind(), MetricKind::LlmJudge);
        assert_eq!(
            judge.config(),
            json!({"template": "sentiment", "model": "m"})
        );
    }

    /// A judge's or a script's unknown setting is refused like a builtin's, not ignored.
    #[test]
    fn unknown_settings_are_refused_for_every_kind() {
        let problems = |kind, config| -> Vec<(String, String)> {
            let mut d = draft(kind, config);
            d.output = Some(OutputType::Binary);
            d.description = "Was it polite?".into();
            d.validate(builtins, sentiment)
                .unwrap_err()
                .into_iter()
                .map(|e| (e.path, e.message))
                .collect()
        };
        let judge = problems(MetricKind::LlmJudge, json!({"temperature": 0.2}));
        assert_eq!(judge[0].0, "config.temperature");
        assert!(judge[0].1.contains("template"), "{}", judge[0].1);
        let script = problems(
            MetricKind::Script,
            json!({"script": "result = true;", "lang": "x"}),
        );
        assert_eq!(script[0].0, "config.lang");
        let typed = problems(MetricKind::LlmJudge, json!({"model": 7}));
        assert_eq!(typed[0].0, "config.model");
    }

    #[test]
    fn rubric_skips_missing_values_and_ands_the_rest() {
        let rules = vec![
            RubricRule {
                metric: "latency".into(),
                op: Op::Lte,
                value: json!(2),
            },
            RubricRule {
                metric: "outcome".into(),
                op: Op::In,
                value: json!(["pass", "review"]),
            },
            RubricRule {
                metric: "judge".into(),
                op: Op::Eq,
                value: json!(true),
            },
        ];
        let values = [("latency", json!(1.2)), ("outcome", json!("pass"))];
        let look = |name: &str| values.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
        let verdict = apply_rubric(&rules, look);
        assert_eq!(verdict.success, Some(true));
        assert_eq!(verdict.rules[2].passed, None);

        let values = [("latency", json!(2.5)), ("outcome", json!("pass"))];
        let look = |name: &str| values.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
        assert_eq!(apply_rubric(&rules, look).success, Some(false));
        assert_eq!(
            apply_rubric(&[], |_| None).success,
            Some(true),
            "no rules: nothing fails"
        );

        // Every rule skipped: the rubric could not decide, and says which metrics had no value.
        let verdict = apply_rubric(&rules, |_| None);
        assert_eq!(verdict.success, None);
        let reason = verdict.undecided.unwrap();
        assert!(reason.contains("latency, outcome, judge"), "{reason}");
    }

    #[test]
    fn ops() {
        assert!(Op::Gt.holds(&json!(3), &json!(2.5)));
        assert!(
            !Op::Lt.holds(&json!("3"), &json!(4)),
            "strings never compare as numbers"
        );
        assert!(Op::Eq.holds(&json!(1), &json!(1.0)));
        assert!(Op::Neq.holds(&json!(true), &json!(false)));
        assert!(!Op::In.holds(&json!("x"), &json!("x")), "in needs an array");
    }

    #[test]
    fn scope() {
        let mut spec = draft(MetricKind::Builtin, json!({"builtin": "agent_latency"}))
            .validate(builtins, |_| None)
            .unwrap();
        spec.applies_to = AppliesTo::Test;
        spec.agent_ids = vec![3];
        assert!(spec.applies(Some(3), true));
        assert!(!spec.applies(Some(3), false));
        assert!(!spec.applies(Some(4), true));
        assert!(!spec.applies(None, true));
    }
}
