//! The store's errors for things that are missing, taken or wrong, worded once for both
//! backends.

use crate::model::*;
use crate::StoreError;

/// A unique constraint refused the write, on either driver.
fn unique_violation(e: &StoreError) -> bool {
    match e {
        StoreError::Database(e) => e
            .as_database_error()
            .is_some_and(|d| d.is_unique_violation()),
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => {
            failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        }
        _ => false,
    }
}

pub(crate) fn project_name_taken(e: impl Into<StoreError>, name: &str) -> StoreError {
    let e = e.into();
    if unique_violation(&e) {
        StoreError::AlreadyExists(format!("a project named {name:?} already exists"))
    } else {
        e
    }
}

pub(crate) fn metric_name_taken(e: impl Into<StoreError>, name: &str) -> StoreError {
    let e = e.into();
    if unique_violation(&e) {
        StoreError::AlreadyExists(format!("a metric named {name:?} already exists"))
    } else {
        e
    }
}

pub(crate) fn rule_name_taken(e: impl Into<StoreError>, name: &str) -> StoreError {
    let e = e.into();
    if unique_violation(&e) {
        StoreError::AlreadyExists(format!("an alert rule named {name:?} already exists"))
    } else {
        e
    }
}

pub(crate) fn no_project(project_id: i64) -> StoreError {
    StoreError::NotFound(format!("no project with id {project_id}"))
}

pub(crate) fn no_run(run_id: i64) -> StoreError {
    StoreError::NotFound(format!("no run with id {run_id} in this project"))
}

pub(crate) fn no_metric(id: i64) -> StoreError {
    StoreError::NotFound(format!("no metric {id} in this project"))
}

pub(crate) fn no_call(call_id: &str) -> StoreError {
    StoreError::NotFound(format!("no call {call_id:?} in this project"))
}

pub(crate) fn no_agent(agent_id: i64) -> StoreError {
    StoreError::NotFound(format!("no agent with id {agent_id} in this project"))
}

// ---- Ingest ----

/// Applying a decision to its run found the run taken (a guard, never expected under locks).
pub(crate) fn run_taken(run_id: i64) -> StoreError {
    StoreError::Conflict(format!("run {run_id} took another call meanwhile"))
}

pub(crate) fn no_tagged_scenario(new: &NewTestResult) -> StoreError {
    StoreError::InvalidInput(format!(
        "no scenario of agent {} has any of the tags {:?}",
        new.agent_id, new.tags
    ))
}

pub(crate) fn unknown_scenario(id: i64, agent_id: i64) -> StoreError {
    StoreError::InvalidInput(format!(
        "no scenario with id {id} for agent {agent_id} in this project"
    ))
}

/// A result names an agent that is not the project's: the request is wrong, not the URL.
pub(crate) fn as_invalid_input(e: StoreError) -> StoreError {
    match e {
        StoreError::NotFound(m) => StoreError::InvalidInput(m),
        other => other,
    }
}

// ---- Evaluation ----

/// A manual attach refused by the rules: a call that does not fit is a bad request, a taken
/// call or run a conflict.
impl From<callgrade_core::AttachRefusal> for StoreError {
    fn from(refusal: callgrade_core::AttachRefusal) -> Self {
        match refusal {
            callgrade_core::AttachRefusal::Unfit(m) => StoreError::InvalidInput(m),
            callgrade_core::AttachRefusal::Taken(m) => StoreError::Conflict(m),
        }
    }
}
