//! The users service's own database: SQLite by default (a file, created on first start),
//! PostgreSQL when `database.url` says so. Both speak the same SQL here, through sqlx's `Any`
//! driver; migrations are embedded and run at start.
//!
//! Reads of a SQLite file take a shorter way ([`local`]): each thread that reads keeps its own
//! read-only connection and runs the query itself, a few microseconds, instead of handing it
//! to sqlx's per-connection worker thread and waiting to be woken with the rows (two thread
//! hand-offs per query, which cost more than the query). WAL mode lets those readers run while
//! a writer writes. The SQL is the same text for both ways, defined once below.
//!
//! Every write runs in a [`Write`]: one transaction that also stores the write's reply under
//! the caller's request id ([`WriteKey`], in `idempotency.rs`) with the request's fingerprint,
//! so that a retry gets the first reply instead of doing the work again (and a request id
//! reused for another request is refused), and so that the caller can still roll everything
//! back just before commit (when its deadline has passed).

mod idempotency;
mod local;
mod migrate;
mod write;

pub use idempotency::{Claim, WriteKey, KEEP_REPLIES};
pub use write::Write;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use courier_config::DatabaseSettings;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// A stored user, hash included: never leaves this service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// UUIDv7, as text.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Lower-cased, unique.
    pub email: String,
    /// Role names (letters, digits, `_`), stored comma-separated in one column.
    pub roles: Vec<String>,
    /// PHC string (`$argon2id$...`).
    pub password_hash: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

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
    /// A read on this thread's own SQLite connection failed.
    #[error("SQLite read failed: {0}")]
    Read(#[from] rusqlite::Error),
    /// A write's reply could not be stored as JSON, or a stored one read back.
    #[error("stored reply: {0}")]
    Reply(#[source] serde_json::Error),
    /// A write under this request id and endpoint was done for a different request (another
    /// body or caller): its reply is not this request's to see.
    #[error("the request id was already used for a different request")]
    KeyReused,
}

/// The pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// The SQLite file, read on the calling thread ([`local`]); `None` for PostgreSQL and
    /// in-memory SQLite, read through the pool.
    file: Option<Arc<PathBuf>>,
    /// When this instance last pruned old replies, in Unix milliseconds.
    last_prune: Arc<AtomicI64>,
}

/// The columns a `users.update` sets; `None` keeps what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChange {
    /// The user's id.
    pub id: String,
    /// A new display name.
    pub name: Option<String>,
    /// A new email address (lower-cased).
    pub email: Option<String>,
    /// A new PHC string.
    pub password_hash: Option<String>,
    /// RFC 3339.
    pub updated_at: String,
}

const COLUMNS: &str = "id, name, email, roles, password_hash, created_at, updated_at";

/// The reads, one text for sqlx and for the thread-local SQLite connections.
mod sql {
    pub const GET: &str = "SELECT id, name, email, roles, password_hash, created_at, updated_at \
                           FROM users WHERE id = $1";
    pub const BY_EMAIL: &str = "SELECT id, name, email, roles, password_hash, created_at, \
                                updated_at FROM users WHERE email = $1";
    pub const LIST: &str = "SELECT id, name, email, roles, password_hash, created_at, updated_at \
                            FROM users WHERE id > $1 ORDER BY id LIMIT $2";
    pub const REPLY: &str = "SELECT reply, fingerprint FROM idempotency_keys \
                             WHERE request_id = $1 AND endpoint = $2";
}

impl Store {
    /// Opens the database (creating a SQLite file and its folder when missing) and migrates it.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let url = sqlite_create_mode(settings.url.expose())?;
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .connect(&url)
            .await
            .map_err(StoreError::Connect)?;
        let store = Self {
            pool,
            file: sqlite_file(&url).map(Arc::new),
            last_prune: Arc::default(),
        };
        if store.file.is_some() {
            store.use_wal().await?;
        }
        store.migrate().await?;
        Ok(store)
    }

    /// The user with `id`.
    pub async fn get(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        self.one(sql::GET, id).await
    }

    /// The user with `email` (already lower-cased).
    pub async fn by_email(&self, email: &str) -> Result<Option<UserRow>, StoreError> {
        self.one(sql::BY_EMAIL, email).await
    }

    async fn one(&self, sql: &'static str, key: &str) -> Result<Option<UserRow>, StoreError> {
        if let Some(file) = &self.file {
            return local::user(file, sql, key);
        }
        let row = sqlx::query(sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(from_row).transpose()
    }

    /// Up to `limit` users after `after` (an id), oldest first.
    pub async fn list(&self, after: Option<&str>, limit: u32) -> Result<Vec<UserRow>, StoreError> {
        let after = after.unwrap_or("");
        if let Some(file) = &self.file {
            return local::users(file, after, limit);
        }
        let rows = sqlx::query(sql::LIST)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(from_row).collect()
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn unix_millis(time: SystemTime) -> i64 {
    millis(time.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Roles as their column holds them: comma-separated (role names hold no commas).
fn roles_column(roles: &[String]) -> String {
    roles.join(",")
}

/// The roles in a `roles` column.
fn roles_of(column: &str) -> Vec<String> {
    column
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

fn from_row(row: AnyRow) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        roles: roles_of(&row.try_get::<String, _>("roles")?),
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn duplicate_or_query(e: sqlx::Error) -> StoreError {
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
    use super::*;

    #[tokio::test]
    async fn a_sqlite_file_is_put_in_wal_mode() {
        let dir = std::env::temp_dir().join(format!("courier-store-wal-{}", std::process::id()));
        let url = format!("sqlite://{}/users.db", dir.display());
        let settings = DatabaseSettings {
            url: courier_config::Secret::new(url),
            max_connections: 2,
        };
        let store = Store::connect(&settings).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode.to_ascii_lowercase(), "wal");
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
