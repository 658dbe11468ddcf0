//! Scenarios, results and runs on PostgreSQL, and the run side of matching. Every read that
//! decides a write locks its rows; the lock order across the backend is jobs, then calls, then
//! runs (each in id order), so concurrent writers queue instead of deadlocking.

use super::{notify_jobs, opt_text, text};
use crate::codec::{decode_cursor, encode_cursor};
use crate::errors::{
    as_invalid_input, no_agent, no_run, no_tagged_scenario, run_taken, unknown_scenario,
};
use crate::lifecycle::{
    changed_meanwhile, RunState, LISTENING, MATCHABLE, RUN_STATE_COLUMNS, UNFINISHED,
};
use crate::lookups::existing_run;
use crate::model::*;
use crate::rows::{
    facts_from, paginate, result_from, run_from, scenario_from, FACT_COLUMNS, RESULT_COLUMNS,
    RUN_COLUMNS, RUN_FROM, SCENARIO_BASE_COLUMNS,
};
use crate::{Page, PgStore, Result, Run, RunEvent, RunFilter, StoreError, TestResult, TestRuns};
use async_trait::async_trait;
use callgrade_core::{check_attach, dedup_scenarios, AttachCall, AttachRun};
use callgrade_core::{
    timeout_reason, CallFacts, Decision, RunChange, RunFacts, RunStatus, CLOCK_SKEW,
};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Postgres, QueryBuilder, Row};

/// A run named by a call's run_id, locked until the ingest transaction ends.
pub(super) async fn lock_run_facts(conn: &mut PgConnection, run_id: i64) -> Result<RunFacts> {
    let row = sqlx::query(&format!(
        "SELECT {FACT_COLUMNS} FROM runs WHERE id = $1 FOR UPDATE"
    ))
    .bind(run_id)
    .fetch_one(&mut *conn)
    .await?;
    facts_from(&row)
}

/// The agent's runs that could take this call by phone number: without a call, listening or
/// timed out, with a tester number on either side of the call, and created around its time.
/// They are locked in id order; a run another transaction attached meanwhile is re-checked
/// after its lock is released and drops out (`call_id IS NULL` no longer holds). The core
/// decides among the rest.
pub(super) async fn lock_phone_candidates(
    conn: &mut PgConnection,
    agent_id: i64,
    call: &CallFacts<'_>,
) -> Result<Vec<RunFacts>> {
    let numbers: Vec<String> = [call.to_phone_number, call.from_phone_number]
        .into_iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    if numbers.is_empty() {
        return Ok(Vec::new());
    }
    let mut q =
        QueryBuilder::<Postgres>::new(format!("SELECT {FACT_COLUMNS} FROM runs WHERE agent_id = "));
    q.push_bind(agent_id)
        .push(format!(" AND call_id IS NULL AND status IN {}", *MATCHABLE))
        .push(" AND created_at <= ")
        .push_bind((call.started_at + CLOCK_SKEW).timestamp_millis())
        .push(" AND deadline_at >= ")
        .push_bind(call.started_at.timestamp_millis())
        .push(" AND tester_phone_number = ANY(")
        .push_bind(numbers)
        .push(") ORDER BY id FOR UPDATE");
    q.build()
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(facts_from)
        .collect()
}

/// Applies a matching decision to its (locked) run, in the transaction that stores the call.
pub(super) async fn attach_decided(
    conn: &mut PgConnection,
    decision: &Decision,
    call_id: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let (Some(run_id), Some(by)) = (decision.run_id, decision.matched_by) else {
        return Ok(());
    };
    let now = now.timestamp_millis();
    let late = decision.is_late().then(|| decision.late_message());
    let w = state_of(conn, "id = $1", run_id)
        .await?
        .ok_or_else(|| run_taken(run_id))?
        .apply(
            RunChange::Matched {
                late: late.as_deref(),
            },
            now,
        )
        .map_err(|_| run_taken(run_id))?;
    let updated = sqlx::query(
        "UPDATE runs SET call_id = $1, matched_by = $2, late = $3, status = $4,
            error_message = $5, finished_at = $6, updated_at = $7
         WHERE id = $8 AND call_id IS NULL AND status = $9",
    )
    .bind(call_id)
    .bind(by.as_str())
    .bind(late.is_some())
    .bind(w.status.as_str())
    .bind(w.error_message.as_deref().map(text))
    .bind(w.finished_at)
    .bind(now)
    .bind(run_id)
    .bind(w.from.as_str())
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(run_taken(run_id));
    }
    Ok(())
}

