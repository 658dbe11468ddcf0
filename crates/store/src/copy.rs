//! Moving a SQLite installation to PostgreSQL: every row of every table, in an order that
//! respects the foreign keys, with sequences set past the copied ids. The target's schema comes
//! from its own migrations; the copy reads column types from it, so a boolean stored as 0/1 in
//! SQLite lands as a boolean.

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::{Postgres, QueryBuilder, Row};

use crate::{PgStore, Result, SqliteStore, StoreError};

/// Tables in dependency order.
pub const TABLES: &[&str] = &[
    "projects",
    "api_keys",
    "agents",
    "deliveries",
    "calls",
    "recordings",
    "recording_requests",
    "vendor_secrets",
    "spans",
    "webhook_endpoints",
    "webhook_events",
    "webhook_deliveries",
    "webhook_attempts",
    "alert_rules",
    "alerts",
    "scenarios",
    "scenario_tags",
    "results",
    "runs",
    "metrics",
    "call_evaluations",
    "jobs",
    "judge_cache",
    "settings",
];

const CHUNK: i64 = 500;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Bool,
    Float,
    Text,
}

/// Copies everything from `sqlite_url` into the empty database at `postgres_url`, calling
/// `progress(table, rows)` after each table. Refuses a target that already holds projects.
pub async fn copy_sqlite_to_postgres(
    sqlite_url: &str,
    postgres_url: &str,
    progress: impl Fn(&str, u64),
) -> Result<u64> {
    // Opening applies each side's migrations, so both schemas are current.
    drop(SqliteStore::open(sqlite_url).await?);
    drop(PgStore::open(postgres_url).await?);
    let source = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(sqlite_url)
        .await?;
    let target = PgPoolOptions::new()
        .max_connections(2)
        .connect(postgres_url)
        .await?;
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projects")
        .fetch_one(&target)
        .await?;
    if existing > 0 {
        return Err(StoreError::InvalidInput(
            "the target database already holds projects; copy into an empty database".into(),
        ));
    }
    let mut tx = target.begin().await?;
    let mut total = 0;
    for table in TABLES {
        let columns = columns_of(&target, table).await?;
        let copied = copy_table(&source, &mut tx, table, &columns).await?;
        progress(table, copied);
        total += copied;
    }
    reset_sequences(&mut tx).await?;
    tx.commit().await?;
    Ok(total)
}

async fn columns_of(target: &PgPool, table: &str) -> Result<Vec<(String, Kind)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(target)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, ty)| {
            let kind = match ty.as_str() {
                "bigint" | "integer" | "smallint" => Kind::Int,
                "boolean" => Kind::Bool,
                "double precision" | "real" | "numeric" => Kind::Float,
                _ => Kind::Text,
            };
            (name, kind)
        })
        .collect())
}

async fn copy_table(
    source: &SqlitePool,
    target: &mut sqlx::Transaction<'_, Postgres>,
    table: &str,
    columns: &[(String, Kind)],
) -> Result<u64> {
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    let list = names.join(", ");
    let mut after = i64::MIN;
    let mut copied = 0;
    loop {
        let rows = sqlx::query(&format!(
            "SELECT rowid AS copy_rowid, {list} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?"
        ))
        .bind(after)
        .bind(CHUNK)
        .fetch_all(source)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get("copy_rowid")?;
        let mut q = QueryBuilder::<Postgres>::new(format!("INSERT INTO {table} ({list}) "));
        let mut failure = None;
        q.push_values(&rows, |mut b, row| {
            for (name, kind) in columns {
                let pushed = match kind {
                    Kind::Int => row.try_get::<Option<i64>, _>(name.as_str()).map(|v| {
                        b.push_bind(v);
                    }),
                    Kind::Bool => row.try_get::<Option<i64>, _>(name.as_str()).map(|v| {
                        b.push_bind(v.map(|n| n != 0));
                    }),
                    Kind::Float => row.try_get::<Option<f64>, _>(name.as_str()).map(|v| {
                        b.push_bind(v);
                    }),
                    Kind::Text => row.try_get::<Option<String>, _>(name.as_str()).map(|v| {
                        // PostgreSQL text cannot hold U+0000 (the store writes U+FFFD there too).
                        b.push_bind(v.map(|s| s.replace('\0', "\u{FFFD}")));
                    }),
                };
                if let Err(e) = pushed {
                    failure.get_or_insert(e);
                }
            }
        });
        if let Some(e) = failure {
            return Err(e.into());
        }
        q.build().execute(&mut **target).await?;
        copied += rows.len() as u64;
    }
    Ok(copied)
}

/// Moves every serial sequence past the largest copied id.
async fn reset_sequences(target: &mut sqlx::Transaction<'_, Postgres>) -> Result<()> {
    let serials: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND column_default LIKE 'nextval(%'",
    )
    .fetch_all(&mut **target)
    .await?;
    for (table, column) in serials {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
        ))
        .execute(&mut **target)
        .await?;
    }
    Ok(())
}
