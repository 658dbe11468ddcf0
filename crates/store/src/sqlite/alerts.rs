//! Alert rules and alerts on SQLite: writes on the writer thread (a check's alert, state and
//! events in one), reads on the pool.

use async_trait::async_trait;
use callgrade_core::alerts::{AlertRule, CallScope, Sample};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use sqlx::Row;

use super::lite::LiteRow;
use super::webhooks::emit;
use super::writer::in_place;
use crate::alert_rows::*;
use crate::codec::to_json;
use crate::errors::rule_name_taken;
use crate::model::*;
use crate::{Alerts, Result, SqliteStore, StoreError};

fn rule_in_place(conn: &Connection, project_id: i64, id: i64) -> Result<Option<AlertRuleRow>> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT {RULE_COLUMNS} FROM alert_rules WHERE project_id = ? AND id = ?"
    ))?;
    let mut rows = select.query(params![project_id, id])?;
    rows.next()?.map(|row| rule_from(&LiteRow(row))).transpose()
}

#[async_trait]
impl Alerts for SqliteStore {
    async fn create_rule(
        &self,
        project_id: i64,
        rule: &AlertRule,
        now: DateTime<Utc>,
    ) -> Result<AlertRuleRow> {
        let (rule, at) = (rule.clone(), now.timestamp_millis());
        self.writer
            .write(in_place(move |conn| {
                let id: i64 = conn
                    .prepare_cached(
                        "INSERT INTO alert_rules (project_id, name, definition, enabled,
                            created_at, updated_at)
                         VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    )?
                    .query_row(
                        params![project_id, rule.name, to_json(&rule), rule.enabled, at, at],
                        |row| row.get(0),
                    )
                    .map_err(|e| rule_name_taken(e, &rule.name))?;
                rule_in_place(conn, project_id, id)?
                    .ok_or_else(|| StoreError::NotFound(format!("alert rule {id}")))
            }))
            .await
    }

    async fn list_rules(&self, project_id: i64) -> Result<Vec<AlertRuleRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM alert_rules WHERE project_id = ? ORDER BY id"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rule_from).collect()
    }

    async fn rule(&self, project_id: i64, id: i64) -> Result<Option<AlertRuleRow>> {
        let row = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM alert_rules WHERE project_id = ? AND id = ?"
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
        let (rule, at) = (rule.clone(), now.timestamp_millis());
        self.writer
            .write(in_place(move |conn| {
                conn.prepare_cached(
                    "UPDATE alert_rules SET name = ?, definition = ?, enabled = ?, updated_at = ?
                     WHERE project_id = ? AND id = ?",
                )?
                .execute(params![
                    rule.name,
                    to_json(&rule),
                    rule.enabled,
                    at,
                    project_id,
                    id
                ])
                .map_err(|e| rule_name_taken(e, &rule.name))?;
                rule_in_place(conn, project_id, id)
            }))
            .await
    }

    async fn delete_rule(&self, project_id: i64, id: i64) -> Result<bool> {
        self.writer
            .write(in_place(move |conn| {
                conn.prepare_cached("DELETE FROM alerts WHERE rule_id = ? AND project_id = ?")?
                    .execute(params![id, project_id])?;
                let n = conn
                    .prepare_cached("DELETE FROM alert_rules WHERE id = ? AND project_id = ?")?
                    .execute(params![id, project_id])?;
                Ok(n == 1)
            }))
            .await
    }

    async fn enabled_rules(&self) -> Result<Vec<AlertRuleRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM alert_rules WHERE enabled = 1 ORDER BY id"
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
             WHERE ce.project_id = ? AND (? IS NULL OR c.agent_id = ?){}
             ORDER BY ce.evaluated_at DESC, ce.call_id DESC LIMIT ?",
            scope_test(scope)
        ))
        .bind(project_id)
        .bind(agent_id)
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
             WHERE c.project_id = ? AND c.received_at >= ? AND (? IS NULL OR c.agent_id = ?){}",
            scope_test(scope)
        ))
        .bind(project_id)
        .bind(since.timestamp_millis())
        .bind(agent_id)
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
        self.writer
            .write(in_place(move |conn| {
                let state: Option<(i64, bool)> = conn
                    .prepare_cached("SELECT project_id, firing FROM alert_rules WHERE id = ?")?
                    .query_row([rule_id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                let Some((project_id, firing)) = state else {
                    return Ok(None);
                };
                match &change {
                    AlertChange::Checked { summary } => {
                        conn.prepare_cached(
                            "UPDATE alert_rules SET last_checked_at = ?, last_summary = ? WHERE id = ?",
                        )?
                        .execute(params![at, summary, rule_id])?;
                        Ok(None)
                    }
                    AlertChange::Open { .. } if firing => Ok(None),
                    AlertChange::Resolve { .. } if !firing => Ok(None),
                    AlertChange::Open { value, summary, call_ids, events } => {
                        let id: i64 = conn
                            .prepare_cached(
                                "INSERT INTO alerts (rule_id, project_id, opened_at, value, summary,
                                    call_ids) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                            )?
                            .query_row(
                                params![rule_id, project_id, at, value, summary, to_json(call_ids)],
                                |row| row.get(0),
                            )?;
                        conn.prepare_cached(
                            "UPDATE alert_rules SET firing = 1, last_opened_at = ?, last_checked_at = ?,
                                last_summary = ? WHERE id = ?",
                        )?
                        .execute(params![at, at, summary, rule_id])?;
                        for event in events {
                            emit(conn, project_id, event, None)?;
                        }
                        Ok(Some(id))
                    }
                    AlertChange::Resolve { summary, events } => {
                        let id: Option<i64> = conn
                            .prepare_cached(
                                "UPDATE alerts SET resolved_at = ?
                                 WHERE rule_id = ? AND resolved_at IS NULL RETURNING id",
                            )?
                            .query_row(params![at, rule_id], |row| row.get(0))
                            .optional()?;
                        conn.prepare_cached(
                            "UPDATE alert_rules SET firing = 0, last_checked_at = ?, last_summary = ?
                             WHERE id = ?",
                        )?
                        .execute(params![at, summary, rule_id])?;
                        for event in events {
                            emit(conn, project_id, event, None)?;
                        }
                        Ok(id)
                    }
                }
            }))
            .await
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
             WHERE a.project_id = ? AND (? IS NULL OR a.rule_id = ?)
                AND (? = 0 OR a.resolved_at IS NULL)
             ORDER BY a.id DESC LIMIT ?"
        ))
        .bind(project_id)
        .bind(rule_id)
        .bind(rule_id)
        .bind(firing_only)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_from).collect()
    }

    async fn set_slack_error(&self, alert_id: i64, error: &str) -> Result<()> {
        let error = error.to_owned();
        self.writer
            .write(in_place(move |conn| {
                conn.prepare_cached("UPDATE alerts SET slack_error = ? WHERE id = ?")?
                    .execute(params![error, alert_id])?;
                Ok(())
            }))
            .await
    }
}
