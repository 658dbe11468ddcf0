//! Test runs: create a batch of them, record what the harness reports, attach a call by hand.
//! The rules that decide a run's next state are in `callgrade_core::runs`; the store applies
//! them inside its transaction.

use callgrade_core::{ResultDraft, Scenario, ScenarioDraft};
use callgrade_store::{Run, RunEvent, TestResult};

use crate::{App, AppError, Result};

/// Creates a test scenario for an agent.
pub async fn create_scenario(app: &App, project_id: i64, draft: ScenarioDraft) -> Result<Scenario> {
    let new = draft.validate().map_err(AppError::Invalid)?;
    Ok(app.store.create_scenario(project_id, &new).await?)
}

/// Creates a result: one pending run per scenario × frequency.
pub async fn create_result(app: &App, project_id: i64, draft: ResultDraft) -> Result<TestResult> {
    let new = draft.validate().map_err(AppError::Invalid)?;
    Ok(app.store.create_result(project_id, &new, app.now()).await?)
}

/// Records what the harness reports about a run's call (started, ended, cancelled).
pub async fn report(app: &App, project_id: i64, run_id: i64, event: RunEvent) -> Result<Run> {
    Ok(app
        .store
        .run_event(project_id, run_id, event, app.now())
        .await?)
}

/// Attaches a stored call to a run by hand (ambiguous and late cases); the run's evaluation is
/// queued and a worker woken by the store.
pub async fn attach(app: &App, project_id: i64, run_id: i64, call_id: &str) -> Result<Run> {
    Ok(app
        .store
        .attach_call(project_id, run_id, call_id.trim(), app.now())
        .await?)
}
