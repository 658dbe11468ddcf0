//! Alert rules, pure: a rule as a client writes it, what a rule reads of recent calls and
//! whether that breaches it (`check`), and how an alert moves between ok and firing (`step`).

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::FieldError;

/// Which calls a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CallScope {
    #[default]
    Both,
    Test,
    Production,
}

/// How a threshold rule's values cross their bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operator", rename_all = "snake_case")]
pub enum Bound {
    Gt { value: f64 },
    Lt { value: f64 },
    Outside { low: f64, high: f64 },
}

impl Bound {
    fn crossed(&self, v: f64) -> bool {
        match *self {
            Bound::Gt { value } => v > value,
            Bound::Lt { value } => v < value,
            Bound::Outside { low, high } => v < low || v > high,
        }
    }

    /// `above 2`, `below 0.5`, `outside 1–3`.
    pub fn describe(&self) -> String {
        match *self {
            Bound::Gt { value } => format!("above {value}"),
            Bound::Lt { value } => format!("below {value}"),
            Bound::Outside { low, high } => format!("outside {low}–{high}"),
        }
    }
}

/// Which way a trend rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Either,
    Increase,
    Decrease,
}

/// What breaches a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleKind {
    /// The latest evaluated call fails the rule's bound, when it has one; else the metric's
    /// pass condition (or the rubric, when the rule names no metric).
    Failure {
        #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
        bound: Option<Bound>,
    },
    /// At least `min_breaches` of the last `window` values cross the bound.
    Threshold {
        bound: Bound,
        window: usize,
        min_breaches: usize,
    },
    /// The EWMA (weight `alpha`) of the newest values has drifted more than `k` standard
    /// deviations from the mean of the `window` values before them.
    Trend {
        window: usize,
        k: f64,
        alpha: f64,
        direction: Direction,
    },
    /// Fewer than `min_calls` calls in the last `minutes` (the sender broke).
    NoCalls { min_calls: usize, minutes: i64 },
}

/// Cekura's trend presets: (window, k, alpha).
pub const TREND_PRESETS: [(&str, usize, f64, f64); 3] = [
    ("conservative", 100, 3.0, 0.10),
    ("balanced", 50, 2.0, 0.30),
    ("aggressive", 25, 1.5, 0.50),
];

/// The most values a rule reads.
pub const MAX_WINDOW: usize = 1_000;

/// A rule as stored: what it watches and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    pub name: String,
    /// The metric by name; none for the rubric's verdict (failure) or for `no_calls`.
    pub metric: Option<String>,
    pub agent_id: Option<i64>,
    pub calls: CallScope,
    #[serde(flatten)]
    pub kind: RuleKind,
    /// After an alert opens, another does not open for this long.
    pub cooldown_minutes: i64,
    /// A Slack incoming webhook told of each opening and resolution.
    pub slack_webhook_url: Option<String>,
    pub enabled: bool,
}

fn number(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    errors: &mut Vec<FieldError>,
) -> Option<f64> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64().filter(|f| f.is_finite()) {
            Some(f) => Some(f),
            None => {
                errors.push(FieldError::new(key, "must be a number"));
                None
            }
        },
    }
}

