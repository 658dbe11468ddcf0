use callgrade_server::{AppState, Settings};
use callgrade_store::NewAgent;
use callgrade_store::Store;
use callgrade_testkit::Backend;
pub use callgrade_testkit::ManualClock;
use chrono::Utc;
use reqwest::{Client, RequestBuilder, Response};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::oneshot;

pub const CEKURA_PATH: &str = "/test_framework/custom-provider-transcript-webhook/";

/// A running server on a temporary database: SQLite, or PostgreSQL when
/// `CALLGRADE_TEST_BACKEND=postgres` (CI runs the suite on both).
pub struct TestApp {
    pub base: String,
    pub store: Arc<dyn Store>,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub client: Client,
    _db: Backend,
    _shutdown: oneshot::Sender<()>,
}

/// A project with one agent, ready to receive calls.
pub struct Tenant {
    pub project_id: i64,
    pub key: String,
    pub agent_id: i64,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Settings::default()).await
    }

    pub async fn spawn_with(mut settings: Settings) -> Self {
        // Tests move the clock by hand and sweep explicitly (`callgrade_server::sweep_runs`); a
        // background sweep reading the clock just before a test sets it back would race.
        settings.app.sweep_interval = std::time::Duration::from_secs(24 * 3600);
        let (db, store) = Backend::from_env("server suite").await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let state = AppState::with_clock(store.clone(), settings, clock.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(callgrade_server::serve(listener, state.clone(), async {
            let _ = rx.await;
        }));
        Self {
            base,
            store,
            state,
            clock,
            client: Client::new(),
            _db: db,
            _shutdown: tx,
        }
    }

    /// The SQLite database's directory (the database, its WAL), when the suite runs on SQLite.
    pub fn sqlite_dir(&self) -> Option<&std::path::Path> {
        match &self._db {
            Backend::Sqlite(dir) => Some(dir.path()),
            Backend::Postgres(_) => None,
        }
    }

    pub async fn tenant(&self, name: &str) -> Tenant {
        let (project, key) = self.store.create_project(name).await.unwrap();
        let agent = self
            .store
            .create_agent(project.id, &NewAgent::named("support-bot"))
            .await
            .unwrap();
        Tenant {
            project_id: project.id,
            key: key.expose().to_owned(),
            agent_id: agent.id,
        }
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(format!("{}{path}", self.base))
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(format!("{}{path}", self.base))
    }

    /// Posts `body` to Cekura's path with `key`.
    pub async fn send(&self, key: &str, body: &Value) -> Response {
        self.post(CEKURA_PATH)
            .header("X-CEKURA-API-KEY", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn api(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .get(path)
            .header("X-CEKURA-API-KEY", key)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Waits until the evaluation queue is empty (queued and running), at most 10 s.
    pub async fn settle(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let counts = self.store.job_counts(None).await.unwrap();
            if counts.queued == 0 && counts.running == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "evaluation did not settle: {counts:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn call_count(&self, t: &Tenant) -> usize {
        let (_, page) = self.api(&t.key, "/api/v1/calls?limit=200").await;
        page["data"].as_array().unwrap().len()
    }
}

/// A valid call with the given sender id.
pub fn call(id: &str) -> Value {
    json!({
        "id": id,
        "startedAt": "2025-10-15T09:22:21.787Z",
        "endedAt": "2025-10-15T09:24:30.229Z",
        "to_phone_number": "+18646190758",
        "from_phone_number": "+14155551234",
        "messages": [
            {"role": "bot", "content": "Hi there. How can I help?", "start_time": 1.0, "end_time": 3.0},
            {"role": "user", "content": "A billing question.", "start_time": 4.0, "end_time": 6.5}
        ],
        "metadata": {"customer_name": "John Doe"},
        "endedReason": "customer-hungup"
    })
}

pub fn batch(agent_id: i64, calls: Vec<Value>) -> Value {
    json!({"agent_id": agent_id, "calls": calls})
}

/// The seed's two-call example, its agent id mapped to ours.
pub fn seed_two_calls(agent_id: i64) -> Value {
    let mut body: Value = serde_json::from_str(include_str!(
        "../../../core/tests/fixtures/example-two-calls.json"
    ))
    .unwrap();
    body["agent_id"] = json!(agent_id);
    body
}

/// The `path`s of an error body.
pub fn error_paths(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect()
}

pub async fn status_and_json(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}")),
    )
}

/// A 40 s call for the timeline: the caller talks over the agent from 11.5 to 12.0 s, the agent
/// answers 2.5 s after the caller stops, and an OpenAI-style tool call without a time fails.
pub fn timeline_call(id: &str) -> Value {
    json!({
        "id": id,
        "startedAt": "2025-10-15T09:22:21.787Z",
        "endedAt": "2025-10-15T09:23:01.787Z",
        "messages": [
            {"role": "bot", "content": "Hello, how can I help?", "start_time": 1.0, "end_time": 3.0},
            {"role": "user", "content": "Where is my order A1?", "start_time": 4.0, "end_time": 6.5},
            {"role": "function_call", "content": "", "data": {"id": "c1", "type": "function",
                "function": {"name": "lookup_order", "arguments": "{\"order\":\"A1\"}"}}},
            {"role": "function_call_result", "content": "", "data": {"id": "c1", "error": "timeout"}},
            {"role": "bot", "content": "Let me check that for you now", "start_time": 9.0, "end_time": 12.0},
            {"role": "user", "content": "Actually, never mind", "start_time": 11.5, "end_time": 13.0},
            {"role": "user", "content": "Bye", "start_time": 30.0, "end_time": 31.0}
        ],
        "endedReason": "customer-ended-call"
    })
}
