//! Reads that must find their thing, through the seam, for both backends.

use crate::errors::{no_metric, no_project, no_run};
use crate::model::*;
use crate::{Result, Store};

pub(crate) async fn existing_run(
    store: &(impl Store + ?Sized),
    project_id: i64,
    run_id: i64,
) -> Result<Run> {
    store
        .run(project_id, run_id)
        .await?
        .ok_or_else(|| no_run(run_id))
}

pub(crate) async fn existing_metric(
    store: &(impl Store + ?Sized),
    project_id: i64,
    id: i64,
) -> Result<Metric> {
    store
        .metric(project_id, id)
        .await?
        .ok_or_else(|| no_metric(id))
}

pub(crate) async fn existing_project(
    store: &(impl Store + ?Sized),
    project_id: i64,
) -> Result<Project> {
    store
        .project(project_id)
        .await?
        .ok_or_else(|| no_project(project_id))
}
