//! The single SQLite writer: one thread owning one connection, which applies concurrent writes
//! together in one transaction (group commit), so durability costs one fsync per group, not per
//! write.
//!
//! It is a plain thread on rusqlite rather than a task on sqlx: every statement of a write then
//! runs in place from a cached prepared statement (a few µs), instead of paying a round trip to
//! sqlx's connection thread (20–30 µs on a busy machine). The reading pool stays on sqlx; both
//! link the same SQLite.

use super::lite::open_writer;
use crate::{Result, StoreError};
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How many queued writes one transaction may take. Bounds the latency a write can add to its
/// neighbours' commit.
const MAX_GROUP: usize = 256;

/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(25);

/// WAL pages past which the writer finishes the checkpoint itself, between two groups, so
/// that the log starts over: under steady load the checkpointer, always a few commits behind,
/// never catches up on its own, and the WAL would grow without end.
const WAL_RESTART_PAGES: i64 = 16_384;

/// The writer's page cache, in KiB (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: i64 = 16_384;

/// What a write does on the connection, given its arguments. It runs inside the group's
/// transaction under its own savepoint: an error rolls back only this write.
pub(super) trait Apply: Send + 'static {
    type Output: Send + 'static;
    fn run(&self, conn: &Connection) -> Result<Self::Output>;
}

/// A write given as a function of the connection, for writes whose arguments are small: the
/// administrative ones (projects, agents, metrics, scenarios, runs), so that every write of the
/// backend goes through this one thread.
pub(super) struct InPlace<F>(F);

/// A write of `f` on the writer's connection.
pub(super) fn in_place<T, F>(f: F) -> InPlace<F>
where
    F: Fn(&Connection) -> Result<T> + Send + 'static,
{
    InPlace(f)
}

impl<T, F> Apply for InPlace<F>
where
    T: Send + 'static,
    F: Fn(&Connection) -> Result<T> + Send + 'static,
{
    type Output = T;

    fn run(&self, conn: &Connection) -> Result<T> {
        (self.0)(conn)
    }
}

/// A queued write, type-erased.
trait Write: Send {
    fn apply(self: Box<Self>, conn: &Connection) -> Box<dyn Answer>;
    /// The group could not even begin.
    fn fail(self: Box<Self>, message: &str);
}

/// The outcome of an applied write, waiting for the commit.
trait Answer: Send {
    /// Whether the write's changes stay (an error rolls back to its savepoint).
    fn keep(&self) -> bool;
    fn send(self: Box<Self>, commit: std::result::Result<(), &str>);
}

/// The result, and the arguments handed back so that they are freed by the waiting task, not
/// by the writer (a call's parsed JSON is a tree of small allocations).
type Reply<A> = oneshot::Sender<(Result<<A as Apply>::Output>, A)>;

struct Op<A: Apply> {
    args: A,
    reply: Reply<A>,
}

struct Answered<A: Apply> {
    args: A,
    reply: Reply<A>,
    result: Result<A::Output>,
}

impl<A: Apply> Write for Op<A> {
    fn apply(self: Box<Self>, conn: &Connection) -> Box<dyn Answer> {
        let Op { args, reply } = *self;
        let result = args.run(conn);
        Box::new(Answered {
            args,
            reply,
            result,
        })
    }

    fn fail(self: Box<Self>, message: &str) {
        let Op { args, reply } = *self;
        let _ = reply.send((Err(StoreError::Commit(message.into())), args));
    }
}

impl<A: Apply> Answer for Answered<A> {
    fn keep(&self) -> bool {
        self.result.is_ok()
    }

    fn send(self: Box<Self>, commit: std::result::Result<(), &str>) {
        let Answered {
            args,
            reply,
            result,
        } = *self;
        let result = match commit {
            Ok(()) => result,
            Err(e) => Err(StoreError::Commit(e.into())),
        };
        let _ = reply.send((result, args));
    }
}

/// The handle to the writer thread. The thread stops once every handle is dropped and the
/// queue is empty.
pub(super) struct Writer {
    queue: mpsc::Sender<Box<dyn Write>>,
}

impl Writer {
    /// Opens the database file (already created and migrated) and starts the writer thread.
    pub(super) fn start(path: &Path) -> Result<Self> {
        let conn = open_writer(path)?;
        // Checkpoints run beside the writer, not inside its commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        // A WAL that grew under load is cut back when it starts over (4 KiB pages).
        conn.pragma_update(None, "journal_size_limit", WAL_RESTART_PAGES * 4096)?;
        let checkpoints = open_writer(path)?;
        let (queue, rx) = mpsc::channel(4 * MAX_GROUP);
        let (writing, writer_gone) = std::sync::mpsc::channel::<()>();
        let wal_pages = Arc::new(AtomicI64::new(0));
        let seen = wal_pages.clone();
        spawn("callgrade-checkpoint", move || {
            checkpoint(&checkpoints, &writer_gone, &seen)
        })?;
        spawn("callgrade-writer", move || {
            run(&conn, rx, &wal_pages);
            drop(writing);
        })?;
        Ok(Self { queue })
    }

