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
use sqlx::sqlite::{SqliteConnection, SqlitePool};

pub(super) async fn insert_metric(
    conn: &mut SqliteConnection,
    project_id: i64,
    spec: &MetricSpec,
    now: i64,
) -> Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO metrics (project_id, name, kind, output, enum_values, applies_to, agent_ids,
            description, config, enabled, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(project_id)
    .bind(&spec.name)
    .bind(spec.kind().as_str())
    .bind(spec.output.as_str())
    .bind(to_json(&spec.enum_values))
    .bind(spec.applies_to.as_str())
    .bind(to_json(&spec.agent_ids))
    .bind(&spec.description)
    .bind(metric_document::document(&spec.definition, &spec.pass))
    .bind(spec.enabled)
    .bind(now)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| metric_name_taken(e, &spec.name))?;
    Ok(id)
}

async fn update_metric_row(
    conn: &mut SqliteConnection,
    id: i64,
    spec: &MetricSpec,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE metrics SET name = ?, kind = ?, output = ?, enum_values = ?, applies_to = ?,
            agent_ids = ?, description = ?, config = ?, enabled = ?, version = version + 1,
            updated_at = ?
         WHERE id = ?",
    )
    .bind(&spec.name)
    .bind(spec.kind().as_str())
    .bind(spec.output.as_str())
    .bind(to_json(&spec.enum_values))
    .bind(spec.applies_to.as_str())
    .bind(to_json(&spec.agent_ids))
    .bind(&spec.description)
    .bind(metric_document::document(&spec.definition, &spec.pass))
    .bind(spec.enabled)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(|e| metric_name_taken(e, &spec.name))?;
    Ok(())
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

pub(super) async fn list_metrics(pool: &SqlitePool, project_id: i64) -> Result<Vec<Metric>> {
    live_metrics(&mut *pool.acquire().await?, project_id).await
}

