//! API keys on PostgreSQL.

use async_trait::async_trait;
use callgrade_core::access::KeyDraft;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::text;
use crate::errors::no_project;
use crate::key::{hash_key, hashes_match};
use crate::model::*;
use crate::rows::{grant_from, key_from, GRANT_QUERY, KEY_COLUMNS};
use crate::{ApiKey, Keys, PgStore, Result};

async fn insert_key(
    conn: &mut PgConnection,
    project_id: i64,
    draft: &KeyDraft,
    key: &ApiKey,
    now: i64,
) -> Result<ProjectKey> {
    let row = sqlx::query(&format!(
        "INSERT INTO api_keys (project_id, name, key_hash, key_prefix, scopes, created_at,
            expires_at)
         SELECT id, $2, $3, $4, $5, $6, $7 FROM projects WHERE id = $1
         RETURNING {KEY_COLUMNS}"
    ))
    .bind(project_id)
    .bind(text(&draft.name))
    .bind(key.hash())
    .bind(key.prefix())
    .bind(draft.scopes.bits())
    .bind(now)
    .bind(draft.expires_at.map(|at| at.timestamp_millis()))
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| no_project(project_id))?;
    key_from(&row)
}

#[async_trait]
impl Keys for PgStore {
    async fn create_key(
        &self,
        project_id: i64,
        draft: &KeyDraft,
        now: DateTime<Utc>,
    ) -> Result<(ProjectKey, ApiKey)> {
        let key = ApiKey::generate();
        let mut conn = self.pool.acquire().await?;
        let row = insert_key(&mut conn, project_id, draft, &key, now.timestamp_millis()).await?;
        Ok((row, key))
    }

    async fn list_keys(&self, project_id: i64) -> Result<Vec<ProjectKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE project_id = $1 ORDER BY id DESC"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from).collect()
    }

    async fn project_key(&self, project_id: i64, key_id: i64) -> Result<Option<ProjectKey>> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE project_id = $1 AND id = $2"
        ))
        .bind(project_id)
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from).transpose()
    }

    async fn revoke_key(
        &self,
        project_id: i64,
        key_id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<ProjectKey>> {
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1)
             WHERE project_id = $2 AND id = $3 RETURNING {KEY_COLUMNS}"
        ))
        .bind(at.timestamp_millis())
        .bind(project_id)
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from).transpose()
    }

    async fn rotate_key(
        &self,
        project_id: i64,
        key_id: i64,
        old_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<(ProjectKey, ApiKey)>> {
        let mut tx = self.pool.begin().await?;
        // The old key's row is locked, so two rotations of one key make one successor.
        let old = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE project_id = $1 AND id = $2 FOR UPDATE"
        ))
        .bind(project_id)
        .bind(key_id)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(key_from)
        .transpose()?;
        let Some(old) = old.filter(|old| old.active_at(now)) else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE api_keys SET expires_at = LEAST(COALESCE(expires_at, $1), $1) WHERE id = $2",
        )
        .bind(old_until.timestamp_millis())
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
        let draft = KeyDraft {
            name: old.name,
            scopes: old.scopes,
            expires_at: old.expires_at,
        };
        let key = ApiKey::generate();
        let row = insert_key(&mut tx, project_id, &draft, &key, now.timestamp_millis()).await?;
        tx.commit().await?;
        Ok(Some((row, key)))
    }

    async fn authenticate(&self, key: &str) -> Result<Option<KeyGrant>> {
        let hash = hash_key(key);
        let row = sqlx::query(GRANT_QUERY)
            .bind(&hash)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("key_hash")?;
        match hashes_match(&stored, &hash) {
            true => Ok(Some(grant_from(&row)?)),
            false => Ok(None),
        }
    }

    async fn touch_key(&self, key_id: i64, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(at.timestamp_millis())
            .bind(key_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
