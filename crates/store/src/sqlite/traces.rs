//! Spans on SQLite: an export's spans, its delivery record and the re-evaluation of the calls
//! they belong to, in one write of the writer thread.

use async_trait::async_trait;
use callgrade_core::{normalise_trace_id, TraceSpan};
use rusqlite::{params, Connection};

use super::ingest::insert_delivery;
use super::jobs::enqueue;
use super::writer::Apply;
use crate::codec::to_json;
use crate::model::*;
use crate::rows::{span_from, SPAN_COLUMNS};
use crate::{Result, SqliteStore, Traces};

struct SpansWrite {
    project_id: i64,
    spans: Vec<TraceSpan>,
    delivery: NewDelivery,
}

impl Apply for SpansWrite {
    type Output = SpanReceipt;

    fn run(&self, conn: &Connection) -> Result<SpanReceipt> {
        let delivery_id = insert_delivery(conn, &self.delivery, None, 0)?;
        let at = self.delivery.received_at.timestamp_millis();
        let mut insert = conn.prepare_cached(&format!(
            "INSERT INTO spans (project_id, {SPAN_COLUMNS}, delivery_id, received_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (project_id, trace_id, span_id) DO NOTHING"
        ))?;
        let mut stored = 0;
        let mut grown: Vec<&str> = Vec::new();
        for s in &self.spans {
            let n = insert.execute(params![
                self.project_id,
                s.trace_id,
                s.span_id,
                s.parent_span_id,
                s.name,
                s.service_name,
                s.start_unix_nano,
                s.end_unix_nano,
                s.status.as_str(),
                s.status_message,
                to_json(&s.attributes),
                to_json(&s.events),
                delivery_id,
                at,
            ])?;
            if n == 1 {
                stored += 1;
                if !grown.contains(&s.trace_id.as_str()) {
                    grown.push(&s.trace_id);
                }
            }
        }
        // Only a trace that grew changes what its calls' metrics read.
        let mut calls = Vec::new();
        let mut linked = conn.prepare_cached(
            "SELECT id FROM calls WHERE project_id = ? AND lower(trace_id) = ? ORDER BY id",
        )?;
        for trace_id in grown {
            let ids = linked
                .query_map(params![self.project_id, trace_id], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            for id in ids {
                enqueue(conn, self.project_id, &id, at)?;
                calls.push(id);
            }
        }
        Ok(SpanReceipt {
            stored,
            duplicates: self.spans.len() - stored,
            calls,
            delivery_id,
        })
    }
}

#[async_trait]
impl Traces for SqliteStore {
    async fn store_spans(
        &self,
        project_id: i64,
        spans: Vec<TraceSpan>,
        delivery: NewDelivery,
    ) -> Result<SpanReceipt> {
        let receipt = self
            .writer
            .write(SpansWrite {
                project_id,
                spans,
                delivery,
            })
            .await?;
        if !receipt.calls.is_empty() {
            self.jobs_ready.notify_waiters();
        }
        Ok(receipt)
    }

    async fn trace(&self, project_id: i64, trace_id: &str) -> Result<Vec<TraceSpan>> {
        let rows = sqlx::query(&format!(
            "SELECT {SPAN_COLUMNS} FROM spans WHERE project_id = ? AND trace_id = ?
             ORDER BY start_ns, span_id LIMIT ?"
        ))
        .bind(project_id)
        .bind(normalise_trace_id(trace_id))
        .bind(MAX_TRACE_SPANS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(span_from).collect()
    }
}
