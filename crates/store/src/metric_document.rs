//! How a metric's definition is stored in `metrics.config`: tagged by kind, with the metric's
//! pass condition beside it, e.g. `{"kind":"builtin","key":"agent_latency","knobs":{…}}`. The API
//! shows the draft's shape instead (`MetricSpec::config`); migration 0007 rewrote older rows.

use callgrade_core::{BuiltinKey, Condition, MetricDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Result, StoreError};

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Stored {
    Builtin {
        key: BuiltinKey,
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        knobs: Map<String, Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pass: Option<Condition>,
    },
    Script {
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pass: Option<Condition>,
    },
    LlmJudge {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base_url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pass: Option<Condition>,
    },
}

/// The stored text of a definition and its pass condition.
pub(crate) fn document(definition: &MetricDefinition, pass: &Option<Condition>) -> String {
    let pass = pass.clone();
    let stored = match definition.clone() {
        MetricDefinition::Builtin { key, knobs, .. } => Stored::Builtin { key, knobs, pass },
        MetricDefinition::Script { source } => Stored::Script { source, pass },
        MetricDefinition::LlmJudge {
            template,
            model,
            base_url,
        } => Stored::LlmJudge {
            template,
            model,
            base_url,
            pass,
        },
    };
    serde_json::to_string(&stored).expect("plain data serialises")
}

/// A stored definition read back, its builtin settings parsed over the defaults once.
pub(crate) fn definition(text: &str) -> Result<(MetricDefinition, Option<Condition>)> {
    let corrupt = |e: String| StoreError::Corrupt(format!("metric definition {text:?}: {e}"));
    let stored: Stored = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    Ok(match stored {
        Stored::Builtin { key, knobs, pass } => {
            let definition = MetricDefinition::builtin(key, knobs).map_err(|e| {
                corrupt(
                    e.iter()
                        .map(|e| e.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
            (definition, pass)
        }
        Stored::Script { source, pass } => (MetricDefinition::Script { source }, pass),
        Stored::LlmJudge {
            template,
            model,
            base_url,
            pass,
        } => (
            MetricDefinition::LlmJudge {
                template,
                model,
                base_url,
            },
            pass,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgrade_core::Op;
    use serde_json::json;

    #[test]
    fn every_kind_round_trips() {
        let mut knobs = Map::new();
        knobs.insert("latency_statistic".into(), json!("p90"));
        let pass = Some(Condition {
            op: Op::Lte,
            value: json!(2.5),
        });
        for (given, pass) in [
            (
                MetricDefinition::builtin(BuiltinKey::AgentLatency, knobs).unwrap(),
                pass.clone(),
            ),
            (
                MetricDefinition::builtin(BuiltinKey::Turns, Map::new()).unwrap(),
                None,
            ),
            (
                MetricDefinition::Script {
                    source: "result = \"a\\u0000b\";".into(),
                },
                None,
            ),
            (
                MetricDefinition::LlmJudge {
                    template: Some("sentiment".into()),
                    model: None,
                    base_url: Some("http://127.0.0.1:1/v1".into()),
                },
                pass,
            ),
        ] {
            let text = document(&given, &pass);
            assert_eq!(definition(&text).unwrap(), (given, pass), "{text}");
        }
    }

    #[test]
    fn the_stored_form_is_tagged() {
        let d = MetricDefinition::builtin(BuiltinKey::SilenceDetected, Map::new()).unwrap();
        let pass = Some(Condition {
            op: Op::Eq,
            value: json!(false),
        });
        assert_eq!(
            document(&d, &pass),
            r#"{"kind":"builtin","key":"silence_detected","pass":{"op":"eq","value":false}}"#
        );
    }

    #[test]
    fn unknown_and_broken_documents_are_refused() {
        for text in [
            r#"{"builtin":"turns"}"#,
            r#"{"kind":"builtin","key":"nope"}"#,
            r#"{"kind":"builtin","key":"turns","knobs":{"min_overlap_seconds":"x"}}"#,
            r#"{"kind":"script"}"#,
        ] {
            assert!(
                matches!(definition(text), Err(StoreError::Corrupt(_))),
                "{text}"
            );
        }
    }
}
