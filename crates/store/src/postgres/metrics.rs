//! Metric definitions, the rubric, judge settings and the judge cache on PostgreSQL.

use super::{opt_text, text};
use crate::codec::{from_json, judge_field, to_json};
use crate::errors::{metric_name_taken, no_metric};
use crate::lookups::existing_metric;
use crate::metric_document;
use crate::model::*;
use crate::rows::{judge_settings_from, metric_from, JUDGE_COLUMNS, METRIC_COLUMNS};
use crate::{ApplySummary, JudgeSettingsPatch, Metrics, PgStore, Result};
use async_trait::async_trait;
use callgrade_core::{apply_step, ApplyStep};
use callgrade_core::{MetricSpec, RubricRule};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgPool};

pub(super) async fn insert_metric(
    conn: &mut PgConnection,
    project_id: i64,
    spec: &MetricSpec,
    now: i64,
) -> Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO metrics (project_id, name, kind, output, enum_values, applies_to, agent_ids,
            description, config, enabled, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
    )
    .bind(project_id)
    .bind(text(&spec.name))
    .bind(spec.kind().as_str())
    .bind(spec.output.as_str())
    .bind(to_json(&spec.enum_values))
    .bind(spec.applies_to.as_str())
    .bind(to_json(&spec.agent_ids))
    .bind(text(&spec.description))
    .bind(metric_document::document(&spec.definition, &spec.pass))
    .bind(spec.enabled)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| metric_name_taken(e, &spec.name))?;
    Ok(id)
}

async fn update_metric_row(
    conn: &mut PgConnection,
    id: i64,
    spec: &MetricSpec,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE metrics SET name = $1, kind = $2, output = $3, enum_values = $4, applies_to = $5,
            agent_ids = $6, description = $7, config = $8, enabled = $9, version = version + 1,
            updated_at = $10
         WHERE id = $11",
    )
    .bind(text(&spec.name))
    .bind(spec.kind().as_str())
    .bind(spec.output.as_str())
    .bind(to_json(&spec.enum_values))
    .bind(spec.applies_to.as_str())
    .bind(to_json(&spec.agent_ids))
    .bind(text(&spec.description))
    .bind(metric_document::document(&spec.definition, &spec.pass))
    .bind(spec.enabled)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(|e| metric_name_taken(e, &spec.name))?;
    Ok(())
}