/// `operator` gt or lt with `value`, or outside with `low` and `high`.
fn bound(obj: &serde_json::Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<Bound> {
    let before = errors.len();
    let bound = match obj.get("operator").and_then(Value::as_str) {
        Some("gt") => number(obj, "value", errors).map(|value| Bound::Gt { value }),
        Some("lt") => number(obj, "value", errors).map(|value| Bound::Lt { value }),
        Some("outside") => match (number(obj, "low", errors), number(obj, "high", errors)) {
            (Some(low), Some(high)) if low <= high => Some(Bound::Outside { low, high }),
            (Some(_), Some(_)) => {
                errors.push(FieldError::new("high", "must not be below low"));
                None
            }
            _ => None,
        },
        _ => {
            errors.push(FieldError::new("operator", "required: gt, lt or outside"));
            None
        }
    };
    if bound.is_none() && errors.len() == before {
        errors.push(FieldError::new(
            "value",
            "required: the bound (`value` for gt and lt, `low` and `high` for outside)",
        ));
    }
    bound
}

fn count(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
    errors: &mut Vec<FieldError>,
) -> usize {
    match obj.get(key) {
        None | Some(Value::Null) => default,
        Some(v) => match v.as_u64().map(|n| n as usize).filter(|n| range.contains(n)) {
            Some(n) => n,
            None => {
                errors.push(FieldError::new(
                    key,
                    format!("must be a whole number {}–{}", range.start(), range.end()),
                ));
                default
            }
        },
    }
}

const FIELDS: [&str; 19] = [
    "name",
    "kind",
    "metric",
    "agent_id",
    "calls",
    "cooldown_minutes",
    "slack_webhook_url",
    "enabled",
    "operator",
    "value",
    "low",
    "high",
    "window",
    "min_breaches",
    "preset",
    "k",
    "alpha",
    "direction",
    "min_calls",
];

impl AlertRule {
    /// A rule as a client writes it, with every problem at once:
    /// `{name, kind: failure|threshold|trend|no_calls, metric?, agent_id?, calls?,
    /// cooldown_minutes?, slack_webhook_url?, enabled?, …the kind's parameters}`.
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let Some(obj) = body.as_object() else {
            return Err(vec![FieldError::new("$", "must be a JSON object")]);
        };
        let mut errors = Vec::new();
        for key in obj
            .keys()
            .filter(|k| !FIELDS.contains(&k.as_str()) && *k != "minutes")
        {
            errors.push(FieldError::new(
                key.as_str(),
                "unknown field; see docs/alerts.md for each kind's parameters",
            ));
        }
        let text = |key: &str, errors: &mut Vec<FieldError>| match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(_) => {
                errors.push(FieldError::new(key, "must be a non-empty string"));
                None
            }
        };
        let name = text("name", &mut errors);
        if name.is_none() && !errors.iter().any(|e| e.path == "name") {
            errors.push(FieldError::new(
                "name",
                "required: what the alert is called",
            ));
        }
        if name
            .as_ref()
            .is_some_and(|n| n.chars().count() > crate::NAME_MAX_CHARS)
        {
            errors.push(FieldError::new(
                "name",
                format!("at most {} characters", crate::NAME_MAX_CHARS),
            ));
        }
        let metric = text("metric", &mut errors);
        let agent_id = match obj.get("agent_id") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_i64().filter(|n| *n > 0) {
                Some(id) => Some(id),
                None => {
                    errors.push(FieldError::new("agent_id", "must be an agent id"));
                    None
                }
            },
        };
        let calls = match obj.get("calls") {
            None | Some(Value::Null) => CallScope::Both,
            Some(v) => serde_json::from_value(v.clone()).unwrap_or_else(|_| {
                errors.push(FieldError::new("calls", "one of both, test, production"));
                CallScope::Both
            }),
        };
        let cooldown_minutes = count(obj, "cooldown_minutes", 60, 0..=10_080, &mut errors) as i64;
        let slack_webhook_url = text("slack_webhook_url", &mut errors);
        if let Some(url) = &slack_webhook_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048 {
                errors.push(FieldError::new(
                    "slack_webhook_url",
                    "must be an http(s) URL (Slack's incoming webhook URL), at most 2048 characters",
                ));
            }
        }
        let enabled = match obj.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                errors.push(FieldError::new("enabled", "must be true or false"));
                true
            }
        };
        let kind = match obj.get("kind").and_then(Value::as_str) {
            // A bound of its own, or the metric's pass condition (the rubric without a metric).
            Some("failure") => Some(RuleKind::Failure {
                bound: obj
                    .contains_key("operator")
                    .then(|| bound(obj, &mut errors))
                    .flatten(),
            }),
            Some("threshold") => {
                let bound = bound(obj, &mut errors);
                let window = count(obj, "window", 50, 1..=MAX_WINDOW, &mut errors);
                let min_breaches = count(obj, "min_breaches", 1, 1..=MAX_WINDOW, &mut errors);
                if min_breaches > window {
                    errors.push(FieldError::new("min_breaches", "must not exceed window"));
                }
                bound.map(|bound| RuleKind::Threshold {
                    bound,
                    window,
                    min_breaches,
                })
            }
            Some("trend") => {
                let preset = obj
                    .get("preset")
                    .and_then(Value::as_str)
                    .unwrap_or("balanced");
                match TREND_PRESETS.iter().find(|p| p.0 == preset) {
                    None => {
                        errors.push(FieldError::new(
                            "preset",
                            "one of conservative, balanced, aggressive",
                        ));
                        None
                    }
                    Some(&(_, window, k, alpha)) => {
                        let window = count(obj, "window", window, 3..=MAX_WINDOW, &mut errors);
                        let k = number(obj, "k", &mut errors).unwrap_or(k);
                        let alpha = number(obj, "alpha", &mut errors).unwrap_or(alpha);
                        if k <= 0.0 {
                            errors.push(FieldError::new("k", "must be above 0"));
                        }
                        if alpha <= 0.0 || alpha > 1.0 {
                            errors.push(FieldError::new("alpha", "must be in (0, 1]"));
                        }
                        let direction = match obj.get("direction") {
                            None | Some(Value::Null) => Direction::Either,
                            Some(v) => serde_json::from_value(v.clone()).unwrap_or_else(|_| {
                                errors.push(FieldError::new(
                                    "direction",
                                    "one of either, increase, decrease",
                                ));
                                Direction::Either
                            }),
                        };
                        Some(RuleKind::Trend {
                            window,
                            k,
                            alpha,
                            direction,
                        })
                    }
                }
            }
            Some("no_calls") => Some(RuleKind::NoCalls {
                min_calls: count(obj, "min_calls", 1, 1..=1_000_000, &mut errors),
                minutes: count(obj, "minutes", 60, 1..=10_080, &mut errors) as i64,
            }),
            _ => {
                errors.push(FieldError::new(
                    "kind",
                    "required: failure, threshold, trend or no_calls",
                ));
                None
            }
        };
        let watches_values = match obj.get("kind").and_then(Value::as_str) {
            Some("threshold" | "trend") => true,
            Some("failure") => obj.contains_key("operator"),
            _ => false,
        };
        if watches_values && metric.is_none() {
            errors.push(FieldError::new(
                "metric",
                "required: the numeric metric this rule watches, by name",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name: name.unwrap_or_default(),
            metric,
            agent_id,
            calls,
            kind: kind.unwrap_or(RuleKind::Failure { bound: None }),
            cooldown_minutes,
            slack_webhook_url,
            enabled,
        })
    }

    /// How many of the newest samples the rule reads.
    pub fn samples_needed(&self) -> usize {
        match &self.kind {
            RuleKind::Failure { .. } => 1,
            RuleKind::Threshold { window, .. } => *window,
            // The baseline and the recent values the EWMA weighs (a few times 1/alpha).
            RuleKind::Trend { window, alpha, .. } => window + recent_len(*alpha),
            RuleKind::NoCalls { .. } => 0,
        }
    }
}

