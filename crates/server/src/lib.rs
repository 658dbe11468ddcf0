//! The HTTP edge of callgrade: the Cekura-compatible webhook, the REST API, the dashboard and
//! the OpenAPI document. Handlers stay thin: they authenticate, extract, call a use case of
//! `callgrade_app` (or one store read) and render; outcomes map to HTTP through one error type
//! ([`ApiError`], and the dashboard's `WebError`), each `From<AppError>`.

mod auth;
mod deadline;
mod error;
mod limits;
mod openapi;
mod routes;
mod settings;
mod web;

pub use error::ApiError;
pub use limits::RateLimit;
pub use routes::openapi;
pub use settings::{cekura_webhook_url, project_webhook_url, HttpLimits, Settings};

use axum::Router;
use callgrade_app::{App, Clock, SystemClock};
use callgrade_store::Store;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// What a handler may need, cheap to clone: the use cases, and what only the HTTP edge knows.
#[derive(Clone)]
pub struct AppState {
    pub app: App,
    pub settings: Arc<Settings>,
    pub rate_limiter: Arc<limits::RateLimiter>,
    /// [`HttpLimits::webhook_bytes_in_flight`], in KiB permits.
    pub webhook_budget: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Self {
        Self::with_clock(store, settings, Arc::new(SystemClock))
    }

    /// With another clock, so tests can move time instead of sleeping.
    pub fn with_clock(store: Arc<dyn Store>, settings: Settings, clock: Arc<dyn Clock>) -> Self {
        Self {
            app: App::with_clock(store, settings.app.clone(), clock),
            rate_limiter: Arc::new(limits::RateLimiter::new(settings.http.rate_limit)),
            webhook_budget: Arc::new(tokio::sync::Semaphore::new(kib(settings
                .http
                .webhook_bytes_in_flight))),
            settings: Arc::new(settings),
        }
    }
}

/// Bytes as whole KiB permits, rounded up; at least one, and within a semaphore's range.
pub(crate) fn kib(bytes: usize) -> usize {
    bytes
        .div_ceil(1024)
        .clamp(1, tokio::sync::Semaphore::MAX_PERMITS)
}

/// For `callgrade bench ingest`: the webhook's parsing and validation answered with 202 and
/// nothing stored, on `POST /hook`. The baseline the bench measures callgrade against.
pub async fn serve_parse_only_baseline(listener: TcpListener) -> std::io::Result<()> {
    use axum::http::StatusCode;
    use callgrade_core::{parse_json, validate_batch, Limits};
    let app = Router::new().route(
        "/hook",
        axum::routing::post(|body: axum::body::Bytes| async move {
            let valid = parse_json(&body)
                .ok()
                .is_some_and(|v| validate_batch(&v, &Limits::default()).is_ok());
            if valid {
                (StatusCode::ACCEPTED, r#"{"accepted":1}"#)
            } else {
                (StatusCode::BAD_REQUEST, "{}")
            }
        }),
    );
    axum::serve(listener, app).await
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

    if let Err(e) = callgrade_app::upkeep::install_new_builtins(&state.app).await {
        tracing::warn!(error = %e, "could not install new builtin metrics in existing projects");
    }
    let mut upkeep = callgrade_app::upkeep::spawn(&state.app);
    let workers = state.app.settings.workers.count;
    upkeep.extend(callgrade_app::worker::spawn(&state.app, workers).await);
    upkeep.extend(callgrade_app::simulation::spawn(&state.app));
    upkeep.extend(callgrade_app::webhooks::spawn(&state.app));
    upkeep.extend(callgrade_app::alerts::spawn(&state.app));
    let header_timeout = state.settings.http.header_read_timeout;
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
