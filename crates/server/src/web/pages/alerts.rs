//! Alert rules: their state, a form per kind to add one, their history with the calls that
//! caused each alert.

use super::*;
use callgrade_app::alerts;
use callgrade_core::alerts::{AlertRule, RuleKind, TREND_PRESETS};
use std::collections::HashMap;

/// The form's fields, and the JSON the rule parser reads from them: blanks are left out, so
/// each kind's defaults apply.
const NUMBERS: [&str; 9] = [
    "value",
    "low",
    "high",
    "window",
    "min_breaches",
    "k",
    "alpha",
    "min_calls",
    "minutes",
];
const TEXTS: [&str; 7] = [
    "name",
    "kind",
    "metric",
    "operator",
    "preset",
    "direction",
    "slack_webhook_url",
];

fn rule_body(form: &HashMap<String, String>) -> Value {
    let mut body = serde_json::Map::new();
    let given = |k: &str| form.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    for key in TEXTS {
        if let Some(v) = given(key) {
            body.insert(key.into(), Value::String(v.to_owned()));
        }
    }
    for key in NUMBERS.into_iter().chain(["agent_id", "cooldown_minutes"]) {
        if let Some(v) = given(key) {
            // A number the parser checks; text it cannot read is reported at its field.
            let n = v.parse::<f64>().ok().and_then(|f| {
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    Some(Value::from(f as i64))
                } else {
                    serde_json::Number::from_f64(f).map(Value::Number)
                }
            });
            body.insert(key.into(), n.unwrap_or_else(|| Value::String(v.to_owned())));
        }
    }
    if let Some(scope) = given("calls") {
        body.insert("calls".into(), Value::String(scope.to_owned()));
    }
    Value::Object(body)
}

fn describe(rule: &AlertRule) -> String {
    let metric = rule.metric.as_deref().unwrap_or("the rubric");
    match &rule.kind {
        RuleKind::Failure { bound: None } => format!("a call fails {metric}"),
        RuleKind::Failure { bound: Some(b) } => format!("a call's {metric} is {}", b.describe()),
        RuleKind::Threshold { bound, window, min_breaches } => format!(
            "{min_breaches} of the last {window} values of {metric} {}",
            bound.describe()
        ),
        RuleKind::Trend { window, k, alpha, direction } => format!(
            "{metric} drifts ({direction:?}) beyond {k} σ of its last {window} values (EWMA α {alpha})"
        ),
        RuleKind::NoCalls { min_calls, minutes } => {
            format!("fewer than {min_calls} calls in {minutes} minutes")
        }
    }
}