/// How many newest values an EWMA of weight `alpha` reads (their weight sums past 95 %).
fn recent_len(alpha: f64) -> usize {
    ((3.0 / alpha).ceil() as usize).clamp(1, MAX_WINDOW)
}

/// One evaluated call as a rule reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub call_id: String,
    pub at: DateTime<Utc>,
    /// The metric's value as a number (booleans as 0/1), when it has one.
    pub value: Option<f64>,
    /// Whether it passed the metric's condition (the rubric's verdict for a rule without one).
    pub passed: Option<bool>,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub breaching: bool,
    /// The figure the rule compares (the failing value, the breach count, the EWMA, the calls).
    pub value: Option<f64>,
    /// The calls that caused it, newest first.
    pub calls: Vec<String>,
    /// One sentence for people.
    pub summary: String,
}

/// Whether `rule` is breached by `samples` (newest first) and, for `no_calls`, by `recent_calls`
/// (calls in its window).
pub fn check(rule: &AlertRule, samples: &[Sample], recent_calls: usize) -> Check {
    let metric = rule.metric.as_deref().unwrap_or("the rubric");
    match &rule.kind {
        RuleKind::Failure { bound } => match samples.first() {
            Some(s) if failed(s, bound.as_ref()) => Check {
                breaching: true,
                value: s.value,
                calls: vec![s.call_id.clone()],
                summary: format!("call {} failed {metric}", s.call_id),
            },
            _ => quiet(format!("the latest call passed {metric}")),
        },
        RuleKind::Threshold { bound, window, min_breaches } => {
            let values: Vec<(&Sample, f64)> = samples
                .iter()
                .filter_map(|s| s.value.map(|v| (s, v)))
                .take(*window)
                .collect();
            let crossing: Vec<String> = values
                .iter()
                .filter(|(_, v)| bound.crossed(*v))
                .map(|(s, _)| s.call_id.clone())
                .collect();
            let breaching = crossing.len() >= *min_breaches;
            Check {
                breaching,
                value: Some(crossing.len() as f64),
                summary: format!(
                    "{} of the last {} values of {metric} {} (the rule: at least {min_breaches})",
                    crossing.len(),
                    values.len(),
                    bound.describe()
                ),
                calls: if breaching { crossing } else { Vec::new() },
            }
        }
        RuleKind::Trend { window, k, alpha, direction } => {
            let values: Vec<(&Sample, f64)> =
                samples.iter().filter_map(|s| s.value.map(|v| (s, v))).collect();
            let recent = recent_len(*alpha).min(values.len());
            if values.len() < recent + 3 {
                return quiet(format!("too few values of {metric} for a trend yet"));
            }
            let (newest, baseline) = values.split_at(recent);
            let baseline: Vec<f64> = baseline.iter().take(*window).map(|(_, v)| *v).collect();
            let n = baseline.len() as f64;
            let mean = baseline.iter().sum::<f64>() / n;
            let sd = (baseline.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            // Oldest first, so the newest value weighs most.
            let ewma = newest
                .iter()
                .rev()
                .map(|(_, v)| *v)
                .reduce(|acc, v| alpha * v + (1.0 - alpha) * acc)
                .unwrap_or(mean);
            let drift = ewma - mean;
            let beyond = drift.abs() > k * sd.max(f64::EPSILON);
            let breaching = beyond
                && match direction {
                    Direction::Either => true,
                    Direction::Increase => drift > 0.0,
                    Direction::Decrease => drift < 0.0,
                };
            Check {
                breaching,
                value: Some(ewma),
                calls: if breaching {
                    newest.iter().map(|(s, _)| s.call_id.clone()).collect()
                } else {
                    Vec::new()
                },
                summary: format!(
                    "{metric}'s recent average (EWMA) is {ewma:.3} against a baseline of {mean:.3} ± {sd:.3} over {} values (the rule: beyond {k} σ)",
                    baseline.len()
                ),
            }
        }
        RuleKind::NoCalls { min_calls, minutes } => Check {
            breaching: recent_calls < *min_calls,
            value: Some(recent_calls as f64),
            calls: Vec::new(),
            summary: format!(
                "{recent_calls} call{} in the last {minutes} minutes (the rule: at least {min_calls})",
                if recent_calls == 1 { "" } else { "s" }
            ),
        },
    }
}

/// A call fails a failure rule: it crosses the rule's bound, or fails its metric's condition.
fn failed(sample: &Sample, bound: Option<&Bound>) -> bool {
    match bound {
        Some(b) => sample.value.is_some_and(|v| b.crossed(v)),
        None => sample.passed == Some(false),
    }
}

fn quiet(summary: String) -> Check {
    Check {
        breaching: false,
        value: None,
        calls: Vec::new(),
        summary,
    }
}

/// What an alert does after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Starts firing (one page).
    Open,
    /// Stops firing.
    Resolve,
    /// Nothing changes; `suppressed` when it would open but the cool-down holds it.
    Stay { suppressed: bool },
}

