//! SQLite reads on the calling thread: each thread keeps one read-only connection per file,
//! with its prepared statements cached, and runs the query itself.
//!
//! A read by key takes a few microseconds of CPU. Through sqlx it would be sent to the
//! connection's worker thread and the caller woken with the rows: two thread hand-offs, each
//! a context switch that costs more than the query, and under load most of the service's
//! CPU. Blocking the caller's thread for the query instead is cheaper, and bounded: in WAL
//! mode (which [`super::Store::connect`] sets) a reader never waits for a writer, and the
//! busy time-out below only covers the rare moments SQLite itself needs (recovering the WAL
//! index after a crash).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};

use super::{roles_of, sql, StoreError, UserRow, WriteKey};

/// How long a read waits on a lock SQLite needs for itself before failing.
const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// The statements each connection keeps prepared.
const CACHED_STATEMENTS: usize = 16;

thread_local! {
    /// This thread's read connections, by file.
    static CONNECTIONS: RefCell<HashMap<PathBuf, Connection>> = RefCell::new(HashMap::new());
}

/// Runs `read` on this thread's connection to `file`, opening it on first use.
fn with_connection<T>(
    file: &Path,
    read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    CONNECTIONS.with(|connections| {
        let mut connections = connections.borrow_mut();
        if !connections.contains_key(file) {
            connections.insert(file.to_owned(), open(file)?);
        }
        // Invariant: inserted just above when missing.
        let connection = &connections[file];
        Ok(read(connection)?)
    })
}

fn open(file: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let connection = Connection::open_with_flags(file, flags)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.set_prepared_statement_cache_capacity(CACHED_STATEMENTS);
    Ok(connection)
}

/// The one user `sql` finds by `key`.
pub(super) fn user(file: &Path, sql: &str, key: &str) -> Result<Option<UserRow>, StoreError> {
    with_connection(file, |c| {
        c.prepare_cached(sql)?.query_row([key], from_row).optional()
    })
}

/// Up to `limit` users after `after`, oldest first.
pub(super) fn users(file: &Path, after: &str, limit: u32) -> Result<Vec<UserRow>, StoreError> {
    with_connection(file, |c| {
        let mut statement = c.prepare_cached(sql::LIST)?;
        let rows = statement.query_map(rusqlite::params![after, limit], from_row)?;
        rows.collect()
    })
}

/// The stored reply of the write under `key`, as JSON, and its request's fingerprint (`None`
/// when stored before fingerprints existed).
pub(super) fn reply(
    file: &Path,
    key: WriteKey<'_>,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    with_connection(file, |c| {
        c.prepare_cached(sql::REPLY)?
            .query_row([key.request_id, key.endpoint], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
    })
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: row.get("id")?,
        name: row.get("name")?,
        email: row.get("email")?,
        roles: roles_of(&row.get::<_, String>("roles")?),
        password_hash: row.get("password_hash")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}
