//! Stored calls and the delivery log read back on PostgreSQL; metric values and summaries.

use super::text;
use crate::codec::{decode_cursor, encode_cursor};
use crate::rows::{
    call_summary_from, call_with_evaluations_from, delivery_from, delivery_summary_from, paginate,
    patched, summary_entry_from, CALLS, CALL_DETAIL_COLUMNS, CALL_SUMMARY_COLUMNS,
    DELIVERY_SUMMARY_COLUMNS,
};
use crate::VerdictCounts;
use crate::{
    like_pattern, CallDetail, CallFilter, CallKind, CallSummary, Calls, Delivery, DeliveryFilter,
    DeliverySummary, MetricSummary, Page, PgStore, Result,
};
use async_trait::async_trait;
use callgrade_core::summarize;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, QueryBuilder, Row};

pub(super) async fn metrics_summary(
    pool: &PgPool,
    project_id: i64,
    agent_id: Option<i64>,
    from_ms: Option<i64>,
    before_ms: Option<i64>,
) -> Result<Vec<MetricSummary>> {
    // `json`, not `jsonb`: an explanation may hold U+0000, which `jsonb` refuses.
    let mut q = QueryBuilder::<Postgres>::new(
        "SELECT (j ->> 'metric_id')::bigint AS metric_id, j ->> 'metric_name' AS metric_name,
            j ->> 'output' AS output,
            CASE WHEN json_typeof(j -> 'value') <> 'null' THEN (j -> 'value')::text END AS value,
            (j ->> 'passed')::boolean AS passed
         FROM call_evaluations e JOIN calls c ON c.id = e.call_id
            CROSS JOIN LATERAL json_array_elements(e.evaluations::json) j
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
    q: &mut QueryBuilder<'_, Postgres>,
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
    pool: &PgPool,
    project_id: i64,
    agent_id: Option<i64>,
    from_ms: Option<i64>,
    before_ms: Option<i64>,
) -> Result<VerdictCounts> {
    let mut q = QueryBuilder::<Postgres>::new(
        "SELECT COUNT(*) FILTER (WHERE e.success), COUNT(*) FILTER (WHERE NOT e.success),
            COUNT(*) FILTER (WHERE e.success IS NULL)
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
impl Calls for PgStore {
    async fn list_calls(&self, project_id: i64, filter: &CallFilter) -> Result<Page<CallSummary>> {
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {CALL_SUMMARY_COLUMNS} FROM {CALLS} WHERE calls.project_id = "
        ));
        q.push_bind(project_id);
        if let Some(agent_id) = filter.agent_id {
            q.push(" AND agent_id = ").push_bind(agent_id);
        }
        if let Some(external_id) = &filter.external_id {
            q.push(" AND external_id = ")
                .push_bind(text(external_id).into_owned());
        }
        if let Some(from) = filter.started_from_ms {
            q.push(" AND started_at >= ").push_bind(from);
        }
        if let Some(before) = filter.started_before_ms {
            q.push(" AND started_at < ").push_bind(before);
        }
        if let Some(reason) = &filter.ended_reason {
            q.push(" AND ended_reason = ")
                .push_bind(text(reason).into_owned());
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
                " AND (EXISTS (SELECT 1 FROM json_array_elements(v.evaluations::json) j
                    WHERE j ->> 'passed' = 'false' AND j ->> 'metric_name' = ",
            )
            .push_bind(text(metric).into_owned())
            .push(
                ") OR EXISTS (SELECT 1 FROM json_array_elements(v.rubric::json -> 'rules') r
                    WHERE r ->> 'passed' = 'false' AND r ->> 'metric' = ",
            )
            .push_bind(text(metric).into_owned())
            .push("))");
        }
        if let Some(search) = &filter.text {
            q.push(" AND transcript ILIKE ")
                .push_bind(like_pattern(search))
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
             FROM {CALLS} WHERE calls.project_id = $1 AND calls.id = $2"
        ))
        .bind(project_id)
        .bind(text(call_id))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(call_with_evaluations_from).transpose()
    }
    async fn list_deliveries(
        &self,
        project_id: i64,
        filter: &DeliveryFilter,
    ) -> Result<Page<DeliverySummary>> {
        let mut q = QueryBuilder::<Postgres>::new(format!(
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
             FROM deliveries WHERE project_id = $1 AND id = $2"
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
        let mut tx = self.pool.begin().await?;
        let stored: Option<(String, String)> = sqlx::query_as(
            "SELECT metadata, ended_reason FROM calls WHERE project_id = $1 AND id = $2 FOR UPDATE",
        )
        .bind(project_id)
        .bind(call_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((metadata, reason)) = stored else {
            return Ok(None);
        };
        let changed = patched(&metadata, &reason, patch, max_metadata_bytes)?;
        if let Some((metadata, reason)) = &changed {
            sqlx::query(
                "UPDATE calls SET metadata = $1, ended_reason = $2 WHERE project_id = $3 AND id = $4",
            )
            .bind(text(metadata))
            .bind(text(reason))
            .bind(project_id)
            .bind(call_id)
            .execute(&mut *tx)
            .await?;
        }
        if patch.reevaluate
            && super::jobs::enqueue(&mut tx, project_id, call_id, now.timestamp_millis()).await?
        {
            super::notify_jobs(&mut tx).await?;
        }
        tx.commit().await?;
        if patch.reevaluate {
            self.jobs_ready.notify_waiters();
        }
        Ok(Some(changed.is_some()))
    }

    async fn prune_deliveries(&self, older_than_ms: i64, keep_per_project: u32) -> Result<u64> {
        let mut deleted = sqlx::query("DELETE FROM deliveries WHERE received_at < $1")
            .bind(older_than_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let projects: Vec<i64> = sqlx::query_scalar("SELECT id FROM projects")
            .fetch_all(&self.pool)
            .await?;
        for project_id in projects {
            deleted += sqlx::query(
                "DELETE FROM deliveries WHERE project_id = $1 AND id <= (
                    SELECT id FROM deliveries WHERE project_id = $1
                    ORDER BY id DESC LIMIT 1 OFFSET $2)",
            )
            .bind(project_id)
            .bind(i64::from(keep_per_project))
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(deleted)
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
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT e.call_id, j ->> 'metric_name', (j -> 'value')::text
             FROM call_evaluations e CROSS JOIN LATERAL json_array_elements(e.evaluations::json) j
             WHERE json_typeof(j -> 'value') <> 'null' AND e.project_id = ",
        );
        q.push_bind(project_id).push(" AND e.call_id IN (");
        let mut ids = q.separated(", ");
        for id in call_ids {
            ids.push_bind(text(id).into_owned());
        }
        q.push(") AND j ->> 'metric_name' IN (");
        let mut names = q.separated(", ");
        for name in metric_names {
            names.push_bind(text(name).into_owned());
        }
        q.push(")");
        let rows: Vec<(String, String, String)> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|(call, metric, value)| Ok((call, metric, crate::codec::from_json(&value)?)))
            .collect()
    }
}
