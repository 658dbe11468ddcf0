//! Evaluation on demand: queue one call, or every call that matches, for the workers. The
//! store wakes the workers when it commits new jobs.

use callgrade_store::ReevaluateFilter;

use crate::{App, Result};

/// Queues a stored call for evaluation with the current metrics; returns how many jobs were
/// queued (0 when one is already waiting).
pub async fn enqueue(app: &App, project_id: i64, call_id: &str) -> Result<usize> {
    let filter = ReevaluateFilter::default();
    Ok(app
        .store
        .enqueue_evaluations(project_id, &filter, Some(call_id), app.now())
        .await?)
}

/// Queues every stored call that matches the filter (all of the project's when it is empty).
pub async fn rerun(app: &App, project_id: i64, filter: &ReevaluateFilter) -> Result<usize> {
    Ok(app
        .store
        .enqueue_evaluations(project_id, filter, None, app.now())
        .await?)
}
