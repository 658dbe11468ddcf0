//! A change to a stored call after it arrived: its metadata (Cekura's PATCH of a call log: a
//! top-level merge) and its end reason, optionally evaluated again. Its transcript, times and
//! raw body stay as received: a different conversation is a different call.

use serde_json::{Map, Value};

use crate::payload::{kind, within};
use crate::FieldError;

/// What a PATCH changes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallPatch {
    /// Merged into the call's metadata key by key; a null removes the key.
    pub metadata: Map<String, Value>,
    /// Merged into `metadata.dynamic_variables` the same way (Cekura's separate field).
    pub dynamic_variables: Map<String, Value>,
    pub ended_reason: Option<String>,
    /// Queue the call's evaluation again, in the transaction that changes it.
    pub reevaluate: bool,
}

/// Fields Cekura's PATCH takes that callgrade keeps as received.
const KEPT_AS_RECEIVED: [&str; 6] = [
    "call_id",
    "transcript_json",
    "transcript_type",
    "timestamp",
    "duration",
    "customer_number",
];

impl CallPatch {
    /// callgrade's body: `{metadata?, ended_reason?, reevaluate?}`.
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let mut patch = Self::default();
        let mut errors = Vec::new();
        let Some(obj) = object(body, "$", &mut errors) else {
            return Err(errors);
        };
        for (key, value) in obj {
            match key.as_str() {
                // A null field is one left out (the document shows them as nullable).
                "metadata" | "ended_reason" | "reevaluate" if value.is_null() => {}
                "metadata" => patch.metadata = merge_object(value, key, &mut errors),
                "ended_reason" => patch.ended_reason = ended_reason(value, key, &mut errors),
                "reevaluate" => patch.reevaluate = flag(value, key, &mut errors),
                other => errors.push(FieldError::new(
                    other,
                    "unknown field; a call's metadata, ended_reason and reevaluate can be changed",
                )),
            }
        }
        finish(patch, errors)
    }

    /// Cekura's PATCH of a call log: `metadata`, `dynamic_variables`, `feedback` (kept in the
    /// metadata, as the observe endpoint keeps it), `call_ended_reason`, `reevaluate_metrics`.
    /// Fields Cekura also changes (the transcript, the times) are refused by name.
    pub fn parse_cekura(body: &Value) -> Result<Self, Vec<FieldError>> {
        let mut patch = Self::default();
        let mut errors = Vec::new();
        let Some(obj) = object(body, "$", &mut errors) else {
            return Err(errors);
        };
        for (key, value) in obj {
            match key.as_str() {
                // A null field is one left out, but for `feedback`, which a null clears.
                "metadata" | "dynamic_variables" | "call_ended_reason" | "reevaluate_metrics"
                    if value.is_null() => {}
                "metadata" => patch.metadata.extend(merge_object(value, key, &mut errors)),
                "dynamic_variables" => {
                    patch.dynamic_variables = merge_object(value, key, &mut errors)
                }
                "feedback" => match value {
                    Value::String(_) | Value::Null => {
                        patch.metadata.insert("feedback".into(), value.clone());
                    }
                    other => errors.push(FieldError::new(
                        key,
                        format!("must be a string, got {}", kind(other)),
                    )),
                },
                "call_ended_reason" => patch.ended_reason = ended_reason(value, key, &mut errors),
                "reevaluate_metrics" => patch.reevaluate = flag(value, key, &mut errors),
                k if KEPT_AS_RECEIVED.contains(&k) => errors.push(FieldError::new(
                    k,
                    "callgrade keeps a call's transcript and times as received; send the corrected call as a new call",
                )),
                "status" => errors.push(FieldError::new(
                    key,
                    "a call's status comes from its evaluation; send reevaluate_metrics to evaluate it again",
                )),
                other => errors.push(FieldError::new(
                    other,
                    "unknown field; metadata, dynamic_variables, feedback, call_ended_reason and reevaluate_metrics can be changed",
                )),
            }
        }
        finish(patch, errors)
    }

    /// Applies the patch to a stored call's metadata; whether anything changed. The merged
    /// metadata must stay within `max_bytes`, as at ingest.
    pub fn apply(&self, metadata: &mut Value, max_bytes: usize) -> Result<bool, FieldError> {
        if !metadata.is_object() {
            *metadata = Value::Object(Map::new());
        }
        let before = metadata.clone();
        let map = metadata.as_object_mut().expect("an object");
        merge(map, &self.metadata);
        if !self.dynamic_variables.is_empty() {
            let vars = map
                .entry("dynamic_variables")
                .or_insert_with(|| Value::Object(Map::new()));
            if !vars.is_object() {
                *vars = Value::Object(Map::new());
            }
            merge(
                vars.as_object_mut().expect("an object"),
                &self.dynamic_variables,
            );
        }
        within(metadata, max_bytes)
            .map_err(|why| FieldError::new("metadata", format!("merged, the metadata {why}")))?;
        Ok(*metadata != before)
    }
}

