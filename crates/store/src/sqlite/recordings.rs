//! Calls' recordings on SQLite: one row per call, written on the writer thread.

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::writer::in_place;
use crate::model::*;
use crate::rows::{recording_documents, recording_from, RECORDING_COLUMNS, UPSERT_RECORDING};
use crate::{Recordings, Result, SqliteStore};

/// Stores a recording in the write under way (alone, or with its call at ingest).
pub(super) fn upsert_recording(conn: &Connection, r: &StoredRecording) -> Result<bool> {
    let (timeline, envelope) = recording_documents(r);
    let a = &r.audio;
    let n = conn.prepare_cached(UPSERT_RECORDING)?.execute(params![
        r.call_id,
        r.project_id,
        a.object_key,
        a.content_type,
        a.size_bytes as i64,
        a.sample_rate,
        a.channels,
        a.duration_ms as i64,
        a.agent_channel,
        a.origin,
        timeline,
        envelope,
        a.bucket_ms,
        r.created_at.timestamp_millis(),
    ])?;
    Ok(n == 1)
}

#[async_trait]
impl Recordings for SqliteStore {
    async fn put_recording(&self, r: &StoredRecording) -> Result<bool> {
        let r = r.clone();
        self.writer
            .write(in_place(move |conn| upsert_recording(conn, &r)))
            .await
    }

    async fn recording(&self, project_id: i64, call_id: &str) -> Result<Option<StoredRecording>> {
        let row = sqlx::query(&format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings WHERE project_id = ? AND call_id = ?"
        ))
        .bind(project_id)
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(recording_from).transpose()
    }
}
