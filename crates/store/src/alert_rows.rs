//! What both backends share about alerts: column lists, row decoders, and a call's sample as a
//! rule reads it.

use callgrade_core::alerts::{AlertRule, CallScope, Sample};

use crate::codec::{from_json, opt_time, time};
use crate::evaluation_document;
use crate::model::*;
use crate::rows::Columns;
use crate::{Result, StoreError};

pub(crate) const RULE_COLUMNS: &str = "id, project_id, definition, firing, last_opened_at, \
     last_checked_at, last_summary, created_at, updated_at";

pub(crate) fn rule_from(row: &impl Columns) -> Result<AlertRuleRow> {
    let rule: AlertRule = serde_json::from_str(&row.text("definition")?)
        .map_err(|e| StoreError::Corrupt(format!("an alert rule's definition: {e}")))?;
    Ok(AlertRuleRow {
        id: row.int("id")?,
        project_id: row.int("project_id")?,
        rule,
        firing: row.flag("firing")?,
        last_opened_at: opt_time(row.opt_int("last_opened_at")?)?,
        last_checked_at: opt_time(row.opt_int("last_checked_at")?)?,
        last_summary: row.opt_text("last_summary")?,
        created_at: time(row.int("created_at")?)?,
        updated_at: time(row.int("updated_at")?)?,
    })
}

/// Select from `alerts a JOIN alert_rules r ON r.id = a.rule_id`; `value` is read as text
/// (one decoder for both backends' floating types).
pub(crate) const ALERT_COLUMNS: &str = "a.id, a.rule_id, r.name AS rule_name, a.opened_at, \
     a.resolved_at, CAST(a.value AS TEXT) AS value, a.summary, a.call_ids, a.slack_error";

pub(crate) fn alert_from(row: &impl Columns) -> Result<Alert> {
    Ok(Alert {
        id: row.int("id")?,
        rule_id: row.int("rule_id")?,
        rule_name: row.text("rule_name")?,
        opened_at: time(row.int("opened_at")?)?,
        resolved_at: opt_time(row.opt_int("resolved_at")?)?,
        value: row.opt_text("value")?.and_then(|v| v.parse().ok()),
        summary: row.text("summary")?,
        call_ids: from_json(&row.text("call_ids")?)?,
        slack_error: row.opt_text("slack_error")?,
    })
}

/// The `WHERE` test of a scope, on `calls c`.
pub(crate) fn scope_test(scope: CallScope) -> &'static str {
    match scope {
        CallScope::Both => "",
        CallScope::Test => " AND c.run_id IS NOT NULL",
        CallScope::Production => " AND c.run_id IS NULL",
    }
}

/// A call's sample of `metric` (its verdict for none) from its evaluation row
/// (`call_id, evaluated_at, success, evaluations`); none when the metric was not computed.
pub(crate) fn sample_from(row: &impl Columns, metric: Option<&str>) -> Result<Option<Sample>> {
    let call_id = row.text("call_id")?;
    let at = time(row.int("evaluated_at")?)?;
    let Some(metric) = metric else {
        let passed = row.opt_flag("success")?;
        return Ok(Some(Sample {
            call_id,
            at,
            value: passed.map(|p| f64::from(u8::from(p))),
            passed,
        }));
    };
    let evaluations = evaluation_document::evaluations(&row.text("evaluations")?)?;
    let Some(e) = evaluations.into_iter().find(|e| e.metric_name == metric) else {
        return Ok(None);
    };
    if e.status != EvaluationStatus::Ok {
        return Ok(None);
    }
    let value = e.value.as_ref().and_then(|v| match v {
        serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
        v => v.as_f64(),
    });
    Ok(Some(Sample {
        call_id,
        at,
        value,
        passed: e.passed,
    }))
}
