//! Scenarios, results and runs on SQLite, and the run side of matching.

use callgrade_core::{
    timeout_reason, CallFacts, Decision, Direction, MatchOutcome, RunFacts, RunStatus, CLOCK_SKEW,
};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{decode_cursor, encode_cursor, matched_by, paginate, parse_column, time};
use crate::model::*;
use crate::{Result, StoreError};

const LISTENING: &str = "('pending', 'in_progress', 'awaiting_transcript')";

const RUN_COLUMNS: &str = "r.id, r.result_id, r.scenario_id, s.name AS scenario_name, r.agent_id,
    r.direction, r.tester_phone_number, r.agent_phone_number, r.status, r.created_at,
    r.updated_at, r.deadline_at, r.call_started_at, r.call_ended_at, r.call_id, r.matched_by,
    r.late, r.error_message, r.finished_at, r.success, p.listening_window_seconds";

const RUN_FROM: &str = "FROM runs r JOIN scenarios s ON s.id = r.scenario_id
    JOIN projects p ON p.id = r.project_id";

fn opt_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    ms.map(time).transpose()
}

fn run_from(row: &SqliteRow) -> Result<Run> {
    let status: String = row.try_get("status")?;
    let direction: String = row.try_get("direction")?;
    let call_ended_at = opt_time(row.try_get("call_ended_at")?)?;
    let window = TimeDelta::seconds(row.try_get("listening_window_seconds")?);
    Ok(Run {
        id: row.try_get("id")?,
        result_id: row.try_get("result_id")?,
        scenario_id: row.try_get("scenario_id")?,
        scenario_name: row.try_get("scenario_name")?,
        agent_id: row.try_get("agent_id")?,
        direction: parse_column(&direction, Direction::parse)?,
        tester_phone_number: row.try_get("tester_phone_number")?,
        agent_phone_number: row.try_get("agent_phone_number")?,
        status: parse_column(&status, RunStatus::parse)?,
        created_at: time(row.try_get("created_at")?)?,
        updated_at: time(row.try_get("updated_at")?)?,
        deadline_at: time(row.try_get("deadline_at")?)?,
        call_started_at: opt_time(row.try_get("call_started_at")?)?,
        call_ended_at,
        listen_until: call_ended_at.map(|t| t + window),
        call_id: row.try_get("call_id")?,
        matched_by: matched_by(row.try_get("matched_by")?)?,
        late: row.try_get("late")?,
        error_message: row.try_get("error_message")?,
        finished_at: opt_time(row.try_get("finished_at")?)?,
        success: row.try_get("success")?,
    })
}

fn facts_from(row: &SqliteRow) -> Result<RunFacts> {
    let status: String = row.try_get("status")?;
    let direction: String = row.try_get("direction")?;
    Ok(RunFacts {
        id: row.try_get("id")?,
        direction: parse_column(&direction, Direction::parse)?,
        tester_phone_number: row.try_get("tester_phone_number")?,
        status: parse_column(&status, RunStatus::parse)?,
        created_at: time(row.try_get("created_at")?)?,
        deadline_at: time(row.try_get("deadline_at")?)?,
        call_started_at: opt_time(row.try_get("call_started_at")?)?,
        call_ended_at: opt_time(row.try_get("call_ended_at")?)?,
        has_call: row.try_get::<Option<String>, _>("call_id")?.is_some(),
    })
}

const FACT_COLUMNS: &str = "id, direction, tester_phone_number, status, created_at, deadline_at,
    call_started_at, call_ended_at, call_id";

pub(super) async fn load_run_facts(conn: &mut SqliteConnection, run_id: i64) -> Result<RunFacts> {
    let row = sqlx::query(&format!("SELECT {FACT_COLUMNS} FROM runs WHERE id = ?"))
        .bind(run_id)
        .fetch_one(&mut *conn)
        .await?;
    facts_from(&row)
}

/// The agent's runs that could take this call by phone number: without a call, listening or
/// timed out, with a tester number on either side of the call, and created around its time.
/// The core decides among them.
pub(super) async fn phone_candidates(
    conn: &mut SqliteConnection,
    agent_id: i64,
    call: &CallFacts<'_>,
) -> Result<Vec<RunFacts>> {
    let numbers: Vec<&str> = [call.to_phone_number, call.from_phone_number]
        .into_iter()
        .flatten()
        .collect();
    if numbers.is_empty() {
        return Ok(Vec::new());
    }
    let mut q =
        QueryBuilder::<Sqlite>::new(format!("SELECT {FACT_COLUMNS} FROM runs WHERE agent_id = "));
    q.push_bind(agent_id)
        .push(" AND call_id IS NULL AND status IN ('pending', 'in_progress', 'awaiting_transcript', 'timeout')")
        .push(" AND created_at <= ")
        .push_bind((call.started_at + CLOCK_SKEW).timestamp_millis())
        .push(" AND deadline_at >= ")
        .push_bind(call.started_at.timestamp_millis())
        .push(" AND tester_phone_number IN (");
    let mut list = q.separated(", ");
    for n in numbers {
        list.push_bind(n.to_owned());
    }
    q.push(") ORDER BY id");
    q.build()
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(facts_from)
        .collect()
}

