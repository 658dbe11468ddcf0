//! Test set-up written once for every suite (dev-only): a fresh PostgreSQL database per test
//! ([`TestDb`]), a SQLite store on a temporary file ([`sqlite`]), the backend a suite runs on
//! ([`Backend`]), and a clock tests move by hand ([`ManualClock`]).

use callgrade_app::Clock;
use callgrade_store::{PgStore, SqliteStore, Store};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Connection, Executor, PgConnection};
use std::sync::{Arc, Mutex};

/// The PostgreSQL server tests may create databases on (CI sets it).
pub const POSTGRES_URL_VAR: &str = "CALLGRADE_TEST_POSTGRES_URL";

/// Which backend a suite that runs on either uses: `postgres` runs the server's HTTP suite on
/// PostgreSQL (CI does both).
pub const BACKEND_VAR: &str = "CALLGRADE_TEST_BACKEND";

/// A SQLite store on a temporary file; keep the directory as long as the store.
pub async fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    (dir, SqliteStore::open(&url).await.unwrap())
}

/// The PostgreSQL server's URL; a test that needs it and runs without it fails, saying why.
pub fn postgres_url(test: &str) -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!("{test} needs PostgreSQL: set {POSTGRES_URL_VAR} (e.g. postgres://postgres@127.0.0.1:5432/postgres)")
    })
}

/// A fresh PostgreSQL database for one test, dropped (best effort) when the test ends, even
/// when it fails.
pub struct TestDb {
    /// The server's URL, as configured.
    pub admin_url: String,
    pub name: String,
    /// This database's URL.
    pub url: String,
}

impl TestDb {
    /// Tests that need one are `#[ignore = "needs PostgreSQL…"]`, so they run only when asked
    /// for (`--include-ignored`); then a missing [`POSTGRES_URL_VAR`] fails them, never skips.
    pub async fn create(test: &str) -> Self {
        let admin_url = postgres_url(test);
        let name = format!("cg_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }

    /// A store on this database (each call opens another, as another instance would).
    pub async fn store(&self) -> PgStore {
        PgStore::open(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await, and the test's runtime cannot be blocked on: a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// The URL with its database replaced by `name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// The backend a suite runs on, and what keeps its database alive.
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDb),
}

impl Backend {
    /// SQLite, unless [`BACKEND_VAR`] says `postgres` (which then needs [`POSTGRES_URL_VAR`]).
    pub async fn from_env(test: &str) -> (Self, Arc<dyn Store>) {
        match std::env::var(BACKEND_VAR).as_deref() {
            Ok("postgres") => {
                let db = TestDb::create(test).await;
                let store = Arc::new(db.store().await);
                (Self::Postgres(db), store)
            }
            Ok("sqlite") | Err(_) => {
                let (dir, store) = sqlite().await;
                (Self::Sqlite(dir), Arc::new(store))
            }
            Ok(other) => panic!("{BACKEND_VAR} must be sqlite or postgres, not {other:?}"),
        }
    }
}

/// A clock the test moves by hand.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap() = at;
    }

    pub fn advance(&self, by: TimeDelta) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_only_the_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
