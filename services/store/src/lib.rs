//! `courier-store`: a service's own database, and what every service does with it the same
//! way. SQLite by default (a file, created on first start), PostgreSQL when
//! `database.url` says so; both through the same SQL (sqlx's `Any` driver, `$1` parameters).
//!
//! - [`Database::connect`] opens the database and applies the service's [`Migration`]s, then
//!   the kit's own tables (idempotency keys, outbox, handled events), safely when several
//!   instances start at once. A migration marked `sqlite_only` (how SQLite stores a table,
//!   such as a `WITHOUT ROWID` rebuild) is recorded and skipped on PostgreSQL.
//! - Reads: [`Database::one`] / [`Database::all`] map rows with [`FromRow`], the same code for
//!   both databases. On a SQLite file each thread reads through its own connection
//!   (`local.rs`), and writes take turns on one writing connection and commit in groups
//!   (`writer.rs`), all on the calling thread, with no thread hand-off. [`ByKey`] batches the
//!   reads by key waiting at one moment on a thread into one trip (a task it spawns on that
//!   thread's runtime does it): the hot reads of a service under load ([`ByKey::batching`]
//!   tells how many reads shared a batch).
//! - Writes run in a [`Write`]: one transaction, which may also hold the write's reply under
//!   the caller's request id ([`Database::claim`], [`WriteKey`], [`Fingerprint`]) and the
//!   events it announces ([`Write::event`]). Committing makes all of it durable at once.
//! - The [`outbox`] relay publishes committed events and forgets them once the broker has
//!   acknowledged them: a crash between commit and publish loses nothing, and a publish
//!   repeated after a crash carries the same event id (the broker deduplicates it).
//! - Event handlers claim each event id once ([`Database::claim_event`]), in the transaction
//!   that holds the handler's effect: a redelivered event changes nothing twice.
//!
//! # Must not depend on
//! NATS (events leave through the publish function the service gives the relay), HTTP, or
//! any service crate. Each service keeps its own SQL next to its domain.

mod by_key;
pub mod fingerprint;
mod idempotency;
mod inbox;
mod local;
mod migrate;
pub mod outbox;
mod rows;
#[cfg(feature = "testing")]
pub mod testing;
mod write;
mod writer;

pub use by_key::{Batching, ByKey};
pub use fingerprint::Fingerprint;
pub use idempotency::{Claim, WriteKey, KEEP_REPLIES};
pub use migrate::Migration;
pub use outbox::{Pass, PendingEvent, Relay};
pub use rows::{FromRow, Param, Row};
use write::Tx;
pub use write::Write;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use courier_config::DatabaseSettings;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use tokio::sync::Notify;

/// Database failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("cannot open the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// The folder of the SQLite file could not be created.
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        /// The folder.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A migration failed.
    #[error("migration {version} ({name}) failed: {source}")]
    Migrate {
        /// Its number.
        version: i64,
        /// Its name.
        name: &'static str,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// A row with the same unique value exists.
    #[error("duplicate value")]
    Duplicate,
    /// A query failed.
    #[error("query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A statement on the SQLite file's own connections (this thread's reader, or the
    /// writer) failed.
    #[error("SQLite failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A write waited too long for its turn: the writes before it held the database, or
    /// another process held SQLite's write lock.
    #[error("the database stayed busy with other writes")]
    Busy,
    /// The commit of a SQLite write (with the writes grouped with it) failed: none of them
    /// took effect.
    #[error("SQLite commit failed: {0}")]
    Commit(String),
    /// A value could not be written as JSON (a reply, an event), or a stored one read back.
    #[error("stored JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A write under this request id and endpoint was done for a different request (another
    /// body or caller): its reply is not this request's to see.
    #[error("the request id was already used for a different request")]
    KeyReused,
    /// The caller's deadline passed before the write committed: it was rolled back, so that
    /// the 504 the caller got means that nothing happened.
    #[error("the deadline passed before the write committed; it was rolled back")]
    DeadlinePassed,
    /// A batched read ([`ByKey`]) failed: its batch's trip (every read of the batch gets
    /// it), or its own row, which did not map (every read of that key gets it).
    #[error(transparent)]
    Batch(Arc<StoreError>),
    /// A batched read ended without an answer: its batch stopped before it was done (the
    /// runtime that ran it shutting down, or a panic in it).
    #[error("the read was abandoned: its batch stopped before it was done")]
    Abandoned,
}

