//! Simulated runs on SQLite: the simulator endpoint, and the queue of conversations. Every
//! write is one operation on the writer thread, so a claim's count of runs in flight and the
//! claim itself cannot interleave with another's.

use async_trait::async_trait;
use callgrade_core::{RunChange, RunEvent};
use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{params, Connection};

use super::lite::LiteRow;
use super::runs::run_state_in_place;
use super::writer::in_place;
use crate::codec::judge_field;
use crate::lookups::claimed_simulations;
use crate::model::*;
use crate::rows::{simulator_settings_from, voice_update, Columns, SIMULATOR_COLUMNS};
use crate::simulation_rows::{progress_columns, Claimable, ABANDONED, IN_PROGRESS};
use crate::{Result, Simulations, SqliteStore};

/// Marks up to `limit` pending simulated runs as this worker's; their (project, run) ids.
fn claim(
    conn: &Connection,
    worker: &str,
    now: DateTime<Utc>,
    lease: TimeDelta,
    limit: u32,
) -> Result<Vec<(i64, i64)>> {
    let now_ms = now.timestamp_millis();
    let mut select = conn.prepare_cached(
        "SELECT r.id, r.project_id, p.simulator_concurrency AS concurrency,
            (SELECT COUNT(*) FROM runs x WHERE x.project_id = r.project_id
                AND x.mode = 'simulate' AND x.status = 'in_progress') AS running
         FROM runs r JOIN projects p ON p.id = r.project_id
         WHERE r.mode = 'simulate' AND r.status = 'pending'
         ORDER BY r.id LIMIT 1000",
    )?;
    let mut rows = select.query([])?;
    let mut pending = Vec::new();
    while let Some(row) = rows.next()? {
        let row = LiteRow(row);
        pending.push(Claimable {
            run_id: row.int("id")?,
            project_id: row.int("project_id")?,
            concurrency: row.int("concurrency")?,
            running: row.int("running")?,
        });
    }
    drop(rows);
    let mut update = conn.prepare_cached(
        "UPDATE runs SET status = ?, call_started_at = ?, updated_at = ?, lease_owner = ?,
            lease_until = ?
         WHERE id = ? AND status = ?",
    )?;
    let mut claimed = Vec::new();
    for (project_id, run_id) in Claimable::pick(pending, limit) {
        let Some(state) = run_state_in_place(conn, "id = ?", [run_id])? else {
            continue;
        };
        let Ok(w) = state.apply(RunChange::Report(RunEvent::CallStarted(now)), now_ms) else {
            continue;
        };
        let updated = update.execute(params![
            w.status.as_str(),
            now_ms,
            now_ms,
            worker,
            (now + lease).timestamp_millis(),
            run_id,
            w.from.as_str()
        ])?;
        if updated == 1 {
            claimed.push((project_id, run_id));
        }
    }
    Ok(claimed)
}

