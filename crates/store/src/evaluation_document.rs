//! A call's evaluations as stored: one JSON array in `call_evaluations.evaluations`, written
//! and replaced as a whole. Its form is the store's own, not the API's: times are integer
//! milliseconds as in every other column, and empty fields are left out. Summaries read
//! `metric_id`, `metric_name`, `output`, `value` and `passed` out of it in SQL, where a field
//! left out reads as null.

use std::borrow::Cow;

use callgrade_core::{MetricKind, OutputType};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec::{from_json, time, to_json};
use crate::model::{Evaluation, EvaluationStatus};
use crate::Result;

#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    metric_id: i64,
    metric_name: Cow<'a, str>,
    metric_version: i64,
    kind: MetricKind,
    output: OutputType,
    status: EvaluationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Cow<'a, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    passed: Option<bool>,
    #[serde(default, skip_serializing_if = "str::is_empty")]
    explanation: Cow<'a, str>,
    #[serde(default = "empty_object", skip_serializing_if = "is_empty_object")]
    details: Cow<'a, Value>,
    evaluated_at: i64,
}

fn empty_object() -> Cow<'static, Value> {
    Cow::Owned(Value::Object(Default::default()))
}

fn is_empty_object(value: &Value) -> bool {
    value.as_object().is_some_and(|o| o.is_empty())
}

/// The document for a call's evaluations.
pub(crate) fn document(evaluations: &[Evaluation]) -> String {
    let stored: Vec<Stored> = evaluations
        .iter()
        .map(|e| Stored {
            metric_id: e.metric_id,
            metric_name: Cow::Borrowed(&e.metric_name),
            metric_version: e.metric_version,
            kind: e.kind,
            output: e.output,
            status: e.status,
            value: e.value.as_ref().map(Cow::Borrowed),
            passed: e.passed,
            explanation: Cow::Borrowed(&e.explanation),
            details: Cow::Borrowed(&e.details),
            evaluated_at: e.evaluated_at.timestamp_millis(),
        })
        .collect();
    to_json(&stored)
}

/// A call's evaluations from their document, by metric id.
pub(crate) fn evaluations(document: &str) -> Result<Vec<Evaluation>> {
    let stored: Vec<Stored> = from_json(document)?;
    let mut evaluations = stored
        .into_iter()
        .map(|s| {
            Ok(Evaluation {
                metric_id: s.metric_id,
                metric_name: s.metric_name.into_owned(),
                metric_version: s.metric_version,
                kind: s.kind,
                output: s.output,
                status: s.status,
                value: s.value.map(Cow::into_owned),
                passed: s.passed,
                explanation: s.explanation.into_owned(),
                details: s.details.into_owned(),
                evaluated_at: time(s.evaluated_at)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    evaluations.sort_by_key(|e| e.metric_id);
    Ok(evaluations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use serde_json::json;

    fn evaluation(id: i64, value: Option<Value>, details: Value) -> Evaluation {
        Evaluation {
            metric_id: id,
            metric_name: format!("m{id}"),
            metric_version: 2,
            kind: MetricKind::Builtin,
            output: OutputType::Numeric,
            status: EvaluationStatus::Ok,
            value,
            passed: None,
            explanation: String::new(),
            details,
            evaluated_at: DateTime::from_timestamp_nanos(1_760_520_002_844_123_456),
        }
    }

    #[test]
    fn round_trips_to_the_millisecond_and_leaves_out_empty_fields() {
        let mut judged = evaluation(1, Some(json!(true)), json!({"model": "m"}));
        judged.passed = Some(false);
        judged.explanation = "said \"no\"\n\u{0}".into();
        let written = [evaluation(3, None, json!({})), judged];

        let text = document(&written);
        let stored: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            stored[0],
            json!({"metric_id": 3, "metric_name": "m3", "metric_version": 2, "kind": "builtin",
                   "output": "numeric", "status": "ok", "evaluated_at": 1_760_520_002_844_i64})
        );

        let read = evaluations(&text).unwrap();
        assert_eq!(read.iter().map(|e| e.metric_id).collect::<Vec<_>>(), [1, 3]);
        let (judged, empty) = (&read[0], &read[1]);
        assert_eq!(judged.value, Some(json!(true)));
        assert_eq!(judged.passed, Some(false));
        assert_eq!(judged.explanation, "said \"no\"\n\u{0}");
        assert_eq!(judged.details, json!({"model": "m"}));
        assert_eq!(
            judged.evaluated_at,
            DateTime::from_timestamp_millis(1_760_520_002_844).unwrap()
        );
        assert_eq!((empty.value.clone(), empty.passed), (None, None));
        assert_eq!(empty.details, json!({}));
        assert_eq!(empty.explanation, "");
    }

    #[test]
    fn refuses_a_corrupt_document() {
        assert!(evaluations("{").is_err());
        assert!(evaluations(r#"[{"metric_id": 1}]"#).is_err());
    }
}
