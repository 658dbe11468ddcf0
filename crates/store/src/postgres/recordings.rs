//! Calls' recordings on PostgreSQL: one row per call.

use async_trait::async_trait;

use crate::model::*;
use crate::rows::{recording_from, RECORDING_COLUMNS};
use crate::{PgStore, Recordings, Result};

#[async_trait]
impl Recordings for PgStore {
    async fn put_recording(&self, r: &StoredRecording) -> Result<bool> {
        let timeline = serde_json::to_string(&r.timeline).expect("a timeline serialises");
        let envelope = serde_json::to_string(&r.envelope).expect("an envelope serialises");
        let done = sqlx::query(&format!(
            "INSERT INTO recordings ({RECORDING_COLUMNS})
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
             WHERE EXISTS (SELECT 1 FROM calls WHERE id = $1 AND project_id = $2)
             ON CONFLICT (call_id) DO UPDATE SET object_key = excluded.object_key,
                content_type = excluded.content_type, size_bytes = excluded.size_bytes,
                sample_rate = excluded.sample_rate, channels = excluded.channels,
                duration_ms = excluded.duration_ms, agent_channel = excluded.agent_channel,
                origin = excluded.origin, timeline = excluded.timeline,
                envelope = excluded.envelope, bucket_ms = excluded.bucket_ms,
                created_at = excluded.created_at"
        ))
        .bind(&r.call_id)
        .bind(r.project_id)
        .bind(&r.object_key)
        .bind(&r.content_type)
        .bind(r.size_bytes as i64)
        .bind(i64::from(r.sample_rate))
        .bind(i64::from(r.channels))
        .bind(r.duration_ms as i64)
        .bind(i64::from(r.agent_channel))
        .bind(&r.origin)
        .bind(timeline)
        .bind(envelope)
        .bind(i64::from(r.bucket_ms))
        .bind(r.created_at.timestamp_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn recording(&self, project_id: i64, call_id: &str) -> Result<Option<StoredRecording>> {
        let row = sqlx::query(&format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings WHERE project_id = $1 AND call_id = $2"
        ))
        .bind(project_id)
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(recording_from).transpose()
    }
}
