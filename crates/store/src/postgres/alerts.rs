//! Alert rules and alerts on PostgreSQL: a check's alert, state and events in one transaction,
//! the rule's row locked so two instances checking at once write one alert.

use async_trait::async_trait;
use callgrade_core::alerts::{AlertRule, CallScope, Sample};
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::text;
use super::webhooks::emit;
use crate::alert_rows::*;
use crate::codec::to_json;
use crate::errors::rule_name_taken;
use crate::model::*;
use crate::{Alerts, PgStore, Result};

#[async_trait]
impl Alerts for PgStore {
    async fn create_rule(
        &self,
        project_id: i64,
        rule: &AlertRule,
        now: DateTime<Utc>,
    ) -> Result<AlertRuleRow> {
        let row = sqlx::query(&format!(
            "INSERT INTO alert_rules (project_id, name, definition, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING {RULE_COLUMNS}"
        ))
        .bind(project_id)
        .bind(text(&rule.name))
        .bind(text(&to_json(rule)))
        .bind(rule.enabled)
        .bind(now.timestamp_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| rule_name_taken(e, &rule.name))?;
        rule_from(&row)
    }

    async fn list_rules(&self, project_id: i64) -> Result<Vec<AlertRuleRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM alert_rules WHERE project_id = $1 ORDER BY id"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rule_from).collect()
    }

    async fn rule(&self, project_id: i64, id: i64) -> Result<Option<AlertRuleRow>> {
        let row = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM alert_rules WHERE project_id = $1 AND id = $2"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rule_from).transpose()
    }

    async fn replace_rule(
        &self,
        project_id: i64,
        id: i64,
        rule: &AlertRule,
        now: DateTime<Utc>,
    ) -> Result<Option<AlertRuleRow>> {
        let row = sqlx::query(&format!(
            "UPDATE alert_rules SET name = $1, definition = $2, enabled = $3, updated_at = $4
             WHERE project_id = $5 AND id = $6 RETURNING {RULE_COLUMNS}"
        ))
        .bind(text(&rule.name))
        .bind(text(&to_json(rule)))
        .bind(rule.enabled)
        .bind(now.timestamp_millis())
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| rule_name_taken(e, &rule.name))?;
        row.as_ref().map(rule_from).transpose()
    }

    async fn delete_rule(&self, project_id: i64, id: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM alerts WHERE rule_id = $1 AND project_id = $2")
            .bind(id)
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM alert_rules WHERE id = $1 AND project_id = $2")
            .bind(id)
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n.rows_affected() == 1)
    }

    async fn enabled_rules(&self) -> Result<Vec<AlertRuleRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM alert_rules WHERE enabled ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rule_from).collect()
    }

    async fn samples(
        &self,
        project_id: i64,
        metric: Option<&str>,
        agent_id: Option<i64>,
        scope: CallScope,
        limit: usize,
    ) -> Result<Vec<Sample>> {
        let rows = sqlx::query(&format!(
            "SELECT ce.call_id, ce.evaluated_at, ce.success, ce.evaluations
             FROM call_evaluations ce JOIN calls c ON c.id = ce.call_id
             WHERE ce.project_id = $1 AND ($2::bigint IS NULL OR c.agent_id = $2){}
             ORDER BY ce.evaluated_at DESC, ce.call_id DESC LIMIT $3",
            scope_test(scope)
        ))
        .bind(project_id)
        .bind(agent_id)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut samples = Vec::with_capacity(rows.len());
        for row in &rows {
            samples.extend(sample_from(row, metric)?);
        }
        Ok(samples)
    }

    async fn calls_since(
        &self,
        project_id: i64,
        agent_id: Option<i64>,
        scope: CallScope,
        since: DateTime<Utc>,
    ) -> Result<usize> {
        let n: i64 = sqlx::query(&format!(
            "SELECT count(*) AS n FROM calls c
             WHERE c.project_id = $1 AND c.received_at >= $2
                AND ($3::bigint IS NULL OR c.agent_id = $3){}",
            scope_test(scope)
        ))
        .bind(project_id)
        .bind(since.timestamp_millis())
        .bind(agent_id)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(n as usize)
    }

    async fn record_check(
        &self,
        rule_id: i64,
        change: AlertChange,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>> {
        let at = now.timestamp_millis();
        let mut tx = self.pool.begin().await?;
        let Some(row) =
            sqlx::query("SELECT project_id, firing FROM alert_rules WHERE id = $1 FOR UPDATE")
                .bind(rule_id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(None);
        };
        let (project_id, firing): (i64, bool) = (row.try_get(0)?, row.try_get(1)?);
        let id = match &change {
            AlertChange::Checked { summary } => {
                sqlx::query(
                    "UPDATE alert_rules SET last_checked_at = $1, last_summary = $2 WHERE id = $3",
                )
                .bind(at)
                .bind(text(summary))
                .bind(rule_id)
                .execute(&mut *tx)
                .await?;
                None
            }
            AlertChange::Open { .. } if firing => None,
            AlertChange::Resolve { .. } if !firing => None,
            AlertChange::Open {
                value,
                summary,
                call_ids,
                events,
            } => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO alerts (rule_id, project_id, opened_at, value, summary, call_ids)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(rule_id)
                .bind(project_id)
                .bind(at)
                .bind(value)
                .bind(text(summary))
                .bind(to_json(call_ids))
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE alert_rules SET firing = TRUE, last_opened_at = $1,
                        last_checked_at = $1, last_summary = $2 WHERE id = $3",
                )
                .bind(at)
                .bind(text(summary))
                .bind(rule_id)
                .execute(&mut *tx)
                .await?;
                for event in events {
                    emit(&mut tx, project_id, event, None).await?;
                }
                Some(id)
            }
            AlertChange::Resolve { summary, events } => {
                let id: Option<i64> = sqlx::query_scalar(
                    "UPDATE alerts SET resolved_at = $1
                     WHERE rule_id = $2 AND resolved_at IS NULL RETURNING id",
                )
                .bind(at)
                .bind(rule_id)
                .fetch_optional(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE alert_rules SET firing = FALSE, last_checked_at = $1,
                        last_summary = $2 WHERE id = $3",
                )
                .bind(at)
                .bind(text(summary))
                .bind(rule_id)
                .execute(&mut *tx)
                .await?;
                for event in events {
                    emit(&mut tx, project_id, event, None).await?;
                }
                id
            }
        };
        tx.commit().await?;
        Ok(id)
    }

    async fn alerts(
        &self,
        project_id: i64,
        rule_id: Option<i64>,
        firing_only: bool,
        limit: u32,
    ) -> Result<Vec<Alert>> {
        let rows = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a JOIN alert_rules r ON r.id = a.rule_id
             WHERE a.project_id = $1 AND ($2::bigint IS NULL OR a.rule_id = $2)
                AND (NOT $3 OR a.resolved_at IS NULL)
             ORDER BY a.id DESC LIMIT $4"
        ))
        .bind(project_id)
        .bind(rule_id)
        .bind(firing_only)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_from).collect()
    }

    async fn set_slack_error(&self, alert_id: i64, error: &str) -> Result<()> {
        sqlx::query("UPDATE alerts SET slack_error = $1 WHERE id = $2")
            .bind(text(error))
            .bind(alert_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
