//! Calls' recordings on SQLite: one row per call, written on the writer thread.

use async_trait::async_trait;
use rusqlite::params;

use super::writer::in_place;
use crate::model::*;
use crate::rows::{recording_from, RECORDING_COLUMNS};
use crate::{Recordings, Result, SqliteStore};

#[async_trait]
impl Recordings for SqliteStore {
    async fn put_recording(&self, r: &StoredRecording) -> Result<bool> {
        let r = r.clone();
        let timeline = serde_json::to_string(&r.timeline).expect("a timeline serialises");
        let envelope = serde_json::to_string(&r.envelope).expect("an envelope serialises");
        self.writer
            .write(in_place(move |conn| {
                let n = conn
                    .prepare_cached(&format!(
                        "INSERT INTO recordings ({RECORDING_COLUMNS})
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14
                     WHERE EXISTS (SELECT 1 FROM calls WHERE id = ?1 AND project_id = ?2)
                     ON CONFLICT (call_id) DO UPDATE SET object_key = excluded.object_key,
                        content_type = excluded.content_type, size_bytes = excluded.size_bytes,
                        sample_rate = excluded.sample_rate, channels = excluded.channels,
                        duration_ms = excluded.duration_ms, agent_channel = excluded.agent_channel,
                        origin = excluded.origin, timeline = excluded.timeline,
                        envelope = excluded.envelope, bucket_ms = excluded.bucket_ms,
                        created_at = excluded.created_at"
                    ))?
                    .execute(params![
                        r.call_id,
                        r.project_id,
                        r.object_key,
                        r.content_type,
                        r.size_bytes as i64,
                        r.sample_rate,
                        r.channels,
                        r.duration_ms as i64,
                        r.agent_channel,
                        r.origin,
                        timeline,
                        envelope,
                        r.bucket_ms,
                        r.created_at.timestamp_millis(),
                    ])?;
                Ok(n == 1)
            }))
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
