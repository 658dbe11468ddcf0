//! Spans on PostgreSQL: an export's spans, its delivery record and the re-evaluation of the
//! calls they belong to, in one transaction.

use async_trait::async_trait;
use callgrade_core::{normalise_trace_id, TraceSpan};

use super::ingest::insert_delivery;
use super::jobs::enqueue;
use super::{notify_jobs, opt_text, text};
use crate::codec::to_json;
use crate::model::*;
use crate::rows::{span_from, SPAN_COLUMNS};
use crate::{PgStore, Result, Traces};

#[async_trait]
impl Traces for PgStore {
    async fn store_spans(
        &self,
        project_id: i64,
        spans: Vec<TraceSpan>,
        delivery: NewDelivery,
    ) -> Result<SpanReceipt> {
        let mut tx = self.pool.begin().await?;
        let delivery_id = insert_delivery(&mut tx, &delivery, None, 0).await?;
        let at = delivery.received_at.timestamp_millis();
        let mut stored = 0;
        let mut grown: Vec<&str> = Vec::new();
        for s in &spans {
            let done = sqlx::query(&format!(
                "INSERT INTO spans (project_id, {SPAN_COLUMNS}, delivery_id, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (project_id, trace_id, span_id) DO NOTHING"
            ))
            .bind(project_id)
            .bind(&s.trace_id)
            .bind(&s.span_id)
            .bind(&s.parent_span_id)
            .bind(text(&s.name))
            .bind(opt_text(s.service_name.as_deref()))
            .bind(s.start_unix_nano)
            .bind(s.end_unix_nano)
            .bind(s.status.as_str())
            .bind(opt_text(s.status_message.as_deref()))
            .bind(text(&to_json(&s.attributes)))
            .bind(text(&to_json(&s.events)))
            .bind(delivery_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                stored += 1;
                if !grown.contains(&s.trace_id.as_str()) {
                    grown.push(&s.trace_id);
                }
            }
        }
        // Only a trace that grew changes what its calls' metrics read. The calls' rows are
        // locked, as `enqueue` needs.
        let mut calls = Vec::new();
        for trace_id in grown {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM calls WHERE project_id = $1 AND lower(trace_id) = $2
                 ORDER BY id FOR UPDATE",
            )
            .bind(project_id)
            .bind(trace_id)
            .fetch_all(&mut *tx)
            .await?;
            for id in ids {
                enqueue(&mut tx, project_id, &id, at).await?;
                calls.push(id);
            }
        }
        if !calls.is_empty() {
            notify_jobs(&mut tx).await?;
        }
        tx.commit().await?;
        if !calls.is_empty() {
            self.jobs_ready.notify_waiters();
        }
        Ok(SpanReceipt {
            stored,
            duplicates: spans.len() - stored,
            calls,
            delivery_id,
        })
    }

    async fn trace(&self, project_id: i64, trace_id: &str) -> Result<Vec<TraceSpan>> {
        let rows = sqlx::query(&format!(
            "SELECT {SPAN_COLUMNS} FROM spans WHERE project_id = $1 AND trace_id = $2
             ORDER BY start_ns, span_id LIMIT $3"
        ))
        .bind(project_id)
        .bind(normalise_trace_id(trace_id))
        .bind(MAX_TRACE_SPANS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(span_from).collect()
    }
}
