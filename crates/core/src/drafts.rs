//! Inputs that create test scenarios and test results, as the REST API and the CLI receive
//! them, validated into domain values with every problem's path.

use serde::Deserialize;

use crate::{parse_name, Direction, FieldError, PhoneNumber};

/// A scenario as submitted.
#[derive(Debug, Clone, Deserialize)]
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
    /// `inbound` (the tester calls the agent) or `outbound` (the agent calls the tester).
    #[cfg_attr(feature = "openapi", schema(value_type = Direction))]
    pub direction: String,
    /// `+` then digits, at most 15 characters.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<PhoneNumber>))]
    pub tester_phone_number: Option<String>,
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
        match (name, direction) {
            (Some(name), Some(direction)) if errors.is_empty() => Ok(NewScenario {
                agent_id: self.agent_id,
                name,
                instructions: self.instructions,
                expected_outcome_prompt: self.expected_outcome_prompt,
                tags,
                direction,
                tester_phone_number,
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
        let name = match self.name.as_deref().map(parse_name).transpose() {
            Ok(n) => n,
            Err(e) => {
                errors.push(FieldError::new("name", e));
                None
            }
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
        }
    }

    #[test]
    fn scenario_validation() {
        let ok = scenario().validate().unwrap();
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
            ["name", "direction", "tester_phone_number", "tags[0]"]
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
        };
        let paths: Vec<String> = draft
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(paths, ["scenario_ids", "frequency"]);
    }
}
