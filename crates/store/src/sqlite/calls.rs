//! Stored calls and the delivery log read back on SQLite; metric values and summaries.

use super::writer::in_place;
use crate::codec::{decode_cursor, encode_cursor};
use crate::rows::{
    call_summary_from, call_with_evaluations_from, delivery_from, delivery_summary_from, paginate,
    patched, summary_entry_from, CALLS, CALL_DETAIL_COLUMNS, CALL_SUMMARY_COLUMNS,
    DELIVERY_SUMMARY_COLUMNS,
};
use crate::VerdictCounts;
use crate::{
    like_pattern, CallDetail, CallFilter, CallKind, CallSummary, Calls, Delivery, DeliveryFilter,
    DeliverySummary, MetricSummary, Page, Result, SqliteStore,
};
use async_trait::async_trait;
use callgrade_core::summarize;
use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row, Sqlite};

pub(super) async fn metrics_summary(
    pool: &SqlitePool,
    project_id: i64,
    agent_id: Option<i64>,
    from_ms: Option<i64>,
    before_ms: Option<i64>,
) -> Result<Vec<MetricSummary>> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT j.value ->> 'metric_id' AS metric_id, j.value ->> 'metric_name' AS metric_name,
            j.value ->> 'output' AS output, NULLIF(j.value -> 'value', 'null') AS value,
            j.value ->> 'passed' AS passed
         FROM call_evaluations e JOIN calls c ON c.id = e.call_id, json_each(e.evaluations) j
         WHERE e.project_id = ",
    );
    q.push_bind(project_id);
    push_range(&mut q, agent_id, from_ms, before_ms);
    q.push(" ORDER BY metric_id");
    let rows = q.build().fetch_all(pool).await?;
    rows.iter()
        .map(summary_entry_from)
        .collect::<Result<Vec<_>>>()
        .map(summarize)
}

/// The calls of one agent (or all) that started in `[from, before)`, for `c`, the calls table.
fn push_range(
    q: &mut QueryBuilder<'_, Sqlite>,
    agent_id: Option<i64>,
    from_ms: Option<i64>,
    before_ms: Option<i64>,
) {
    if let Some(a) = agent_id {
        q.push(" AND c.agent_id = ").push_bind(a);
    }
    if let Some(f) = from_ms {
        q.push(" AND c.started_at >= ").push_bind(f);
    }
    if let Some(b) = before_ms {
        q.push(" AND c.started_at < ").push_bind(b);
    }
}

pub(super) async fn verdict_counts(
    pool: &SqlitePool,
    project_id: i64,
    agent_id: Option<i64>,
    from_ms: Option<i64>,
    before_ms: Option<i64>,
) -> Result<VerdictCounts> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT COALESCE(SUM(e.success = 1), 0), COALESCE(SUM(e.success = 0), 0),
            COALESCE(SUM(e.success IS NULL), 0)
         FROM call_evaluations e JOIN calls c ON c.id = e.call_id WHERE e.project_id = ",
    );
    q.push_bind(project_id);
    push_range(&mut q, agent_id, from_ms, before_ms);
    let (passed, failed, undecided): (i64, i64, i64) = q.build_query_as().fetch_one(pool).await?;
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(VerdictCounts {
        passed: n(passed),
        failed: n(failed),
        undecided: n(undecided),
    })
}

