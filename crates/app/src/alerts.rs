//! Alerts: rules a project keeps (created, replaced, deleted), and the checker that reads each
//! enabled rule's recent calls, moves its alert between ok and firing (`core::alerts::step`),
//! and tells the project: `alert.opened` / `alert.resolved` to its webhook endpoints, written
//! with the alert in one transaction, and a Slack message when the rule names a Slack webhook.

use callgrade_core::alerts::{check, step, AlertRule, RuleKind, Step};
use callgrade_core::outbound::EventType;
use callgrade_store::{Alert, AlertChange, AlertRuleRow, NewEvent};
use chrono::TimeDelta;
use serde_json::{json, Value};
use std::time::Duration;

use crate::{App, AppError, Result};

fn no_rule(id: i64) -> AppError {
    AppError::not_found(format!("alert rule {id} not found in this project"))
}

/// A rule's agent must be the project's.
async fn check_agent(app: &App, project_id: i64, rule: &AlertRule) -> Result<()> {
    if let Some(agent) = rule.agent_id {
        if app.store.agent(project_id, agent).await?.is_none() {
            return Err(AppError::Invalid(vec![callgrade_core::FieldError::new(
                "agent_id",
                format!("no agent {agent} in this project"),
            )]));
        }
    }
    Ok(())
}

pub async fn create_rule(app: &App, project_id: i64, body: &Value) -> Result<AlertRuleRow> {
    let rule = AlertRule::parse(body).map_err(AppError::Invalid)?;
    check_agent(app, project_id, &rule).await?;
    Ok(app.store.create_rule(project_id, &rule, app.now()).await?)
}

pub async fn rule(app: &App, project_id: i64, id: i64) -> Result<AlertRuleRow> {
    app.store
        .rule(project_id, id)
        .await?
        .ok_or_else(|| no_rule(id))
}

pub async fn replace_rule(
    app: &App,
    project_id: i64,
    id: i64,
    body: &Value,
) -> Result<AlertRuleRow> {
    let rule = AlertRule::parse(body).map_err(AppError::Invalid)?;
    check_agent(app, project_id, &rule).await?;
    app.store
        .replace_rule(project_id, id, &rule, app.now())
        .await?
        .ok_or_else(|| no_rule(id))
}

pub async fn delete_rule(app: &App, project_id: i64, id: i64) -> Result<()> {
    match app.store.delete_rule(project_id, id).await? {
        true => Ok(()),
        false => Err(no_rule(id)),
    }
}

/// The project's alerts, newest first (of one rule; only those firing).
pub async fn alerts(
    app: &App,
    project_id: i64,
    rule_id: Option<i64>,
    firing_only: bool,
) -> Result<Vec<Alert>> {
    if let Some(id) = rule_id {
        rule(app, project_id, id).await?;
    }
    Ok(app
        .store
        .alerts(project_id, rule_id, firing_only, 100)
        .await?)
}

/// Rules from a file (`[[alerts]]` beside `[[metrics]]`), every problem at its path
/// (`alerts[1].window`), a name given twice refused.
pub fn parse_rules(bodies: &[Value]) -> Result<Vec<AlertRule>> {
    let mut rules: Vec<AlertRule> = Vec::new();
    let mut errors = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        match AlertRule::parse(body) {
            Ok(rule) if rules.iter().any(|r| r.name == rule.name) => {
                errors.push(callgrade_core::FieldError::new(
                    format!("alerts[{i}].name"),
                    format!("{:?} appears twice", rule.name),
                ))
            }
            Ok(rule) => rules.push(rule),
            Err(e) => errors.extend(e.into_iter().map(|e| {
                callgrade_core::FieldError::new(format!("alerts[{i}].{}", e.path), e.message)
            })),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(AppError::Invalid(errors))
    }
}

/// Creates or replaces rules by name (their state and alerts stay); rules of the project the
/// file does not name are left alone.
pub async fn apply_rules(
    app: &App,
    project_id: i64,
    rules: &[AlertRule],
) -> Result<callgrade_store::ApplySummary> {
    for rule in rules {
        check_agent(app, project_id, rule).await?;
    }
    let existing = app.store.list_rules(project_id).await?;
    let mut summary = callgrade_store::ApplySummary {
        created: Vec::new(),
        updated: Vec::new(),
        unchanged: Vec::new(),
    };
    let now = app.now();
    for rule in rules {
        match existing.iter().find(|r| r.rule.name == rule.name) {
            Some(r) if r.rule == *rule => summary.unchanged.push(rule.name.clone()),
            Some(r) => {
                app.store.replace_rule(project_id, r.id, rule, now).await?;
                summary.updated.push(rule.name.clone());
            }
            None => {
                app.store.create_rule(project_id, rule, now).await?;
                summary.created.push(rule.name.clone());
            }
        }
    }
    Ok(summary)
}

/// What one round of checks did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub checked: usize,
    pub opened: usize,
    pub resolved: usize,
    /// Would have opened, held by the cool-down.
    pub suppressed: usize,
}

