//! Simulated runs on PostgreSQL. A claim locks the projects it fills (in id order) before
//! counting their runs in flight, so two instances claiming at once never exceed a project's
//! concurrency; runs are taken with `SKIP LOCKED`.

use async_trait::async_trait;
use callgrade_core::{RunChange, RunEvent};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::PgConnection;

use super::{opt_text, text};
use crate::codec::judge_field;
use crate::lifecycle::{RunState, RUN_STATE_COLUMNS};
use crate::lookups::claimed_simulations;
use crate::model::*;
use crate::rows::{simulator_settings_from, voice_update, Columns, SIMULATOR_COLUMNS};
use crate::simulation_rows::{progress_columns, Claimable, ABANDONED, IN_PROGRESS};
use crate::{PgStore, Result, Simulations};

/// Fails the runs among `ids` whose state allows it, locked and re-checked; the failed ids.
async fn fail(
    conn: &mut PgConnection,
    ids: Vec<i64>,
    reason: &str,
    progress: Option<&SimulationProgress>,
    now_ms: i64,
) -> Result<Vec<i64>> {
    let mut failed = Vec::new();
    for id in ids {
        let row = sqlx::query(&format!(
            "SELECT {RUN_STATE_COLUMNS} FROM runs WHERE id = $1 FOR UPDATE"
        ))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { continue };
        let Ok(w) = RunState::from_row(&row)?.apply(RunChange::SimulationFailed(reason), now_ms)
        else {
            continue;
        };
        let (transcript, usage, stop_reason) = match progress {
            Some(p) => {
                let (t, u, s) = progress_columns(p);
                (Some(t), Some(u), s)
            }
            None => (None, None, None),
        };
        let updated = sqlx::query(
            "UPDATE runs SET status = $1, error_message = $2, finished_at = $3, updated_at = $4,
                lease_owner = NULL, lease_until = NULL,
                live_transcript = COALESCE($5, live_transcript), usage = COALESCE($6, usage),
                stop_reason = COALESCE($7, stop_reason)
             WHERE id = $8 AND status = $9",
        )
        .bind(w.status.as_str())
        .bind(w.error_message.as_deref().map(text))
        .bind(w.finished_at)
        .bind(now_ms)
        .bind(transcript.as_deref().map(text))
        .bind(usage)
        .bind(stop_reason)
        .bind(id)
        .bind(w.from.as_str())
        .execute(&mut *conn)
        .await?;
        if updated.rows_affected() == 1 {
            failed.push(id);
        }
    }
    Ok(failed)
}

