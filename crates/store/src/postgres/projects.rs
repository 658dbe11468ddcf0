//! Projects, their agents, and server-wide settings on PostgreSQL.

use super::{opt_text, text};
use crate::codec::{now_ms, to_json};
use crate::errors::{no_project, project_name_taken};
use crate::key::{new_redaction_key, parse_redaction_key};
use crate::lookups::existing_project;
use crate::model::*;
use crate::rows::{
    agent_and_connector_from, agent_from, project_from, vendor_secret_from, AGENT_COLUMNS,
    PROJECT_COLUMNS,
};
use crate::{ApiKey, PgStore, Project, ProjectSettings, Projects, Result, StoreError};
use async_trait::async_trait;
use callgrade_core::access::Scopes;
use callgrade_core::Vendor;
use callgrade_core::{Connector, PhoneNumber};
use sqlx::postgres::PgPool;

pub(super) async fn update_project_settings(
    pool: &PgPool,
    project_id: i64,
    settings: &ProjectSettings,
) -> Result<()> {
    let updated = sqlx::query(
        "UPDATE projects SET
            listening_window_seconds = COALESCE($1, listening_window_seconds),
            run_deadline_seconds = COALESCE($2, run_deadline_seconds),
            redaction = COALESCE($4, redaction),
            redaction_key = COALESCE(redaction_key, $5)
         WHERE id = $3",
    )
    .bind(settings.listening_window_seconds)
    .bind(settings.run_deadline_seconds)
    .bind(project_id)
    .bind(settings.redaction.map(|p| to_json(&p)))
    .bind(settings.redaction.map(|_| new_redaction_key()))
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(no_project(project_id));
    }
    Ok(())
}

#[async_trait]
impl Projects for PgStore {
    async fn create_project(&self, name: &str) -> Result<(Project, ApiKey)> {
        let key = ApiKey::generate();
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        // A concurrent creation of the same name waits on the unique index, then fails here.
        let row = sqlx::query(&format!(
            "INSERT INTO projects (name, created_at) VALUES ($1, $2) RETURNING {PROJECT_COLUMNS}"
        ))
        .bind(text(name))
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| project_name_taken(e, name))?;
        let project = project_from(&row)?;
        sqlx::query(
            "INSERT INTO api_keys (project_id, name, key_hash, key_prefix, scopes, created_at)
             VALUES ($1, 'default', $2, $3, $4, $5)",
        )
        .bind(project.id)
        .bind(key.hash())
        .bind(key.prefix())
        .bind(Scopes::ALL.bits())
        .bind(now)
        .execute(&mut *tx)
        .await?;
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
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"
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
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE name = $1"
        ))
        .bind(text(name_or_id))
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(project_from)
        .transpose()
    }
    async fn update_project_settings(
        &self,
        project_id: i64,
        settings: &ProjectSettings,
    ) -> Result<Project> {
        update_project_settings(&self.pool, project_id, settings).await?;
        existing_project(self, project_id).await
    }
    async fn create_agent(&self, project_id: i64, agent: &NewAgent) -> Result<Agent> {
        existing_project(self, project_id).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO agents (project_id, name, phone_number, description, connector,
                external_ids, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING {AGENT_COLUMNS}"
        ))
        .bind(project_id)
        .bind(text(&agent.name))
        .bind(agent.phone_number.as_ref().map(PhoneNumber::as_str))
        .bind(opt_text(agent.description.as_deref()))
        .bind(agent.connector.as_ref().map(Connector::to_document))
        .bind(to_json(&agent.external_ids))
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        agent_from(&row)
    }
    async fn agent(
        &self,
        project_id: i64,
        agent_id: i64,
    ) -> Result<Option<(Agent, Option<Connector>)>> {
        sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1 AND project_id = $2"
        ))
        .bind(agent_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(agent_and_connector_from)
        .transpose()
    }
    async fn update_agent(
        &self,
        project_id: i64,
        agent_id: i64,
        agent: &NewAgent,
    ) -> Result<Agent> {
        let row = sqlx::query(&format!(
            "UPDATE agents SET name = $1, phone_number = $2, description = $3, connector = $4,
                external_ids = $5
             WHERE id = $6 AND project_id = $7 RETURNING {AGENT_COLUMNS}"
        ))
        .bind(text(&agent.name))
        .bind(agent.phone_number.as_ref().map(PhoneNumber::as_str))
        .bind(opt_text(agent.description.as_deref()))
        .bind(agent.connector.as_ref().map(Connector::to_document))
        .bind(to_json(&agent.external_ids))
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
            "SELECT {AGENT_COLUMNS} FROM agents WHERE project_id = $1 ORDER BY id"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(agent_from)
        .collect()
    }
    async fn redaction_key(&self, project_id: i64) -> Result<Option<[u8; 32]>> {
        let key: Option<Option<String>> =
            sqlx::query_scalar("SELECT redaction_key FROM projects WHERE id = $1")
                .bind(project_id)
                .fetch_optional(&self.pool)
                .await?;
        key.flatten()
            .map(|hex| parse_redaction_key(&hex))
            .transpose()
    }
    async fn agent_by_external_id(
        &self,
        project_id: i64,
        external_id: &str,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM agents WHERE project_id = $1 AND external_ids::jsonb ? $2
             ORDER BY id LIMIT 1",
        )
        .bind(project_id)
        .bind(external_id)
        .fetch_optional(&self.pool)
        .await?)
    }
    async fn vendor_secret(&self, project_id: i64, vendor: Vendor) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT secret FROM vendor_secrets WHERE project_id = $1 AND vendor = $2",
        )
        .bind(project_id)
        .bind(vendor.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }
    async fn vendor_secrets(&self, project_id: i64) -> Result<Vec<VendorSecretView>> {
        sqlx::query(
            "SELECT vendor, updated_at FROM vendor_secrets WHERE project_id = $1 ORDER BY vendor",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(vendor_secret_from)
        .collect()
    }
    async fn set_vendor_secret(
        &self,
        project_id: i64,
        vendor: Vendor,
        secret: Option<&str>,
    ) -> Result<bool> {
        let changed = match secret {
            Some(secret) => {
                sqlx::query(
                    "INSERT INTO vendor_secrets (project_id, vendor, secret, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (project_id, vendor)
                 DO UPDATE SET secret = excluded.secret, updated_at = excluded.updated_at",
                )
                .bind(project_id)
                .bind(vendor.as_str())
                .bind(secret)
                .bind(now_ms())
                .execute(&self.pool)
                .await?
            }
            None => {
                sqlx::query("DELETE FROM vendor_secrets WHERE project_id = $1 AND vendor = $2")
                    .bind(project_id)
                    .bind(vendor.as_str())
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(changed.rows_affected() > 0)
    }
    async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
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
