//! The SQLite backend: WAL, `synchronous=FULL`, a pool of reading connections, and one writer
//! thread (`writer.rs`) through which every write goes: webhook requests and job updates in
//! their own operations, the administrative writes as `in_place` functions, committed together.

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

use crate::{Result, StoreError};

mod alerts;
mod calls;
mod ingest;
mod jobs;
mod keys;
mod lite;
mod metrics;
mod projects;
mod recordings;
mod runs;
mod simulations;
mod traces;
mod webhooks;
mod writer;

use writer::Writer;

pub struct SqliteStore {
    pool: SqlitePool,
    writer: Writer,
    /// Signalled after a commit that queued jobs (see [`crate::JobQueue::job_signal`]).
    jobs_ready: Arc<Notify>,
    /// A reading connection of its own for authentication, which every webhook request does:
    /// looking one indexed row up in place costs less than the hand-off to a pooled
    /// connection's thread.
    keys: Mutex<rusqlite::Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite:path` or `sqlite://path`) and
    /// applies pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .disable_statement_logging();
        if options.get_filename() == Path::new(":memory:") {
            return Err(StoreError::InvalidInput(
                "an in-memory SQLite database cannot be shared by the reader pool and the writer; give a file path".into(),
            ));
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let writer = Writer::start(options.get_filename())?;
        let keys = lite::open_reader(options.get_filename())?;
        Ok(Self {
            pool,
            writer,
            jobs_ready: Arc::new(Notify::new()),
            keys: Mutex::new(keys),
        })
    }
}
