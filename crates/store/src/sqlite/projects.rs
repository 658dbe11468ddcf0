//! Projects, their keys and agents, and server-wide settings on SQLite.

use super::lite::LiteRow;
use crate::codec::now_ms;
use crate::errors::{no_project, project_name_taken};
use crate::key::{hash_key, hashes_match};
use crate::lookups::existing_project;
use crate::model::*;
use crate::rows::{agent_from, project_from, Columns, AGENT_COLUMNS, PROJECT_COLUMNS};
use crate::{ApiKey, Project, ProjectSettings, Projects, Result, SqliteStore, StoreError};
use async_trait::async_trait;
use callgrade_core::PhoneNumber;
use sqlx::sqlite::SqlitePool;
use std::sync::PoisonError;

pub(super) async fn update_project_settings(
    pool: &SqlitePool,
    project_id: i64,
    settings: &ProjectSettings,
) -> Result<()> {
    let updated = sqlx::query(
        "UPDATE projects SET
            listening_window_seconds = COALESCE(?, listening_window_seconds),
            run_deadline_seconds = COALESCE(?, run_deadline_seconds)
         WHERE id = ?",
    )
    .bind(settings.listening_window_seconds)
    .bind(settings.run_deadline_seconds)
    .bind(project_id)
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(no_project(project_id));
    }
    Ok(())
}

#[async_trait]
impl Projects for SqliteStore {
    async fn create_project(&self, name: &str) -> Result<(Project, ApiKey)> {
        let key = ApiKey::generate();
        let now = now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(&format!(
            "INSERT INTO projects (name, key_hash, key_prefix, created_at) VALUES (?, ?, ?, ?)
             RETURNING {PROJECT_COLUMNS}"
        ))
        .bind(name)
        .bind(key.hash())
        .bind(key.prefix())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| project_name_taken(e, name))?;
        let project = project_from(&row)?;
        for spec in callgrade_core::default_metrics() {
            super::metrics::insert_metric(&mut tx, project.id, &spec, now).await?;
        }
        tx.commit().await?;
        Ok((project, key))
    }
    async fn list_projects(&self) -> Result<Vec<Project>> {
        sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(project_from)
        .collect()
    }
    async fn project(&self, id: i64) -> Result<Option<Project>> {
        sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(project_from)
        .transpose()
    }
    async fn find_project(&self, name_or_id: &str) -> Result<Option<Project>> {
        if let Ok(id) = name_or_id.parse::<i64>() {
            return self.project(id).await;
        }
        sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE name = ?"
        ))
        .bind(name_or_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(project_from)
        .transpose()
    }
    async fn rotate_key(&self, project_id: i64) -> Result<ApiKey> {
        let key = ApiKey::generate();
        let updated = sqlx::query(
            "UPDATE projects SET key_hash = ?, key_prefix = ?, key_rotated_at = ? WHERE id = ?",
        )
        .bind(key.hash())
        .bind(key.prefix())
        .bind(now_ms())
        .bind(project_id)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(no_project(project_id));
        }
        Ok(key)
    }
    async fn authenticate(&self, key: &str) -> Result<Option<Project>> {
        let hash = hash_key(key);
        let conn = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let mut select = conn.prepare_cached(&format!(
            "SELECT {PROJECT_COLUMNS}, key_hash FROM projects WHERE key_hash = ?"
        ))?;
        let mut rows = select.query([&hash])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let row = LiteRow(row);
        match hashes_match(&row.text("key_hash")?, &hash) {
            true => Ok(Some(project_from(&row)?)),
            false => Ok(None),
        }
    }
    async fn create_agent(
        &self,
        project_id: i64,
        name: &str,
        phone_number: Option<&PhoneNumber>,
        description: Option<&str>,
    ) -> Result<Agent> {
        existing_project(self, project_id).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO agents (project_id, name, phone_number, description, created_at)
             VALUES (?, ?, ?, ?, ?)
             RETURNING {AGENT_COLUMNS}"
        ))
        .bind(project_id)
        .bind(name)
        .bind(phone_number.map(PhoneNumber::as_str))
        .bind(description)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        agent_from(&row)
    }
    async fn update_agent(
        &self,
        project_id: i64,
        agent_id: i64,
        name: &str,
        phone_number: Option<&PhoneNumber>,
        description: Option<&str>,
    ) -> Result<Agent> {
        let row = sqlx::query(&format!(
            "UPDATE agents SET name = ?, phone_number = ?, description = ?
             WHERE id = ? AND project_id = ? RETURNING {AGENT_COLUMNS}"
        ))
        .bind(name)
        .bind(phone_number.map(PhoneNumber::as_str))
        .bind(description)
        .bind(agent_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!("no agent with id {agent_id} in this project"))
        })?;
        agent_from(&row)
    }
    async fn list_agents(&self, project_id: i64) -> Result<Vec<Agent>> {
        sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE project_id = ? ORDER BY id"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(agent_from)
        .collect()
    }
    async fn update_project_settings(
        &self,
        project_id: i64,
        settings: &ProjectSettings,
    ) -> Result<Project> {
        update_project_settings(&self.pool, project_id, settings).await?;
        existing_project(self, project_id).await
    }
    async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
