//! Metric definitions, the rubric, judge settings and the judge cache on SQLite.

use crate::codec::{from_json, judge_field, to_json};
use crate::errors::{metric_name_taken, no_metric};
use crate::lookups::existing_metric;
use crate::metric_document;
use crate::model::*;
use crate::rows::{judge_settings_from, metric_from, JUDGE_COLUMNS, METRIC_COLUMNS};
use crate::{ApplySummary, JudgeSettingsPatch, Metrics, Result, SqliteStore};
use async_trait::async_trait;
use callgrade_core::{apply_step, ApplyStep};
use callgrade_core::{MetricSpec, RubricRule};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use sqlx::sqlite::{SqliteConnection, SqlitePool};

use super::lite::LiteRow;
use super::writer::in_place;
use crate::codec::now_ms;

/// Inserts a metric on the writer's connection; its id.
pub(super) fn insert_metric(
    conn: &Connection,
    project_id: i64,
    spec: &MetricSpec,
    now: i64,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO metrics (project_id, name, kind, output, enum_values, applies_to, agent_ids,
            description, config, enabled, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )?
    .query_row(
        params![
            project_id,
            spec.name,
            spec.kind().as_str(),
            spec.output.as_str(),
            to_json(&spec.enum_values),
            spec.applies_to.as_str(),
            to_json(&spec.agent_ids),
            spec.description,
            metric_document::document(&spec.definition, &spec.pass),
            spec.enabled,
            now,
            now
        ],
        |row| row.get(0),
    )
    .map_err(|e| metric_name_taken(e, &spec.name))
}

fn update_metric_row(conn: &Connection, id: i64, spec: &MetricSpec, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE metrics SET name = ?, kind = ?, output = ?, enum_values = ?, applies_to = ?,
            agent_ids = ?, description = ?, config = ?, enabled = ?, version = version + 1,
            updated_at = ?
         WHERE id = ?",
    )?
    .execute(params![
        spec.name,
        spec.kind().as_str(),
        spec.output.as_str(),
        to_json(&spec.enum_values),
        spec.applies_to.as_str(),
        to_json(&spec.agent_ids),
        spec.description,
        metric_document::document(&spec.definition, &spec.pass),
        spec.enabled,
        now,
        id
    ])
    .map_err(|e| metric_name_taken(e, &spec.name))?;
    Ok(())
}

/// The project's live metrics, read on the writer's connection (inside a write).
fn live_metrics_in_place(conn: &Connection, project_id: i64) -> Result<Vec<Metric>> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT {METRIC_COLUMNS} FROM metrics WHERE project_id = ? AND deleted_at IS NULL ORDER BY id"
    ))?;
    let mut rows = select.query([project_id])?;
    let mut metrics = Vec::new();
    while let Some(row) = rows.next()? {
        metrics.push(metric_from(&LiteRow(row))?);
    }
    Ok(metrics)
}