#[async_trait]
impl Simulations for PgStore {
    async fn simulator_settings(&self, project_id: i64) -> Result<SimulatorSettings> {
        let row = sqlx::query(&format!(
            "SELECT {SIMULATOR_COLUMNS} FROM projects WHERE id = $1"
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE projects SET
                simulator_base_url = CASE WHEN $1 THEN $2 ELSE simulator_base_url END,
                simulator_model = CASE WHEN $3 THEN $4 ELSE simulator_model END,
                simulator_api_key = CASE WHEN $5 THEN $6 ELSE simulator_api_key END,
                simulator_concurrency = COALESCE($7, simulator_concurrency),
                simulator_token_budget = COALESCE($8, simulator_token_budget)
             WHERE id = $9",
        )
        .bind(set_url)
        .bind(opt_text(url.as_deref()))
        .bind(set_model)
        .bind(opt_text(model.as_deref()))
        .bind(set_key)
        .bind(opt_text(key.as_deref()))
        .bind(patch.concurrency.map(i64::from))
        .bind(
            patch
                .token_budget
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
        )
        .bind(project_id)
        .execute(&mut *tx)
        .await?;
        if let Some(columns) = patch.voice.as_ref().map(VoiceSettingsPatch::columns) {
            let sql = voice_update(|i| format!("${i}"));
            let mut q = sqlx::query(&sql);
            for (set, value) in columns {
                q = q.bind(set).bind(value);
            }
            q.bind(project_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
    async fn claim_simulations(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<ClaimedSimulation>> {
        let now_ms = now.timestamp_millis();
        let mut tx = self.pool.begin().await?;
        let projects: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT project_id FROM runs WHERE mode = 'simulate' AND status = 'pending'",
        )
        .fetch_all(&mut *tx)
        .await?;
        if projects.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query("SELECT id FROM projects WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&projects)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT r.id, r.project_id, p.simulator_concurrency AS concurrency,
                (SELECT COUNT(*) FROM runs x WHERE x.project_id = r.project_id
                    AND x.mode = 'simulate' AND x.status = 'in_progress') AS running
             FROM runs r JOIN projects p ON p.id = r.project_id
             WHERE r.mode = 'simulate' AND r.status = 'pending'
             ORDER BY r.id LIMIT 1000
             FOR UPDATE OF r SKIP LOCKED",
        )
        .fetch_all(&mut *tx)
        .await?;
        let pending = rows
            .iter()
            .map(|row| {
                Ok(Claimable {
                    run_id: row.int("id")?,
                    project_id: row.int("project_id")?,
                    concurrency: row.int("concurrency")?,
                    running: row.int("running")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut ids = Vec::new();
        for (project_id, run_id) in Claimable::pick(pending, limit) {
            let row = sqlx::query(&format!(
                "SELECT {RUN_STATE_COLUMNS} FROM runs WHERE id = $1"
            ))
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await?;
            let change = RunChange::Report(RunEvent::CallStarted(now));
            let Ok(w) = RunState::from_row(&row)?.apply(change, now_ms) else {
                continue;
            };
            let updated = sqlx::query(
                "UPDATE runs SET status = $1, call_started_at = $2, updated_at = $2,
                    lease_owner = $3, lease_until = $4
                 WHERE id = $5 AND status = $6",
            )
            .bind(w.status.as_str())
            .bind(now_ms)
            .bind(text(worker))
            .bind((now + lease).timestamp_millis())
            .bind(run_id)
            .bind(w.from.as_str())
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 1 {
                ids.push((project_id, run_id));
            }
        }
        tx.commit().await?;
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
        let updated = sqlx::query(&format!(
            "UPDATE runs SET live_transcript = $1, usage = $2, stop_reason = $3, lease_until = $4,
                updated_at = $5
             WHERE id = $6 AND lease_owner = $7 AND status = '{IN_PROGRESS}'"
        ))
        .bind(text(&transcript))
        .bind(usage)
        .bind(stop_reason)
        .bind((now + lease).timestamp_millis())
        .bind(now.timestamp_millis())
        .bind(run_id)
        .bind(text(worker))
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }
    async fn fail_simulation(
        &self,
        run_id: i64,
        worker: &str,
        reason: &str,
        progress: &SimulationProgress,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE id = $1 AND lease_owner = $2
             AND status IN ('pending', 'in_progress')",
        )
        .bind(run_id)
        .bind(text(worker))
        .fetch_all(&mut *tx)
        .await?;
        let failed = fail(&mut tx, ids, reason, Some(progress), now.timestamp_millis()).await?;
        tx.commit().await?;
        Ok(!failed.is_empty())
    }
    async fn release_simulation(&self, run_id: i64, worker: &str) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET lease_owner = NULL, lease_until = NULL, live_transcript = NULL
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(run_id)
        .bind(text(worker))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
    async fn fail_abandoned_simulations(
        &self,
        now: DateTime<Utc>,
        playing: &[i64],
    ) -> Result<Vec<i64>> {
        let now_ms = now.timestamp_millis();
        let mut tx = self.pool.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM runs WHERE mode = 'simulate' AND status = '{IN_PROGRESS}'
             AND lease_until < $1 AND NOT (id = ANY($2)) ORDER BY id FOR UPDATE SKIP LOCKED"
        ))
        .bind(now_ms)
        .bind(playing)
        .fetch_all(&mut *tx)
        .await?;
        let failed = fail(&mut tx, ids, ABANDONED, None, now_ms).await?;
        tx.commit().await?;
        Ok(failed)
    }
}
