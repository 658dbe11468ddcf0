//! Outbound webhooks on PostgreSQL: endpoints, the events written for them (also from the
//! transactions of other capabilities, through [`emit`]), deliveries (claimed with
//! `FOR UPDATE SKIP LOCKED`, so several instances share the queue) and attempts.

use async_trait::async_trait;
use callgrade_core::outbound::{EndpointDraft, EndpointPatch, EventSet, EventType};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::PgConnection;
use sqlx::{Postgres, QueryBuilder, Row};

use super::text;
use crate::codec::{decode_cursor, encode_cursor, from_json, to_json};
use crate::model::*;
use crate::outbound_rows::*;
use crate::rows::paginate;
use crate::{PgStore, Result, StoreError, Webhooks};

/// Whether some enabled endpoint of the project takes `event` (see the SQLite twin).
pub(super) async fn has_subscribers(
    conn: &mut PgConnection,
    project_id: i64,
    event: EventType,
) -> Result<bool> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM webhook_endpoints
            WHERE project_id = $1 AND enabled AND {})",
        subscribed(event)
    ))
    .bind(project_id)
    .fetch_one(&mut *conn)
    .await?)
}

/// Writes `event` and a delivery for each enabled endpoint subscribed to it (or for `only`),
/// inside the caller's transaction.
pub(super) async fn emit(
    conn: &mut PgConnection,
    project_id: i64,
    event: &NewEvent,
    only: Option<i64>,
) -> Result<usize> {
    let endpoints: Vec<i64> = match only {
        Some(id) => {
            sqlx::query_scalar("SELECT id FROM webhook_endpoints WHERE project_id = $1 AND id = $2")
                .bind(project_id)
                .bind(id)
                .fetch_all(&mut *conn)
                .await?
        }
        None => {
            sqlx::query_scalar(&format!(
                "SELECT id FROM webhook_endpoints WHERE project_id = $1 AND enabled AND {}
                 ORDER BY id",
                subscribed(event.kind)
            ))
            .bind(project_id)
            .fetch_all(&mut *conn)
            .await?
        }
    };
    if endpoints.is_empty() {
        return Ok(0);
    }
    let at = event.at.timestamp_millis();
    let event_id: i64 = sqlx::query_scalar(
        "INSERT INTO webhook_events (project_id, msg_id, type, payload, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(project_id)
    .bind(new_msg_id())
    .bind(event.kind.as_str())
    .bind(text(&event.payload))
    .bind(at)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO webhook_deliveries (project_id, event_id, endpoint_id, status, run_at, created_at)
         SELECT $1, $2, e, 'pending', $4, $4 FROM unnest($3::bigint[]) AS e",
    )
    .bind(project_id)
    .bind(event_id)
    .bind(&endpoints)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(endpoints.len())
}

async fn endpoint_in(
    conn: &mut PgConnection,
    project_id: i64,
    id: i64,
) -> Result<Option<WebhookEndpoint>> {
    let row = sqlx::query(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE project_id = $1 AND id = $2"
    ))
    .bind(project_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(endpoint_from).transpose()
}

#[async_trait]
impl Webhooks for PgStore {
    async fn create_endpoint(
        &self,
        project_id: i64,
        draft: &EndpointDraft,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<WebhookEndpoint> {
        let at = now.timestamp_millis();
        let row = sqlx::query(&format!(
            "INSERT INTO webhook_endpoints (project_id, url, description, events, enabled,
                cekura_secret_header, secret, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING {ENDPOINT_COLUMNS}"
        ))
        .bind(project_id)
        .bind(text(&draft.url))
        .bind(text(&draft.description))
        .bind(draft.events.bits())
        .bind(draft.enabled)
        .bind(draft.cekura_secret_header)
        .bind(secret)
        .bind(at)
        .fetch_one(&self.pool)
        .await?;
        endpoint_from(&row)
    }

    async fn list_endpoints(&self, project_id: i64) -> Result<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE project_id = $1 ORDER BY id"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(endpoint_from).collect()
    }

    async fn endpoint(&self, project_id: i64, id: i64) -> Result<Option<WebhookEndpoint>> {
        let mut conn = self.pool.acquire().await?;
        endpoint_in(&mut conn, project_id, id).await
    }

