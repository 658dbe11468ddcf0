use anyhow::{bail, Context};
use callgrade_store::SqliteStore;

use crate::DbArgs;

impl DbArgs {
    /// The database URL: `--database-url`, or a SQLite file inside `--data-dir`.
    pub fn url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            if url.starts_with("sqlite:") {
                return Ok(url.clone());
            }
            let scheme = url.split(':').next().unwrap_or_default();
            if scheme.starts_with("postgres") {
                bail!("PostgreSQL is not supported by this build yet; use a sqlite: URL or --data-dir");
            }
            bail!("unsupported database URL scheme {scheme:?}; expected sqlite:…");
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

    pub async fn open(&self) -> anyhow::Result<SqliteStore> {
        let url = self.url()?;
        SqliteStore::open(&url)
            .await
            .with_context(|| format!("cannot open the database at {}", self.describe()))
    }
}

/// Hides a password in a URL such as `scheme://user:secret@host/db`.
fn redact(url: &str) -> String {
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
