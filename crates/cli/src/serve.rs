//! `callgrade serve`: the HTTP server.

use anyhow::Context;
use callgrade_app::recordings::RecordingStore;
use callgrade_app::{App, AppSettings, Retention};
use callgrade_core::Limits;
use callgrade_server::{AppState, HttpLimits, RateLimit, Settings};
use chrono::TimeDelta;
use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

use crate::DbArgs;

/// The one source of every default: the flags show and use these.
fn defaults() -> Settings {
    Settings::default()
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CALLGRADE_BIND", default_value = "127.0.0.1:7300")]
    bind: SocketAddr,
    /// Log format on stderr; the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, env = "CALLGRADE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(flatten)]
    limits: PayloadLimitArgs,
    /// The largest webhook body accepted, in bytes (413 above).
    #[arg(long, env = "CALLGRADE_MAX_BODY_BYTES", default_value_t = defaults().max_body_bytes as u64,
          value_parser = clap::value_parser!(u64).range(1024..=1024 * 1024 * 1024))]
    max_body_bytes: u64,
    /// How many bytes of each request body the delivery log keeps.
    #[arg(long, env = "CALLGRADE_DELIVERY_BODY_CAP", default_value_t = defaults().app.delivery_body_cap)]
    delivery_body_cap: usize,
    /// Days the delivery log keeps entries.
    #[arg(long, env = "CALLGRADE_DELIVERY_RETENTION_DAYS",
          default_value_t = defaults().app.delivery_retention.max_age.num_days() as u32,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    delivery_retention_days: u32,
    /// Requests per second per project key (429 with Retry-After above); 0 turns the limit off.
    #[arg(long, env = "CALLGRADE_RATE_LIMIT",
          default_value_t = defaults().http.rate_limit.map_or(0, |r| r.per_second))]
    rate_limit: u32,
    /// Requests a key may send at once above its rate.
    #[arg(long, env = "CALLGRADE_RATE_BURST",
          default_value_t = defaults().http.rate_limit.map_or(1, |r| r.burst),
          value_parser = clap::value_parser!(u32).range(1..))]
    rate_burst: u32,
    /// Seconds a client has to send its request headers.
    #[arg(long, env = "CALLGRADE_HEADER_TIMEOUT",
          default_value_t = defaults().http.header_read_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=600))]
    header_timeout: u64,
    /// Seconds a client has to send its request body (408 after).
    #[arg(long, env = "CALLGRADE_BODY_TIMEOUT",
          default_value_t = defaults().http.body_read_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout: u64,
    /// Webhook body bytes read and ingested at once, all requests together; a request that
    /// would go over waits (bounds memory under a burst of large bodies).
    #[arg(long, env = "CALLGRADE_WEBHOOK_BYTES_IN_FLIGHT",
          default_value_t = defaults().http.webhook_bytes_in_flight as u64,
          value_parser = clap::value_parser!(u64).range(1024 * 1024..=64 * 1024 * 1024 * 1024))]
    webhook_bytes_in_flight: u64,
    /// Run no evaluation workers here (run `callgrade worker` elsewhere).
    #[arg(long)]
    no_workers: bool,
    /// A bearer token `GET /metrics` asks for; without one it is open to whoever reaches the
    /// address (bind to localhost, or set one).
    #[arg(long, env = "CALLGRADE_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    #[command(flatten)]
    eval: EvalArgs,
    /// Entries the delivery log keeps per project.
    #[arg(long, env = "CALLGRADE_DELIVERY_RETENTION_COUNT",
          default_value_t = defaults().app.delivery_retention.max_per_project,
          value_parser = clap::value_parser!(u32).range(1..))]
    delivery_retention_count: u32,
}

