//! SQLite on the calling thread. Reads: each thread keeps one read-only connection per file,
//! with its prepared statements cached, and runs the query itself. Writes: one connection per
//! file, taken in turns ([`Writer`]), its statements also run by the writing thread.
//!
//! A read by key takes a few microseconds of CPU. Through sqlx it would be sent to the
//! connection's worker thread and the caller woken with the rows: two thread hand-offs, each
//! a context switch that costs more than the query, and under load most of a service's CPU.
//! Blocking the caller's thread for the query instead is cheaper, and bounded: in WAL mode
//! (which [`crate::Database::connect`] sets) a reader never waits for a writer, and the busy
//! time-out below only covers the rare moments SQLite itself needs (recovering the WAL index
//! after a crash).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use courier_config::SqliteSynchronous;
use rusqlite::{Connection, OpenFlags, Statement};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::rows::{FromRow, Param};
use crate::StoreError;

/// How long a read waits on a lock SQLite needs for itself before failing.
const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// How long a write waits for its turn (behind the writes before it in this process, or for
/// SQLite's lock when another process writes the same file) before failing.
const WRITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The statements each connection keeps prepared.
const CACHED_STATEMENTS: usize = 32;

thread_local! {
    /// This thread's read connections, by file.
    static CONNECTIONS: RefCell<HashMap<PathBuf, Connection>> = RefCell::new(HashMap::new());
}

/// The rows `sql` selects with `params`, each mapped by `T`.
pub(crate) fn all<T: FromRow>(
    file: &Path,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<T>, StoreError> {
    with_statement(file, sql, params, |statement| {
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(T::from_row(row)?);
        }
        Ok(out)
    })
}

/// The first row `sql` selects with `params`, if any.
pub(crate) fn one<T: FromRow>(
    file: &Path,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Option<T>, StoreError> {
    with_statement(file, sql, params, |statement| {
        let mut rows = statement.raw_query();
        rows.next()?.map(|row| T::from_row(row)).transpose()
    })
}

/// Runs `read` on this thread's cached statement for `sql` on `file`.
fn with_statement<T>(
    file: &Path,
    sql: &str,
    params: &[Param<'_>],
    read: impl FnOnce(&mut Statement<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    CONNECTIONS.with(|connections| {
        let mut connections = connections.borrow_mut();
        if !connections.contains_key(file) {
            connections.insert(file.to_owned(), open(file, OpenFlags::SQLITE_OPEN_READ_ONLY)?);
        }
        // Invariant: inserted just above when missing.
        run(&connections[file], sql, params, read)
    })
}

/// Runs `f` on `connection`'s cached statement for `sql`, parameters bound by name (`$1` is
/// the first of `params`), so their order in the text does not matter.
pub(crate) fn run<T>(
    connection: &Connection,
    sql: &str,
    params: &[Param<'_>],
    f: impl FnOnce(&mut Statement<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut statement = connection.prepare_cached(sql)?;
    for (i, param) in params.iter().enumerate() {
        let name = format!("${}", i + 1);
        let index = statement
            .parameter_index(&name)?
            .ok_or(rusqlite::Error::InvalidParameterName(name))?;
        statement.raw_bind_parameter(index, param)?;
    }
    f(&mut statement)
}

fn open(file: &Path, access: OpenFlags) -> rusqlite::Result<Connection> {
    let flags = access | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let connection = Connection::open_with_flags(file, flags)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.set_prepared_statement_cache_capacity(CACHED_STATEMENTS);
    Ok(connection)
}

/// The one connection that writes a SQLite file, shared by every thread of the process.
///
/// SQLite lets one writer in at a time anyway; taking turns here, on an async lock, means a
/// waiting write parks its task instead of spinning in SQLite's busy handler, and a write's
/// statements then run on the calling thread, each a few microseconds, with no hand-off to
/// a connection thread (sqlx's SQLite driver sends each statement to one, and wakes the
/// caller with the result). A write transaction may span awaits (a handler may call another
/// service in the middle of one): the lock is held across them, as SQLite's would be.
#[derive(Debug, Clone)]
pub(crate) struct Writer(Arc<Mutex<Connection>>);

impl Writer {
    /// Opens `file` for writing with `synchronous` as its durability.
    pub(crate) fn open(file: &Path, synchronous: SqliteSynchronous) -> rusqlite::Result<Self> {
        let connection = open(file, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        // Another process writing the same file (a second instance on one host) waits this
        // long for SQLite's lock; within the process, writes queue on the lock below.
        connection.busy_timeout(WRITE_BUSY_TIMEOUT)?;
        let synchronous = match synchronous {
            SqliteSynchronous::Normal => "NORMAL",
            SqliteSynchronous::Full => "FULL",
        };
        connection.pragma_update(None, "synchronous", synchronous)?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        Ok(Self(Arc::new(Mutex::new(connection))))
    }

    /// Waits for the turn to write (at most [`WRITE_BUSY_TIMEOUT`]) and starts a transaction
    /// that holds SQLite's write lock from its first statement.
    pub(crate) async fn begin(&self) -> Result<WriteTx, StoreError> {
        let connection = tokio::time::timeout(WRITE_BUSY_TIMEOUT, self.0.clone().lock_owned())
            .await
            .map_err(|_| StoreError::Busy)?;
        connection.execute_batch("BEGIN IMMEDIATE")?;
        Ok(WriteTx {
            connection: Some(connection),
        })
    }
}

/// A transaction on the [`Writer`]'s connection: rolled back when dropped unfinished.
#[derive(Debug)]
pub(crate) struct WriteTx {
    connection: Option<OwnedMutexGuard<Connection>>,
}

impl WriteTx {
    /// Runs `f` on the cached statement for `sql` with `params` bound.
    pub(crate) fn run<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        f: impl FnOnce(&mut Statement<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // Invariant: only `finish` takes the connection, and it consumes the transaction.
        let connection = self.connection.as_ref().expect("an open transaction");
        run(connection, sql, params, f)
    }

    /// Commits (`COMMIT`) or rolls back (`ROLLBACK`), then gives the turn to the next write.
    pub(crate) fn finish(mut self, end: &str) -> Result<(), StoreError> {
        let connection = self.connection.take().expect("an open transaction");
        let done = connection.execute_batch(end);
        if done.is_err() && !connection.is_autocommit() {
            // A failed commit leaves the transaction open: close it before the next write.
            let _ = connection.execute_batch("ROLLBACK");
        }
        Ok(done?)
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            if !connection.is_autocommit() {
                if let Err(error) = connection.execute_batch("ROLLBACK") {
                    tracing::warn!(%error, "Rolling back an abandoned SQLite write failed.");
                }
            }
        }
    }
}

/// Whether a SQLite failure is a unique or primary key violation.
pub(crate) fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error().map(|e| e.extended_code),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}
