//! Background upkeep beside the server: runs past their window time out, the delivery log is
//! pruned to its retention.

use std::time::Duration;

use crate::App;

/// Times out the runs whose listening window or deadline has passed, at the clock's now.
pub async fn sweep_runs(app: &App) -> Result<Vec<i64>, callgrade_store::StoreError> {
    let timed_out = app.store.sweep_runs(app.now()).await?;
    if !timed_out.is_empty() {
        tracing::info!(runs = ?timed_out, "runs timed out");
    }
    Ok(timed_out)
}

/// Deletes delivery-log entries past the retention; returns how many.
pub async fn prune_deliveries(app: &App) -> Result<u64, callgrade_store::StoreError> {
    let retention = app.settings.delivery_retention;
    let cutoff = app.now() - retention.max_age;
    app.store
        .prune_deliveries(cutoff.timestamp_millis(), retention.max_per_project)
        .await
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
