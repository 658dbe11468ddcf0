//! Inputs that create test scenarios and test results, as the REST API and the CLI receive
//! them, validated into domain values with every problem's path.

use serde::{Deserialize, Serialize};

use crate::simulation::check_tool_mocks;
use crate::{
    parse_name, Direction, FieldError, Persona, PhoneNumber, RunMode, StopRules, ToolMock,
};

/// A scenario as submitted (and as `scenario from-call` drafts it, for a TOML file).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScenarioDraft {
    pub agent_id: i64,
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::name_schema))]
    pub name: String,
    /// What the simulated caller does.
    #[serde(default)]
    pub instructions: String,
    /// What a successful call achieves.
    #[serde(default)]
    pub expected_outcome_prompt: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = tags_schema))]
    pub tags: Vec<String>,
    /// `inbound` (the tester calls the agent, the default) or `outbound` (the agent calls the
    /// tester).
    #[serde(default = "inbound")]
    #[cfg_attr(feature = "openapi", schema(value_type = Direction))]
    pub direction: String,
    /// `+` then digits, at most 15 characters.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<PhoneNumber>))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tester_phone_number: Option<String>,
    /// Who the simulated caller is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<Persona>,
    /// What the simulated caller says first (else the caller's LLM opens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_message: Option<String>,
    /// What the agent's tools answer: the first mock whose `name` matches and whose `when`
    /// equals the call's arguments on every key it names.
    #[serde(default)]
    pub tool_mocks: Vec<ToolMock>,
    /// What a tool call no mock matches answers (default: an error object naming the tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub unmatched_tool_result: Option<serde_json::Value>,
    /// Caller and agent turns together before the conversation is stopped (default 30).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 200))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// Seconds before the conversation is stopped (default 600).
    #[cfg_attr(feature = "openapi", schema(minimum = 5, maximum = 3600))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<u32>,
    /// Runs and is reported, but does not gate a result.
    #[serde(default)]
    pub quarantined: bool,
}

fn inbound() -> String {
    Direction::Inbound.as_str().into()
}

/// A validated scenario, ready to store.
#[derive(Debug, Clone)]
pub struct NewScenario {
    pub agent_id: i64,
    pub name: String,
    pub instructions: String,
    pub expected_outcome_prompt: String,
    pub tags: Vec<String>,
    pub direction: Direction,
    pub tester_phone_number: Option<PhoneNumber>,
    pub persona: Option<Persona>,
    pub first_message: Option<String>,
    pub tool_mocks: Vec<ToolMock>,
    pub unmatched_tool_result: Option<serde_json::Value>,
    pub stop_rules: StopRules,
    pub quarantined: bool,
}

/// Tags are names; a repeated one counts once.
#[cfg(feature = "openapi")]
fn tags_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::Array::new(crate::name_schema())
}

#[cfg(feature = "openapi")]
fn optional_name_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    let mut schema = crate::name_schema();
    schema.schema_type = SchemaType::from_iter([Type::String, Type::Null]);
    schema
}

fn parse_tags(tags: &[String], path: &str, errors: &mut Vec<FieldError>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, tag) in tags.iter().enumerate() {
        match parse_name(tag) {
            Ok(t) if !out.contains(&t) => out.push(t),
            Ok(_) => {}
            Err(e) => errors.push(FieldError::new(format!("{path}[{i}]"), e)),
        }
    }
    out
}