    /// Runs a write: grouped with concurrent writes, answered after their common commit.
    pub(super) async fn write<A: Apply>(&self, args: A) -> Result<A::Output> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Box::new(Op { args, reply }))
            .await
            .map_err(|_| StoreError::Closed)?;
        let (result, _args) = answer.await.map_err(|_| StoreError::Closed)?;
        result
    }
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(work)
        .map(drop)
        .map_err(|e| StoreError::Commit(format!("cannot start the {name} thread: {e}")))
}

fn run(conn: &Connection, mut rx: mpsc::Receiver<Box<dyn Write>>, wal_pages: &AtomicI64) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Some(op) = rx.blocking_recv() {
        group.push(op);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        if wal_pages.load(Ordering::Relaxed) > WAL_RESTART_PAGES {
            // Only the frames since the checkpointer's last pass are left to copy; with the
            // log fully copied, the next transaction starts it over.
            match wal_checkpoint(conn) {
                Ok(_) => wal_pages.store(0, Ordering::Relaxed),
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; trying again"),
            }
        }
        commit_group(conn, &mut group);
    }
}

/// Copies committed WAL pages into the database file, every [`CHECKPOINT_EVERY`] until the
/// writer stops, and tells the writer how long the log has grown.
fn checkpoint(
    conn: &Connection,
    writer_gone: &std::sync::mpsc::Receiver<()>,
    wal_pages: &AtomicI64,
) {
    loop {
        let stopping = matches!(
            writer_gone.recv_timeout(CHECKPOINT_EVERY),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
        match wal_checkpoint(conn) {
            Ok(pages) => wal_pages.store(pages, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; trying again"),
        }
        if stopping {
            return;
        }
    }
}

/// A checkpoint that waits for nobody; gives the WAL's length in pages.
fn wal_checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}

fn commit_group(conn: &Connection, group: &mut Vec<Box<dyn Write>>) {
    if let Err(e) = execute(conn, "BEGIN IMMEDIATE") {
        tracing::error!(error = %e, writes = group.len(), "cannot begin a write transaction");
        let message = e.to_string();
        group.drain(..).for_each(|op| op.fail(&message));
        return;
    }
    let mut answers = Vec::with_capacity(group.len());
    let commit =
        apply_group(conn, group.drain(..), &mut answers).and_then(|()| execute(conn, "COMMIT"));
    match commit {
        Ok(()) => answers.into_iter().for_each(|a| a.send(Ok(()))),
        Err(e) => {
            tracing::error!(error = %e, writes = answers.len(), "group commit failed; nothing of it was stored");
            let _ = execute(conn, "ROLLBACK");
            let message = e.to_string();
            answers.into_iter().for_each(|a| a.send(Err(&message)));
        }
    }
}

/// Applies each write under its own savepoint, so one failing write leaves the others intact.
/// An error here is one of the transaction itself, and fails the whole group.
fn apply_group(
    conn: &Connection,
    ops: impl Iterator<Item = Box<dyn Write>>,
    answers: &mut Vec<Box<dyn Answer>>,
) -> rusqlite::Result<()> {
    for op in ops {
        execute(conn, "SAVEPOINT w")?;
        let answer = op.apply(conn);
        if !answer.keep() {
            undo_this_write(conn)?;
        }
        execute(conn, "RELEASE w")?;
        answers.push(answer);
    }
    Ok(())
}

/// Undoes what the write being applied has done so far (its savepoint stays open).
pub(super) fn undo_this_write(conn: &Connection) -> rusqlite::Result<()> {
    execute(conn, "ROLLBACK TO w")
}

/// Runs a statement without parameters from the statement cache.
fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inserts `rows` rows of 1 KiB each.
    struct Fill {
        rows: usize,
    }

    impl Apply for Fill {
        type Output = ();
        fn run(&self, conn: &Connection) -> Result<()> {
            let mut insert = conn.prepare_cached("INSERT INTO t (v) VALUES (?)")?;
            for _ in 0..self.rows {
                insert.execute(["x".repeat(1024)])?;
            }
            Ok(())
        }
    }

    /// Fails after writing, so its savepoint must undo it.
    struct Broken;

    impl Apply for Broken {
        type Output = ();
        fn run(&self, conn: &Connection) -> Result<()> {
            conn.execute("INSERT INTO t (v) VALUES ('broken')", [])?;
            Err(StoreError::Conflict("refused".into()))
        }
    }

    fn database() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
            [],
        )
        .unwrap();
        (dir, path)
    }

    #[tokio::test]
    async fn the_checkpointer_copies_the_log_into_the_database_file() {
        let (_dir, path) = database();
        let before = std::fs::metadata(&path).unwrap().len();
        let writer = Writer::start(&path).unwrap();
        writer.write(Fill { rows: 2000 }).await.unwrap();
        // The writer never checkpoints itself; only the checkpointer can grow the file.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(&path).unwrap().len() < before + 2_000_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "nothing was checkpointed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_failing_write_leaves_its_group_intact() {
        let (_dir, path) = database();
        let writer = Writer::start(&path).unwrap();
        let (a, b, c) = tokio::join!(
            writer.write(Fill { rows: 1 }),
            writer.write(Broken),
            writer.write(Fill { rows: 2 })
        );
        assert!(a.is_ok() && c.is_ok());
        assert!(matches!(b, Err(StoreError::Conflict(_))));
        let conn = Connection::open(&path).unwrap();
        let (rows, broken): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE v = 'broken') FROM t",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((rows, broken), (3, 0));
    }
}
