//! Outbound webhooks on SQLite: endpoints, the events written for them (also from the writes of
//! other capabilities, through [`emit`], in their transaction), deliveries and attempts. Every
//! write is one operation of the writer thread.

use async_trait::async_trait;
use callgrade_core::outbound::{EndpointDraft, EndpointPatch, EventSet, EventType};
use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::lite::LiteRow;
use super::writer::in_place;
use crate::codec::{decode_cursor, encode_cursor, from_json, to_json};
use crate::model::*;
use crate::outbound_rows::*;
use crate::rows::paginate;
use crate::{Result, SqliteStore, StoreError, Webhooks};

/// Whether some enabled endpoint of the project takes `event`: writes that report on hot paths
/// ask first, and build the event's body only when someone will receive it.
pub(super) fn has_subscribers(
    conn: &Connection,
    project_id: i64,
    event: EventType,
) -> Result<bool> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT 1 FROM webhook_endpoints WHERE project_id = ? AND enabled = 1 AND {}",
            subscribed(event)
        ))?
        .exists([project_id])?)
}

/// Writes `event` and a delivery for each enabled endpoint subscribed to it (or for `only`),
/// on the writer's connection, inside the caller's transaction.
pub(super) fn emit(
    conn: &Connection,
    project_id: i64,
    event: &NewEvent,
    only: Option<i64>,
) -> Result<usize> {
    let endpoints: Vec<i64> = match only {
        Some(id) => conn
            .prepare_cached("SELECT id FROM webhook_endpoints WHERE project_id = ? AND id = ?")?
            .query_map(params![project_id, id], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?,
        None => conn
            .prepare_cached(&format!(
                "SELECT id FROM webhook_endpoints WHERE project_id = ? AND enabled = 1 AND {}
                 ORDER BY id",
                subscribed(event.kind)
            ))?
            .query_map([project_id], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?,
    };
    if endpoints.is_empty() {
        return Ok(0);
    }
    let at = event.at.timestamp_millis();
    let event_id: i64 = conn
        .prepare_cached(
            "INSERT INTO webhook_events (project_id, msg_id, type, payload, created_at)
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )?
        .query_row(
            params![
                project_id,
                new_msg_id(),
                event.kind.as_str(),
                event.payload,
                at
            ],
            |row| row.get(0),
        )?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO webhook_deliveries (project_id, event_id, endpoint_id, status, run_at, created_at)
         VALUES (?, ?, ?, 'pending', ?, ?)",
    )?;
    for endpoint in &endpoints {
        insert.execute(params![project_id, event_id, endpoint, at, at])?;
    }
    Ok(endpoints.len())
}

fn endpoint_in_place(
    conn: &Connection,
    project_id: i64,
    id: i64,
) -> Result<Option<WebhookEndpoint>> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE project_id = ? AND id = ?"
    ))?;
    let mut rows = select.query(params![project_id, id])?;
    rows.next()?
        .map(|row| endpoint_from(&LiteRow(row)))
        .transpose()
}

fn draft_in_place(conn: &Connection, project_id: i64, id: i64) -> Result<Option<EndpointDraft>> {
    Ok(conn
        .prepare_cached(
            "SELECT url, events, enabled, description, cekura_secret_header
             FROM webhook_endpoints WHERE project_id = ? AND id = ?",
        )?
        .query_row(params![project_id, id], |row| {
            Ok(EndpointDraft {
                url: row.get(0)?,
                events: EventSet::from_bits(row.get(1)?),
                enabled: row.get(2)?,
                description: row.get(3)?,
                cekura_secret_header: row.get(4)?,
            })
        })
        .optional()?)
}

