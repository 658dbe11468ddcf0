//! Projects, their agents, and server-wide settings on SQLite.

use super::lite::LiteRow;
use crate::codec::{now_ms, to_json};
use crate::errors::{no_project, project_name_taken};
use crate::key::{new_redaction_key, parse_redaction_key};
use crate::lookups::existing_project;
use crate::model::*;
use crate::rows::{
    agent_and_connector_from, agent_from, project_from, vendor_secret_from, AGENT_COLUMNS,
    PROJECT_COLUMNS,
};
use crate::{ApiKey, Project, ProjectSettings, Projects, Result, SqliteStore, StoreError};
use async_trait::async_trait;
use callgrade_core::access::Scopes;
use callgrade_core::Vendor;

use rusqlite::{params, OptionalExtension};

use super::writer::in_place;

#[async_trait]
impl Projects for SqliteStore {
    async fn create_project(&self, name: &str) -> Result<(Project, ApiKey)> {
        let (key, name, now) = (ApiKey::generate(), name.to_owned(), now_ms());
        let (hash, prefix) = (key.hash().to_owned(), key.prefix().to_owned());
        let project = self
            .writer
            .write(in_place(move |conn| {
                let project = conn
                    .prepare_cached(&format!(
                        "INSERT INTO projects (name, created_at) VALUES (?, ?)
                         RETURNING {PROJECT_COLUMNS}"
                    ))?
                    .query_row(params![name, now], |row| Ok(project_from(&LiteRow(row))))
                    .map_err(|e| project_name_taken(e, &name))??;
                conn.prepare_cached(
                    "INSERT INTO api_keys (project_id, name, key_hash, key_prefix, scopes,
                        created_at)
                     VALUES (?, 'default', ?, ?, ?, ?)",
                )?
                .execute(params![
                    project.id,
                    hash,
                    prefix,
                    Scopes::ALL.bits(),
                    now
                ])?;
                for spec in callgrade_core::default_metrics() {
                    super::metrics::insert_metric(conn, project.id, &spec, now)?;
                }
                Ok(project)
            }))
            .await?;
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
    async fn create_agent(&self, project_id: i64, agent: &NewAgent) -> Result<Agent> {
        existing_project(self, project_id).await?;
        let now = now_ms();
        let (name, phone, description, connector, external_ids) = agent_columns(agent);
        self.writer
            .write(in_place(move |conn| {
                conn.prepare_cached(&format!(
                    "INSERT INTO agents (project_id, name, phone_number, description, connector,
                        external_ids, created_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?)
                     RETURNING {AGENT_COLUMNS}"
                ))?
                .query_row(
                    params![
                        project_id,
                        name,
                        phone,
                        description,
                        connector,
                        external_ids,
                        now
                    ],
                    |row| Ok(agent_from(&LiteRow(row))),
                )?
            }))
            .await
    }
    async fn agent(
        &self,
        project_id: i64,
        agent_id: i64,
    ) -> Result<Option<(Agent, Option<Connector>)>> {
        sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE id = ? AND project_id = ?"
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
        let (name, phone, description, connector, external_ids) = agent_columns(agent);
        self.writer
            .write(in_place(move |conn| {
                conn.prepare_cached(&format!(
                    "UPDATE agents SET name = ?, phone_number = ?, description = ?, connector = ?,
                        external_ids = ?
                     WHERE id = ? AND project_id = ? RETURNING {AGENT_COLUMNS}"
                ))?
                .query_row(
                    params![
                        name,
                        phone,
                        description,
                        connector,
                        external_ids,
                        agent_id,
                        project_id
                    ],
                    |row| Ok(agent_from(&LiteRow(row))),
                )
                .optional()?
                .ok_or_else(|| {
                    StoreError::NotFound(format!("no agent with id {agent_id} in this project"))
                })?
            }))
            .await
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
        let (window, deadline) = (
            settings.listening_window_seconds,
            settings.run_deadline_seconds,
        );
        let redaction = settings.redaction.map(|p| to_json(&p));
        let hash_key = redaction.as_ref().map(|_| new_redaction_key());
        self.writer
            .write(in_place(move |conn| {
                let updated = conn
                    .prepare_cached(
                        "UPDATE projects SET
                            listening_window_seconds = COALESCE(?, listening_window_seconds),
                            run_deadline_seconds = COALESCE(?, run_deadline_seconds),
                            redaction = COALESCE(?, redaction),
                            redaction_key = COALESCE(redaction_key, ?)
                         WHERE id = ?",
                    )?
                    .execute(params![window, deadline, redaction, hash_key, project_id])?;
                if updated == 0 {
                    return Err(no_project(project_id));
                }
                Ok(())
            }))
            .await?;
        existing_project(self, project_id).await
    }
    async fn redaction_key(&self, project_id: i64) -> Result<Option<[u8; 32]>> {
        let key: Option<Option<String>> =
            sqlx::query_scalar("SELECT redaction_key FROM projects WHERE id = ?")
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
            "SELECT id FROM agents WHERE project_id = ?
                AND EXISTS (SELECT 1 FROM json_each(agents.external_ids) WHERE value = ?)
             ORDER BY id LIMIT 1",
        )
        .bind(project_id)
        .bind(external_id)
        .fetch_optional(&self.pool)
        .await?)
    }
    async fn vendor_secret(&self, project_id: i64, vendor: Vendor) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT secret FROM vendor_secrets WHERE project_id = ? AND vendor = ?",
        )
        .bind(project_id)
        .bind(vendor.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }
    async fn vendor_secrets(&self, project_id: i64) -> Result<Vec<VendorSecretView>> {
        sqlx::query(
            "SELECT vendor, updated_at FROM vendor_secrets WHERE project_id = ? ORDER BY vendor",
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
        let (secret, now) = (secret.map(str::to_owned), now_ms());
        self.writer
            .write(in_place(move |conn| {
                let changed = match &secret {
                    Some(secret) => conn
                        .prepare_cached(
                            "INSERT INTO vendor_secrets (project_id, vendor, secret, updated_at)
                             VALUES (?, ?, ?, ?)
                             ON CONFLICT (project_id, vendor)
                             DO UPDATE SET secret = excluded.secret, updated_at = excluded.updated_at",
                        )?
                        .execute(params![project_id, vendor.as_str(), secret, now])?,
                    None => conn
                        .prepare_cached("DELETE FROM vendor_secrets WHERE project_id = ? AND vendor = ?")?
                        .execute(params![project_id, vendor.as_str()])?,
                };
                Ok(changed > 0)
            }))
            .await
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
        let (key, value) = (key.to_owned(), value.to_owned());
        self.writer
            .write(in_place(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO settings (key, value) VALUES (?, ?)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![key, value])?;
                Ok(())
            }))
            .await
    }
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

type AgentColumns = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

/// An agent's columns, owned, for the writer thread.
fn agent_columns(agent: &NewAgent) -> AgentColumns {
    (
        agent.name.clone(),
        agent.phone_number.as_ref().map(|p| p.as_str().to_owned()),
        agent.description.clone(),
        agent.connector.as_ref().map(Connector::to_document),
        to_json(&agent.external_ids),
    )
}