/// Fails this worker's in-progress run, or every in-progress run whose lease expired but those
/// in `playing`.
fn fail(
    conn: &Connection,
    run_id: Option<(i64, &str)>,
    reason: &str,
    progress: Option<&SimulationProgress>,
    now_ms: i64,
    playing: &[i64],
) -> Result<Vec<i64>> {
    let candidates: Vec<i64> = match run_id {
        Some((id, worker)) => conn
            .prepare_cached(
                "SELECT id FROM runs WHERE id = ? AND lease_owner = ? AND status IN ('pending', 'in_progress')",
            )?
            .query_map(params![id, worker], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?,
        None => conn
            .prepare_cached(&format!(
                "SELECT id FROM runs WHERE mode = 'simulate' AND status = '{IN_PROGRESS}'
                 AND lease_until < ?"
            ))?
            .query_map([now_ms], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?,
    };
    let mut failed = Vec::new();
    for id in candidates.into_iter().filter(|id| !playing.contains(id)) {
        let Some(state) = run_state_in_place(conn, "id = ?", [id])? else {
            continue;
        };
        let Ok(w) = state.apply(RunChange::SimulationFailed(reason), now_ms) else {
            continue;
        };
        let updated = conn
            .prepare_cached(
                "UPDATE runs SET status = ?, error_message = ?, finished_at = ?, updated_at = ?,
                    lease_owner = NULL, lease_until = NULL
                 WHERE id = ? AND status = ?",
            )?
            .execute(params![
                w.status.as_str(),
                w.error_message,
                w.finished_at,
                now_ms,
                id,
                w.from.as_str()
            ])?;
        if let (1, Some(progress)) = (updated, progress) {
            let (transcript, usage, stop_reason) = progress_columns(progress);
            conn.prepare_cached(
                "UPDATE runs SET live_transcript = ?, usage = ?, stop_reason = ? WHERE id = ?",
            )?
            .execute(params![transcript, usage, stop_reason, id])?;
        }
        if updated == 1 {
            failed.push(id);
        }
    }
    Ok(failed)
}

#[async_trait]
impl Simulations for SqliteStore {
    async fn simulator_settings(&self, project_id: i64) -> Result<SimulatorSettings> {
        let row = sqlx::query(&format!(
            "SELECT {SIMULATOR_COLUMNS} FROM projects WHERE id = ?"
        ))
        .bind(project_id)
        .fetch_one(&self.pool)
        .await?;
        simulator_settings_from(&row)
    }
    async fn set_simulator_settings(
        &self,
        project_id: i64,
        patch: &SimulatorSettingsPatch,
    ) -> Result<()> {
        let (set_url, url) = judge_field(&patch.base_url);
        let (set_model, model) = judge_field(&patch.model);
        let (set_key, key) = judge_field(&patch.api_key);
        let concurrency = patch.concurrency.map(i64::from);
        let budget = patch
            .token_budget
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        let voice = patch.voice.as_ref().map(VoiceSettingsPatch::columns);
        self.writer
            .write(in_place(move |conn| {
                if let Some(columns) = &voice {
                    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::new();
                    for (set, value) in columns {
                        values.push(set);
                        values.push(value);
                    }
                    values.push(&project_id);
                    conn.prepare_cached(&voice_update(|_| "?".into()))?
                        .execute(values.as_slice())?;
                }
                conn.prepare_cached(
                    "UPDATE projects SET
                        simulator_base_url = CASE WHEN ? THEN ? ELSE simulator_base_url END,
                        simulator_model = CASE WHEN ? THEN ? ELSE simulator_model END,
                        simulator_api_key = CASE WHEN ? THEN ? ELSE simulator_api_key END,
                        simulator_concurrency = COALESCE(?, simulator_concurrency),
                        simulator_token_budget = COALESCE(?, simulator_token_budget)
                     WHERE id = ?",
                )?
                .execute(params![
                    set_url,
                    url,
                    set_model,
                    model,
                    set_key,
                    key,
                    concurrency,
                    budget,
                    project_id
                ])?;
                Ok(())
            }))
            .await
    }
    async fn claim_simulations(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<ClaimedSimulation>> {
        let worker_name = worker.to_owned();
        let ids = self
            .writer
            .write(in_place(move |conn| {
                claim(conn, &worker_name, now, lease, limit)
            }))
            .await?;
        claimed_simulations(self, ids).await
    }
    async fn renew_simulation(
        &self,
        run_id: i64,
        worker: &str,
        progress: &SimulationProgress,
        now: DateTime<Utc>,
        lease: TimeDelta,
    ) -> Result<bool> {
        let (transcript, usage, stop_reason) = progress_columns(progress);
        let stop_reason = stop_reason.map(str::to_owned);
        let (worker, until) = (worker.to_owned(), (now + lease).timestamp_millis());
        self.writer
            .write(in_place(move |conn| {
                let updated = conn
                    .prepare_cached(&format!(
                        "UPDATE runs SET live_transcript = ?, usage = ?, stop_reason = ?,
                            lease_until = ?, updated_at = ?
                         WHERE id = ? AND lease_owner = ? AND status = '{IN_PROGRESS}'"
                    ))?
                    .execute(params![
                        transcript,
                        usage,
                        stop_reason,
                        until,
                        now.timestamp_millis(),
                        run_id,
                        worker
                    ])?;
                Ok(updated == 1)
            }))
            .await
    }
    async fn fail_simulation(
        &self,
        run_id: i64,
        worker: &str,
        reason: &str,
        progress: &SimulationProgress,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (worker, reason, progress) = (worker.to_owned(), reason.to_owned(), progress.clone());
        self.writer
            .write(in_place(move |conn| {
                let failed = fail(
                    conn,
                    Some((run_id, &worker)),
                    &reason,
                    Some(&progress),
                    now.timestamp_millis(),
                    &[],
                )?;
                Ok(!failed.is_empty())
            }))
            .await
    }
    async fn release_simulation(&self, run_id: i64, worker: &str) -> Result<()> {
        let worker = worker.to_owned();
        self.writer
            .write(in_place(move |conn| {
                conn.prepare_cached(
                    "UPDATE runs SET lease_owner = NULL, lease_until = NULL, live_transcript = NULL
                     WHERE id = ? AND lease_owner = ?",
                )?
                .execute(params![run_id, worker])?;
                Ok(())
            }))
            .await
    }
    async fn fail_abandoned_simulations(
        &self,
        now: DateTime<Utc>,
        playing: &[i64],
    ) -> Result<Vec<i64>> {
        let playing = playing.to_vec();
        self.writer
            .write(in_place(move |conn| {
                fail(
                    conn,
                    None,
                    ABANDONED,
                    None,
                    now.timestamp_millis(),
                    &playing,
                )
            }))
            .await
    }
}
