//! Scenarios, results and runs on SQLite, and the run side of matching.

use crate::codec::{decode_cursor, encode_cursor, time};
use crate::errors::{as_invalid_input, no_agent, no_run, no_tagged_scenario, unknown_scenario};
use crate::lifecycle::{changed_meanwhile, RunState, LISTENING, RUN_STATE_COLUMNS};
use crate::lookups::existing_run;
use crate::model::*;
use crate::rows::{
    facts_from, paginate, run_from, scenario_from, RUN_COLUMNS, RUN_FROM, SCENARIO_BASE_COLUMNS,
};
use crate::{
    Page, Result, Run, RunCounts, RunEvent, RunFilter, SqliteStore, StoreError, TestResult,
    TestRuns,
};
use async_trait::async_trait;
use callgrade_core::{check_attach, dedup_scenarios, AttachCall, AttachRun};
use callgrade_core::{timeout_reason, RunChange, RunStatus};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{QueryBuilder, Row, Sqlite};

/// The scenario's tags as a JSON array, in byte order.
fn scenario_columns() -> String {
    format!(
        "{SCENARIO_BASE_COLUMNS},
        (SELECT json_group_array(tag) FROM (SELECT tag FROM scenario_tags t
            WHERE t.scenario_id = scenarios.id ORDER BY tag)) AS tags"
    )
}

async fn agent_in_project(
    conn: &mut SqliteConnection,
    project_id: i64,
    agent_id: i64,
) -> Result<Option<String>> {
    let row: Option<Option<String>> =
        sqlx::query_scalar("SELECT phone_number FROM agents WHERE id = ? AND project_id = ?")
            .bind(agent_id)
            .bind(project_id)
            .fetch_optional(&mut *conn)
            .await?;
    row.ok_or_else(|| no_agent(agent_id))
}

