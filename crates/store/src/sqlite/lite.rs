//! rusqlite beside sqlx: the connections that run in place (the writer, the checkpointer, the
//! key lookup) and their rows, seen through the backend-neutral [`Columns`] so the shared
//! decoders in `rows.rs` read them too.

use rusqlite::types::{FromSql, Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::rows::Columns;
use crate::{Result, StoreError};

/// Prepared statements kept per connection; more than the writer's distinct statements.
const STATEMENT_CACHE: usize = 64;

/// A connection that writes, with the same durability as the reading pool: WAL, and an fsync
/// at every commit.
pub(super) fn open_writer(path: &Path) -> Result<Connection> {
    let conn = open(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Savepoints' undo pages stay in memory instead of a temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// A connection that only reads.
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    open(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
}

fn open(path: &Path, mode: OpenFlags) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A row read in place.
pub(super) struct LiteRow<'a, 'r>(pub &'a rusqlite::Row<'r>);

/// A row copied out of its connection, decoded later on another task.
pub(super) struct OwnedRow {
    names: Arc<[String]>,
    values: Vec<Value>,
}

impl OwnedRow {
    /// Copies the current row of a query whose column names are `names`.
    pub(super) fn copy(names: &Arc<[String]>, row: &rusqlite::Row<'_>) -> Result<Self> {
        let values = (0..names.len())
            .map(|i| row.get::<_, Value>(i))
            .collect::<rusqlite::Result<_>>()?;
        Ok(Self {
            names: names.clone(),
            values,
        })
    }
}

/// Typed access to one column, the one thing each row kind does its own way.
trait Get {
    fn get<T: FromSql>(&self, column: &str) -> Result<T>;
}

fn corrupt(column: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("column {column}: {e}"))
}

impl Get for LiteRow<'_, '_> {
    fn get<T: FromSql>(&self, column: &str) -> Result<T> {
        self.0.get(column).map_err(|e| corrupt(column, e))
    }
}

impl Get for OwnedRow {
    fn get<T: FromSql>(&self, column: &str) -> Result<T> {
        let i = self
            .names
            .iter()
            .position(|n| n == column)
            .ok_or_else(|| corrupt(column, "no such column"))?;
        T::column_result(ValueRef::from(&self.values[i])).map_err(|e| corrupt(column, e))
    }
}

/// [`Columns`] for both row kinds (a blanket impl over [`Get`] would overlap the one for sqlx
/// rows).
macro_rules! columns_via_get {
    ($($row:ty),*) => {$(
        impl Columns for $row {
            fn int(&self, column: &str) -> Result<i64> {
                self.get(column)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>> {
                self.get(column)
            }
            fn text(&self, column: &str) -> Result<String> {
                self.get(column)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>> {
                self.get(column)
            }
            fn flag(&self, column: &str) -> Result<bool> {
                self.get(column)
            }
            fn opt_flag(&self, column: &str) -> Result<Option<bool>> {
                self.get(column)
            }
        }
    )*};
}

columns_via_get!(LiteRow<'_, '_>, OwnedRow);