/// What one webhook request may hold, shared by `serve` and `check` (so `check` judges a file
/// as the server would).
#[derive(Args)]
pub struct PayloadLimitArgs {
    /// The most calls one webhook request may hold.
    #[arg(long, env = "CALLGRADE_MAX_CALLS_PER_REQUEST", default_value_t = Limits::default().max_calls_per_request,
          value_parser = clap::value_parser!(u32).range(1..=100_000).map(|n| n as usize))]
    max_calls_per_request: usize,
    /// The most JSON values one request body may hold, counted before parsing (413 above): it
    /// bounds the memory a request can take.
    #[arg(long, env = "CALLGRADE_MAX_JSON_VALUES", default_value_t = Limits::default().max_json_values,
          value_parser = clap::value_parser!(u32).range(100..=50_000_000).map(|n| n as usize))]
    max_json_values: usize,
    /// The most messages one call may hold.
    #[arg(long, env = "CALLGRADE_MAX_MESSAGES_PER_CALL", default_value_t = Limits::default().max_messages_per_call,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000).map(|n| n as usize))]
    max_messages_per_call: usize,
    /// The largest `metadata` of one call, in bytes of compact JSON.
    #[arg(long, env = "CALLGRADE_MAX_METADATA_BYTES", default_value_t = Limits::default().max_metadata_bytes,
          value_parser = clap::value_parser!(u32).range(0..=100_000_000).map(|n| n as usize))]
    max_metadata_bytes: usize,
    /// The largest `data` of one message, in bytes of compact JSON.
    #[arg(long, env = "CALLGRADE_MAX_MESSAGE_DATA_BYTES", default_value_t = Limits::default().max_message_data_bytes,
          value_parser = clap::value_parser!(u32).range(0..=100_000_000).map(|n| n as usize))]
    max_message_data_bytes: usize,
}

impl PayloadLimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_calls_per_request: self.max_calls_per_request,
            max_json_values: self.max_json_values,
            max_messages_per_call: self.max_messages_per_call,
            max_metadata_bytes: self.max_metadata_bytes,
            max_message_data_bytes: self.max_message_data_bytes,
        }
    }
}

