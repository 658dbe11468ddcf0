//! The use cases of callgrade, one module each, free of any transport: the REST API, the
//! dashboard and the CLI extract their input, call a function here and render what it returns.
//! Errors are one [`AppError`]; each edge maps it once (`ApiError: From<AppError>`,
//! `WebError: From<AppError>`).
//!
//! Reads that are a single store query (list calls, show a run) are not wrapped: edges call
//! [`App::store`] for those. Anything that decides, validates, writes more than one thing or
//! wakes someone lives here, so that every edge does it the same way.

pub mod admin;
pub mod alerts;
pub mod calls;
mod clock;
mod error;
pub mod evaluation;
pub mod fetch;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod overview;
pub mod recordings;
pub mod runs;
mod settings;
pub mod simulation;
pub mod telemetry;
pub mod traces;
pub mod upkeep;
pub mod webhooks;
pub mod worker;

pub use clock::{Clock, SystemClock};
pub use error::AppError;
pub use settings::{AppSettings, Retention, WorkerSettings};

use callgrade_eval::{Evaluator, JudgeClient};
use callgrade_store::Store;
use chrono::{DateTime, Utc};
use std::sync::Arc;

pub type Result<T, E = AppError> = std::result::Result<T, E>;

/// What every use case works with, cheap to clone.
#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub evaluator: Arc<Evaluator>,
    pub settings: Arc<AppSettings>,
    /// This process's simulated callers.
    pub simulator: Arc<simulation::Simulator>,
    /// Wakes this process's webhook sender when a use case queued a delivery (a test, a
    /// replay); events written by ingest and evaluation wait for its next poll.
    pub outbound_ready: Arc<tokio::sync::Notify>,
    /// This process's counters and histograms, for `/metrics`.
    pub telemetry: Arc<telemetry::Telemetry>,
}

impl App {
    pub fn new(store: Arc<dyn Store>, settings: AppSettings) -> Self {
        Self::with_clock(store, settings, Arc::new(SystemClock))
    }

    /// With another clock, so tests can move time instead of sleeping.
    pub fn with_clock(store: Arc<dyn Store>, settings: AppSettings, clock: Arc<dyn Clock>) -> Self {
        let evaluator = Evaluator {
            judge: JudgeClient::new(settings.judge.clone()),
            cache: Arc::new(worker::StoreCache {
                store: store.clone(),
                clock: clock.clone(),
            }),
            script_limits: settings.script_limits,
        };
        Self {
            store,
            clock,
            evaluator: Arc::new(evaluator),
            settings: Arc::new(settings),
            simulator: Arc::default(),
            outbound_ready: Arc::default(),
            telemetry: Arc::default(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