pub(super) async fn create_scenario(
    pool: &SqlitePool,
    project_id: i64,
    new: &NewScenario,
    now: DateTime<Utc>,
) -> Result<Scenario> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    agent_in_project(&mut tx, project_id, new.agent_id).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO scenarios (project_id, agent_id, name, instructions, expected_outcome_prompt,
            direction, tester_phone_number, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(project_id)
    .bind(new.agent_id)
    .bind(&new.name)
    .bind(&new.instructions)
    .bind(&new.expected_outcome_prompt)
    .bind(new.direction.as_str())
    .bind(new.tester_phone_number.as_ref().map(|p| p.as_str()))
    .bind(now.timestamp_millis())
    .fetch_one(&mut *tx)
    .await?;
    for tag in &new.tags {
        sqlx::query("INSERT OR IGNORE INTO scenario_tags (scenario_id, tag) VALUES (?, ?)")
            .bind(id)
            .bind(tag)
            .execute(&mut *tx)
            .await?;
    }
    let row = sqlx::query(&format!(
        "SELECT {} FROM scenarios WHERE id = ?",
        scenario_columns()
    ))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let scenario = scenario_from(&row)?;
    tx.commit().await?;
    Ok(scenario)
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

pub(super) async fn create_result(
    pool: &SqlitePool,
    project_id: i64,
    new: &NewTestResult,
    now: DateTime<Utc>,
) -> Result<i64> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let agent_phone = agent_in_project(&mut tx, project_id, new.agent_id)
        .await
        .map_err(as_invalid_input)?;

    // The scenarios named by id (each must be this agent's) and those carrying any tag.
    let mut scenarios: Vec<(i64, String, Option<String>)> = Vec::new();
    for &id in &new.scenario_ids {
        let row: Option<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT id, direction, tester_phone_number FROM scenarios
             WHERE id = ? AND project_id = ? AND agent_id = ?",
        )
        .bind(id)
        .bind(project_id)
        .bind(new.agent_id)
        .fetch_optional(&mut *tx)
        .await?;
        let row = row.ok_or_else(|| unknown_scenario(id, new.agent_id))?;
        scenarios.push(row);
    }
    if !new.tags.is_empty() {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT DISTINCT s.id, s.direction, s.tester_phone_number FROM scenarios s
             JOIN scenario_tags t ON t.scenario_id = s.id WHERE s.project_id = ",
        );
        q.push_bind(project_id)
            .push(" AND s.agent_id = ")
            .push_bind(new.agent_id)
            .push(" AND t.tag IN (");
        let mut list = q.separated(", ");
        for tag in &new.tags {
            list.push_bind(tag.clone());
        }
        q.push(") ORDER BY s.id");
        let tagged: Vec<(i64, String, Option<String>)> =
            q.build_query_as().fetch_all(&mut *tx).await?;
        scenarios.extend(tagged);
    }
    dedup_scenarios(&mut scenarios);
    if scenarios.is_empty() {
        return Err(no_tagged_scenario(new));
    }

    let deadline_seconds: i64 =
        sqlx::query_scalar("SELECT run_deadline_seconds FROM projects WHERE id = ?")
            .bind(project_id)
            .fetch_one(&mut *tx)
            .await?;
    let now_ms = now.timestamp_millis();
    let deadline = (now + TimeDelta::seconds(deadline_seconds)).timestamp_millis();
    let result_id: i64 = sqlx::query_scalar(
        "INSERT INTO results (project_id, agent_id, name, created_at) VALUES (?, ?, ?, ?)
         RETURNING id",
    )
    .bind(project_id)
    .bind(new.agent_id)
    .bind(&new.name)
    .bind(now_ms)
    .fetch_one(&mut *tx)
    .await?;
    for (scenario_id, direction, tester) in &scenarios {
        for _ in 0..new.frequency {
            sqlx::query(
                "INSERT INTO runs (project_id, result_id, scenario_id, agent_id, direction,
                    tester_phone_number, agent_phone_number, status, created_at, updated_at,
                    deadline_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(project_id)
            .bind(result_id)
            .bind(scenario_id)
            .bind(new.agent_id)
            .bind(direction)
            .bind(tester)
            .bind(&agent_phone)
            .bind(RunStatus::Pending.as_str())
            .bind(now_ms)
            .bind(now_ms)
            .bind(deadline)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(result_id)
}

pub(super) async fn result(
    pool: &SqlitePool,
    project_id: i64,
    id: i64,
) -> Result<Option<TestResult>> {
    let row: Option<(i64, i64, Option<String>, i64)> = sqlx::query_as(
        "SELECT id, agent_id, name, created_at FROM results WHERE project_id = ? AND id = ?",
    )
    .bind(project_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some((id, agent_id, name, created_at)) = row else {
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
    Ok(Some(TestResult {
        id,
        project_id,
        agent_id,
        name,
        created_at: time(created_at)?,
        finished: runs.iter().all(|r| r.status.is_final()),
        counts: RunCounts::of(&runs),
        runs,
    }))
}

pub(super) async fn run(pool: &SqlitePool, project_id: i64, id: i64) -> Result<Option<Run>> {
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

pub(super) async fn list_runs(
    pool: &SqlitePool,
    project_id: i64,
    filter: &RunFilter,
) -> Result<Page<Run>> {
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

/// On the writer's connection: the state of the run that `filter` (`id = ?`, `call_id = ?`)
/// names, if there is one.
pub(super) fn run_state_in_place(
    conn: &rusqlite::Connection,
    filter: &str,
    param: impl rusqlite::ToSql,
) -> Result<Option<RunState>> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT {RUN_STATE_COLUMNS} FROM runs WHERE {filter}"
    ))?;
    let mut rows = select.query([param])?;
    rows.next()?
        .map(|row| RunState::from_row(&super::lite::LiteRow(row)))
        .transpose()
}

/// The run's state, for a change to be decided on.
async fn state_of(conn: &mut SqliteConnection, project_id: i64, run_id: i64) -> Result<RunState> {
    let row = sqlx::query(&format!(
        "SELECT {RUN_STATE_COLUMNS} FROM runs WHERE id = ? AND project_id = ?"
    ))
    .bind(run_id)
    .bind(project_id)
    .fetch_optional(&mut *conn)
    .await?;
    RunState::from_row(&row.ok_or_else(|| no_run(run_id))?)
}

pub(super) async fn run_event(
    pool: &SqlitePool,
    project_id: i64,
    run_id: i64,
    event: RunEvent,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let now_ms = now.timestamp_millis();
    let w = state_of(&mut tx, project_id, run_id)
        .await?
        .apply(RunChange::Report(event), now_ms)?;
    // The reported time, in the column of the report (a cancel reports none: the column keeps
    // its value).
    let (column, at) = match event {
        RunEvent::CallStarted(at) => ("call_started_at", Some(at.timestamp_millis())),
        RunEvent::CallEnded(at) => ("call_ended_at", Some(at.timestamp_millis())),
        RunEvent::Cancel => ("call_ended_at", None),
    };
    let updated = sqlx::query(&format!(
        "UPDATE runs SET status = ?, error_message = ?, finished_at = ?, updated_at = ?,
            {column} = COALESCE(?, {column})
         WHERE id = ? AND status = ?"
    ))
    .bind(w.status.as_str())
    .bind(w.error_message)
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
    pool: &SqlitePool,
    project_id: i64,
    run_id: i64,
    call_id: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let row = sqlx::query(&format!(
        "SELECT {RUN_STATE_COLUMNS}, call_id, agent_id FROM runs WHERE id = ? AND project_id = ?"
    ))
    .bind(run_id)
    .bind(project_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (state, run) = match row {
        Some(row) => {
            let run = AttachRun {
                call_id: row.try_get("call_id")?,
                agent_id: row.try_get("agent_id")?,
            };
            (Some(RunState::from_row(&row)?), Some(run))
        }
        None => (None, None),
    };
    let call: Option<(Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT agent_id, run_id FROM calls WHERE id = ? AND project_id = ?")
            .bind(call_id)
            .bind(project_id)
            .fetch_optional(&mut *tx)
            .await?;
    let call = call.map(|(agent_id, run_id)| AttachCall { agent_id, run_id });
    let run = run.ok_or_else(|| no_run(run_id))?;
    check_attach(run_id, call_id, &run, call.as_ref())?;
    let now_ms = now.timestamp_millis();
    let w = state
        .ok_or_else(|| no_run(run_id))?
        .apply(RunChange::Attached, now_ms)?;
    let updated = sqlx::query(
        "UPDATE runs SET call_id = ?, matched_by = 'manual', status = ?, error_message = ?,
            finished_at = ?, success = NULL, updated_at = ?
         WHERE id = ? AND status = ?",
    )
    .bind(call_id)
    .bind(w.status.as_str())
    .bind(w.error_message)
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
        "UPDATE calls SET run_id = ?, matched_by = 'manual', match_outcome = 'matched',
            match_reason = NULL, match_candidates = '[]'
         WHERE id = ?",
    )
    .bind(run_id)
    .bind(call_id)
    .execute(&mut *tx)
    .await?;
    // Now a test call: evaluate it again, with the run's scenario.
    super::jobs::enqueue_in(&mut tx, project_id, call_id, now_ms).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn sweep_runs(pool: &SqlitePool, now: DateTime<Utc>) -> Result<Vec<i64>> {
    let now_ms = now.timestamp_millis();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let listening = &*LISTENING;
    let rows = sqlx::query(&format!(
        "SELECT r.id, r.direction, r.tester_phone_number, r.status, r.created_at, r.deadline_at,
            r.call_started_at, r.call_ended_at, r.call_id, p.listening_window_seconds,
            r.call_id IS NOT NULL AS has_call, r.error_message, r.finished_at
         FROM runs r JOIN projects p ON p.id = r.project_id
         WHERE r.status IN {listening} AND r.call_id IS NULL AND (
            (r.call_ended_at IS NOT NULL AND r.call_ended_at + p.listening_window_seconds * 1000 < ?)
            OR (r.call_ended_at IS NULL AND r.deadline_at < ?))"
    ))
    .bind(now_ms)
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
        let Ok(w) = RunState::from_row(&row)?.apply(RunChange::TimedOut(&reason), now_ms) else {
            continue;
        };
        let updated = sqlx::query(
            "UPDATE runs SET status = ?, error_message = ?, finished_at = ?, updated_at = ?
             WHERE id = ? AND call_id IS NULL AND status = ?",
        )
        .bind(w.status.as_str())
        .bind(w.error_message)
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

#[async_trait]
impl TestRuns for SqliteStore {
    async fn create_scenario(&self, project_id: i64, scenario: &NewScenario) -> Result<Scenario> {
        create_scenario(&self.pool, project_id, scenario, Utc::now()).await
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
        run(&self.pool, project_id, id).await
    }
    async fn list_runs(&self, project_id: i64, filter: &RunFilter) -> Result<Page<Run>> {
        list_runs(&self.pool, project_id, filter).await
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
    async fn sweep_runs(&self, now: DateTime<Utc>) -> Result<Vec<i64>> {
        sweep_runs(&self.pool, now).await
    }
}