/// Evaluation settings shared by `serve` and `worker`.
#[derive(Args)]
pub struct EvalArgs {
    /// Evaluation workers to run.
    #[arg(long, env = "CALLGRADE_WORKERS",
          default_value_t = defaults().app.workers.count as u32,
          value_parser = clap::value_parser!(u32).range(0..=64))]
    workers: u32,
    /// The default OpenAI-compatible endpoint for judge metrics (e.g. https://api.openai.com/v1).
    #[arg(long, env = "CALLGRADE_JUDGE_BASE_URL")]
    judge_base_url: Option<String>,
    /// The default judge model.
    #[arg(long, env = "CALLGRADE_JUDGE_MODEL")]
    judge_model: Option<String>,
    /// The default judge API key (prefer the environment variable to the flag).
    #[arg(long, env = "CALLGRADE_JUDGE_API_KEY", hide_env_values = true)]
    judge_api_key: Option<String>,
    /// Seconds after which a job whose worker stopped (crashed) is run by another worker.
    #[arg(long, env = "CALLGRADE_JOB_LEASE",
          default_value_t = defaults().app.workers.lease.num_seconds() as u64,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    job_lease: u64,
    /// Seconds before a judge request times out.
    #[arg(long, env = "CALLGRADE_JUDGE_TIMEOUT",
          default_value_t = defaults().app.judge.timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=600))]
    judge_timeout: u64,
    /// Seconds one call's evaluation may take, all metrics together; past it the job fails
    /// with that reason (and is retried), so no call holds a worker for long.
    #[arg(long, env = "CALLGRADE_EVALUATION_TIMEOUT",
          default_value_t = defaults().app.workers.evaluation_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    evaluation_timeout: u64,
    /// Simulated conversations this process plays at once (0: leave them to other
    /// instances). Each project also has its own limit (its simulator's concurrency).
    #[arg(long, env = "CALLGRADE_SIMULATION_SLOTS",
          default_value_t = defaults().app.simulation.slots as u32,
          value_parser = clap::value_parser!(u32).range(0..=1024))]
    simulation_slots: u32,
    /// The default OpenAI-compatible endpoint of the simulated caller's LLM.
    #[arg(long, env = "CALLGRADE_SIMULATOR_BASE_URL")]
    simulator_base_url: Option<String>,
    /// The default model of the simulated caller.
    #[arg(long, env = "CALLGRADE_SIMULATOR_MODEL")]
    simulator_model: Option<String>,
    /// The default simulator API key (prefer the environment variable to the flag).
    #[arg(long, env = "CALLGRADE_SIMULATOR_API_KEY", hide_env_values = true)]
    simulator_api_key: Option<String>,
    /// Seconds after which a simulated conversation whose instance stopped is failed.
    #[arg(long, env = "CALLGRADE_SIMULATION_LEASE",
          default_value_t = defaults().app.simulation.lease.num_seconds() as u64,
          value_parser = clap::value_parser!(u64).range(5..=3600))]
    simulation_lease: u64,
    /// Where calls' recordings are kept: `s3://bucket[/prefix]` (credentials and endpoint from
    /// the AWS_* variables) for several instances; default `<data-dir>/recordings`.
    #[arg(long, env = "CALLGRADE_RECORDINGS_URL")]
    recordings_url: Option<String>,
    /// The largest recording accepted, in bytes.
    #[arg(long, env = "CALLGRADE_MAX_RECORDING_BYTES",
          default_value_t = defaults().app.max_recording_bytes as u64,
          value_parser = clap::value_parser!(u64).range(1024..=4_294_967_296))]
    max_recording_bytes: u64,
    /// Networks a call's `recording_url` may reach although they are private or loopback
    /// (comma-separated, e.g. `10.0.0.0/8,fd00::/8`); by default only public addresses.
    #[arg(long, env = "CALLGRADE_ALLOW_FETCH_FROM", value_delimiter = ',')]
    allow_fetch_from: Vec<callgrade_app::fetch::Network>,
    /// Seconds a fetch of a call's `recording_url` may take.
    #[arg(long, env = "CALLGRADE_FETCH_TIMEOUT",
          default_value_t = defaults().app.fetch.timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    fetch_timeout: u64,
    /// Outbound webhook deliveries attempted at once by this process; 0 leaves sending to
    /// another process (`callgrade worker` sends too).
    #[arg(long, env = "CALLGRADE_WEBHOOK_SENDERS",
          default_value_t = defaults().app.outbound.senders as u32,
          value_parser = clap::value_parser!(u32).range(0..=256))]
    webhook_senders: u32,
    /// Networks an outbound webhook endpoint may be in although they are private or loopback
    /// (comma-separated, e.g. `10.0.0.0/8`); by default only public addresses.
    #[arg(long, env = "CALLGRADE_ALLOW_WEBHOOKS_TO", value_delimiter = ',')]
    allow_webhooks_to: Vec<callgrade_app::fetch::Network>,
    /// Seconds a webhook receiver has to answer one attempt.
    #[arg(long, env = "CALLGRADE_WEBHOOK_TIMEOUT",
          default_value_t = defaults().app.outbound.policy.timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=300))]
    webhook_timeout: u64,
    /// Seconds between two checks of every alert rule (`serve` and `worker` both check).
    #[arg(long, env = "CALLGRADE_ALERT_INTERVAL",
          default_value_t = defaults().app.alert_interval.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    alert_interval: u64,
}

impl EvalArgs {
    fn apply(&self, settings: &mut AppSettings, db: &DbArgs) -> anyhow::Result<()> {
        settings.dashboard_url = db.public_url.clone();
        settings.alert_interval = std::time::Duration::from_secs(self.alert_interval);
        settings.recordings = match &self.recordings_url {
            Some(url) => RecordingStore::s3(url).map_err(anyhow::Error::msg)?,
            None => {
                let dir = db.data_dir.join("recordings");
                RecordingStore::directory(&dir)
                    .with_context(|| format!("cannot use {} for recordings", dir.display()))?
            }
        };
        settings.max_recording_bytes =
            usize::try_from(self.max_recording_bytes).unwrap_or(usize::MAX);
        settings.fetch.allowed = self.allow_fetch_from.clone();
        settings.fetch.timeout = std::time::Duration::from_secs(self.fetch_timeout);
        settings.outbound.senders = self.webhook_senders as usize;
        settings.outbound.policy.allowed = self.allow_webhooks_to.clone();
        settings.outbound.policy.timeout = std::time::Duration::from_secs(self.webhook_timeout);
        settings.workers.count = self.workers as usize;
        settings.workers.lease = TimeDelta::seconds(self.job_lease as i64);
        settings.judge.base_url = self.judge_base_url.clone();
        settings.judge.model = self.judge_model.clone();
        settings.judge.api_key = self.judge_api_key.clone();
        settings.judge.timeout = std::time::Duration::from_secs(self.judge_timeout);
        settings.workers.evaluation_timeout =
            std::time::Duration::from_secs(self.evaluation_timeout);
        settings.simulation.slots = self.simulation_slots as usize;
        settings.simulation.default_base_url = self.simulator_base_url.clone();
        settings.simulation.default_model = self.simulator_model.clone();
        settings.simulation.default_api_key = self.simulator_api_key.clone();
        settings.simulation.lease = TimeDelta::seconds(self.simulation_lease as i64);
        Ok(())
    }
}