fn merge(into: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => drop(into.remove(key)),
            v => drop(into.insert(key.clone(), v.clone())),
        }
    }
}

fn object<'v>(
    v: &'v Value,
    at: &str,
    errors: &mut Vec<FieldError>,
) -> Option<&'v Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        other => {
            errors.push(FieldError::new(
                at,
                format!("must be a JSON object, got {}", kind(other)),
            ));
            None
        }
    }
}

fn merge_object(v: &Value, at: &str, errors: &mut Vec<FieldError>) -> Map<String, Value> {
    object(v, at, errors).cloned().unwrap_or_default()
}

fn ended_reason(v: &Value, at: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() && s.chars().count() <= 200 => {
            Some(s.trim().to_owned())
        }
        other => {
            errors.push(FieldError::new(
                at,
                format!(
                    "must be a non-empty string of at most 200 characters such as \"customer-hungup\", got {}",
                    kind(other)
                ),
            ));
            None
        }
    }
}

fn flag(v: &Value, at: &str, errors: &mut Vec<FieldError>) -> bool {
    match v {
        Value::Bool(b) => *b,
        other => {
            errors.push(FieldError::new(
                at,
                format!("must be true or false, got {}", kind(other)),
            ));
            false
        }
    }
}

/// A patch that changes nothing (`{}`, an empty metadata object) is no error, as an empty
/// JSON merge patch is none: the call is answered as it is.
fn finish(patch: CallPatch, errors: Vec<FieldError>) -> Result<CallPatch, Vec<FieldError>> {
    if errors.is_empty() {
        Ok(patch)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_merges_at_the_top_level_and_null_removes() {
        let patch = CallPatch::parse_cekura(&json!({
            "metadata": {"plan": "gold", "old": null},
            "dynamic_variables": {"name": "Ana"},
            "feedback": "great",
            "call_ended_reason": "customer-hungup",
            "reevaluate_metrics": true,
        }))
        .unwrap();
        let mut stored = json!({"old": 1, "keep": {"a": 1}, "dynamic_variables": {"city": "Oslo"}});
        assert!(patch.apply(&mut stored, 1024).unwrap());
        assert_eq!(
            stored,
            json!({"keep": {"a": 1}, "plan": "gold", "feedback": "great",
                   "dynamic_variables": {"city": "Oslo", "name": "Ana"}})
        );
        assert_eq!(patch.ended_reason.as_deref(), Some("customer-hungup"));
        assert!(patch.reevaluate);
        // The same patch again changes nothing.
        assert!(!patch.apply(&mut stored, 1024).unwrap());
        let err = patch.apply(&mut stored, 10).unwrap_err();
        assert_eq!(err.path, "metadata");
    }

    #[test]
    fn every_problem_is_named() {
        let errors = CallPatch::parse_cekura(&json!({
            "transcript_json": [], "metadata": 3, "reevaluate_metrics": "yes", "colour": 1
        }))
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "colour",
                "metadata",
                "reevaluate_metrics",
                "transcript_json"
            ]
        );
        assert_eq!(CallPatch::parse(&json!({})).unwrap(), CallPatch::default());
        assert!(CallPatch::parse(&json!([])).is_err());
        // Fields that change nothing are not an error; nulls are fields left out.
        assert!(CallPatch::parse(&json!({"metadata": {}})).is_ok());
        let patch = CallPatch::parse_cekura(&json!({"reevaluate_metrics": null, "feedback": null}))
            .unwrap();
        assert!(!patch.reevaluate);
        assert!(
            CallPatch::parse(&json!({"": null})).is_err(),
            "an unknown field, null or not"
        );
        assert_eq!(patch.metadata.get("feedback"), Some(&Value::Null));
        assert_eq!(
            CallPatch::parse(&json!({"ended_reason": ""})).unwrap_err()[0].path,
            "ended_reason"
        );
    }
}
