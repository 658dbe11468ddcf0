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

/// Everything each claimed simulated run's conversation needs, read after the claim: (project,
/// run) ids in, claims out (a run whose rows vanished meanwhile is left out).
pub(crate) async fn claimed_simulations(
    store: &(impl Store + ?Sized),
    ids: Vec<(i64, i64)>,
) -> Result<Vec<crate::ClaimedSimulation>> {
    let mut claimed = Vec::with_capacity(ids.len());
    for (project_id, run_id) in ids {
        let Some(run) = store.run(project_id, run_id).await? else {
            continue;
        };
        let Some(scenario) = store.scenario(project_id, run.scenario_id).await? else {
            continue;
        };
        let Some((agent, connector)) = store.agent(project_id, run.agent_id).await? else {
            continue;
        };
        let simulator = store.simulator_settings(project_id).await?;
        claimed.push(crate::ClaimedSimulation {
            project_id,
            run,
            scenario,
            agent,
            connector,
            simulator,
        });
    }
    Ok(claimed)
}
