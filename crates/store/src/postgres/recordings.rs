//! Calls' recordings on PostgreSQL: one row per call.

use async_trait::async_trait;
use sqlx::PgExecutor;

use crate::codec::to_json;
use crate::model::*;
use crate::rows::{
    recording_documents, recording_from, recording_request_from, RECORDING_COLUMNS,
    RECORDING_REQUEST, UPSERT_RECORDING,
};
use crate::{PgStore, Recordings, Result};
use callgrade_core::RecordingRequest;

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

/// Stores a call's recording request in the transaction that stores the call.
pub(super) async fn insert_recording_request(
    executor: impl PgExecutor<'_>,
    project_id: i64,
    call_id: &str,
    request: &RecordingRequest,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO recording_requests (call_id, project_id, url, agent_channel, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(call_id)
    .bind(project_id)
    .bind(&request.url)
    .bind(i64::from(request.agent_channel))
    .bind(now)
    .execute(executor)
    .await?;
    Ok(())
}

#[async_trait]
impl Recordings for PgStore {
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

    async fn recording_request(
        &self,
        project_id: i64,
        call_id: &str,
    ) -> Result<Option<RecordingRequest>> {
        let row: Option<(String, i64)> = sqlx::query_as(RECORDING_REQUEST)
            .bind(project_id)
            .bind(call_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(recording_request_from))
    }

    async fn settle_recording_request(
        &self,
        project_id: i64,
        call_id: &str,
        outcome: &FetchOutcome,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let removed =
            sqlx::query("DELETE FROM recording_requests WHERE project_id = $1 AND call_id = $2")
                .bind(project_id)
                .bind(call_id)
                .execute(&mut *tx)
                .await?;
        if removed.rows_affected() != 1 {
            return Ok(false);
        }
        match outcome {
            FetchOutcome::Fetched(recording) => {
                upsert_recording(&mut *tx, recording).await?;
            }
            FetchOutcome::Refused(warning) => {
                sqlx::query(
                    "UPDATE calls SET warnings = (warnings::jsonb || jsonb_build_array($1::jsonb))::text
                     WHERE project_id = $2 AND id = $3",
                )
                .bind(to_json(warning))
                .bind(project_id)
                .bind(call_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}
