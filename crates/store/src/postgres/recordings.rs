//! Calls' recordings on PostgreSQL: one row per call.

use async_trait::async_trait;
use sqlx::PgExecutor;

use crate::model::*;
use crate::rows::{recording_documents, recording_from, RECORDING_COLUMNS, UPSERT_RECORDING};
use crate::{PgStore, Recordings, Result};

/// Stores a recording, alone or in the transaction that stores its call.
pub(super) async fn upsert_recording(
    executor: impl PgExecutor<'_>,
    r: &StoredRecording,
) -> Result<bool> {
    let (timeline, envelope) = recording_documents(r);
    let a = &r.audio;
    let done = sqlx::query(UPSERT_RECORDING)
        .bind(&r.call_id)
        .bind(r.project_id)
        .bind(&a.object_key)
        .bind(&a.content_type)
        .bind(a.size_bytes as i64)
        .bind(i64::from(a.sample_rate))
        .bind(i64::from(a.channels))
        .bind(a.duration_ms as i64)
        .bind(i64::from(a.agent_channel))
        .bind(&a.origin)
        .bind(timeline)
        .bind(envelope)
        .bind(i64::from(a.bucket_ms))
        .bind(r.created_at.timestamp_millis())
        .execute(executor)
        .await?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl Recordings for PgStore {
    async fn put_recording(&self, r: &StoredRecording) -> Result<bool> {
        upsert_recording(&self.pool, r).await
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