    async fn update_endpoint(
        &self,
        project_id: i64,
        id: i64,
        patch: &EndpointPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<WebhookEndpoint>> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query(
            "SELECT url, events, enabled, description, cekura_secret_header
             FROM webhook_endpoints WHERE project_id = $1 AND id = $2 FOR UPDATE",
        )
        .bind(project_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let mut draft = EndpointDraft {
            url: row.try_get("url")?,
            events: EventSet::from_bits(row.try_get("events")?),
            enabled: row.try_get("enabled")?,
            description: row.try_get("description")?,
            cekura_secret_header: row.try_get("cekura_secret_header")?,
        };
        let enabling = patch.enabled == Some(true) && !draft.enabled;
        patch.apply(&mut draft);
        sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, description = $2, events = $3, enabled = $4,
                cekura_secret_header = $5, updated_at = $6,
                disabled_reason = CASE WHEN $7 THEN NULL ELSE disabled_reason END,
                failing_since = CASE WHEN $7 THEN NULL ELSE failing_since END
             WHERE project_id = $8 AND id = $9",
        )
        .bind(text(&draft.url))
        .bind(text(&draft.description))
        .bind(draft.events.bits())
        .bind(draft.enabled)
        .bind(draft.cekura_secret_header)
        .bind(now.timestamp_millis())
        .bind(enabling)
        .bind(project_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let endpoint = endpoint_in(&mut tx, project_id, id).await?;
        tx.commit().await?;
        Ok(endpoint)
    }

    async fn delete_endpoint(&self, project_id: i64, id: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM webhook_attempts WHERE delivery_id IN
                (SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND project_id = $2)",
        )
        .bind(id)
        .bind(project_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1 AND project_id = $2")
            .bind(id)
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        let deleted =
            sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND project_id = $2")
                .bind(id)
                .bind(project_id)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn rotate_endpoint_secret(
        &self,
        project_id: i64,
        id: i64,
        secret: &str,
        previous_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<WebhookEndpoint>> {
        let row = sqlx::query(&format!(
            "UPDATE webhook_endpoints SET
                previous_secret = CASE WHEN $1::bigint IS NULL THEN NULL ELSE secret END,
                previous_until = $1, secret = $2, updated_at = $3
             WHERE project_id = $4 AND id = $5 RETURNING {ENDPOINT_COLUMNS}"
        ))
        .bind(previous_until.map(|t| t.timestamp_millis()))
        .bind(secret)
        .bind(now.timestamp_millis())
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(endpoint_from).transpose()
    }

    async fn emit_event(
        &self,
        project_id: i64,
        event: NewEvent,
        endpoint: Option<i64>,
    ) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let queued = emit(&mut tx, project_id, &event, endpoint).await?;
        tx.commit().await?;
        Ok(queued)
    }

    async fn claim_deliveries(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<DueDelivery>> {
        let at = now.timestamp_millis();
        let rows = sqlx::query(&format!(
            "WITH claimed AS (
                UPDATE webhook_deliveries SET status = 'sending', locked_by = $1, locked_until = $2
                WHERE id IN (
                    SELECT d.id FROM webhook_deliveries d
                    JOIN webhook_endpoints p ON p.id = d.endpoint_id
                    WHERE p.enabled AND (
                        (d.status = 'pending' AND d.run_at <= $3)
                        OR (d.status = 'sending' AND d.locked_until < $3))
                    ORDER BY d.run_at, d.id LIMIT $4
                    FOR UPDATE OF d SKIP LOCKED)
                RETURNING *)
             SELECT {DUE_COLUMNS} FROM claimed d
             JOIN webhook_events e ON e.id = d.event_id
             JOIN webhook_endpoints p ON p.id = d.endpoint_id
             ORDER BY d.id"
        ))
        .bind(text(worker))
        .bind((now + lease).timestamp_millis())
        .bind(at)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| due_from(row, now)).collect()
    }

    async fn record_attempt(&self, a: AttemptRecord) -> Result<()> {
        let at = a.attempted_at.timestamp_millis();
        let mut tx = self.pool.begin().await?;
        // A delivery deleted with its endpoint meanwhile keeps no log.
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, attempted_at, request_headers, status,
                response, duration_ms, error)
             SELECT $1, $2, $3, $4, $5, $6, $7
             WHERE EXISTS (SELECT 1 FROM webhook_deliveries WHERE id = $1)",
        )
        .bind(a.delivery_id)
        .bind(at)
        .bind(text(&to_json(&a.request_headers)))
        .bind(a.status.map(i64::from))
        .bind(a.response.as_deref().map(text))
        .bind(a.duration_ms)
        .bind(a.error.as_deref().map(text))
        .execute(&mut *tx)
        .await?;
        let (status, run_at, finished) = after_attempt(a.next, at);
        let endpoint: Option<i64> = sqlx::query_scalar(
            "UPDATE webhook_deliveries SET status = $1, run_at = $2, finished_at = $3,
                attempts = attempts + 1, last_status = $4, last_error = $5,
                locked_by = NULL, locked_until = NULL
             WHERE id = $6 AND status = 'sending' AND locked_by = $7
             RETURNING endpoint_id",
        )
        .bind(status)
        .bind(run_at)
        .bind(finished)
        .bind(a.status.map(i64::from))
        .bind(a.error.as_deref().map(text))
        .bind(a.delivery_id)
        .bind(text(&a.worker))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(endpoint) = endpoint {
            let since: Option<i64> = sqlx::query_scalar(
                "UPDATE webhook_endpoints
                 SET failing_since = CASE WHEN $1 THEN NULL ELSE coalesce(failing_since, $2) END
                 WHERE id = $3 RETURNING failing_since",
            )
            .bind(a.next == AttemptNext::Delivered)
            .bind(at)
            .bind(endpoint)
            .fetch_one(&mut *tx)
            .await?;
            if a.next == (AttemptNext::Failed { disable: true }) {
                sqlx::query(
                    "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $1,
                        updated_at = $2 WHERE id = $3",
                )
                .bind(text(&disabled_reason(a.error.as_deref(), since)))
                .bind(at)
                .bind(endpoint)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_outbound(
        &self,
        project_id: i64,
        filter: &OutboundFilter,
    ) -> Result<Page<OutboundDelivery>> {
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {OUTBOUND_COLUMNS} FROM webhook_deliveries d
             JOIN webhook_events e ON e.id = d.event_id WHERE d.project_id = "
        ));
        q.push_bind(project_id);
        if let Some(endpoint) = filter.endpoint_id {
            q.push(" AND d.endpoint_id = ").push_bind(endpoint);
        }
        if let Some(status) = filter.status {
            q.push(" AND d.status = ").push_bind(status.as_str());
        }
        if let Some(cursor) = &filter.cursor {
            q.push(" AND d.id < ")
                .push_bind(decode_cursor(cursor, 1)?[0]);
        }
        q.push(" ORDER BY d.id DESC LIMIT ")
            .push_bind(i64::from(filter.limit) + 1);
        let rows = q.build().fetch_all(&self.pool).await?;
        paginate(rows, filter.limit, outbound_from, |row| {
            Ok(encode_cursor(&[row.try_get("id")?]))
        })
    }