/// The wire form of a database failure, the same in every service: a reused request id is
/// 422, a passed deadline 504 (nothing was changed), writes queued past their wait 503
/// (nothing was changed), anything else 500 with the details in the log only.
impl From<StoreError> for courier_actors::ServiceError {
    fn from(e: StoreError) -> Self {
        Self::from(&e)
    }
}

impl From<&StoreError> for courier_actors::ServiceError {
    fn from(e: &StoreError) -> Self {
        use courier_actors::ServiceError;
        match e {
            StoreError::KeyReused => ServiceError::unprocessable(e.to_string()).with_details(
                serde_json::json!({ "header": courier_actors::meta::header::REQUEST_ID }),
            ),
            StoreError::DeadlinePassed => ServiceError::timeout(e.to_string()),
            // Nothing was written: the caller may try again (the gateway retries a 503).
            StoreError::Busy => ServiceError::unavailable(e.to_string()),
            // Nothing was read: the caller may try again.
            StoreError::Abandoned => ServiceError::unavailable(e.to_string()),
            StoreError::Batch(e) => Self::from(&**e),
            other => {
                tracing::error!(error = %other, "Database failure.");
                ServiceError::internal("the service's database failed; see its log")
            }
        }
    }
}

/// The database of one service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    /// The SQLite file, read on the calling thread ([`local`]); `None` for PostgreSQL and
    /// in-memory SQLite, read through the pool.
    file: Option<Arc<PathBuf>>,
    /// The SQLite file's one writing connection; `None` where writes go through the pool.
    writer: Option<writer::Writer>,
    /// When this instance last pruned old idempotency keys and handled events, in Unix ms.
    last_prune: Arc<AtomicI64>,
    /// Woken by every commit that wrote events, so the relay publishes them at once.
    outbox: Arc<Notify>,
    /// `sqlite` or `postgresql`, as trace spans name the database system.
    system: &'static str,
}

impl Database {
    /// Opens the database (creating a SQLite file and its folder when missing), puts a SQLite
    /// file in WAL mode, and applies `migrations`, then the kit's tables.
    pub async fn connect(
        settings: &DatabaseSettings,
        migrations: &'static [Migration],
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let url = sqlite_create_mode(settings.url.expose())?;
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .connect(&url)
            .await
            .map_err(StoreError::Connect)?;
        let mut db = Self {
            pool,
            file: sqlite_file(&url).map(Arc::new),
            writer: None,
            last_prune: Arc::default(),
            outbox: Arc::default(),
            system: if url.starts_with("sqlite:") {
                "sqlite"
            } else {
                "postgresql"
            },
        };
        if db.file.is_some() {
            db.use_wal().await?;
        }
        db.migrate(migrations).await?;
        if let Some(file) = &db.file {
            db.writer = Some(writer::Writer::open(file, settings.sqlite_synchronous)?);
        }
        Ok(db)
    }

