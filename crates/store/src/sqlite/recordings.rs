//! Calls' recordings on SQLite: one row per call, written on the writer thread.

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::writer::in_place;
use crate::codec::to_json;
use crate::model::*;
use crate::rows::{
    recording_documents, recording_from, recording_request_from, RECORDING_COLUMNS,
    RECORDING_REQUEST, UPSERT_RECORDING,
};
use crate::{Recordings, Result, SqliteStore};
use callgrade_core::RecordingRequest;

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

/// Stores a call's recording request in the write that stores the call.
pub(super) fn insert_recording_request(
    conn: &Connection,
    project_id: i64,
    call_id: &str,
    request: &RecordingRequest,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO recording_requests (call_id, project_id, url, agent_channel, created_at)
         VALUES (?, ?, ?, ?, ?)",
    )?
    .execute(params![
        call_id,
        project_id,
        request.url,
        request.agent_channel,
        now
    ])?;
    Ok(())
}

#[async_trait]
impl Recordings for SqliteStore {
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
        let (call_id, outcome) = (call_id.to_owned(), outcome.clone());
        self.writer
            .write(in_place(move |conn| {
                let removed = conn
                    .prepare_cached(
                        "DELETE FROM recording_requests WHERE project_id = ? AND call_id = ?",
                    )?
                    .execute(params![project_id, call_id])?;
                if removed != 1 {
                    return Ok(false);
                }
                match &outcome {
                    FetchOutcome::Fetched(recording) => {
                        upsert_recording(conn, recording)?;
                    }
                    FetchOutcome::Refused(warning) => {
                        conn.prepare_cached(
                            "UPDATE calls SET warnings = json_insert(warnings, '$[#]', json(?))
                             WHERE project_id = ? AND id = ?",
                        )?
                        .execute(params![
                            to_json(warning),
                            project_id,
                            call_id
                        ])?;
                    }
                }
                Ok(true)
            }))
            .await
    }
}