impl ScenarioDraft {
    pub fn validate(self) -> Result<NewScenario, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = parse_name(&self.name)
            .map_err(|e| errors.push(FieldError::new("name", e)))
            .ok();
        let direction = Direction::parse(&self.direction).or_else(|| {
            errors.push(FieldError::new(
                "direction",
                format!(
                    "must be \"inbound\" (the tester calls the agent) or \"outbound\" (the agent calls the tester), got {:?}",
                    self.direction
                ),
            ));
            None
        });
        let tester_phone_number = match self.tester_phone_number.as_deref() {
            None => None,
            Some(p) => PhoneNumber::parse(p)
                .map_err(|e| errors.push(FieldError::new("tester_phone_number", e)))
                .ok(),
        };
        let tags = parse_tags(&self.tags, "tags", &mut errors);
        if let Some(p) = &self.persona {
            if let Err(e) = parse_name(&p.name) {
                errors.push(FieldError::new("persona.name", e));
            }
            if p.language.trim().is_empty() {
                errors.push(FieldError::new("persona.language", "must not be empty"));
            }
            if let Some(v) = &p.voice {
                v.check("persona.voice", &mut errors);
            }
        }
        check_tool_mocks(&self.tool_mocks, "tool_mocks", &mut errors);
        let defaults = StopRules::default();
        let mut limit = |path: &str, value: Option<u32>, range: std::ops::RangeInclusive<u32>| {
            let v = value.unwrap_or(0);
            if value.is_some() && !range.contains(&v) {
                errors.push(FieldError::new(
                    path,
                    format!(
                        "must be between {} and {} (got {v})",
                        range.start(),
                        range.end()
                    ),
                ));
            }
        };
        limit("max_turns", self.max_turns, StopRules::TURNS);
        limit("max_seconds", self.max_seconds, StopRules::SECONDS);
        let first_message = self.first_message.filter(|m| !m.trim().is_empty());
        match (name, direction) {
            (Some(name), Some(direction)) if errors.is_empty() => Ok(NewScenario {
                agent_id: self.agent_id,
                name,
                instructions: self.instructions,
                expected_outcome_prompt: self.expected_outcome_prompt,
                tags,
                direction,
                tester_phone_number,
                persona: self.persona,
                first_message,
                tool_mocks: self.tool_mocks,
                unmatched_tool_result: self.unmatched_tool_result,
                stop_rules: StopRules {
                    max_turns: self.max_turns.unwrap_or(defaults.max_turns),
                    max_seconds: self.max_seconds.unwrap_or(defaults.max_seconds),
                },
                quarantined: self.quarantined,
            }),
            _ => Err(errors),
        }
    }
}

/// A test result (a batch of runs) as submitted.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResultDraft {
    pub agent_id: i64,
    /// Scenarios to run, by id.
    #[serde(default)]
    pub scenario_ids: Vec<i64>,
    /// Also run every scenario of the agent that has any of these tags.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = tags_schema))]
    pub tags: Vec<String>,
    /// Runs per scenario (default 1).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub frequency: Option<u32>,
    #[cfg_attr(feature = "openapi", schema(schema_with = optional_name_schema))]
    pub name: Option<String>,
    /// `simulate` (callgrade plays the caller through the agent's connector) or `external`
    /// (something else places the calls). Default: `simulate` when the agent has a connector.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<RunMode>))]
    pub mode: Option<String>,
    /// A label to compare against later (`--baseline-label main`), e.g. the branch name.
    #[cfg_attr(feature = "openapi", schema(schema_with = optional_name_schema))]
    pub label: Option<String>,
}

/// What a draft's derived schema cannot state: it names a scenario id or a tag to run. The
/// OpenAPI document adds it to `ResultDraft`.
#[cfg(feature = "openapi")]
impl ResultDraft {
    pub fn cross_field_rules() -> Vec<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder};
        let non_empty = |field: &str| {
            ObjectBuilder::new()
                .required(field)
                .property(field, ArrayBuilder::new().min_items(Some(1)))
        };
        vec![AnyOfBuilder::new()
            .item(non_empty("scenario_ids"))
            .item(non_empty("tags"))
            .into()]
    }
}

/// A validated test result, ready to create.
#[derive(Debug, Clone)]
pub struct NewTestResult {
    pub agent_id: i64,
    pub scenario_ids: Vec<i64>,
    pub tags: Vec<String>,
    pub frequency: u32,
    pub name: Option<String>,
    /// `None`: decided by whether the agent has a connector.
    pub mode: Option<RunMode>,
    pub label: Option<String>,
}