/// Applies a matching decision to its run, in the transaction that stores the call.
pub(super) async fn attach_decided(
    conn: &mut SqliteConnection,
    decision: &Decision,
    call_id: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let (Some(run_id), Some(by)) = (decision.run_id, decision.matched_by) else {
        return Ok(());
    };
    let now = now.timestamp_millis();
    let late = decision.outcome == MatchOutcome::Late;
    let updated = if late {
        sqlx::query(
            "UPDATE runs SET call_id = ?, matched_by = ?, late = 1, status = 'timeout',
                error_message = ?, finished_at = COALESCE(finished_at, ?), updated_at = ?
             WHERE id = ? AND call_id IS NULL",
        )
        .bind(call_id)
        .bind(by.as_str())
        .bind(format!(
            "{}; the transcript is linked to this run as late — attach it by hand to complete the run",
            decision.reason.as_deref().unwrap_or("the transcript arrived late")
        ))
        .bind(now)
        .bind(now)
        .bind(run_id)
    } else {
        sqlx::query(
            "UPDATE runs SET call_id = ?, matched_by = ?, status = 'evaluating', error_message = NULL,
                updated_at = ?
             WHERE id = ? AND call_id IS NULL",
        )
        .bind(call_id)
        .bind(by.as_str())
        .bind(now)
        .bind(run_id)
    }
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(StoreError::Conflict(format!(
            "run {run_id} took another call meanwhile"
        )));
    }
    Ok(())
}

pub(super) async fn update_project_settings(
    pool: &SqlitePool,
    project_id: i64,
    settings: &ProjectSettings,
) -> Result<()> {
    let updated = sqlx::query(
        "UPDATE projects SET
            listening_window_seconds = COALESCE(?, listening_window_seconds),
            run_deadline_seconds = COALESCE(?, run_deadline_seconds)
         WHERE id = ?",
    )
    .bind(settings.listening_window_seconds)
    .bind(settings.run_deadline_seconds)
    .bind(project_id)
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!(
            "no project with id {project_id}"
        )));
    }
    Ok(())
}

const SCENARIO_COLUMNS: &str = "id, project_id, agent_id, name, instructions,
    expected_outcome_prompt, direction, tester_phone_number, created_at,
    (SELECT json_group_array(tag) FROM (SELECT tag FROM scenario_tags t
        WHERE t.scenario_id = scenarios.id ORDER BY tag)) AS tags";

