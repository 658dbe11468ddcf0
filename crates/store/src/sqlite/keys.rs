//! API keys on SQLite: writes on the writer thread, lists on the pool, and the lookup of a
//! presented key on its own connection (it runs before every request, never behind the pool).

use async_trait::async_trait;
use callgrade_core::access::KeyDraft;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use std::sync::PoisonError;

use super::lite::LiteRow;
use super::writer::in_place;
use crate::errors::no_project;
use crate::key::{hash_key, hashes_match};
use crate::model::*;
use crate::rows::{grant_from, key_from, Columns, GRANT_QUERY, KEY_COLUMNS};
use crate::{ApiKey, Keys, Result, SqliteStore};

fn key_in_place(conn: &Connection, project_id: i64, key_id: i64) -> Result<Option<ProjectKey>> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE project_id = ? AND id = ?"
    ))?;
    let mut rows = select.query(params![project_id, key_id])?;
    rows.next()?.map(|row| key_from(&LiteRow(row))).transpose()
}

/// Inserts a key and reads it back.
fn insert_key(
    conn: &Connection,
    project_id: i64,
    draft: &KeyDraft,
    key: &ApiKey,
    now: i64,
) -> Result<ProjectKey> {
    let exists: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM projects WHERE id = ?)")?
        .query_row([project_id], |row| row.get(0))?;
    if !exists {
        return Err(no_project(project_id));
    }
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO api_keys (project_id, name, key_hash, key_prefix, scopes, created_at,
                expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )?
        .query_row(
            params![
                project_id,
                draft.name,
                key.hash(),
                key.prefix(),
                draft.scopes.bits(),
                now,
                draft.expires_at.map(|at| at.timestamp_millis()),
            ],
            |row| row.get(0),
        )?;
    key_in_place(conn, project_id, id)?.ok_or_else(|| no_project(project_id))
}

#[async_trait]
impl Keys for SqliteStore {
    async fn create_key(
        &self,
        project_id: i64,
        draft: &KeyDraft,
        now: DateTime<Utc>,
    ) -> Result<(ProjectKey, ApiKey)> {
        let (draft, key, at) = (draft.clone(), ApiKey::generate(), now.timestamp_millis());
        let shown = key.clone();
        let row = self
            .writer
            .write(in_place(move |conn| {
                insert_key(conn, project_id, &draft, &key, at)
            }))
            .await?;
        Ok((row, shown))
    }

    async fn list_keys(&self, project_id: i64) -> Result<Vec<ProjectKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE project_id = ? ORDER BY id DESC"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from).collect()
    }

    async fn project_key(&self, project_id: i64, key_id: i64) -> Result<Option<ProjectKey>> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE project_id = ? AND id = ?"
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
        let at = at.timestamp_millis();
        self.writer
            .write(in_place(move |conn| {
                conn.prepare_cached(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?)
                     WHERE project_id = ? AND id = ?",
                )?
                .execute(params![at, project_id, key_id])?;
                key_in_place(conn, project_id, key_id)
            }))
            .await
    }

    async fn rotate_key(
        &self,
        project_id: i64,
        key_id: i64,
        old_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<(ProjectKey, ApiKey)>> {
        let key = ApiKey::generate();
        let shown = key.clone();
        let (until, at) = (old_until.timestamp_millis(), now.timestamp_millis());
        let rotated = self
            .writer
            .write(in_place(move |conn| {
                let Some(old) =
                    key_in_place(conn, project_id, key_id)?.filter(|old| old.active_at(now))
                else {
                    return Ok(None);
                };
                conn.prepare_cached(
                    "UPDATE api_keys SET expires_at = MIN(COALESCE(expires_at, ?1), ?1)
                     WHERE id = ?2",
                )?
                .execute(params![until, key_id])?;
                let draft = KeyDraft {
                    name: old.name,
                    scopes: old.scopes,
                    expires_at: old.expires_at,
                };
                insert_key(conn, project_id, &draft, &key, at).map(Some)
            }))
            .await?;
        Ok(rotated.map(|row| (row, shown)))
    }

    async fn authenticate(&self, key: &str) -> Result<Option<KeyGrant>> {
        let hash = hash_key(key);
        let conn = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let mut select = conn.prepare_cached(GRANT_QUERY)?;
        let mut rows = select.query([&hash])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let row = LiteRow(row);
        match hashes_match(&row.text("key_hash")?, &hash) {
            true => Ok(Some(grant_from(&row)?)),
            false => Ok(None),
        }
    }

    async fn touch_key(&self, key_id: i64, at: DateTime<Utc>) -> Result<()> {
        let at = at.timestamp_millis();
        self.writer
            .write(in_place(move |conn| {
                conn.prepare_cached("UPDATE api_keys SET last_used_at = ? WHERE id = ?")?
                    .execute(params![at, key_id])?;
                Ok(())
            }))
            .await
    }
}
