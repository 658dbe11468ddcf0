//! The PostgreSQL backend, for several server instances on one database.
//!
//! Unlike SQLite there is no writer task: every write is its own transaction and PostgreSQL
//! arbitrates. Where a read decides a write, the rows read are locked first (`FOR UPDATE`, in id
//! order), and unique constraints settle races that locks cannot (two requests inserting the same
//! call). Queued jobs are announced with `NOTIFY callgrade_jobs`, delivered at commit.

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::ConnectOptions;
use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::Notify;

use crate::Result;

mod alerts;
mod calls;
mod ingest;
mod jobs;
mod keys;
mod metrics;
mod projects;
mod recordings;
mod runs;
mod simulations;
mod traces;
mod webhooks;

/// The channel on which committed job inserts are announced.
const JOBS_CHANNEL: &str = "callgrade_jobs";

/// Connections per instance; each request holds one for its transaction only.
const POOL_SIZE: u32 = 10;

pub struct PgStore {
    pool: PgPool,
    /// Signalled after this process commits jobs and, once listening, when others do.
    jobs_ready: Arc<Notify>,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:pass@host/db`) and applies pending
    /// migrations (PostgreSQL's advisory lock keeps concurrent starts from racing).
    pub async fn open(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?.disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            jobs_ready: Arc::new(Notify::new()),
        })
    }
}

/// PostgreSQL text cannot hold U+0000, which JSON strings (so senders) can: it is stored as
/// U+FFFD, as invalid UTF-8 in a logged body already is. JSON columns need nothing: serde_json
/// escapes it.
fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn opt_text(s: Option<&str>) -> Option<Cow<'_, str>> {
    s.map(text)
}

/// Wakes the listeners of every instance once the surrounding transaction commits (PostgreSQL
/// folds repeated identical notifications of one transaction into one).
async fn notify_jobs(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(JOBS_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