/// The scenario's tags as a JSON array in byte order (`COLLATE "C"`), as SQLite sorts them.
fn scenario_columns() -> String {
    format!(
        "{SCENARIO_BASE_COLUMNS},
        (SELECT COALESCE(json_agg(t.tag ORDER BY t.tag COLLATE \"C\"), '[]'::json)::text
            FROM scenario_tags t WHERE t.scenario_id = scenarios.id) AS tags"
    )
}

/// The agent's phone number and whether it has a connector, if the agent is the project's.
async fn agent_in_project(
    conn: &mut PgConnection,
    project_id: i64,
    agent_id: i64,
) -> Result<(Option<String>, bool)> {
    let row: Option<(Option<String>, bool)> = sqlx::query_as(
        "SELECT phone_number, connector IS NOT NULL FROM agents WHERE id = $1 AND project_id = $2",
    )
    .bind(agent_id)
    .bind(project_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.ok_or_else(|| no_agent(agent_id))
}

pub(super) async fn list_scenarios(
    pool: &PgPool,
    project_id: i64,
    agent_id: Option<i64>,
) -> Result<Vec<Scenario>> {
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "SELECT {} FROM scenarios WHERE project_id = ",
        scenario_columns()
    ));
    q.push_bind(project_id);
    if let Some(agent_id) = agent_id {
        q.push(" AND agent_id = ").push_bind(agent_id);
    }
    q.push(" ORDER BY id");
    q.build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(scenario_from)
        .collect()
}

pub(super) async fn scenario(pool: &PgPool, project_id: i64, id: i64) -> Result<Option<Scenario>> {
    sqlx::query(&format!(
        "SELECT {} FROM scenarios WHERE project_id = $1 AND id = $2",
        scenario_columns()
    ))
    .bind(project_id)
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(scenario_from)
    .transpose()
}

pub(super) async fn create_result(
    pool: &PgPool,
    project_id: i64,
    new: &NewTestResult,
    now: DateTime<Utc>,
) -> Result<i64> {
    // Only inserts: scenarios and agents are never deleted, so nothing read here needs a lock.
    let mut tx = pool.begin().await?;
    let (agent_phone, has_connector) = agent_in_project(&mut tx, project_id, new.agent_id)
        .await
        .map_err(as_invalid_input)?;
    let mode = new
        .mode_for(has_connector)
        .map_err(StoreError::InvalidInput)?;

    // The scenarios named by id (each must be this agent's) and those carrying any tag.
    let mut scenarios: Vec<(i64, String, Option<String>)> = Vec::new();
    for &id in &new.scenario_ids {
        let row: Option<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT id, direction, tester_phone_number FROM scenarios
             WHERE id = $1 AND project_id = $2 AND agent_id = $3",
        )
        .bind(id)
        .bind(project_id)
        .bind(new.agent_id)
        .fetch_optional(&mut *tx)
        .await?;
        scenarios.push(row.ok_or_else(|| unknown_scenario(id, new.agent_id))?);
    }
    if !new.tags.is_empty() {
        let tags: Vec<String> = new.tags.iter().map(|t| text(t).into_owned()).collect();
        let tagged: Vec<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT DISTINCT s.id, s.direction, s.tester_phone_number FROM scenarios s
             JOIN scenario_tags t ON t.scenario_id = s.id
             WHERE s.project_id = $1 AND s.agent_id = $2 AND t.tag = ANY($3)
             ORDER BY s.id",
        )
        .bind(project_id)
        .bind(new.agent_id)
        .bind(tags)
        .fetch_all(&mut *tx)
        .await?;
        scenarios.extend(tagged);
    }
    dedup_scenarios(&mut scenarios);
    if scenarios.is_empty() {
        return Err(no_tagged_scenario(new));
    }

    let deadline_seconds: i64 =
        sqlx::query_scalar("SELECT run_deadline_seconds FROM projects WHERE id = $1")
            .bind(project_id)
            .fetch_one(&mut *tx)
            .await?;
    let now_ms = now.timestamp_millis();
    let deadline = (now + TimeDelta::seconds(deadline_seconds)).timestamp_millis();
    let result_id: i64 = sqlx::query_scalar(
        "INSERT INTO results (project_id, agent_id, name, mode, label, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(project_id)
    .bind(new.agent_id)
    .bind(opt_text(new.name.as_deref()))
    .bind(mode.as_str())
    .bind(opt_text(new.label.as_deref()))
    .bind(now_ms)
    .fetch_one(&mut *tx)
    .await?;
    for (scenario_id, direction, tester) in &scenarios {
        for _ in 0..new.frequency {
            sqlx::query(
                "INSERT INTO runs (project_id, result_id, scenario_id, agent_id, direction,
                    tester_phone_number, agent_phone_number, status, created_at, updated_at,
                    deadline_at, mode)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $10, $8, $8, $9, $11)",
            )
            .bind(project_id)
            .bind(result_id)
            .bind(scenario_id)
            .bind(new.agent_id)
            .bind(direction)
            .bind(tester)
            .bind(&agent_phone)
            .bind(now_ms)
            .bind(deadline)
            .bind(RunStatus::Pending.as_str())
            .bind(mode.as_str())
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(result_id)
}