impl NewTestResult {
    /// Who places the calls: as asked, else `simulate` when the agent has a connector. A
    /// simulation needs one.
    pub fn mode_for(&self, agent_has_connector: bool) -> Result<RunMode, String> {
        match self.mode {
            Some(RunMode::Simulate) if !agent_has_connector => Err(format!(
                "mode: agent {} has no connector, so callgrade cannot call it: set one (PATCH /api/v1/agents/{}) or use mode \"external\"",
                self.agent_id, self.agent_id
            )),
            Some(mode) => Ok(mode),
            None if agent_has_connector => Ok(RunMode::Simulate),
            None => Ok(RunMode::External),
        }
    }
}

impl ResultDraft {
    pub const MAX_FREQUENCY: u32 = 100;

    pub fn validate(self) -> Result<NewTestResult, Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.scenario_ids.is_empty() && self.tags.is_empty() {
            errors.push(FieldError::new(
                "scenario_ids",
                "name at least one scenario id or tag to run",
            ));
        }
        let frequency = self.frequency.unwrap_or(1);
        if !(1..=Self::MAX_FREQUENCY).contains(&frequency) {
            errors.push(FieldError::new(
                "frequency",
                format!(
                    "must be between 1 and {} (got {frequency})",
                    Self::MAX_FREQUENCY
                ),
            ));
        }
        let tags = parse_tags(&self.tags, "tags", &mut errors);
        let mut optional_name =
            |path: &str, value: Option<&str>| match value.map(parse_name).transpose() {
                Ok(n) => n,
                Err(e) => {
                    errors.push(FieldError::new(path, e));
                    None
                }
            };
        let name = optional_name("name", self.name.as_deref());
        let label = optional_name("label", self.label.as_deref());
        let mode = match self.mode.as_deref() {
            None => None,
            Some(m) => RunMode::parse(m).or_else(|| {
                errors.push(FieldError::new(
                    "mode",
                    format!("must be \"simulate\" or \"external\" (got {m:?})"),
                ));
                None
            }),
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewTestResult {
            agent_id: self.agent_id,
            scenario_ids: self.scenario_ids,
            tags,
            frequency,
            name,
            mode,
            label,
        })
    }
}

/// Keeps the scenarios of a result in the order named, each once (a scenario named by id and
/// by tag runs once per frequency).
pub fn dedup_scenarios<T>(scenarios: &mut Vec<(i64, T, Option<String>)>) {
    let mut seen = std::collections::HashSet::new();
    scenarios.retain(|(id, _, _)| seen.insert(*id));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> ScenarioDraft {
        ScenarioDraft {
            agent_id: 1,
            name: "refund".into(),
            instructions: String::new(),
            expected_outcome_prompt: String::new(),
            tags: vec!["billing".into(), "billing".into()],
            direction: "inbound".into(),
            tester_phone_number: Some("+14155551234".into()),
            persona: None,
            first_message: None,
            tool_mocks: vec![],
            unmatched_tool_result: None,
            max_turns: None,
            max_seconds: Some(1),
            quarantined: false,
        }
    }

    #[test]
    fn scenario_validation() {
        let ok = ScenarioDraft {
            max_seconds: None,
            ..scenario()
        }
        .validate()
        .unwrap();
        assert_eq!(ok.stop_rules, StopRules::default());
        assert_eq!(ok.tags, ["billing"]);
        let bad = ScenarioDraft {
            name: " ".into(),
            direction: "sideways".into(),
            tester_phone_number: Some("555".into()),
            tags: vec!["".into()],
            ..scenario()
        };
        let paths: Vec<String> = bad
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "name",
                "direction",
                "tester_phone_number",
                "tags[0]",
                "max_seconds"
            ]
        );
    }

    #[test]
    fn result_validation() {
        let draft = ResultDraft {
            agent_id: 1,
            scenario_ids: vec![],
            tags: vec![],
            frequency: Some(0),
            name: None,
            mode: Some("live".into()),
            label: None,
        };
        let paths: Vec<String> = draft
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(paths, ["scenario_ids", "frequency", "mode"]);
    }
}
