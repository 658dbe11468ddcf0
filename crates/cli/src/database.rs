use anyhow::{bail, Context};
use callgrade_store::prelude::*;
use callgrade_store::{PgStore, SqliteStore};
use std::process::ExitCode;
use std::sync::Arc;

use crate::output::Output;
use crate::DbArgs;

impl DbArgs {
    /// The database URL: `--database-url`, or a SQLite file inside `--data-dir`.
    pub fn url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            if url.starts_with("sqlite:") || is_postgres(url) {
                return Ok(url.clone());
            }
            let scheme = url.split(':').next().unwrap_or_default();
            bail!("unsupported database URL scheme {scheme:?}; expected sqlite:… or postgres://…");
        }
        std::fs::create_dir_all(&self.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                self.data_dir.display()
            )
        })?;
        Ok(format!(
            "sqlite://{}",
            self.data_dir.join("callgrade.db").display()
        ))
    }

    /// Where the data lives, for messages; never shows credentials.
    pub fn describe(&self) -> String {
        match &self.database_url {
            Some(url) => redact(url),
            None => self.data_dir.join("callgrade.db").display().to_string(),
        }
    }

    /// Opens the database (SQLite or PostgreSQL by the URL's scheme), applying migrations.
    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        open_url(&self.url()?).await
    }
}

/// `callgrade migrate`.
pub async fn migrate(db: &DbArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let store = db.open().await?;
    store.ping().await?;
    let value = serde_json::json!({"database": db.describe(), "migrated": true});
    out.print(&value, || {
        format!("The database at {} is up to date.", db.describe())
    });
    Ok(ExitCode::SUCCESS)
}

/// `callgrade copy --to postgres://…`.
pub async fn copy(db: &DbArgs, to: &str, out: &Output) -> anyhow::Result<ExitCode> {
    let from = db.url()?;
    if is_postgres(&from) {
        bail!("the source is already PostgreSQL; copy moves a SQLite installation");
    }
    if !is_postgres(to) {
        bail!("--to must be a postgres:// URL");
    }
    let tables = std::cell::RefCell::new(serde_json::Map::new());
    let total = callgrade_store::copy_sqlite_to_postgres(&from, to, |table, rows| {
        out.progress(&format!("{table}: {rows} rows"));
        tables.borrow_mut().insert(table.to_owned(), rows.into());
    })
    .await
    .with_context(|| format!("cannot copy into {}", redact(to)))?;
    let value = serde_json::json!({"rows": total, "tables": tables.into_inner(), "to": redact(to)});
    out.print(&value, || {
        format!(
            "Copied {total} rows into {}. Point --database-url at it and start the server.",
            redact(to)
        )
    });
    Ok(ExitCode::SUCCESS)
}

pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens a store by URL; errors never show the URL's password.
pub async fn open_url(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = if is_postgres(url) {
        Arc::new(
            PgStore::open(url)
                .await
                .with_context(|| format!("cannot open the database at {}", redact(url)))?,
        )
    } else {
        Arc::new(
            SqliteStore::open(url)
                .await
                .with_context(|| format!("cannot open the database at {}", redact(url)))?,
        )
    };
    Ok(store)
}

/// Hides a password in a URL such as `scheme://user:secret@host/db`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/cg"),
            "postgres://app:***@db:5432/cg"
        );
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