async fn live_metrics(conn: &mut PgConnection, project_id: i64) -> Result<Vec<Metric>> {
    sqlx::query(&format!(
        "SELECT {METRIC_COLUMNS} FROM metrics WHERE project_id = $1 AND deleted_at IS NULL
         ORDER BY id"
    ))
    .bind(project_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(metric_from)
    .collect()
}

pub(super) async fn create_metric(
    pool: &PgPool,
    project_id: i64,
    spec: &MetricSpec,
    now: DateTime<Utc>,
) -> Result<i64> {
    let mut conn = pool.acquire().await?;
    insert_metric(&mut conn, project_id, spec, now.timestamp_millis()).await
}

pub(super) async fn update_metric(
    pool: &PgPool,
    project_id: i64,
    id: i64,
    spec: &MetricSpec,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    // Locked, so a concurrent delete cannot slip between the check and the update.
    let exists: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM metrics WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL
         FOR UPDATE",
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

pub(super) async fn rubric(conn: &mut PgConnection, project_id: i64) -> Result<Vec<RubricRule>> {
    let text: String = sqlx::query_scalar("SELECT rubric FROM projects WHERE id = $1")
        .bind(project_id)
        .fetch_one(&mut *conn)
        .await?;
    from_json(&text)
}

pub(super) async fn judge_settings(
    conn: &mut PgConnection,
    project_id: i64,
) -> Result<JudgeSettings> {
    let row = sqlx::query(&format!(
        "SELECT {JUDGE_COLUMNS} FROM projects WHERE id = $1"
    ))
    .bind(project_id)
    .fetch_one(&mut *conn)
    .await?;
    judge_settings_from(&row)
}

pub(super) async fn inputs(
    pool: &PgPool,
    project_id: i64,
) -> Result<(Vec<Metric>, Vec<RubricRule>, JudgeSettings)> {
    let mut conn = pool.acquire().await?;
    let metrics = live_metrics(&mut conn, project_id).await?;
    let rules = rubric(&mut conn, project_id).await?;
    let judge = judge_settings(&mut conn, project_id).await?;
    Ok((metrics, rules, judge))
}

#[async_trait]
impl Metrics for PgStore {
    async fn list_metrics(&self, project_id: i64) -> Result<Vec<Metric>> {
        let pool = &self.pool;
        live_metrics(&mut *pool.acquire().await?, project_id).await
    }
    async fn metric(&self, project_id: i64, id: i64) -> Result<Option<Metric>> {
        let pool = &self.pool;
        sqlx::query(&format!(
            "SELECT {METRIC_COLUMNS} FROM metrics
             WHERE project_id = $1 AND id = $2 AND deleted_at IS NULL"
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
        let id = create_metric(&self.pool, project_id, spec, Utc::now()).await?;
        existing_metric(self, project_id, id).await
    }
    async fn update_metric(&self, project_id: i64, id: i64, spec: &MetricSpec) -> Result<Metric> {
        update_metric(&self.pool, project_id, id, spec, Utc::now()).await?;
        existing_metric(self, project_id, id).await
    }
    async fn delete_metric(&self, project_id: i64, id: i64) -> Result<()> {
        let pool = &self.pool;
        let now = Utc::now();
        let deleted = sqlx::query(
            "UPDATE metrics SET deleted_at = $1
             WHERE id = $2 AND project_id = $3 AND deleted_at IS NULL",
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
    async fn apply_metrics(&self, project_id: i64, specs: &[MetricSpec]) -> Result<ApplySummary> {
        let pool = &self.pool;
        let now = Utc::now();
        let now = now.timestamp_millis();
        let mut tx = pool.begin().await?;
        // The whole comparison decides the writes: applies to one project run one at a time, as
        // they do under SQLite's single writer.
        sqlx::query("SELECT 1 FROM projects WHERE id = $1 FOR UPDATE")
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
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
    async fn rubric(&self, project_id: i64) -> Result<Vec<RubricRule>> {
        rubric(&mut *self.pool.acquire().await?, project_id).await
    }
    async fn set_rubric(&self, project_id: i64, rules: &[RubricRule]) -> Result<()> {
        let pool = &self.pool;
        sqlx::query("UPDATE projects SET rubric = $1 WHERE id = $2")
            .bind(to_json(&rules))
            .bind(project_id)
            .execute(pool)
            .await?;
        Ok(())
    }
    async fn judge_settings(&self, project_id: i64) -> Result<JudgeSettings> {
        judge_settings(&mut *self.pool.acquire().await?, project_id).await
    }
    async fn set_judge_settings(&self, project_id: i64, patch: &JudgeSettingsPatch) -> Result<()> {
        let pool = &self.pool;
        let (set_url, url) = judge_field(&patch.base_url);
        let (set_model, model) = judge_field(&patch.model);
        let (set_key, key) = judge_field(&patch.api_key);
        sqlx::query(
            "UPDATE projects SET
                judge_base_url = CASE WHEN $1 THEN $2 ELSE judge_base_url END,
                judge_model = CASE WHEN $3 THEN $4 ELSE judge_model END,
                judge_api_key = CASE WHEN $5 THEN $6 ELSE judge_api_key END,
                judge_concurrency = COALESCE($7, judge_concurrency)
             WHERE id = $8",
        )
        .bind(set_url)
        .bind(opt_text(url.as_deref()))
        .bind(set_model)
        .bind(opt_text(model.as_deref()))
        .bind(set_key)
        .bind(opt_text(key.as_deref()))
        .bind(patch.concurrency.map(i64::from))
        .bind(project_id)
        .execute(pool)
        .await?;
        Ok(())
    }
    async fn judge_cache_get(&self, key: &str) -> Result<Option<String>> {
        let pool = &self.pool;
        Ok(
            sqlx::query_scalar("SELECT response FROM judge_cache WHERE key = $1")
                .bind(text(key))
                .fetch_optional(pool)
                .await?,
        )
    }
    async fn judge_cache_put(&self, key: &str, response: &str, now: DateTime<Utc>) -> Result<()> {
        let pool = &self.pool;
        sqlx::query(
            "INSERT INTO judge_cache (key, response, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET response = EXCLUDED.response,
                created_at = EXCLUDED.created_at",
        )
        .bind(text(key))
        .bind(text(response))
        .bind(now.timestamp_millis())
        .execute(pool)
        .await?;
        Ok(())
    }
}
