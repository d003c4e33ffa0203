//! SQLite reads on the calling thread: each thread keeps one read-only connection per file,
//! with its prepared statements cached, and runs the query itself. (Writes: [`crate::writer`].)
//!
//! A read by key takes a few microseconds of CPU. Through sqlx it would be sent to the
//! connection's worker thread and the caller woken with the rows: two thread hand-offs, each
//! a context switch that costs more than the query, and under load most of a service's CPU.
//! Blocking the caller's thread for the query instead is cheaper, and bounded: in WAL mode
//! (which [`crate::Database::connect`] sets) a reader never waits for a writer, and the busy
//! time-out below only covers the rare moments SQLite itself needs (recovering the WAL index
//! after a crash).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Rows, Statement};

use crate::rows::{FromRow, Param};
use crate::StoreError;

/// How long a read waits on a lock SQLite needs for itself before failing.
const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// The statements each connection keeps prepared.
const CACHED_STATEMENTS: usize = 64;

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
    with_statement(file, sql, params, all_rows)
}

/// The first row `sql` selects with `params`, if any.
pub(crate) fn one<T: FromRow>(
    file: &Path,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Option<T>, StoreError> {
    with_statement(file, sql, params, |statement| {
        first_row(&mut statement.raw_query())
    })
}

/// The row `one` (a statement with one parameter, the key) selects for each of `keys`, in
/// order. Several keys are read in one read transaction: SQLite takes and drops its shared
/// locks on the file (a few `fcntl` calls) once for all of them instead of once per read.
pub(crate) fn by_keys<T: FromRow>(
    file: &Path,
    one: &str,
    keys: &[&str],
) -> Result<Vec<Result<Option<T>, StoreError>>, StoreError> {
    with_connection(file, |connection| {
        // One statement for the batch, bound anew for each key; each key's failure its own.
        let mut statement = connection.prepare_cached(one)?;
        let key_index = parameter_index(&statement, 0)?;
        let mut read = |key: &&str| {
            statement.raw_bind_parameter(key_index, *key)?;
            first_row(&mut statement.raw_query())
        };
        if keys.len() == 1 {
            return Ok(keys.iter().map(read).collect());
        }
        connection.prepare_cached("BEGIN")?.execute([])?;
        let rows = Ok(keys.iter().map(&mut read).collect());
        // Ends the read transaction whatever the reads gave (a read-only one has nothing to
        // keep or undo); one left open by a failure here is rolled back before the thread's
        // next read (`with_connection`).
        connection.prepare_cached("COMMIT")?.execute([])?;
        rows
    })
}

/// Every row of a bound statement, each mapped by `T`.
pub(crate) fn all_rows<T: FromRow>(statement: &mut Statement<'_>) -> Result<Vec<T>, StoreError> {
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(T::from_row(row)?);
    }
    Ok(out)
}

/// The next row of `rows`, mapped by `T`, if any.
pub(crate) fn first_row<T: FromRow>(rows: &mut Rows<'_>) -> Result<Option<T>, StoreError> {
    rows.next()?.map(|row| T::from_row(row)).transpose()
}

/// Runs `read` on this thread's cached statement for `sql` on `file`.
fn with_statement<T>(
    file: &Path,
    sql: &str,
    params: &[Param<'_>],
    read: impl FnOnce(&mut Statement<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    with_connection(file, |connection| run(connection, sql, params, read))
}

/// Runs `f` on this thread's read connection to `file`, opened on first use.
fn with_connection<T>(
    file: &Path,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    CONNECTIONS.with(|connections| {
        let mut connections = connections.borrow_mut();
        if !connections.contains_key(file) {
            connections.insert(
                file.to_owned(),
                open(file, OpenFlags::SQLITE_OPEN_READ_ONLY)?,
            );
        }
        // Invariant: inserted just above when missing.
        let connection = &connections[file];
        if !connection.is_autocommit() {
            // A batch that failed or panicked between its BEGIN and COMMIT: its snapshot
            // must not become this thread's view of the file from now on.
            connection.execute_batch("ROLLBACK")?;
        }
        f(connection)
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
        let index = parameter_index(&statement, i)?;
        statement.raw_bind_parameter(index, param)?;
    }
    f(&mut statement)
}

/// Where the statement binds `$<i + 1>`, the `i`th of a call's parameters.
fn parameter_index(statement: &Statement<'_>, i: usize) -> Result<usize, StoreError> {
    // The names of the first parameters, made once: a read names one or two.
    const NAMES: [&str; 8] = ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8"];
    let name = NAMES
        .get(i)
        .map_or_else(|| Cow::Owned(format!("${}", i + 1)), |n| Cow::Borrowed(*n));
    let index = statement.parameter_index(&name)?;
    Ok(index.ok_or_else(|| rusqlite::Error::InvalidParameterName(name.into_owned()))?)
}

pub(crate) fn open(file: &Path, access: OpenFlags) -> rusqlite::Result<Connection> {
    let flags = access | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let connection = Connection::open_with_flags(file, flags)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.set_prepared_statement_cache_capacity(CACHED_STATEMENTS);
    Ok(connection)
}
