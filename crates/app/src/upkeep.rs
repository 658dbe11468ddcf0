//! Upkeep beside the server: builtin metrics added by an upgrade are installed in the projects
//! that predate them (once, at start); in the background, runs past their window time out and
//! the delivery log is pruned to its retention.

use callgrade_core::{default_metrics, BUILTIN_METRICS};
use std::collections::BTreeSet;
use std::time::Duration;

use crate::App;

/// The settings key that lists the builtin metrics every existing project has been given.
const OFFERED: &str = "builtin_metrics_offered";

/// Installs, in every project, the builtin metrics released since it was created: a project
/// made before the audio metrics existed gets them, so its calls with recordings are measured.
/// Each builtin is offered once: one a user deleted afterwards is not put back, and a metric of
/// the user's own with the same name is left alone. Returns how many metrics were created.
pub async fn install_new_builtins(app: &App) -> Result<usize, callgrade_store::StoreError> {
    let offered: BTreeSet<String> = match app.store.setting(OFFERED).await? {
        Some(json) => serde_json::from_str(&json).unwrap_or_default(),
        // Before this record, every project was created with the transcript builtins.
        None => BUILTIN_METRICS
            .iter()
            .filter(|b| !b.key.needs_recording())
            .map(|b| b.key.as_str().to_owned())
            .collect(),
    };
    let new: Vec<_> = default_metrics()
        .into_iter()
        .filter(|spec| !offered.contains(&spec.name))
        .collect();
    let mut created = 0;
    if !new.is_empty() {
        for project in app.store.list_projects().await? {
            let existing = app.store.list_metrics(project.id).await?;
            for spec in &new {
                if existing.iter().any(|m| m.spec.name == spec.name) {
                    continue;
                }
                match app.store.create_metric(project.id, spec).await {
                    Ok(_) => created += 1,
                    // Another instance starting at the same time made it.
                    Err(callgrade_store::StoreError::AlreadyExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    let all: BTreeSet<String> = offered
        .into_iter()
        .chain(new.into_iter().map(|spec| spec.name))
        .collect();
    let json = serde_json::to_string(&all).expect("names serialise");
    app.store.set_setting(OFFERED, &json).await?;
    if created > 0 {
        tracing::info!(
            created,
            "installed new builtin metrics in existing projects"
        );
    }
    Ok(created)
}

/// Times out the runs whose listening window or deadline has passed, at the clock's now.
pub async fn sweep_runs(app: &App) -> Result<Vec<i64>, callgrade_store::StoreError> {
    let timed_out = app.store.sweep_runs(app.now()).await?;
    if !timed_out.is_empty() {
        tracing::info!(runs = ?timed_out, "runs timed out");
    }
    Ok(timed_out)
}

/// Deletes delivery-log entries past the retention, and finished outbound deliveries as old;
/// returns how many of both.
pub async fn prune_deliveries(app: &App) -> Result<u64, callgrade_store::StoreError> {
    let retention = app.settings.delivery_retention;
    let cutoff = app.now() - retention.max_age;
    let inbound = app
        .store
        .prune_deliveries(cutoff.timestamp_millis(), retention.max_per_project)
        .await?;
    let outbound = app.store.prune_outbound(cutoff).await?;
    Ok(inbound + outbound)
}

/// Starts the upkeep loops; abort the handles to stop them.
pub fn spawn(app: &App) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(sweep_runs_forever(app.clone())),
        tokio::spawn(prune_deliveries_forever(app.clone())),
    ]
}

/// A timer whose first tick is one period from now, not at once: upkeep starting with the
/// server would race whoever set the clock up (tests move it by hand).
fn every(period: Duration) -> tokio::time::Interval {
    tokio::time::interval_at(tokio::time::Instant::now() + period, period)
}

async fn sweep_runs_forever(app: App) {
    let mut tick = every(app.settings.sweep_interval);
    loop {
        tick.tick().await;
        if let Err(e) = sweep_runs(&app).await {
            tracing::warn!(error = %e, "could not sweep runs");
        }
    }
}

async fn prune_deliveries_forever(app: App) {
    let mut tick = every(Duration::from_secs(60));
    loop {
        tick.tick().await;
        match prune_deliveries(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned the delivery log"),
            Err(e) => tracing::warn!(error = %e, "could not prune the delivery log"),
        }
    }
}
