//! Scenarios, results and runs on SQLite, and the run side of matching.

use crate::codec::{decode_cursor, encode_cursor};
use crate::errors::{as_invalid_input, no_agent, no_run, no_tagged_scenario, unknown_scenario};
use crate::lifecycle::{changed_meanwhile, RunState, LISTENING, RUN_STATE_COLUMNS, UNFINISHED};
use crate::lookups::existing_run;
use crate::model::*;
use crate::rows::{
    facts_from, paginate, result_from, run_from, scenario_from, RESULT_COLUMNS, RUN_COLUMNS,
    RUN_FROM, SCENARIO_BASE_COLUMNS,
};
use crate::{
    Page, Result, Run, RunEvent, RunFilter, SqliteStore, StoreError, TestResult, TestRuns,
};
use async_trait::async_trait;
use callgrade_core::{check_attach, dedup_scenarios, AttachCall, AttachRun};
use callgrade_core::{timeout_reason, RunChange, RunStatus};
use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use sqlx::sqlite::SqlitePool;

use super::lite::LiteRow;
use super::writer::in_place;
use crate::rows::Columns;
use sqlx::{QueryBuilder, Row, Sqlite};

/// The scenario's tags as a JSON array, in byte order.
fn scenario_columns() -> String {
    format!(
        "{SCENARIO_BASE_COLUMNS},
        (SELECT json_group_array(tag) FROM (SELECT tag FROM scenario_tags t
            WHERE t.scenario_id = scenarios.id ORDER BY tag)) AS tags"
    )
}

/// The agent's phone number and whether it has a connector, if the agent is the project's.
fn agent_in_project(
    conn: &Connection,
    project_id: i64,
    agent_id: i64,
) -> Result<(Option<String>, bool)> {
    conn.prepare_cached(
        "SELECT phone_number, connector IS NOT NULL FROM agents WHERE id = ? AND project_id = ?",
    )?
    .query_row(params![agent_id, project_id], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })
    .optional()?
    .ok_or_else(|| no_agent(agent_id))
}

/// Creates a scenario on the writer's connection; its id.
fn create_scenario(conn: &Connection, project_id: i64, new: &NewScenario, now: i64) -> Result<i64> {
    agent_in_project(conn, project_id, new.agent_id)?;
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO scenarios (project_id, agent_id, name, instructions,
                expected_outcome_prompt, direction, tester_phone_number, simulation, quarantined,
                created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )?
        .query_row(
            params![
                project_id,
                new.agent_id,
                new.name,
                new.instructions,
                new.expected_outcome_prompt,
                new.direction.as_str(),
                new.tester_phone_number.as_ref().map(|p| p.as_str()),
                ScenarioSimulation::of(new),
                new.quarantined,
                now
            ],
            |row| row.get(0),
        )?;
    let mut tag = conn
        .prepare_cached("INSERT OR IGNORE INTO scenario_tags (scenario_id, tag) VALUES (?, ?)")?;
    for t in &new.tags {
        tag.execute(params![id, t])?;
    }
    Ok(id)
}

/// Replaces a scenario on the writer's connection.
fn update_scenario(conn: &Connection, project_id: i64, id: i64, new: &NewScenario) -> Result<()> {
    agent_in_project(conn, project_id, new.agent_id)?;
    let updated = conn
        .prepare_cached(
            "UPDATE scenarios SET agent_id = ?, name = ?, instructions = ?,
                expected_outcome_prompt = ?, direction = ?, tester_phone_number = ?,
                simulation = ?, quarantined = ?
             WHERE id = ? AND project_id = ?",
        )?
        .execute(params![
            new.agent_id,
            new.name,
            new.instructions,
            new.expected_outcome_prompt,
            new.direction.as_str(),
            new.tester_phone_number.as_ref().map(|p| p.as_str()),
            ScenarioSimulation::of(new),
            new.quarantined,
            id,
            project_id
        ])?;
    if updated == 0 {
        return Err(StoreError::NotFound(format!(
            "no scenario with id {id} in this project"
        )));
    }
    conn.prepare_cached("DELETE FROM scenario_tags WHERE scenario_id = ?")?
        .execute([id])?;
    let mut tag = conn
        .prepare_cached("INSERT OR IGNORE INTO scenario_tags (scenario_id, tag) VALUES (?, ?)")?;
    for t in &new.tags {
        tag.execute(params![id, t])?;
    }
    Ok(())
}

