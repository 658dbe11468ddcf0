//! What an operator can tune about the use cases, whatever edge calls them. Every field has a
//! sane default; the CLI builds the rest from flags and the environment.

use callgrade_core::Limits;
use chrono::TimeDelta;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AppSettings {
    /// What one webhook request may hold.
    pub limits: Limits,
    /// How much of each request body the delivery log keeps, in bytes.
    pub delivery_body_cap: usize,
    pub delivery_retention: Retention,
    /// How often runs past their listening window or deadline are timed out.
    pub sweep_interval: Duration,
    pub workers: WorkerSettings,
    /// The server-wide judge endpoint, for projects that set none.
    pub judge: callgrade_eval::JudgeDefaults,
    pub script_limits: callgrade_eval::ScriptLimits,
    pub simulation: crate::simulation::SimulationSettings,
    /// Where calls' recordings are kept.
    pub recordings: crate::recordings::RecordingStore,
    /// The largest recording accepted, in bytes.
    pub max_recording_bytes: usize,
    /// The longest recording accepted, in seconds.
    pub max_recording_seconds: u32,
    /// What a call's `recording_url` may reach.
    pub fetch: crate::fetch::FetchPolicy,
    /// How outbound webhooks are sent.
    pub outbound: crate::webhooks::OutboundSettings,
    /// How often alert rules are checked.
    pub alert_interval: Duration,
    /// The dashboard's base URL, for links in messages sent out (Slack).
    pub dashboard_url: String,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            delivery_body_cap: 64 * 1024,
            delivery_retention: Retention::default(),
            sweep_interval: Duration::from_secs(5),
            workers: WorkerSettings::default(),
            judge: Default::default(),
            script_limits: Default::default(),
            simulation: Default::default(),
            recordings: Default::default(),
            max_recording_bytes: 64 * 1024 * 1024,
            max_recording_seconds: 4 * 60 * 60,
            fetch: Default::default(),
            outbound: Default::default(),
            alert_interval: Duration::from_secs(30),
            dashboard_url: "http://127.0.0.1:7300".into(),
        }
    }
}

/// How long the delivery log keeps entries.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: TimeDelta,
    pub max_per_project: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: TimeDelta::days(7),
            max_per_project: 10_000,
        }
    }
}

/// How evaluation workers run.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Workers inside `serve`; 0 leaves evaluation to `callgrade worker`.
    pub count: usize,
    /// A job whose worker stops renewing for this long is taken over by another.
    pub lease: TimeDelta,
    /// How often an idle worker looks for jobs (it is also woken at once by new jobs).
    pub poll: Duration,
    /// Attempts before a job is dead.
    pub max_attempts: i64,
    /// Jobs a worker claims at once and evaluates concurrently.
    pub batch: u32,
    /// How long one call's evaluation may take, every metric included; past it the job fails
    /// with that reason.
    pub evaluation_timeout: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            count: 2,
            lease: TimeDelta::seconds(30),
            poll: Duration::from_millis(500),
            max_attempts: 5,
            batch: 64,
            evaluation_timeout: Duration::from_secs(120),
        }
    }
}
