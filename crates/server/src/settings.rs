use callgrade_app::AppSettings;

/// What an operator can tune: the HTTP edge's own settings, and the use cases' ([`AppSettings`]).
/// Built by the CLI from flags, environment and defaults; every field has a sane default.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The externally visible base URL, used to print webhook URLs.
    pub public_url: String,
    /// Largest accepted webhook body, in bytes (413 above).
    pub max_body_bytes: usize,
    pub http: HttpLimits,
    /// When set, `GET /metrics` asks for `Authorization: Bearer <this>`.
    pub metrics_token: Option<String>,
    pub app: AppSettings,
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
    /// Webhook body bytes being read and ingested at once, all requests together; a request
    /// that would go over waits for others to finish. A call in memory takes several times its
    /// text (tree, validated calls, their serialised forms), so this bounds the server's memory
    /// under a burst of large bodies.
    pub webhook_bytes_in_flight: usize,
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
            webhook_bytes_in_flight: 32 * 1024 * 1024,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:7300".into(),
            max_body_bytes: 10 * 1024 * 1024,
            http: HttpLimits::default(),
            metrics_token: None,
            app: AppSettings::default(),
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
