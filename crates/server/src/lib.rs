//! The HTTP edge of callgrade: the Cekura-compatible webhook, the REST API and the OpenAPI
//! document. Handlers stay thin: they authenticate, hand the body to `callgrade_core` and the
//! result to the [`Store`], and map outcomes to HTTP through one error type ([`ApiError`]).

mod auth;
mod clock;
mod error;
mod limits;
mod openapi;
mod routes;
mod settings;
pub mod web;
pub mod worker;

pub use clock::{Clock, SystemClock};
pub use error::ApiError;
pub use limits::RateLimit;
pub use openapi::openapi;
pub use routes::metrics::{apply_file, MetricsFile};
pub use settings::{cekura_webhook_url, project_webhook_url, HttpLimits, Retention, Settings};

use axum::Router;
use callgrade_eval::{Evaluator, JudgeClient};
use callgrade_store::Store;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Everything a handler or a worker may need, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    pub evaluator: Arc<Evaluator>,
    /// Wakes idle workers when new jobs are committed.
    pub jobs_ready: Arc<Notify>,
    pub rate_limiter: Arc<limits::RateLimiter>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Self {
        Self::with_clock(store, settings, Arc::new(SystemClock))
    }

    /// With another clock, so tests can move time instead of sleeping.
    pub fn with_clock(store: Arc<dyn Store>, settings: Settings, clock: Arc<dyn Clock>) -> Self {
        let evaluator = Evaluator {
            judge: JudgeClient::new(settings.judge.clone()),
            cache: Arc::new(worker::StoreCache {
                store: store.clone(),
                clock: clock.clone(),
            }),
            script_limits: settings.script_limits,
        };
        Self {
            rate_limiter: Arc::new(limits::RateLimiter::new(settings.limits_http.rate_limit)),
            store,
            settings: Arc::new(settings),
            clock,
            evaluator: Arc::new(evaluator),
            jobs_ready: Arc::new(Notify::new()),
        }
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    routes::router(state)
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish (for at most 30 s).
/// Background upkeep (delivery-log retention, the run sweeper, evaluation workers) runs
/// alongside. Connections are served by hyper directly so slow clients meet a header-read
/// timeout; a slow body meets the body timeout layer of the router.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let mut upkeep = vec![
        tokio::spawn(prune_deliveries_forever(state.clone())),
        tokio::spawn(sweep_runs_forever(state.clone())),
    ];
    upkeep.extend(spawn_workers(&state, state.settings.workers.count));
    if let Err(e) = state.store.listen_for_jobs(state.jobs_ready.clone()).await {
        tracing::warn!(error = %e, "cannot listen for job notifications; polling only");
    }
    let header_timeout = state.settings.limits_http.header_read_timeout;
    let app = router(state);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after 30 s; closing them");
    }
    upkeep.iter().for_each(|task| task.abort());
    Ok(())
}

/// Starts `count` evaluation workers, named after this process so a log shows who ran what.
pub fn spawn_workers(state: &AppState, count: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let instance = format!("{}-{}", std::process::id(), rand_suffix());
    (0..count)
        .map(|i| tokio::spawn(worker::run_worker(state.clone(), format!("{instance}-{i}"))))
        .collect()
}

fn rand_suffix() -> String {
    use rand::Rng;
    format!("{:06x}", rand::thread_rng().gen_range(0..0xFF_FFFF))
}

/// Times out the runs whose listening window or deadline has passed, at the clock's now.
pub async fn sweep_runs(state: &AppState) -> Result<Vec<i64>, callgrade_store::StoreError> {
    let timed_out = state.store.sweep_runs(state.clock.now()).await?;
    if !timed_out.is_empty() {
        tracing::info!(runs = ?timed_out, "runs timed out");
    }
    Ok(timed_out)
}

/// A timer whose first tick is one period from now, not at once: upkeep starting with the
/// server would race whoever set the clock up (tests move it by hand).
fn every(period: Duration) -> tokio::time::Interval {
    tokio::time::interval_at(tokio::time::Instant::now() + period, period)
}

async fn sweep_runs_forever(state: AppState) {
    let mut tick = every(state.settings.sweep_interval);
    loop {
        tick.tick().await;
        if let Err(e) = sweep_runs(&state).await {
            tracing::warn!(error = %e, "could not sweep runs");
        }
    }
}

async fn prune_deliveries_forever(state: AppState) {
    let mut tick = every(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let retention = state.settings.delivery_retention;
        let cutoff = state.clock.now() - retention.max_age;
        match state
            .store
            .prune_deliveries(cutoff.timestamp_millis(), retention.max_per_project)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned the delivery log"),
            Err(e) => tracing::warn!(error = %e, "could not prune the delivery log"),
        }
    }
}