pub async fn alert_rules(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Page {
    let project = load_project(&state, &id).await?;
    alerts_page(&state, &admin, &project, None, &HashMap::new()).await
}

async fn alerts_page(
    state: &AppState,
    admin: &Admin,
    project: &Project,
    problems: Option<Vec<String>>,
    typed: &HashMap<String, String>,
) -> Page {
    let rules = state.app.store.list_rules(project.id).await?;
    let history = alerts::alerts(&state.app, project.id, None, false).await?;
    let agents = state.app.store.list_agents(project.id).await?;
    let base = format!("/projects/{}/alerts", project.id);
    let kept = |k: &str| typed.get(k).cloned().unwrap_or_default();
    let kind = typed.get("kind").map_or("threshold", String::as_str);
    Ok(page("Alerts", Some(admin), Some(project), html! {
        h1 { "Alerts" }
        p.muted { "Rules are checked every " (state.app.settings.alert_interval.as_secs()) " s. An alert opens once per incident (a cool-down holds a flapping rule) and tells the project's webhook endpoints (alert.opened, alert.resolved) and, when the rule names one, Slack." }
        @if let Some(problems) = &problems {
            div.card #notice { p.bad { "Not saved:" } ul { @for p in problems { li { (p) } } } }
        }
        h2 { "Rules" }
        @if rules.is_empty() {
            div.empty { p { "No rule yet. Add one below: a failing call, a metric over a bound, a drift, or calls that stop arriving." } }
        } @else {
            table #rules {
                tr { th { "Rule" } th { "Watches" } th { "State" } th { "Last check" } th { "" } }
                @for r in &rules {
                    tr id={ "rule-" (r.id) } {
                        td { strong { (r.rule.name) } @if !r.rule.enabled { " " span.muted { "(off)" } } }
                        td { (describe(&r.rule)) }
                        td { @if r.firing { span.bad { "firing" } } @else { span.ok { "ok" } } }
                        td.muted { @if let Some(at) = r.last_checked_at { (when(at)) ": " } (r.last_summary.as_deref().unwrap_or("not checked yet")) }
                        td.actions {
                            form method="post" action={ (base) "/" (r.id) "/delete" } {
                                (csrf(admin))
                                button.secondary type="submit" { "Delete" }
                            }
                        }
                    }
                }
            }
        }
        h2 { "History" }
        @if history.is_empty() {
            div.empty { p { "No alert has opened." } }
        } @else {
            table #history {
                tr { th { "Opened" } th { "Rule" } th { "Resolved" } th { "Why" } th { "Calls" } }
                @for a in &history {
                    tr {
                        td { (when(a.opened_at)) }
                        td { (a.rule_name) }
                        td { @match a.resolved_at { Some(at) => (when(at)), None => span.bad { "firing" } } }
                        td { (a.summary) @if let Some(e) = &a.slack_error { br; span.warn { "Slack: " (e) } } }
                        td { @for c in a.call_ids.iter().take(5) { a href={ "/projects/" (project.id) "/calls/" (c) } { code { (c.get(..8).unwrap_or(c)) } } " " } }
                    }
                }
            }
        }
        h2 { "Add a rule" }
        form.card method="post" action=(base) {
            (csrf(admin))
            label { "Name " input type="text" name="name" required value=(kept("name")); }
            label { "Kind "
                select name="kind" {
                    @for (k, label) in [("failure", "failure: a call fails a metric or the rubric"), ("threshold", "threshold: values cross a bound"), ("trend", "trend: values drift from their baseline"), ("no_calls", "no calls: calls stop arriving")] {
                        option value=(k) selected[kind == k] { (label) }
                    }
                }
            }
            label { "Metric " input type="text" name="metric" placeholder="agent_latency (blank: the rubric)" value=(kept("metric")); }
            label { "Agent "
                select name="agent_id" {
                    option value="" { "every agent" }
                    @for a in &agents { option value=(a.id) selected[kept("agent_id") == a.id.to_string()] { (a.name) } }
                }
            }
            label { "Calls "
                select name="calls" {
                    @for c in ["both", "production", "test"] { option value=(c) selected[kept("calls") == c] { (c) } }
                }
            }
            fieldset {
                legend { "Threshold" }
                label.inline { "Operator " select name="operator" { @for o in ["gt", "lt", "outside"] { option value=(o) selected[kept("operator") == o] { (o) } } } }
                label.inline { "Value " input type="text" name="value" size="8" value=(kept("value")); }
                label.inline { "Low " input type="text" name="low" size="6" value=(kept("low")); }
                label.inline { "High " input type="text" name="high" size="6" value=(kept("high")); }
                label.inline { "Window " input type="text" name="window" size="5" placeholder="50" value=(kept("window")); }
                label.inline { "Breaches " input type="text" name="min_breaches" size="5" placeholder="1" value=(kept("min_breaches")); }
            }
            fieldset {
                legend { "Trend" }
                label.inline { "Preset " select name="preset" { @for p in TREND_PRESETS { option value=(p.0) selected[kept("preset") == p.0 || (kept("preset").is_empty() && p.0 == "balanced")] { (p.0) " (" (p.1) " values, " (p.2) " σ, α " (p.3) ")" } } } }
                label.inline { "Direction " select name="direction" { @for d in ["either", "increase", "decrease"] { option value=(d) selected[kept("direction") == d] { (d) } } } }
            }
            fieldset {
                legend { "No calls" }
                label.inline { "Fewer than " input type="text" name="min_calls" size="5" placeholder="1" value=(kept("min_calls")); }
                label.inline { " calls in " input type="text" name="minutes" size="5" placeholder="60" value=(kept("minutes")); " minutes" }
            }
            label { "Cool-down (minutes) " input type="text" name="cooldown_minutes" size="5" placeholder="60" value=(kept("cooldown_minutes")); }
            label { "Slack incoming webhook " input type="url" name="slack_webhook_url" placeholder="https://hooks.slack.com/services/…" value=(kept("slack_webhook_url")); }
            button type="submit" { "Add rule" }
        }
    }).into_response())
}

/// The form names every kind's fields; only the chosen kind's are sent on.
fn for_kind(mut form: HashMap<String, String>) -> HashMap<String, String> {
    let keep: &[&str] = match form.get("kind").map(String::as_str) {
        Some("threshold") => &["operator", "value", "low", "high", "window", "min_breaches"],
        Some("trend") => &["preset", "direction"],
        Some("no_calls") => &["min_calls", "minutes"],
        _ => &[],
    };
    for key in [
        "operator",
        "value",
        "low",
        "high",
        "window",
        "min_breaches",
        "preset",
        "direction",
        "min_calls",
        "minutes",
    ] {
        if !keep.contains(&key) {
            form.remove(key);
        }
    }
    if form.get("kind").map(String::as_str) == Some("no_calls") {
        form.remove("metric");
    }
    form
}

pub async fn create_alert_rule(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Page {
    check_csrf(&admin, form.get("_csrf").map_or("", String::as_str))?;
    let project = load_project(&state, &id).await?;
    let body = rule_body(&for_kind(form.clone()));
    match alerts::create_rule(&state.app, project.id, &body).await {
        Ok(_) => Ok(see_other(&format!("/projects/{}/alerts", project.id))),
        Err(e @ (AppError::Invalid(_) | AppError::AlreadyExists(_))) => {
            let problems = match &e {
                AppError::Invalid(_) => e.problems(),
                other => vec![other.to_string()],
            };
            alerts_page(&state, &admin, &project, Some(problems), &form).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn delete_alert_rule(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, rule_id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let missing = || error(StatusCode::NOT_FOUND, "no such alert rule in this project");
    let rule_id: i64 = rule_id.parse().map_err(|_| missing())?;
    alerts::delete_rule(&state.app, project.id, rule_id).await?;
    Ok(see_other(&format!("/projects/{}/alerts", project.id)))
}