#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    eval: EvalArgs,
    /// Log format on stderr.
    #[arg(long, value_enum, env = "CALLGRADE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

/// `callgrade worker`: evaluation workers only, until SIGINT/SIGTERM.
pub async fn worker(db: &DbArgs, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    let store = db.open().await?;
    let mut settings = AppSettings::default();
    args.eval.apply(&mut settings, db)?;
    if settings.workers.count == 0 && settings.simulation.slots == 0 {
        anyhow::bail!("--workers or --simulation-slots must be at least 1 for `callgrade worker`");
    }
    let shutdown = shutdown_signal()?;
    let count = settings.workers.count;
    let app = App::new(store, settings);
    let mut workers = callgrade_app::worker::spawn(&app, count).await;
    workers.extend(callgrade_app::simulation::spawn(&app));
    workers.extend(callgrade_app::webhooks::spawn(&app));
    workers.extend(callgrade_app::alerts::spawn(&app));
    tracing::info!(workers = count, simulation_slots = app.settings.simulation.slots, data = %db.describe(), "workers running");
    shutdown.await;
    workers.iter().for_each(|w| w.abort());
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

pub async fn run(db: &DbArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    let store = db.open().await?;
    let mut settings = Settings {
        public_url: db.public_url.clone(),
        max_body_bytes: usize::try_from(args.max_body_bytes).unwrap_or(usize::MAX),
        ..Settings::default()
    };
    settings.app = AppSettings {
        limits: args.limits.limits(),
        delivery_body_cap: args.delivery_body_cap,
        delivery_retention: Retention {
            max_age: TimeDelta::days(i64::from(args.delivery_retention_days)),
            max_per_project: args.delivery_retention_count,
        },
        ..AppSettings::default()
    };
    args.eval.apply(&mut settings.app, db)?;
    settings.http = HttpLimits {
        header_read_timeout: std::time::Duration::from_secs(args.header_timeout),
        body_read_timeout: std::time::Duration::from_secs(args.body_timeout),
        rate_limit: (args.rate_limit > 0).then_some(RateLimit {
            per_second: args.rate_limit,
            burst: args.rate_burst,
        }),
        webhook_bytes_in_flight: usize::try_from(args.webhook_bytes_in_flight)
            .unwrap_or(usize::MAX),
    };
    if args.no_workers {
        settings.app.workers.count = 0;
    }
    settings.metrics_token = args.metrics_token.clone().filter(|t| !t.is_empty());
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let addr = listener.local_addr()?;
    let shutdown = shutdown_signal()?;
    tracing::info!(data = %db.describe(), "database ready");
    // One line on stdout, so scripts and tests learn the port when binding port 0.
    println!("callgrade listening on http://{addr}");
    let state = AppState::new(store, settings);
    callgrade_server::serve(listener, state, shutdown).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal; a log file or collector gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on SIGINT or SIGTERM; the server then finishes in-flight requests. The handlers are
/// installed before this returns, so a signal sent as soon as the server is up is not missed.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
            tracing::info!("shutting down: finishing in-flight requests");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down: finishing in-flight requests");
        })
    }
}