#[async_trait]
impl Calls for SqliteStore {
    async fn list_calls(&self, project_id: i64, filter: &CallFilter) -> Result<Page<CallSummary>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {CALL_SUMMARY_COLUMNS} FROM {CALLS} WHERE calls.project_id = "
        ));
        q.push_bind(project_id);
        if let Some(agent_id) = filter.agent_id {
            q.push(" AND agent_id = ").push_bind(agent_id);
        }
        if let Some(external_id) = &filter.external_id {
            q.push(" AND external_id = ").push_bind(external_id.clone());
        }
        if let Some(from) = filter.started_from_ms {
            q.push(" AND started_at >= ").push_bind(from);
        }
        if let Some(before) = filter.started_before_ms {
            q.push(" AND started_at < ").push_bind(before);
        }
        if let Some(reason) = &filter.ended_reason {
            q.push(" AND ended_reason = ").push_bind(reason.clone());
        }
        if let Some(success) = filter.success {
            q.push(" AND v.success = ").push_bind(success);
        }
        match filter.kind {
            Some(CallKind::Test) => drop(q.push(" AND run_id IS NOT NULL")),
            Some(CallKind::Production) => drop(q.push(" AND run_id IS NULL")),
            None => {}
        }
        if let Some(metric) = &filter.failing_metric {
            q.push(
                " AND (EXISTS (SELECT 1 FROM json_each(v.evaluations) j
                    WHERE j.value ->> 'passed' = 0 AND j.value ->> 'metric_name' = ",
            )
            .push_bind(metric.clone())
            .push(
                ") OR EXISTS (SELECT 1 FROM json_each(v.rubric, '$.rules') r
                    WHERE r.value ->> 'passed' = 0 AND r.value ->> 'metric' = ",
            )
            .push_bind(metric.clone())
            .push("))");
        }
        if let Some(text) = &filter.text {
            q.push(" AND transcript LIKE ")
                .push_bind(like_pattern(text))
                .push(" ESCAPE '\\'");
        }
        if let Some(cursor) = &filter.cursor {
            let c = decode_cursor(cursor, 2)?;
            q.push(" AND (started_at, seq) < (")
                .push_bind(c[0])
                .push(", ")
                .push_bind(c[1])
                .push(")");
        }
        q.push(" ORDER BY started_at DESC, seq DESC LIMIT ")
            .push_bind(i64::from(filter.limit) + 1);
        let rows = q.build().fetch_all(&self.pool).await?;
        paginate(rows, filter.limit, call_summary_from, |row| {
            Ok(encode_cursor(&[
                row.try_get("started_at")?,
                row.try_get("seq")?,
            ]))
        })
    }
    async fn call(&self, project_id: i64, call_id: &str) -> Result<Option<CallDetail>> {
        let row = sqlx::query(&format!(
            "SELECT {CALL_SUMMARY_COLUMNS}, {CALL_DETAIL_COLUMNS}, v.evaluations
             FROM {CALLS} WHERE calls.project_id = ? AND calls.id = ?"
        ))
        .bind(project_id)
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(call_with_evaluations_from).transpose()
    }
    async fn list_deliveries(
        &self,
        project_id: i64,
        filter: &DeliveryFilter,
    ) -> Result<Page<DeliverySummary>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {DELIVERY_SUMMARY_COLUMNS} FROM deliveries WHERE project_id = "
        ));
        q.push_bind(project_id);
        if let Some(outcome) = filter.outcome {
            q.push(" AND outcome = ").push_bind(outcome.as_str());
        }
        if let Some(cursor) = &filter.cursor {
            q.push(" AND id < ").push_bind(decode_cursor(cursor, 1)?[0]);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(filter.limit) + 1);
        let rows = q.build().fetch_all(&self.pool).await?;
        paginate(rows, filter.limit, delivery_summary_from, |row| {
            Ok(encode_cursor(&[row.try_get("id")?]))
        })
    }
    async fn delivery(&self, project_id: i64, id: i64) -> Result<Option<Delivery>> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_SUMMARY_COLUMNS}, body, body_truncated
             FROM deliveries WHERE project_id = ? AND id = ?"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(delivery_from).transpose()
    }
    async fn patch_call(
        &self,
        project_id: i64,
        call_id: &str,
        patch: &callgrade_core::CallPatch,
        max_metadata_bytes: usize,
        now: DateTime<Utc>,
    ) -> Result<Option<bool>> {
        let (call_id, patch) = (call_id.to_owned(), patch.clone());
        let (at, reevaluate) = (now.timestamp_millis(), patch.reevaluate);
        let changed = self
            .writer
            .write(in_place(move |conn| {
                let stored: Option<(String, String)> = conn
                    .prepare_cached(
                        "SELECT metadata, ended_reason FROM calls WHERE project_id = ? AND id = ?",
                    )?
                    .query_row(rusqlite::params![project_id, call_id], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                let Some((metadata, reason)) = stored else {
                    return Ok(None);
                };
                let changed = patched(&metadata, &reason, &patch, max_metadata_bytes)?;
                if let Some((metadata, reason)) = &changed {
                    conn.prepare_cached(
                        "UPDATE calls SET metadata = ?, ended_reason = ? WHERE project_id = ? AND id = ?",
                    )?
                    .execute(rusqlite::params![metadata, reason, project_id, call_id])?;
                }
                if patch.reevaluate {
                    super::jobs::enqueue(conn, project_id, &call_id, at)?;
                }
                Ok(Some(changed.is_some()))
            }))
            .await?;
        if reevaluate && changed.is_some() {
            self.jobs_ready.notify_waiters();
        }
        Ok(changed)
    }

    async fn prune_deliveries(&self, older_than_ms: i64, keep_per_project: u32) -> Result<u64> {
        self.writer
            .write(in_place(move |conn| {
                let mut deleted = conn
                    .prepare_cached("DELETE FROM deliveries WHERE received_at < ?")?
                    .execute([older_than_ms])?;
                let projects: Vec<i64> = conn
                    .prepare_cached("SELECT id FROM projects")?
                    .query_map([], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut keep_only = conn.prepare_cached(
                    "DELETE FROM deliveries WHERE project_id = ?1 AND id <= (
                        SELECT id FROM deliveries WHERE project_id = ?1
                        ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                )?;
                for project_id in projects {
                    deleted += keep_only.execute([project_id, i64::from(keep_per_project)])?;
                }
                Ok(deleted as u64)
            }))
            .await
    }
    async fn metrics_summary(
        &self,
        project_id: i64,
        agent_id: Option<i64>,
        started_from_ms: Option<i64>,
        started_before_ms: Option<i64>,
    ) -> Result<Vec<MetricSummary>> {
        metrics_summary(
            &self.pool,
            project_id,
            agent_id,
            started_from_ms,
            started_before_ms,
        )
        .await
    }
    async fn verdict_counts(
        &self,
        project_id: i64,
        agent_id: Option<i64>,
        started_from_ms: Option<i64>,
        started_before_ms: Option<i64>,
    ) -> Result<VerdictCounts> {
        verdict_counts(
            &self.pool,
            project_id,
            agent_id,
            started_from_ms,
            started_before_ms,
        )
        .await
    }
    async fn metric_values(
        &self,
        project_id: i64,
        call_ids: &[String],
        metric_names: &[&str],
    ) -> Result<Vec<(String, String, serde_json::Value)>> {
        if call_ids.is_empty() || metric_names.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT e.call_id, j.value ->> 'metric_name', j.value -> 'value'
             FROM call_evaluations e, json_each(e.evaluations) j
             WHERE j.value -> 'value' <> 'null' AND e.project_id = ",
        );
        q.push_bind(project_id).push(" AND e.call_id IN (");
        let mut ids = q.separated(", ");
        for id in call_ids {
            ids.push_bind(id.clone());
        }
        q.push(") AND j.value ->> 'metric_name' IN (");
        let mut names = q.separated(", ");
        for name in metric_names {
            names.push_bind(name.to_string());
        }
        q.push(")");
        let rows: Vec<(String, String, String)> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|(call, metric, value)| Ok((call, metric, crate::codec::from_json(&value)?)))
            .collect()
    }
}
