use callgrade_core::Limits;
use chrono::TimeDelta;

/// What an operator can tune about the HTTP edge. Built by the CLI from flags, environment and
/// defaults; every field has a sane default.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The externally visible base URL, used to print webhook URLs.
    pub public_url: String,
    pub limits: Limits,
    /// Largest accepted webhook body, in bytes (413 above).
    pub max_body_bytes: usize,
    /// How much of each request body the delivery log keeps, in bytes.
    pub delivery_body_cap: usize,
    pub delivery_retention: Retention,
    /// How often runs past their listening window or deadline are timed out.
    pub sweep_interval: std::time::Duration,
    pub workers: crate::worker::WorkerSettings,
    /// The server-wide judge endpoint, for projects that set none.
    pub judge: callgrade_eval::JudgeDefaults,
    pub script_limits: callgrade_eval::ScriptLimits,
    pub limits_http: HttpLimits,
}

/// Protection against slow and greedy clients.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A client must send its request headers within this time.
    pub header_read_timeout: std::time::Duration,
    /// …and its body within this time (408 otherwise).
    pub body_read_timeout: std::time::Duration,
    /// Requests per project key; `None` for no limit.
    pub rate_limit: Option<crate::RateLimit>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: std::time::Duration::from_secs(10),
            body_read_timeout: std::time::Duration::from_secs(30),
            rate_limit: Some(crate::RateLimit {
                per_second: 1000,
                burst: 2000,
            }),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: TimeDelta,
    pub max_per_project: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:7300".into(),
            limits: Limits::default(),
            max_body_bytes: 10 * 1024 * 1024,
            delivery_body_cap: 64 * 1024,
            delivery_retention: Retention {
                max_age: TimeDelta::days(7),
                max_per_project: 10_000,
            },
            sweep_interval: std::time::Duration::from_secs(5),
            workers: Default::default(),
            judge: Default::default(),
            script_limits: Default::default(),
            limits_http: Default::default(),
        }
    }
}

/// The per-project webhook URL that `project create` prints.
pub fn project_webhook_url(public_url: &str, project_id: i64) -> String {
    format!(
        "{}/webhooks/custom/{project_id}",
        public_url.trim_end_matches('/')
    )
}

/// Cekura's own webhook path on this server, for senders that only change the host.
pub fn cekura_webhook_url(public_url: &str) -> String {
    format!(
        "{}{}",
        public_url.trim_end_matches('/'),
        crate::routes::CEKURA_PATH
    )
}