#[async_trait]
impl Webhooks for SqliteStore {
    async fn create_endpoint(
        &self,
        project_id: i64,
        draft: &EndpointDraft,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<WebhookEndpoint> {
        let (draft, secret, at) = (draft.clone(), secret.to_owned(), now.timestamp_millis());
        self.writer
            .write(in_place(move |conn| {
                let id: i64 = conn
                    .prepare_cached(
                        "INSERT INTO webhook_endpoints (project_id, url, description, events,
                            enabled, cekura_secret_header, secret, created_at, updated_at)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    )?
                    .query_row(
                        params![
                            project_id,
                            draft.url,
                            draft.description,
                            draft.events.bits(),
                            draft.enabled,
                            draft.cekura_secret_header,
                            secret,
                            at,
                            at
                        ],
                        |row| row.get(0),
                    )?;
                endpoint_in_place(conn, project_id, id)?
                    .ok_or_else(|| StoreError::NotFound(format!("endpoint {id}")))
            }))
            .await
    }

    async fn list_endpoints(&self, project_id: i64) -> Result<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE project_id = ? ORDER BY id"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(endpoint_from).collect()
    }

    async fn endpoint(&self, project_id: i64, id: i64) -> Result<Option<WebhookEndpoint>> {
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE project_id = ? AND id = ?"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(endpoint_from).transpose()
    }

    async fn update_endpoint(
        &self,
        project_id: i64,
        id: i64,
        patch: &EndpointPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<WebhookEndpoint>> {
        let (patch, at) = (patch.clone(), now.timestamp_millis());
        self.writer
            .write(in_place(move |conn| {
                let Some(mut draft) = draft_in_place(conn, project_id, id)? else {
                    return Ok(None);
                };
                let enabling = patch.enabled == Some(true) && !draft.enabled;
                patch.apply(&mut draft);
                conn.prepare_cached(
                    "UPDATE webhook_endpoints SET url = ?, description = ?, events = ?,
                        enabled = ?, cekura_secret_header = ?, updated_at = ?,
                        disabled_reason = CASE WHEN ? THEN NULL ELSE disabled_reason END,
                        failing_since = CASE WHEN ? THEN NULL ELSE failing_since END
                     WHERE project_id = ? AND id = ?",
                )?
                .execute(params![
                    draft.url,
                    draft.description,
                    draft.events.bits(),
                    draft.enabled,
                    draft.cekura_secret_header,
                    at,
                    enabling,
                    enabling,
                    project_id,
                    id
                ])?;
                endpoint_in_place(conn, project_id, id)
            }))
            .await
    }

    async fn delete_endpoint(&self, project_id: i64, id: i64) -> Result<bool> {
        self.writer
            .write(in_place(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM webhook_attempts WHERE delivery_id IN
                        (SELECT id FROM webhook_deliveries WHERE endpoint_id = ? AND project_id = ?)",
                )?
                .execute(params![id, project_id])?;
                conn.prepare_cached(
                    "DELETE FROM webhook_deliveries WHERE endpoint_id = ? AND project_id = ?",
                )?
                .execute(params![id, project_id])?;
                let deleted = conn
                    .prepare_cached("DELETE FROM webhook_endpoints WHERE id = ? AND project_id = ?")?
                    .execute(params![id, project_id])?;
                Ok(deleted == 1)
            }))
            .await
    }

    async fn rotate_endpoint_secret(
        &self,
        project_id: i64,
        id: i64,
        secret: &str,
        previous_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<WebhookEndpoint>> {
        let (secret, until, at) = (
            secret.to_owned(),
            previous_until.map(|t| t.timestamp_millis()),
            now.timestamp_millis(),
        );
        self.writer
            .write(in_place(move |conn| {
                conn.prepare_cached(
                    "UPDATE webhook_endpoints SET
                        previous_secret = CASE WHEN ?1 IS NULL THEN NULL ELSE secret END,
                        previous_until = ?1, secret = ?2, updated_at = ?3
                     WHERE project_id = ?4 AND id = ?5",
                )?
                .execute(params![until, secret, at, project_id, id])?;
                endpoint_in_place(conn, project_id, id)
            }))
            .await
    }

    async fn emit_event(
        &self,
        project_id: i64,
        event: NewEvent,
        endpoint: Option<i64>,
    ) -> Result<usize> {
        self.writer
            .write(in_place(move |conn| {
                emit(conn, project_id, &event, endpoint)
            }))
            .await
    }

    async fn claim_deliveries(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<DueDelivery>> {
        let (worker, at, until) = (
            worker.to_owned(),
            now.timestamp_millis(),
            (now + lease).timestamp_millis(),
        );
        self.writer
            .write(in_place(move |conn| {
                let ids: Vec<i64> = conn
                    .prepare_cached(
                        "UPDATE webhook_deliveries SET status = 'sending', locked_by = ?1,
                            locked_until = ?2
                         WHERE id IN (
                            SELECT d.id FROM webhook_deliveries d
                            JOIN webhook_endpoints p ON p.id = d.endpoint_id
                            WHERE p.enabled = 1 AND (
                                (d.status = 'pending' AND d.run_at <= ?3)
                                OR (d.status = 'sending' AND d.locked_until < ?3))
                            ORDER BY d.run_at, d.id LIMIT ?4)
                         RETURNING id",
                    )?
                    .query_map(params![worker, until, at, i64::from(limit)], |row| {
                        row.get(0)
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let mut select = conn.prepare_cached(&format!(
                    "SELECT {DUE_COLUMNS} FROM webhook_deliveries d
                     JOIN webhook_events e ON e.id = d.event_id
                     JOIN webhook_endpoints p ON p.id = d.endpoint_id
                     WHERE d.id = ?"
                ))?;
                let mut due = Vec::with_capacity(ids.len());
                for id in ids {
                    let mut rows = select.query([id])?;
                    if let Some(row) = rows.next()? {
                        due.push(due_from(&LiteRow(row), now)?);
                    }
                }
                due.sort_by_key(|d| d.id);
                Ok(due)
            }))
            .await
    }

    async fn record_attempt(&self, attempt: AttemptRecord) -> Result<()> {
        self.writer
            .write(in_place(move |conn| {
                let a = &attempt;
                let at = a.attempted_at.timestamp_millis();
                // A delivery deleted with its endpoint meanwhile keeps no log.
                conn.prepare_cached(
                    "INSERT INTO webhook_attempts (delivery_id, attempted_at, request_headers,
                        status, response, duration_ms, error)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
                     WHERE EXISTS (SELECT 1 FROM webhook_deliveries WHERE id = ?1)",
                )?
                .execute(params![
                    a.delivery_id,
                    at,
                    to_json(&a.request_headers),
                    a.status,
                    a.response,
                    a.duration_ms,
                    a.error
                ])?;
                let (status, run_at, finished) = after_attempt(a.next, at);
                let endpoint: Option<i64> = conn
                    .prepare_cached(
                        "UPDATE webhook_deliveries SET status = ?, run_at = ?, finished_at = ?,
                            attempts = attempts + 1, last_status = ?, last_error = ?,
                            locked_by = NULL, locked_until = NULL
                         WHERE id = ? AND status = 'sending' AND locked_by = ?
                         RETURNING endpoint_id",
                    )?
                    .query_row(
                        params![
                            status,
                            run_at,
                            finished,
                            a.status,
                            a.error,
                            a.delivery_id,
                            a.worker
                        ],
                        |row| row.get(0),
                    )
                    .optional()?;
                let Some(endpoint) = endpoint else {
                    return Ok(());
                };
                match a.next {
                    AttemptNext::Delivered => conn
                        .prepare_cached(
                            "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ?",
                        )?
                        .execute([endpoint])?,
                    _ => conn
                        .prepare_cached(
                            "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, ?)
                             WHERE id = ?",
                        )?
                        .execute(params![at, endpoint])?,
                };
                if a.next == (AttemptNext::Failed { disable: true }) {
                    let since: Option<i64> = conn
                        .prepare_cached("SELECT failing_since FROM webhook_endpoints WHERE id = ?")?
                        .query_row([endpoint], |row| row.get(0))?;
                    conn.prepare_cached(
                        "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ?,
                            updated_at = ? WHERE id = ?",
                    )?
                    .execute(params![
                        disabled_reason(a.error.as_deref(), since),
                        at,
                        endpoint
                    ])?;
                }
                Ok(())
            }))
            .await
    }

    async fn list_outbound(
        &self,
        project_id: i64,
        filter: &OutboundFilter,
    ) -> Result<Page<OutboundDelivery>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
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
             JOIN webhook_events e ON e.id = d.event_id WHERE d.project_id = ? AND d.id = ?"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE delivery_id = ? ORDER BY id"
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
        let at = now.timestamp_millis();
        self.writer
            .write(in_place(move |conn| {
                let status: Option<String> = conn
                    .prepare_cached(
                        "SELECT status FROM webhook_deliveries WHERE project_id = ? AND id = ?",
                    )?
                    .query_row(params![project_id, id], |row| row.get(0))
                    .optional()?;
                match status.as_deref() {
                    None => return Ok(None),
                    Some("pending" | "sending") => {
                        return Err(StoreError::Conflict(format!(
                            "delivery {id} is {}; it is replayed once it has been delivered or \
                             has failed",
                            status.unwrap_or_default()
                        )))
                    }
                    Some(_) => {}
                }
                conn.prepare_cached(
                    "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, run_at = ?,
                        finished_at = NULL WHERE id = ?",
                )?
                .execute(params![at, id])?;
                let mut select = conn.prepare_cached(&format!(
                    "SELECT {OUTBOUND_COLUMNS} FROM webhook_deliveries d
                     JOIN webhook_events e ON e.id = d.event_id WHERE d.id = ?"
                ))?;
                let mut rows = select.query([id])?;
                rows.next()?
                    .map(|row| outbound_from(&LiteRow(row)))
                    .transpose()
            }))
            .await
    }

    async fn replay_failed(
        &self,
        project_id: i64,
        endpoint_id: Option<i64>,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let (since, at) = (since.timestamp_millis(), now.timestamp_millis());
        self.writer
            .write(in_place(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, run_at = ?,
                            finished_at = NULL
                         WHERE project_id = ? AND status = 'failed' AND created_at >= ?
                            AND (? IS NULL OR endpoint_id = ?)",
                    )?
                    .execute(params![at, project_id, since, endpoint_id, endpoint_id])?;
                Ok(n as u64)
            }))
            .await
    }

    async fn runs_to_notify(&self, limit: u32) -> Result<Vec<RunToNotify>> {
        let rows = sqlx::query(&format!("{RUNS_TO_NOTIFY} LIMIT ?"))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_to_notify).collect()
    }

    async fn record_notices(&self, notices: Vec<Notice>) -> Result<()> {
        self.writer
            .write(in_place(move |conn| {
                for notice in &notices {
                    let marked = conn
                        .prepare_cached(
                            "UPDATE runs SET notified_status = status
                             WHERE id = ? AND status = ? AND notified_status IS NOT status",
                        )?
                        .execute(params![notice.run_id, notice.run_status.as_str()])?;
                    if marked == 0 {
                        continue; // changed meanwhile: announced in its new status next round
                    }
                    if let Some((result, status)) = &notice.result {
                        conn.prepare_cached("UPDATE results SET notified_status = ? WHERE id = ?")?
                            .execute(params![status, result])?;
                    }
                    for event in &notice.events {
                        emit(conn, notice.project_id, event, None)?;
                    }
                }
                Ok(())
            }))
            .await
    }

    async fn prune_outbound(&self, older_than: DateTime<Utc>) -> Result<u64> {
        let cutoff = older_than.timestamp_millis();
        self.writer
            .write(in_place(move |conn| {
                let mut deleted = 0;
                for (i, sql) in PRUNE_OUTBOUND.iter().enumerate() {
                    let n = conn.prepare_cached(sql)?.execute([cutoff])?;
                    if i == 1 {
                        deleted = n as u64;
                    }
                }
                Ok(deleted)
            }))
            .await
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