pub(super) async fn list_scenarios(
    pool: &SqlitePool,
    project_id: i64,
    agent_id: Option<i64>,
) -> Result<Vec<Scenario>> {
    let mut q = QueryBuilder::<Sqlite>::new(format!(
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

pub(super) async fn scenario(
    pool: &SqlitePool,
    project_id: i64,
    id: i64,
) -> Result<Option<Scenario>> {
    sqlx::query(&format!(
        "SELECT {} FROM scenarios WHERE project_id = ? AND id = ?",
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

/// Creates a result and its runs on the writer's connection; its id.
fn create_result(
    conn: &Connection,
    project_id: i64,
    new: &NewTestResult,
    now: DateTime<Utc>,
) -> Result<i64> {
    let (agent_phone, has_connector) =
        agent_in_project(conn, project_id, new.agent_id).map_err(as_invalid_input)?;
    let mode = new
        .mode_for(has_connector)
        .map_err(StoreError::InvalidInput)?;

    // The scenarios named by id (each must be this agent's) and those carrying any tag.
    let mut scenarios: Vec<(i64, String, Option<String>)> = Vec::new();
    let mut named = conn.prepare_cached(
        "SELECT id, direction, tester_phone_number FROM scenarios
         WHERE id = ? AND project_id = ? AND agent_id = ?",
    )?;
    for &id in &new.scenario_ids {
        let row = named
            .query_row(params![id, project_id, new.agent_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()?;
        scenarios.push(row.ok_or_else(|| unknown_scenario(id, new.agent_id))?);
    }
    if !new.tags.is_empty() {
        let placeholders = vec!["?"; new.tags.len()].join(", ");
        let mut args: Vec<rusqlite::types::Value> = vec![project_id.into(), new.agent_id.into()];
        args.extend(new.tags.iter().map(|t| t.clone().into()));
        let tagged = conn
            .prepare(&format!(
                "SELECT DISTINCT s.id, s.direction, s.tester_phone_number FROM scenarios s
                 JOIN scenario_tags t ON t.scenario_id = s.id
                 WHERE s.project_id = ? AND s.agent_id = ? AND t.tag IN ({placeholders})
                 ORDER BY s.id"
            ))?
            .query_map(rusqlite::params_from_iter(args), |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        scenarios.extend(tagged);
    }
    dedup_scenarios(&mut scenarios);
    if scenarios.is_empty() {
        return Err(no_tagged_scenario(new));
    }

    let deadline_seconds: i64 = conn
        .prepare_cached("SELECT run_deadline_seconds FROM projects WHERE id = ?")?
        .query_row([project_id], |row| row.get(0))?;
    let now_ms = now.timestamp_millis();
    let deadline = (now + TimeDelta::seconds(deadline_seconds)).timestamp_millis();
    let result_id: i64 = conn
        .prepare_cached(
            "INSERT INTO results (project_id, agent_id, name, mode, label, created_at)
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )?
        .query_row(
            params![
                project_id,
                new.agent_id,
                new.name,
                mode.as_str(),
                new.label,
                now_ms
            ],
            |row| row.get(0),
        )?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO runs (project_id, result_id, scenario_id, agent_id, direction,
            tester_phone_number, agent_phone_number, status, created_at, updated_at, deadline_at,
            mode)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    for (scenario_id, direction, tester) in &scenarios {
        for _ in 0..new.frequency {
            insert.execute(params![
                project_id,
                result_id,
                scenario_id,
                new.agent_id,
                direction,
                tester,
                agent_phone,
                RunStatus::Pending.as_str(),
                now_ms,
                now_ms,
                deadline,
                mode.as_str()
            ])?;
        }
    }
    Ok(result_id)
}

pub(super) async fn result(
    pool: &SqlitePool,
    project_id: i64,
    id: i64,
) -> Result<Option<TestResult>> {
    let row = sqlx::query(&format!(
        "SELECT {RESULT_COLUMNS} FROM results WHERE project_id = ? AND id = ?"
    ))
    .bind(project_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let runs: Vec<Run> = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} {RUN_FROM} WHERE r.result_id = ? ORDER BY r.id"
    ))
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(run_from)
    .collect::<Result<_>>()?;
    Ok(Some(result_from(&row, runs)?))
}

/// On the writer's connection: the state of the run that `filter` (`id = ?`, `call_id = ?`)
/// names with `params`, if there is one.
pub(super) fn run_state_in_place(
    conn: &rusqlite::Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<Option<RunState>> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT {RUN_STATE_COLUMNS} FROM runs WHERE {filter}"
    ))?;
    let mut rows = select.query(params)?;
    rows.next()?
        .map(|row| RunState::from_row(&super::lite::LiteRow(row)))
        .transpose()
}

/// The run's state, for a change to be decided on.
/// The run's state, for a change to be decided on.
fn state_of(conn: &Connection, project_id: i64, run_id: i64) -> Result<RunState> {
    run_state_in_place(
        conn,
        "id = ? AND project_id = ?",
        params![run_id, project_id],
    )?
    .ok_or_else(|| no_run(run_id))
}

fn run_event(
    conn: &Connection,
    project_id: i64,
    run_id: i64,
    event: RunEvent,
    now_ms: i64,
) -> Result<()> {
    let w = state_of(conn, project_id, run_id)?.apply(RunChange::Report(event), now_ms)?;
    // The reported time, in the column of the report (a cancel reports none: the column keeps
    // its value).
    let (column, at) = match event {
        RunEvent::CallStarted(at) => ("call_started_at", Some(at.timestamp_millis())),
        RunEvent::CallEnded(at) => ("call_ended_at", Some(at.timestamp_millis())),
        RunEvent::Cancel => ("call_ended_at", None),
    };
    let updated = conn
        .prepare_cached(&format!(
            "UPDATE runs SET status = ?, error_message = ?, finished_at = ?, updated_at = ?,
                {column} = COALESCE(?, {column})
             WHERE id = ? AND status = ?"
        ))?
        .execute(params![
            w.status.as_str(),
            w.error_message,
            w.finished_at,
            now_ms,
            at,
            run_id,
            w.from.as_str()
        ])?;
    if updated != 1 {
        return Err(changed_meanwhile(run_id));
    }
    Ok(())
}

fn attach_call(
    conn: &Connection,
    project_id: i64,
    run_id: i64,
    call_id: &str,
    now_ms: i64,
) -> Result<()> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT {RUN_STATE_COLUMNS}, call_id, agent_id FROM runs WHERE id = ? AND project_id = ?"
    ))?;
    let mut rows = select.query(params![run_id, project_id])?;
    let Some(row) = rows.next()? else {
        return Err(no_run(run_id));
    };
    let row = LiteRow(row);
    let run = AttachRun {
        call_id: row.opt_text("call_id")?,
        agent_id: row.int("agent_id")?,
    };
    let state = RunState::from_row(&row)?;
    drop(rows);
    let call = conn
        .prepare_cached("SELECT agent_id, run_id FROM calls WHERE id = ? AND project_id = ?")?
        .query_row(params![call_id, project_id], |row| {
            Ok(AttachCall {
                agent_id: row.get(0)?,
                run_id: row.get(1)?,
            })
        })
        .optional()?;
    check_attach(run_id, call_id, &run, call.as_ref())?;
    let w = state.apply(RunChange::Attached, now_ms)?;
    let updated = conn
        .prepare_cached(
            "UPDATE runs SET call_id = ?, matched_by = 'manual', status = ?, error_message = ?,
                finished_at = ?, success = NULL, updated_at = ?
             WHERE id = ? AND status = ?",
        )?
        .execute(params![
            call_id,
            w.status.as_str(),
            w.error_message,
            w.finished_at,
            now_ms,
            run_id,
            w.from.as_str()
        ])?;
    if updated != 1 {
        return Err(changed_meanwhile(run_id));
    }
    conn.prepare_cached(
        "UPDATE calls SET run_id = ?, matched_by = 'manual', match_outcome = 'matched',
            match_reason = NULL, match_candidates = '[]'
         WHERE id = ?",
    )?
    .execute(params![run_id, call_id])?;
    // Now a test call: evaluate it again, with the run's scenario.
    super::jobs::enqueue(conn, project_id, call_id, now_ms)?;
    Ok(())
}

fn sweep_runs(conn: &Connection, now: DateTime<Utc>) -> Result<Vec<i64>> {
    let now_ms = now.timestamp_millis();
    let listening = &*LISTENING;
    let mut select = conn.prepare_cached(&format!(
        "SELECT r.id, r.direction, r.tester_phone_number, r.status, r.created_at, r.deadline_at,
            r.call_started_at, r.call_ended_at, r.call_id, r.mode, p.listening_window_seconds,
            r.call_id IS NOT NULL AS has_call, r.error_message, r.finished_at
         FROM runs r JOIN projects p ON p.id = r.project_id
         WHERE r.status IN {listening} AND r.call_id IS NULL AND r.mode = 'external' AND (
            (r.call_ended_at IS NOT NULL AND r.call_ended_at + p.listening_window_seconds * 1000 < ?1)
            OR (r.call_ended_at IS NULL AND r.deadline_at < ?1))"
    ))?;
    let mut due = Vec::new();
    let mut rows = select.query([now_ms])?;
    while let Some(row) = rows.next()? {
        let row = LiteRow(row);
        let window = TimeDelta::seconds(row.int("listening_window_seconds")?);
        due.push((facts_from(&row)?, RunState::from_row(&row)?, window));
    }
    drop(rows);
    let mut update = conn.prepare_cached(
        "UPDATE runs SET status = ?, error_message = ?, finished_at = ?, updated_at = ?
         WHERE id = ? AND call_id IS NULL AND status = ?",
    )?;
    let mut timed_out = Vec::new();
    for (run, state, window) in due {
        let Some(reason) = timeout_reason(&run, now, window) else {
            continue;
        };
        let Ok(w) = state.apply(RunChange::TimedOut(&reason), now_ms) else {
            continue;
        };
        let updated = update.execute(params![
            w.status.as_str(),
            w.error_message,
            w.finished_at,
            now_ms,
            run.id,
            w.from.as_str()
        ])?;
        if updated == 1 {
            timed_out.push(run.id);
        }
    }
    Ok(timed_out)
}

#[async_trait]
impl TestRuns for SqliteStore {
    async fn create_scenario(&self, project_id: i64, scenario: &NewScenario) -> Result<Scenario> {
        let (new, now) = (scenario.clone(), Utc::now().timestamp_millis());
        let id = self
            .writer
            .write(in_place(move |conn| {
                create_scenario(conn, project_id, &new, now)
            }))
            .await?;
        self::scenario(&self.pool, project_id, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("scenario {id} vanished")))
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
        scenario: &NewScenario,
    ) -> Result<Scenario> {
        let new = scenario.clone();
        self.writer
            .write(in_place(move |conn| {
                update_scenario(conn, project_id, id, &new)
            }))
            .await?;
        self::scenario(&self.pool, project_id, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("scenario {id} vanished")))
    }
    async fn create_result(
        &self,
        project_id: i64,
        result: &NewTestResult,
        now: DateTime<Utc>,
    ) -> Result<TestResult> {
        let new = result.clone();
        let id = self
            .writer
            .write(in_place(move |conn| {
                create_result(conn, project_id, &new, now)
            }))
            .await?;
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
            "SELECT {RUN_COLUMNS} {RUN_FROM} WHERE r.project_id = ? AND r.id = ?"
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
        let mut q = QueryBuilder::<Sqlite>::new(format!(
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
        let now_ms = now.timestamp_millis();
        self.writer
            .write(in_place(move |conn| {
                run_event(conn, project_id, run_id, event, now_ms)
            }))
            .await?;
        existing_run(self, project_id, run_id).await
    }
    async fn attach_call(
        &self,
        project_id: i64,
        run_id: i64,
        call_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Run> {
        let (call_id, now_ms) = (call_id.to_owned(), now.timestamp_millis());
        self.writer
            .write(in_place(move |conn| {
                attach_call(conn, project_id, run_id, &call_id, now_ms)
            }))
            .await?;
        self.jobs_ready.notify_waiters();
        existing_run(self, project_id, run_id).await
    }
    async fn sweep_runs(&self, now: DateTime<Utc>) -> Result<Vec<i64>> {
        self.writer
            .write(in_place(move |conn| sweep_runs(conn, now)))
            .await
    }
    async fn latest_finished_result(
        &self,
        project_id: i64,
        label: &str,
        except: i64,
    ) -> Result<Option<i64>> {
        let unfinished = &*UNFINISHED;
        Ok(sqlx::query_scalar(&format!(
            "SELECT id FROM results res WHERE project_id = ? AND label = ? AND id <> ?
               AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.result_id = res.id
                               AND r.status IN {unfinished})
             ORDER BY id DESC LIMIT 1"
        ))
        .bind(project_id)
        .bind(label)
        .bind(except)
        .fetch_optional(&self.pool)
        .await?)
    }
}