fn scenario_from(row: &SqliteRow) -> Result<Scenario> {
    let direction: String = row.try_get("direction")?;
    let tags: String = row.try_get("tags")?;
    Ok(Scenario {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        agent_id: row.try_get("agent_id")?,
        name: row.try_get("name")?,
        instructions: row.try_get("instructions")?,
        expected_outcome_prompt: row.try_get("expected_outcome_prompt")?,
        tags: serde_json::from_str(&tags).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        direction: parse_column(&direction, Direction::parse)?,
        tester_phone_number: row.try_get("tester_phone_number")?,
        created_at: time(row.try_get("created_at")?)?,
    })
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
    row.ok_or_else(|| StoreError::NotFound(format!("no agent with id {agent_id} in this project")))
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
        "SELECT {SCENARIO_COLUMNS} FROM scenarios WHERE id = ?"
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
        "SELECT {SCENARIO_COLUMNS} FROM scenarios WHERE project_id = "
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
        "SELECT {SCENARIO_COLUMNS} FROM scenarios WHERE project_id = ? AND id = ?"
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
        .map_err(|e| match e {
            StoreError::NotFound(m) => StoreError::InvalidInput(m),
            other => other,
        })?;

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
        let row = row.ok_or_else(|| {
            StoreError::InvalidInput(format!(
                "no scenario with id {id} for agent {} in this project",
                new.agent_id
            ))
        })?;
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
    let mut seen = std::collections::HashSet::new();
    scenarios.retain(|(id, _, _)| seen.insert(*id));
    if scenarios.is_empty() {
        return Err(StoreError::InvalidInput(format!(
            "no scenario of agent {} has any of the tags {:?}",
            new.agent_id, new.tags
        )));
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
                 VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
            )
            .bind(project_id)
            .bind(result_id)
            .bind(scenario_id)
            .bind(new.agent_id)
            .bind(direction)
            .bind(tester)
            .bind(&agent_phone)
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

async fn status_of(
    conn: &mut SqliteConnection,
    project_id: i64,
    run_id: i64,
) -> Result<(RunStatus, Option<String>)> {
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT status, call_id FROM runs WHERE id = ? AND project_id = ?")
            .bind(run_id)
            .bind(project_id)
            .fetch_optional(&mut *conn)
            .await?;
    let (status, call_id) = row
        .ok_or_else(|| StoreError::NotFound(format!("no run with id {run_id} in this project")))?;
    Ok((parse_column(&status, RunStatus::parse)?, call_id))
}

pub(super) async fn run_event(
    pool: &SqlitePool,
    project_id: i64,
    run_id: i64,
    event: RunEvent,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let (status, call_id) = status_of(&mut tx, project_id, run_id).await?;
    let now_ms = now.timestamp_millis();
    let refuse = |what: &str| {
        Err(StoreError::Conflict(format!(
            "run {run_id} is {}; {what}",
            status.as_str()
        )))
    };
    let query = match event {
        RunEvent::CallStarted(at) => {
            if !matches!(status, RunStatus::Pending | RunStatus::InProgress) {
                return refuse("its call can no longer start");
            }
            sqlx::query(
                "UPDATE runs SET status = 'in_progress', call_started_at = ?, updated_at = ? WHERE id = ?",
            )
            .bind(at.timestamp_millis())
        }
        // The transcript may arrive before the harness reports the end: record the time only.
        RunEvent::CallEnded(at) if call_id.is_some() => {
            sqlx::query("UPDATE runs SET call_ended_at = ?, updated_at = ? WHERE id = ?")
                .bind(at.timestamp_millis())
        }
        RunEvent::CallEnded(at) => {
            if !status.is_listening() {
                return refuse("its call's end can no longer be reported");
            }
            sqlx::query(
                "UPDATE runs SET status = 'awaiting_transcript', call_ended_at = ?, updated_at = ? WHERE id = ?",
            )
            .bind(at.timestamp_millis())
        }
        RunEvent::Cancel => {
            if !status.is_listening() {
                return refuse("only a run that is still waiting can be cancelled");
            }
            sqlx::query(
                "UPDATE runs SET status = 'cancelled', error_message = 'cancelled', finished_at = ?,
                    updated_at = ? WHERE id = ?",
            )
            .bind(now_ms)
        }
    };
    query.bind(now_ms).bind(run_id).execute(&mut *tx).await?;
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
    let (status, current) = status_of(&mut tx, project_id, run_id).await?;
    let run_agent: i64 = sqlx::query_scalar("SELECT agent_id FROM runs WHERE id = ?")
        .bind(run_id)
        .fetch_one(&mut *tx)
        .await?;
    let call: Option<(Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT agent_id, run_id FROM calls WHERE id = ? AND project_id = ?")
            .bind(call_id)
            .bind(project_id)
            .fetch_optional(&mut *tx)
            .await?;
    let (call_agent, call_run) = call
        .ok_or_else(|| StoreError::InvalidInput(format!("no call {call_id:?} in this project")))?;
    if call_agent != Some(run_agent) {
        return Err(StoreError::InvalidInput(format!(
            "call {call_id:?} is of agent {}, run {run_id} of agent {run_agent}",
            call_agent.map_or("none".into(), |a| a.to_string())
        )));
    }
    if let Some(other) = call_run.filter(|&r| r != run_id) {
        return Err(StoreError::Conflict(format!(
            "call {call_id:?} is already attached to run {other}"
        )));
    }
    if let Some(other) = current.as_deref().filter(|&c| c != call_id) {
        return Err(StoreError::Conflict(format!(
            "run {run_id} already has call {other:?}"
        )));
    }
    if status == RunStatus::Cancelled {
        return Err(StoreError::Conflict(format!("run {run_id} was cancelled")));
    }
    let now_ms = now.timestamp_millis();
    sqlx::query(
        "UPDATE runs SET call_id = ?, matched_by = 'manual', status = 'evaluating',
            error_message = NULL, finished_at = NULL, success = NULL, updated_at = ?
         WHERE id = ?",
    )
    .bind(call_id)
    .bind(now_ms)
    .bind(run_id)
    .execute(&mut *tx)
    .await?;
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
    super::eval::enqueue(&mut tx, project_id, call_id, now_ms).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn sweep_runs(pool: &SqlitePool, now: DateTime<Utc>) -> Result<Vec<i64>> {
    let now_ms = now.timestamp_millis();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let rows = sqlx::query(&format!(
        "SELECT r.id, r.direction, r.tester_phone_number, r.status, r.created_at, r.deadline_at,
            r.call_started_at, r.call_ended_at, r.call_id, p.listening_window_seconds
         FROM runs r JOIN projects p ON p.id = r.project_id
         WHERE r.status IN {LISTENING} AND r.call_id IS NULL AND (
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
        sqlx::query(&format!(
            "UPDATE runs SET status = 'timeout', error_message = ?, finished_at = ?, updated_at = ?
             WHERE id = ? AND call_id IS NULL AND status IN {LISTENING}"
        ))
        .bind(reason)
        .bind(now_ms)
        .bind(now_ms)
        .bind(run.id)
        .execute(&mut *tx)
        .await?;
        timed_out.push(run.id);
    }
    tx.commit().await?;
    Ok(timed_out)
}