pub(super) async fn result(pool: &PgPool, project_id: i64, id: i64) -> Result<Option<TestResult>> {
    let row = sqlx::query(&format!(
        "SELECT {RESULT_COLUMNS} FROM results WHERE project_id = $1 AND id = $2"
    ))
    .bind(project_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let runs: Vec<Run> = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} {RUN_FROM} WHERE r.result_id = $1 ORDER BY r.id"
    ))
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(run_from)
    .collect::<Result<_>>()?;
    Ok(Some(result_from(&row, runs)?))
}

/// The state of the run that `filter` (`id = $1`, `call_id = $1`) names, if any, locked for the
/// rest of the transaction.
pub(super) async fn state_of(
    conn: &mut PgConnection,
    filter: &str,
    param: impl for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
) -> Result<Option<RunState>> {
    sqlx::query(&format!(
        "SELECT {RUN_STATE_COLUMNS} FROM runs WHERE {filter} FOR UPDATE"
    ))
    .bind(param)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(RunState::from_row)
    .transpose()
}

/// The run's state, agent and call, locked for the rest of the transaction.
async fn lock_run(
    conn: &mut PgConnection,
    project_id: i64,
    run_id: i64,
) -> Result<Option<(RunState, AttachRun)>> {
    let row = sqlx::query(&format!(
        "SELECT {RUN_STATE_COLUMNS}, call_id, agent_id FROM runs
         WHERE id = $1 AND project_id = $2 FOR UPDATE"
    ))
    .bind(run_id)
    .bind(project_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        let run = AttachRun {
            call_id: row.try_get("call_id")?,
            agent_id: row.try_get("agent_id")?,
        };
        Ok((RunState::from_row(&row)?, run))
    })
    .transpose()
}