/// `ok → firing → ok`: an alert opens when its rule is breached, unless one opened less than
/// the cool-down ago; it resolves when no longer breached.
pub fn step(
    firing: bool,
    last_opened: Option<DateTime<Utc>>,
    breaching: bool,
    now: DateTime<Utc>,
    cooldown_minutes: i64,
) -> Step {
    match (firing, breaching) {
        (false, true) => {
            let cooling =
                last_opened.is_some_and(|at| now - at < TimeDelta::minutes(cooldown_minutes));
            if cooling {
                Step::Stay { suppressed: true }
            } else {
                Step::Open
            }
        }
        (true, false) => Step::Resolve,
        _ => Step::Stay { suppressed: false },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + TimeDelta::minutes(min)
    }

    fn samples(values: &[f64]) -> Vec<Sample> {
        // Newest first, as the store gives them.
        values
            .iter()
            .enumerate()
            .rev()
            .map(|(i, v)| Sample {
                call_id: format!("c{i}"),
                at: at(i as i64),
                value: Some(*v),
                passed: Some(*v < 1000.0),
            })
            .collect()
    }

    #[test]
    fn rules_are_parsed_with_every_problem() {
        let rule = AlertRule::parse(&json!({
            "name": "slow agent", "kind": "threshold", "metric": "agent_latency_p90",
            "operator": "gt", "value": 1500, "window": 10, "min_breaches": 3
        }))
        .unwrap();
        assert_eq!(
            rule.kind,
            RuleKind::Threshold {
                bound: Bound::Gt { value: 1500.0 },
                window: 10,
                min_breaches: 3
            }
        );
        assert_eq!((rule.cooldown_minutes, rule.enabled), (60, true));
        let trend = AlertRule::parse(&json!({"name": "t", "kind": "trend", "metric": "m", "preset": "aggressive", "direction": "increase"})).unwrap();
        assert_eq!(
            trend.kind,
            RuleKind::Trend {
                window: 25,
                k: 1.5,
                alpha: 0.5,
                direction: Direction::Increase
            }
        );
        let errors = AlertRule::parse(&json!({
            "kind": "threshold", "operator": "between", "window": 0, "colour": 1,
            "calls": "some", "slack_webhook_url": "slack"
        }))
        .unwrap_err();
        let mut paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "calls",
                "colour",
                "metric",
                "name",
                "operator",
                "slack_webhook_url",
                "window"
            ],
            "{errors:?}"
        );
        assert!(AlertRule::parse(&json!({"name": "x", "kind": "threshold", "metric": "m", "operator": "outside", "low": 5, "high": 1})).is_err());
        assert!(AlertRule::parse(&json!({"name": "x", "kind": "threshold", "metric": "m", "operator": "gt", "value": 1, "window": 2, "min_breaches": 3})).is_err());
        let round_trip: AlertRule =
            serde_json::from_value(serde_json::to_value(&rule).unwrap()).unwrap();
        assert_eq!(round_trip, rule, "the stored form reads back");
    }

    #[test]
    fn each_kind_breaches_as_documented() {
        let failure =
            AlertRule::parse(&json!({"name": "f", "kind": "failure", "metric": "m"})).unwrap();
        assert!(
            check(&failure, &samples(&[1.0, 2000.0]), 0).breaching,
            "the latest failed"
        );
        assert!(!check(&failure, &samples(&[2000.0, 1.0]), 0).breaching);

        let bounded = AlertRule::parse(
            &json!({"name": "f", "kind": "failure", "metric": "m", "operator": "gt", "value": 1.5}),
        )
        .unwrap();
        assert_eq!(
            bounded.kind,
            RuleKind::Failure {
                bound: Some(Bound::Gt { value: 1.5 })
            }
        );
        assert!(
            check(&bounded, &samples(&[1.0, 2.0]), 0).breaching,
            "its own bound, not the metric's"
        );
        assert!(!check(&bounded, &samples(&[2.0, 1.0]), 0).breaching);
        let again: AlertRule =
            serde_json::from_value(serde_json::to_value(&bounded).unwrap()).unwrap();
        assert_eq!(again, bounded);
        assert!(
            AlertRule::parse(
                &json!({"name": "f", "kind": "failure", "operator": "gt", "value": 1})
            )
            .is_err(),
            "a bound needs a metric"
        );

        let threshold = AlertRule::parse(&json!({"name": "t", "kind": "threshold", "metric": "m", "operator": "gt", "value": 10, "window": 4, "min_breaches": 2})).unwrap();
        let c = check(&threshold, &samples(&[50.0, 1.0, 1.0, 20.0, 30.0]), 0);
        assert!(c.breaching, "{c:?}");
        assert_eq!(c.calls, ["c4", "c3"]);
        assert!(
            !check(&threshold, &samples(&[50.0, 60.0, 1.0, 1.0, 1.0, 20.0]), 0).breaching,
            "only the last four count"
        );

        let trend = AlertRule::parse(&json!({"name": "t", "kind": "trend", "metric": "m", "preset": "balanced", "window": 20, "direction": "increase"})).unwrap();
        let mut steady: Vec<f64> = (0..40).map(|i| 100.0 + (i % 5) as f64).collect();
        assert!(!check(&trend, &samples(&steady), 0).breaching);
        steady.extend([160.0; 10]);
        let c = check(&trend, &samples(&steady), 0);
        assert!(c.breaching, "{c:?}");
        let down = AlertRule::parse(&json!({"name": "t", "kind": "trend", "metric": "m", "window": 20, "direction": "decrease"})).unwrap();
        assert!(
            !check(&down, &samples(&steady), 0).breaching,
            "the wrong direction"
        );
        assert!(
            !check(&trend, &samples(&[1.0, 2.0]), 0).breaching,
            "too few values"
        );

        let none = AlertRule::parse(
            &json!({"name": "n", "kind": "no_calls", "min_calls": 3, "minutes": 30}),
        )
        .unwrap();
        assert!(check(&none, &[], 2).breaching);
        assert!(!check(&none, &[], 3).breaching);
    }

    #[test]
    fn an_alert_opens_once_per_cool_down_and_resolves() {
        assert_eq!(step(false, None, true, at(0), 60), Step::Open);
        assert_eq!(
            step(true, Some(at(0)), true, at(5), 60),
            Step::Stay { suppressed: false }
        );
        assert_eq!(step(true, Some(at(0)), false, at(10), 60), Step::Resolve);
        assert_eq!(
            step(false, Some(at(0)), true, at(20), 60),
            Step::Stay { suppressed: true }
        );
        assert_eq!(step(false, Some(at(0)), true, at(61), 60), Step::Open);
        assert_eq!(
            step(false, Some(at(0)), false, at(61), 60),
            Step::Stay { suppressed: false }
        );
    }
}