async fn live_metrics(conn: &mut SqliteConnection, project_id: i64) -> Result<Vec<Metric>> {
    sqlx::query(&format!(
        "SELECT {METRIC_COLUMNS} FROM metrics WHERE project_id = ? AND deleted_at IS NULL ORDER BY id"
    ))
    .bind(project_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(metric_from)
    .collect()
}

pub(super) async fn rubric(
    conn: &mut SqliteConnection,
    project_id: i64,
) -> Result<Vec<RubricRule>> {
    let text: String = sqlx::query_scalar("SELECT rubric FROM projects WHERE id = ?")
        .bind(project_id)
        .fetch_one(&mut *conn)
        .await?;
    from_json(&text)
}

pub(super) async fn judge_settings(
    conn: &mut SqliteConnection,
    project_id: i64,
) -> Result<JudgeSettings> {
    let row = sqlx::query(&format!(
        "SELECT {JUDGE_COLUMNS} FROM projects WHERE id = ?"
    ))
    .bind(project_id)
    .fetch_one(&mut *conn)
    .await?;
    judge_settings_from(&row)
}

pub(super) async fn inputs(
    pool: &SqlitePool,
    project_id: i64,
) -> Result<(Vec<Metric>, Vec<RubricRule>, JudgeSettings)> {
    let mut conn = pool.acquire().await?;
    let metrics = live_metrics(&mut conn, project_id).await?;
    let rules = rubric(&mut conn, project_id).await?;
    let judge = judge_settings(&mut conn, project_id).await?;
    Ok((metrics, rules, judge))
}

#[async_trait]
impl Metrics for SqliteStore {
    async fn list_metrics(&self, project_id: i64) -> Result<Vec<Metric>> {
        let pool = &self.pool;
        live_metrics(&mut *pool.acquire().await?, project_id).await
    }
    async fn metric(&self, project_id: i64, id: i64) -> Result<Option<Metric>> {
        let pool = &self.pool;
        sqlx::query(&format!(
            "SELECT {METRIC_COLUMNS} FROM metrics WHERE project_id = ? AND id = ? AND deleted_at IS NULL"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(metric_from)
        .transpose()
    }
    async fn create_metric(&self, project_id: i64, spec: &MetricSpec) -> Result<Metric> {
        let (spec, now) = (spec.clone(), now_ms());
        let id = self
            .writer
            .write(in_place(move |conn| {
                insert_metric(conn, project_id, &spec, now)
            }))
            .await?;
        existing_metric(self, project_id, id).await
    }
    async fn update_metric(&self, project_id: i64, id: i64, spec: &MetricSpec) -> Result<Metric> {
        let (spec, now) = (spec.clone(), now_ms());
        self.writer
            .write(in_place(move |conn| {
                let exists = conn
                    .prepare_cached(
                        "SELECT 1 FROM metrics WHERE id = ? AND project_id = ? AND deleted_at IS NULL",
                    )?
                    .exists(params![id, project_id])?;
                if !exists {
                    return Err(no_metric(id));
                }
                update_metric_row(conn, id, &spec, now)
            }))
            .await?;
        existing_metric(self, project_id, id).await
    }
    async fn delete_metric(&self, project_id: i64, id: i64) -> Result<()> {
        let now = now_ms();
        self.writer
            .write(in_place(move |conn| {
                let deleted = conn
                    .prepare_cached(
                        "UPDATE metrics SET deleted_at = ?
                         WHERE id = ? AND project_id = ? AND deleted_at IS NULL",
                    )?
                    .execute(params![now, id, project_id])?;
                if deleted == 0 {
                    return Err(no_metric(id));
                }
                Ok(())
            }))
            .await
    }
    async fn apply_metrics(&self, project_id: i64, specs: &[MetricSpec]) -> Result<ApplySummary> {
        // Creates or updates by name in one write; an unchanged metric keeps its version.
        let (specs, now) = (specs.to_vec(), now_ms());
        self.writer
            .write(in_place(move |conn| {
                let existing = live_metrics_in_place(conn, project_id)?;
                let mut summary = ApplySummary::default();
                for spec in &specs {
                    match apply_step(&existing, spec) {
                        ApplyStep::Unchanged => summary.unchanged.push(spec.name.clone()),
                        ApplyStep::Update(m) => {
                            update_metric_row(conn, m.id, spec, now)?;
                            summary.updated.push(spec.name.clone());
                        }
                        ApplyStep::Create => {
                            insert_metric(conn, project_id, spec, now)?;
                            summary.created.push(spec.name.clone());
                        }
                    }
                }
                Ok(summary)
            }))
            .await
    }
    async fn rubric(&self, project_id: i64) -> Result<Vec<RubricRule>> {
        rubric(&mut *self.pool.acquire().await?, project_id).await
    }
    async fn set_rubric(&self, project_id: i64, rules: &[RubricRule]) -> Result<()> {
        let rules = to_json(&rules);
        self.writer
            .write(in_place(move |conn| {
                conn.prepare_cached("UPDATE projects SET rubric = ? WHERE id = ?")?
                    .execute(params![rules, project_id])?;
                Ok(())
            }))
            .await
    }
    async fn judge_settings(&self, project_id: i64) -> Result<JudgeSettings> {
        judge_settings(&mut *self.pool.acquire().await?, project_id).await
    }
    async fn set_judge_settings(&self, project_id: i64, patch: &JudgeSettingsPatch) -> Result<()> {
        let (set_url, url) = judge_field(&patch.base_url);
        let (set_model, model) = judge_field(&patch.model);
        let (set_key, key) = judge_field(&patch.api_key);
        let concurrency = patch.concurrency.map(i64::from);
        self.writer
            .write(in_place(move |conn| {
                conn.prepare_cached(
                    "UPDATE projects SET
                        judge_base_url = CASE WHEN ? THEN ? ELSE judge_base_url END,
                        judge_model = CASE WHEN ? THEN ? ELSE judge_model END,
                        judge_api_key = CASE WHEN ? THEN ? ELSE judge_api_key END,
                        judge_concurrency = COALESCE(?, judge_concurrency)
                     WHERE id = ?",
                )?
                .execute(params![
                    set_url,
                    url,
                    set_model,
                    model,
                    set_key,
                    key,
                    concurrency,
                    project_id
                ])?;
                Ok(())
            }))
            .await
    }
    async fn judge_cache_get(&self, key: &str) -> Result<Option<String>> {
        let pool = &self.pool;
        Ok(
            sqlx::query_scalar("SELECT response FROM judge_cache WHERE key = ?")
                .bind(key)
                .fetch_optional(pool)
                .await?,
        )
    }
    async fn judge_cache_put(&self, key: &str, response: &str, now: DateTime<Utc>) -> Result<()> {
        let (key, response, now) = (key.to_owned(), response.to_owned(), now.timestamp_millis());
        self.writer
            .write(in_place(move |conn| {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO judge_cache (key, response, created_at) VALUES (?, ?, ?)",
                )?
                .execute(params![key, response, now])?;
                Ok(())
            }))
            .await
    }
}