pub(super) async fn metric(pool: &SqlitePool, project_id: i64, id: i64) -> Result<Option<Metric>> {
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

pub(super) async fn create_metric(
    pool: &SqlitePool,
    project_id: i64,
    spec: &MetricSpec,
    now: DateTime<Utc>,
) -> Result<i64> {
    let mut conn = pool.acquire().await?;
    insert_metric(&mut conn, project_id, spec, now.timestamp_millis()).await
}

pub(super) async fn update_metric(
    pool: &SqlitePool,
    project_id: i64,
    id: i64,
    spec: &MetricSpec,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let exists: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM metrics WHERE id = ? AND project_id = ? AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(project_id)
    .fetch_optional(&mut *tx)
    .await?;
    if exists.is_none() {
        return Err(no_metric(id));
    }
    update_metric_row(&mut tx, id, spec, now.timestamp_millis()).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn delete_metric(
    pool: &SqlitePool,
    project_id: i64,
    id: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    let deleted = sqlx::query(
        "UPDATE metrics SET deleted_at = ? WHERE id = ? AND project_id = ? AND deleted_at IS NULL",
    )
    .bind(now.timestamp_millis())
    .bind(id)
    .bind(project_id)
    .execute(pool)
    .await?;
    if deleted.rows_affected() == 0 {
        return Err(no_metric(id));
    }
    Ok(())
}

/// Creates or updates metrics by name, in one transaction; an unchanged one keeps its version.
pub(super) async fn apply_metrics(
    pool: &SqlitePool,
    project_id: i64,
    specs: &[MetricSpec],
    now: DateTime<Utc>,
) -> Result<ApplySummary> {
    let now = now.timestamp_millis();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let existing = live_metrics(&mut tx, project_id).await?;
    let mut summary = ApplySummary::default();
    for spec in specs {
        match apply_step(&existing, spec) {
            ApplyStep::Unchanged => summary.unchanged.push(spec.name.clone()),
            ApplyStep::Update(m) => {
                update_metric_row(&mut tx, m.id, spec, now).await?;
                summary.updated.push(spec.name.clone());
            }
            ApplyStep::Create => {
                insert_metric(&mut tx, project_id, spec, now).await?;
                summary.created.push(spec.name.clone());
            }
        }
    }
    tx.commit().await?;
    Ok(summary)
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

pub(super) async fn set_rubric(
    pool: &SqlitePool,
    project_id: i64,
    rules: &[RubricRule],
) -> Result<()> {
    sqlx::query("UPDATE projects SET rubric = ? WHERE id = ?")
        .bind(to_json(&rules))
        .bind(project_id)
        .execute(pool)
        .await?;
    Ok(())
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

pub(super) async fn set_judge_settings(
    pool: &SqlitePool,
    project_id: i64,
    patch: &JudgeSettingsPatch,
) -> Result<()> {
    let (set_url, url) = judge_field(&patch.base_url);
    let (set_model, model) = judge_field(&patch.model);
    let (set_key, key) = judge_field(&patch.api_key);
    sqlx::query(
        "UPDATE projects SET
            judge_base_url = CASE WHEN ? THEN ? ELSE judge_base_url END,
            judge_model = CASE WHEN ? THEN ? ELSE judge_model END,
            judge_api_key = CASE WHEN ? THEN ? ELSE judge_api_key END,
            judge_concurrency = COALESCE(?, judge_concurrency)
         WHERE id = ?",
    )
    .bind(set_url)
    .bind(url)
    .bind(set_model)
    .bind(model)
    .bind(set_key)
    .bind(key)
    .bind(patch.concurrency.map(i64::from))
    .bind(project_id)
    .execute(pool)
    .await?;
    Ok(())
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

pub(super) async fn cache_get(pool: &SqlitePool, key: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT response FROM judge_cache WHERE key = ?")
            .bind(key)
            .fetch_optional(pool)
            .await?,
    )
}

pub(super) async fn cache_put(
    pool: &SqlitePool,
    key: &str,
    response: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query("INSERT OR REPLACE INTO judge_cache (key, response, created_at) VALUES (?, ?, ?)")
        .bind(key)
        .bind(response)
        .bind(now.timestamp_millis())
        .execute(pool)
        .await?;
    Ok(())
}

#[async_trait]
impl Metrics for SqliteStore {
    async fn list_metrics(&self, project_id: i64) -> Result<Vec<Metric>> {
        list_metrics(&self.pool, project_id).await
    }
    async fn metric(&self, project_id: i64, id: i64) -> Result<Option<Metric>> {
        metric(&self.pool, project_id, id).await
    }
    async fn create_metric(&self, project_id: i64, spec: &MetricSpec) -> Result<Metric> {
        let id = create_metric(&self.pool, project_id, spec, Utc::now()).await?;
        existing_metric(self, project_id, id).await
    }
    async fn update_metric(&self, project_id: i64, id: i64, spec: &MetricSpec) -> Result<Metric> {
        update_metric(&self.pool, project_id, id, spec, Utc::now()).await?;
        existing_metric(self, project_id, id).await
    }
    async fn delete_metric(&self, project_id: i64, id: i64) -> Result<()> {
        delete_metric(&self.pool, project_id, id, Utc::now()).await
    }
    async fn apply_metrics(&self, project_id: i64, specs: &[MetricSpec]) -> Result<ApplySummary> {
        apply_metrics(&self.pool, project_id, specs, Utc::now()).await
    }
    async fn rubric(&self, project_id: i64) -> Result<Vec<RubricRule>> {
        rubric(&mut *self.pool.acquire().await?, project_id).await
    }
    async fn set_rubric(&self, project_id: i64, rules: &[RubricRule]) -> Result<()> {
        set_rubric(&self.pool, project_id, rules).await
    }
    async fn judge_settings(&self, project_id: i64) -> Result<JudgeSettings> {
        judge_settings(&mut *self.pool.acquire().await?, project_id).await
    }
    async fn set_judge_settings(&self, project_id: i64, patch: &JudgeSettingsPatch) -> Result<()> {
        set_judge_settings(&self.pool, project_id, patch).await
    }
    async fn judge_cache_get(&self, key: &str) -> Result<Option<String>> {
        cache_get(&self.pool, key).await
    }
    async fn judge_cache_put(&self, key: &str, response: &str, now: DateTime<Utc>) -> Result<()> {
        cache_put(&self.pool, key, response, now).await
    }
}