    /// The sqlx pool, for what the helpers here do not cover. On a SQLite file, a write
    /// through it does not take turns with [`Database::begin`]'s writes: it waits for SQLite's
    /// own lock (up to sqlx's busy time-out) instead, so prefer a [`Write`].
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The first row `sql` selects with `params`, if any.
    pub async fn one<T: FromRow>(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<T>, StoreError> {
        let call = Call::start(self.system, sql);
        let row = match &self.file {
            Some(file) => local::one(file, sql, params),
            None => match rows::bind(sql, params).fetch_optional(&self.pool).await {
                Ok(row) => row.as_ref().map(|row| T::from_row(row)).transpose(),
                Err(e) => Err(e.into()),
            },
        };
        call.end(&row);
        row
    }

    /// Every row `sql` selects with `params`.
    pub async fn all<T: FromRow>(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<T>, StoreError> {
        let call = Call::start(self.system, sql);
        let all = match &self.file {
            Some(file) => local::all(file, sql, params),
            None => match rows::bind(sql, params).fetch_all(&self.pool).await {
                Ok(rows) => rows.iter().map(|row| T::from_row(row)).collect(),
                Err(e) => Err(e.into()),
            },
        };
        call.end(&all);
        all
    }

    /// Starts a write with no idempotency key (work the service itself drives, such as a
    /// saga step). Dropped without a commit, it rolls back.
    pub async fn begin(&self) -> Result<Write, StoreError> {
        self.begin_keyed(None).await
    }

    /// Starts a write, stored under `key` when it has one.
    pub(crate) async fn begin_keyed(
        &self,
        key: Option<(String, String)>,
    ) -> Result<Write, StoreError> {
        let tx = match &self.writer {
            Some(writer) => Tx::File(writer.begin().await?),
            None => Tx::Pool(self.pool.begin().await?),
        };
        Ok(Write::new(tx, key, self.outbox.clone(), self.system))
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One database call, timed for its trace span when spans are exported (see
/// [`courier_actors::trace::inner`]): a child of the hop doing it, named by the statement's
/// first word, with the database system and the statement (parameters are never in it).
pub(crate) struct Call<'a> {
    started: Option<(std::time::Instant, &'static str, &'a str)>,
}

impl<'a> Call<'a> {
    pub(crate) fn start(system: &'static str, sql: &'a str) -> Self {
        let started =
            courier_actors::trace::enabled().then(|| (std::time::Instant::now(), system, sql));
        Self { started }
    }

    pub(crate) fn end<T>(self, result: &Result<T, StoreError>) {
        use courier_actors::trace::{self, SpanKind};
        let Some((started, system, sql)) = self.started else {
            return;
        };
        let operation = sql
            .split_whitespace()
            .next()
            .unwrap_or("SQL")
            .to_ascii_uppercase();
        if let Some(span) = trace::inner(operation, SpanKind::Client, started.elapsed()) {
            trace::record(
                span.with("db.system", system)
                    .with("db.statement", sql)
                    // A duplicate is an answer (an idempotency key or event seen before).
                    .failed(match result {
                        Err(StoreError::Duplicate) | Ok(_) => None,
                        Err(e) => Some(e.to_string()),
                    }),
            );
        }
    }
}

/// Now, in Unix milliseconds: the form every kit table keeps times in.
pub fn now_millis() -> i64 {
    unix_millis(SystemTime::now())
}

fn unix_millis(time: SystemTime) -> i64 {
    millis(time.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// [`StoreError::Duplicate`] for a unique violation, the query error otherwise.
pub fn duplicate_or_query(e: sqlx::Error) -> StoreError {
    match e.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::Duplicate,
        _ => StoreError::Query(e),
    }
}

/// The file of a `sqlite://path` URL; `None` for other databases and in-memory SQLite.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// For `sqlite://path`: creates the file's folder and asks SQLite to create the file.
fn sqlite_create_mode(url: &str) -> Result<String, StoreError> {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return Ok(url.to_owned());
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:" {
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.display().to_string(),
                source,
            })?;
        }
    }
    Ok(if query.contains("mode=") {
        url.to_owned()
    } else if query.is_empty() {
        format!("{url}?mode=rwc")
    } else {
        format!("{url}&mode=rwc")
    })
}

#[cfg(test)]
mod tests {
    use super::StoreError;
    use courier_actors::ServiceError;

    #[test]
    fn database_failures_map_to_one_wire_code_each() {
        let code = |e: StoreError| ServiceError::from(e).code;
        assert_eq!(code(StoreError::KeyReused), 422);
        assert_eq!(code(StoreError::DeadlinePassed), 504);
        assert_eq!(code(StoreError::Busy), 503);
        assert_eq!(code(StoreError::Abandoned), 503);
        assert_eq!(code(StoreError::Commit("disk I/O error".to_owned())), 500);
        let internal = ServiceError::from(StoreError::Commit("disk I/O error".to_owned()));
        assert!(!internal.to_string().contains("disk"), "{internal}");
    }
}