    async fn outbound_delivery(
        &self,
        project_id: i64,
        id: i64,
    ) -> Result<Option<OutboundDeliveryDetail>> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {OUTBOUND_COLUMNS}, e.payload FROM webhook_deliveries d
             JOIN webhook_events e ON e.id = d.event_id WHERE d.project_id = $1 AND d.id = $2"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE delivery_id = $1 ORDER BY id"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(OutboundDeliveryDetail {
            delivery: outbound_from(&row)?,
            payload: from_json(&row.try_get::<String, _>("payload")?)?,
            attempts: attempts.iter().map(attempt_from).collect::<Result<_>>()?,
        }))
    }

    async fn replay_delivery(
        &self,
        project_id: i64,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<OutboundDelivery>> {
        let mut tx = self.pool.begin().await?;
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM webhook_deliveries WHERE project_id = $1 AND id = $2 FOR UPDATE",
        )
        .bind(project_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        match status.as_deref() {
            None => return Ok(None),
            Some(s @ ("pending" | "sending")) => {
                return Err(StoreError::Conflict(format!(
                    "delivery {id} is {s}; it is replayed once it has been delivered or has failed"
                )))
            }
            Some(_) => {}
        }
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, run_at = $1,
                finished_at = NULL WHERE id = $2",
        )
        .bind(now.timestamp_millis())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {OUTBOUND_COLUMNS} FROM webhook_deliveries d
             JOIN webhook_events e ON e.id = d.event_id WHERE d.id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        outbound_from(&row).map(Some)
    }

    async fn replay_failed(
        &self,
        project_id: i64,
        endpoint_id: Option<i64>,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, run_at = $1,
                finished_at = NULL
             WHERE project_id = $2 AND status = 'failed' AND created_at >= $3
                AND ($4::bigint IS NULL OR endpoint_id = $4)",
        )
        .bind(now.timestamp_millis())
        .bind(project_id)
        .bind(since.timestamp_millis())
        .bind(endpoint_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn runs_to_notify(&self, limit: u32) -> Result<Vec<RunToNotify>> {
        let rows = sqlx::query(&format!("{RUNS_TO_NOTIFY} LIMIT $1"))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_to_notify).collect()
    }

    async fn record_notices(&self, notices: Vec<Notice>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for notice in &notices {
            // Two instances announcing the same run: the one that marks it writes the events.
            let marked = sqlx::query(
                "UPDATE runs SET notified_status = status
                 WHERE id = $1 AND status = $2 AND notified_status IS DISTINCT FROM status",
            )
            .bind(notice.run_id)
            .bind(notice.run_status.as_str())
            .execute(&mut *tx)
            .await?;
            if marked.rows_affected() == 0 {
                continue;
            }
            if let Some((result, status)) = &notice.result {
                sqlx::query("UPDATE results SET notified_status = $1 WHERE id = $2")
                    .bind(status)
                    .bind(result)
                    .execute(&mut *tx)
                    .await?;
            }
            for event in &notice.events {
                emit(&mut tx, notice.project_id, event, None).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn prune_outbound(&self, older_than: DateTime<Utc>) -> Result<u64> {
        let cutoff = older_than.timestamp_millis();
        let mut tx = self.pool.begin().await?;
        let mut deleted = 0;
        for (i, sql) in PRUNE_OUTBOUND.iter().enumerate() {
            let done = sqlx::query(sql).bind(cutoff).execute(&mut *tx).await?;
            if i == 1 {
                deleted = done.rows_affected();
            }
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn outbound_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }
}