/// Checks every enabled rule once, at the clock's now.
pub async fn check_all(app: &App) -> Result<Round> {
    let mut round = Round::default();
    for row in app.store.enabled_rules().await? {
        round.checked += 1;
        match check_rule(app, &row).await {
            Ok(Step::Open) => round.opened += 1,
            Ok(Step::Resolve) => round.resolved += 1,
            Ok(Step::Stay { suppressed: true }) => round.suppressed += 1,
            Ok(Step::Stay { .. }) => {}
            Err(e) => tracing::warn!(rule = row.id, error = %e, "could not check an alert rule"),
        }
    }
    Ok(round)
}

async fn check_rule(app: &App, row: &AlertRuleRow) -> Result<Step> {
    let rule = &row.rule;
    let now = app.now();
    let samples = match rule.kind {
        RuleKind::NoCalls { .. } => Vec::new(),
        _ => {
            app.store
                .samples(
                    row.project_id,
                    rule.metric.as_deref(),
                    rule.agent_id,
                    rule.calls,
                    rule.samples_needed(),
                )
                .await?
        }
    };
    let recent_calls = match rule.kind {
        RuleKind::NoCalls { minutes, .. } => {
            let since = now - TimeDelta::minutes(minutes);
            app.store
                .calls_since(row.project_id, rule.agent_id, rule.calls, since)
                .await?
        }
        _ => 0,
    };
    let found = check(rule, &samples, recent_calls);
    let next = step(
        row.firing,
        row.last_opened_at,
        found.breaching,
        now,
        rule.cooldown_minutes,
    );
    let data = |state: &str| {
        json!({
            "rule_id": row.id,
            "name": rule.name,
            "state": state,
            "kind": kind_name(&rule.kind),
            "metric": rule.metric,
            "agent_id": rule.agent_id,
            "value": found.value,
            "summary": found.summary,
            "call_ids": found.calls,
            "at": now,
        })
    };
    let change = match next {
        Step::Open => AlertChange::Open {
            value: found.value,
            summary: found.summary.clone(),
            call_ids: found.calls.clone(),
            events: vec![NewEvent::new(EventType::AlertOpened, now, data("firing"))],
        },
        Step::Resolve => AlertChange::Resolve {
            summary: found.summary.clone(),
            events: vec![NewEvent::new(
                EventType::AlertResolved,
                now,
                data("resolved"),
            )],
        },
        Step::Stay { .. } => AlertChange::Checked {
            summary: found.summary.clone(),
        },
    };
    let alert = app.store.record_check(row.id, change, now).await?;
    if let (Some(alert), Some(url), Step::Open | Step::Resolve) =
        (alert, &rule.slack_webhook_url, next)
    {
        tracing::info!(rule = row.id, alert, state = ?next, "alert changed");
        if let Err(why) = tell_slack(app, url, row, next, &found.summary).await {
            tracing::warn!(rule = row.id, alert, error = %why, "could not tell Slack");
            app.store.set_slack_error(alert, &why).await?;
        }
    }
    Ok(next)
}

fn kind_name(kind: &RuleKind) -> &'static str {
    match kind {
        RuleKind::Failure { .. } => "failure",
        RuleKind::Threshold { .. } => "threshold",
        RuleKind::Trend { .. } => "trend",
        RuleKind::NoCalls { .. } => "no_calls",
    }
}

/// Slack's incoming webhook gets `{"text": …}`: the rule, what was found, and a link.
async fn tell_slack(
    app: &App,
    url: &str,
    row: &AlertRuleRow,
    step: Step,
    summary: &str,
) -> std::result::Result<(), String> {
    let rule = &row.rule;
    let link = format!(
        "{}/projects/{}/alerts",
        app.settings.dashboard_url.trim_end_matches('/'),
        row.project_id
    );
    let what = match &rule.metric {
        Some(m) => format!("{} on `{m}`", kind_name(&rule.kind)),
        None => kind_name(&rule.kind).to_owned(),
    };
    let text = match step {
        Step::Open => format!(
            ":rotating_light: *{}* is firing ({what}): {summary}. <{link}|Open the alerts>",
            rule.name
        ),
        _ => format!(
            ":white_check_mark: *{}* resolved ({what}): {summary}. <{link}|Open the alerts>",
            rule.name
        ),
    };
    let body = json!({"text": text}).to_string();
    let headers = [("content-type", "application/json".to_owned())];
    let posted = app
        .settings
        .outbound
        .policy
        .post(url, &headers, body.as_bytes(), 512)
        .await
        .map_err(|e| match e {
            crate::fetch::FetchError::Refused(w) | crate::fetch::FetchError::Failed(w) => w,
        })?;
    if (200..300).contains(&posted.status) {
        Ok(())
    } else {
        Err(format!("Slack answered {}: {}", posted.status, posted.body))
    }
}

/// Starts the checker, every `alert_interval` (its first round one interval from now).
pub fn spawn(app: &App) -> Vec<tokio::task::JoinHandle<()>> {
    let app = app.clone();
    let period = app.settings.alert_interval.max(Duration::from_secs(1));
    vec![tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tick.tick().await;
            if let Err(e) = check_all(&app).await {
                tracing::warn!(error = %e, "could not check alert rules");
            }
        }
    })]
}