pub(super) async fn run_event(
    pool: &PgPool,
    project_id: i64,
    run_id: i64,
    event: RunEvent,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    let (run, _) = lock_run(&mut tx, project_id, run_id)
        .await?
        .ok_or_else(|| no_run(run_id))?;
    let now_ms = now.timestamp_millis();
    let w = run.apply(RunChange::Report(event), now_ms)?;
    // The reported time, in the column of the report (a cancel reports none: the column keeps
    // its value).
    let (column, at) = match event {
        RunEvent::CallStarted(at) => ("call_started_at", Some(at.timestamp_millis())),
        RunEvent::CallEnded(at) => ("call_ended_at", Some(at.timestamp_millis())),
        RunEvent::Cancel => ("call_ended_at", None),
    };
    let updated = sqlx::query(&format!(
        "UPDATE runs SET status = $1, error_message = $2, finished_at = $3, updated_at = $4,
            {column} = COALESCE($5, {column})
         WHERE id = $6 AND status = $7"
    ))
    .bind(w.status.as_str())
    .bind(w.error_message.as_deref().map(text))
    .bind(w.finished_at)
    .bind(now_ms)
    .bind(at)
    .bind(run_id)
    .bind(w.from.as_str())
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(changed_meanwhile(run_id));
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn attach_call(
    pool: &PgPool,
    project_id: i64,
    run_id: i64,
    call_id: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    // The call before the run: the backend's lock order (an evaluation locks its call, then
    // the call's run).
    let call: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT agent_id, run_id FROM calls WHERE id = $1 AND project_id = $2 FOR UPDATE",
    )
    .bind(text(call_id))
    .bind(project_id)
    .fetch_optional(&mut *tx)
    .await?;
    let call = call.map(|(agent_id, run_id)| AttachCall { agent_id, run_id });
    let (state, run) = lock_run(&mut tx, project_id, run_id).await?.unzip();
    let run = run.ok_or_else(|| no_run(run_id))?;
    check_attach(run_id, call_id, &run, call.as_ref())?;
    let now_ms = now.timestamp_millis();
    let w = state
        .ok_or_else(|| no_run(run_id))?
        .apply(RunChange::Attached, now_ms)?;
    let updated = sqlx::query(
        "UPDATE runs SET call_id = $1, matched_by = 'manual', status = $2, error_message = $3,
            finished_at = $4, success = NULL, updated_at = $5
         WHERE id = $6 AND status = $7",
    )
    .bind(call_id)
    .bind(w.status.as_str())
    .bind(w.error_message.as_deref().map(text))
    .bind(w.finished_at)
    .bind(now_ms)
    .bind(run_id)
    .bind(w.from.as_str())
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(changed_meanwhile(run_id));
    }
    sqlx::query(
        "UPDATE calls SET run_id = $1, matched_by = 'manual', match_outcome = 'matched',
            match_reason = NULL, match_candidates = '[]'
         WHERE id = $2",
    )
    .bind(run_id)
    .bind(call_id)
    .execute(&mut *tx)
    .await?;
    // Now a test call: evaluate it again, with the run's scenario.
    if super::jobs::enqueue(&mut tx, project_id, call_id, now_ms).await? {
        notify_jobs(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl TestRuns for PgStore {
    async fn create_scenario(&self, project_id: i64, scenario: &NewScenario) -> Result<Scenario> {
        let pool = &self.pool;
        let (new, now) = (scenario, Utc::now());
        let mut tx = pool.begin().await?;
        agent_in_project(&mut tx, project_id, new.agent_id).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO scenarios (project_id, agent_id, name, instructions, expected_outcome_prompt,
                direction, tester_phone_number, simulation, quarantined, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(project_id)
        .bind(new.agent_id)
        .bind(text(&new.name))
        .bind(text(&new.instructions))
        .bind(text(&new.expected_outcome_prompt))
        .bind(new.direction.as_str())
        .bind(new.tester_phone_number.as_ref().map(|p| p.as_str()))
        .bind(text(&ScenarioSimulation::of(new)).into_owned())
        .bind(new.quarantined)
        .bind(now.timestamp_millis())
        .fetch_one(&mut *tx)
        .await?;
        for tag in &new.tags {
            sqlx::query(
                "INSERT INTO scenario_tags (scenario_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(text(tag))
            .execute(&mut *tx)
            .await?;
        }
        let row = sqlx::query(&format!(
            "SELECT {} FROM scenarios WHERE id = $1",
            scenario_columns()
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let scenario = scenario_from(&row)?;
        tx.commit().await?;
        Ok(scenario)
    }
    async fn list_scenarios(
        &self,
        project_id: i64,
        agent_id: Option<i64>,
    ) -> Result<Vec<Scenario>> {
        list_scenarios(&self.pool, project_id, agent_id).await
    }
    async fn scenario(&self, project_id: i64, id: i64) -> Result<Option<Scenario>> {
        scenario(&self.pool, project_id, id).await
    }
    async fn update_scenario(
        &self,
        project_id: i64,
        id: i64,
        new: &NewScenario,
    ) -> Result<Scenario> {
        let mut tx = self.pool.begin().await?;
        agent_in_project(&mut tx, project_id, new.agent_id).await?;
        let updated = sqlx::query(
            "UPDATE scenarios SET agent_id = $1, name = $2, instructions = $3,
                expected_outcome_prompt = $4, direction = $5, tester_phone_number = $6,
                simulation = $7, quarantined = $8
             WHERE id = $9 AND project_id = $10",
        )
        .bind(new.agent_id)
        .bind(text(&new.name))
        .bind(text(&new.instructions))
        .bind(text(&new.expected_outcome_prompt))
        .bind(new.direction.as_str())
        .bind(new.tester_phone_number.as_ref().map(|p| p.as_str()))
        .bind(text(&ScenarioSimulation::of(new)).into_owned())
        .bind(new.quarantined)
        .bind(id)
        .bind(project_id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no scenario with id {id} in this project"
            )));
        }
        sqlx::query("DELETE FROM scenario_tags WHERE scenario_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for tag in &new.tags {
            sqlx::query(
                "INSERT INTO scenario_tags (scenario_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(text(tag))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        scenario(&self.pool, project_id, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("scenario {id} vanished")))
    }
    async fn create_result(
        &self,
        project_id: i64,
        result: &NewTestResult,
        now: DateTime<Utc>,
    ) -> Result<TestResult> {
        let id = create_result(&self.pool, project_id, result, now).await?;
        self.result(project_id, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("result {id} vanished")))
    }
    async fn result(&self, project_id: i64, id: i64) -> Result<Option<TestResult>> {
        result(&self.pool, project_id, id).await
    }
    async fn run(&self, project_id: i64, id: i64) -> Result<Option<Run>> {
        let pool = &self.pool;
        sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} {RUN_FROM} WHERE r.project_id = $1 AND r.id = $2"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(run_from)
        .transpose()
    }
    async fn list_runs(&self, project_id: i64, filter: &RunFilter) -> Result<Page<Run>> {
        let pool = &self.pool;
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {RUN_COLUMNS} {RUN_FROM} WHERE r.project_id = "
        ));
        q.push_bind(project_id);
        if let Some(status) = filter.status {
            q.push(" AND r.status = ").push_bind(status.as_str());
        }
        if let Some(agent_id) = filter.agent_id {
            q.push(" AND r.agent_id = ").push_bind(agent_id);
        }
        if let Some(result_id) = filter.result_id {
            q.push(" AND r.result_id = ").push_bind(result_id);
        }
        if let Some(cursor) = &filter.cursor {
            q.push(" AND r.id < ")
                .push_bind(decode_cursor(cursor, 1)?[0]);
        }
        q.push(" ORDER BY r.id DESC LIMIT ")
            .push_bind(i64::from(filter.limit) + 1);
        let rows = q.build().fetch_all(pool).await?;
        paginate(rows, filter.limit, run_from, |row| {
            Ok(encode_cursor(&[row.try_get("id")?]))
        })
    }
    async fn run_event(
        &self,
        project_id: i64,
        run_id: i64,
        event: RunEvent,
        now: DateTime<Utc>,
    ) -> Result<Run> {
        run_event(&self.pool, project_id, run_id, event, now).await?;
        existing_run(self, project_id, run_id).await
    }
    async fn attach_call(
        &self,
        project_id: i64,
        run_id: i64,
        call_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Run> {
        attach_call(&self.pool, project_id, run_id, call_id, now).await?;
        self.jobs_ready.notify_waiters();
        existing_run(self, project_id, run_id).await
    }
    /// Times out overdue runs. Safe with many instances: rows another sweeper (or an ingest) holds
    /// are skipped rather than waited for, and the update re-checks the status.
    async fn sweep_runs(&self, now: DateTime<Utc>) -> Result<Vec<i64>> {
        let pool = &self.pool;
        let now_ms = now.timestamp_millis();
        let mut tx = pool.begin().await?;
        let listening = &*LISTENING;
        let rows = sqlx::query(&format!(
            "SELECT r.id, r.direction, r.tester_phone_number, r.status, r.created_at, r.deadline_at,
                r.call_started_at, r.call_ended_at, r.call_id, r.mode, p.listening_window_seconds,
                r.call_id IS NOT NULL AS has_call, r.error_message, r.finished_at
             FROM runs r JOIN projects p ON p.id = r.project_id
             WHERE r.status IN {listening} AND r.call_id IS NULL AND r.mode = 'external' AND (
                (r.call_ended_at IS NOT NULL AND r.call_ended_at + p.listening_window_seconds * 1000 < $1)
                OR (r.call_ended_at IS NULL AND r.deadline_at < $1))
             ORDER BY r.id
             FOR UPDATE OF r SKIP LOCKED"
        ))
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        let mut timed_out = Vec::new();
        for row in rows {
            let run = facts_from(&row)?;
            let window = TimeDelta::seconds(row.try_get("listening_window_seconds")?);
            let Some(reason) = timeout_reason(&run, now, window) else {
                continue;
            };
            let Ok(w) = RunState::from_row(&row)?.apply(RunChange::TimedOut(&reason), now_ms)
            else {
                continue;
            };
            let updated = sqlx::query(
                "UPDATE runs SET status = $1, error_message = $2, finished_at = $3, updated_at = $4
                 WHERE id = $5 AND call_id IS NULL AND status = $6",
            )
            .bind(w.status.as_str())
            .bind(w.error_message.as_deref().map(text))
            .bind(w.finished_at)
            .bind(now_ms)
            .bind(run.id)
            .bind(w.from.as_str())
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 1 {
                timed_out.push(run.id);
            }
        }
        tx.commit().await?;
        Ok(timed_out)
    }
    async fn latest_finished_result(
        &self,
        project_id: i64,
        label: &str,
        except: i64,
    ) -> Result<Option<i64>> {
        let unfinished = &*UNFINISHED;
        Ok(sqlx::query_scalar(&format!(
            "SELECT id FROM results res WHERE project_id = $1 AND label = $2 AND id <> $3
               AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.result_id = res.id
                               AND r.status IN {unfinished})
             ORDER BY id DESC LIMIT 1"
        ))
        .bind(project_id)
        .bind(text(label))
        .bind(except)
        .fetch_optional(&self.pool)
        .await?)
    }
}
