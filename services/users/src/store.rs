//! The users service's own database: SQLite by default (a file, created on first start),
//! PostgreSQL when `database.url` says so. Both speak the same SQL here, through sqlx's `Any`
//! driver; migrations are embedded and run at start.

use std::path::Path;

use courier_config::DatabaseSettings;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Schema changes, in order. Never edit one that has shipped: add the next.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "create users",
    "CREATE TABLE IF NOT EXISTS users (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )",
)];

/// A stored user, hash included: never leaves this service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// UUIDv7, as text.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Lower-cased, unique.
    pub email: String,
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
}

/// The pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
}

const COLUMNS: &str = "id, name, email, password_hash, created_at, updated_at";

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
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies each migration not yet recorded, each in its own transaction. Several instances
    /// may start at once on one database: each transaction first claims its migration's row
    /// (a write, so SQLite takes the write lock up front instead of failing a read-to-write
    /// upgrade with "database is locked", and PostgreSQL makes the second claimant wait on the
    /// key), and only the instance whose claim inserted the row applies the migration.
    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::query("CREATE TABLE IF NOT EXISTS courier_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)")
            .execute(&self.pool)
            .await?;
        for &(version, name, sql) in MIGRATIONS {
            let failed = |source| StoreError::Migrate {
                version,
                name,
                source,
            };
            let mut tx = self.pool.begin().await?;
            let claimed = sqlx::query(
                "INSERT INTO courier_migrations (version, name) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING",
            )
            .bind(version)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
            if claimed.rows_affected() == 1 {
                sqlx::query(sql).execute(&mut *tx).await.map_err(failed)?;
                tracing::info!(version, name, "Migration applied.");
            }
            tx.commit().await.map_err(failed)?;
        }
        Ok(())
    }

    /// Inserts a user; [`StoreError::Duplicate`] when the email is taken.
    pub async fn insert(&self, row: &UserRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO users ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.email)
        .bind(&row.password_hash)
        .bind(&row.created_at)
        .bind(&row.updated_at)
        .execute(&self.pool)
        .await
        .map_err(duplicate_or_query)?;
        Ok(())
    }

    /// The user with `id`.
    pub async fn get(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(from_row).transpose()
    }

    /// The user with `email` (already lower-cased).
    pub async fn by_email(&self, email: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        row.map(from_row).transpose()
    }

    /// Up to `limit` users after `after` (an id), oldest first.
    pub async fn list(&self, after: Option<&str>, limit: u32) -> Result<Vec<UserRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(from_row).collect()
    }

    /// Writes every field of `row` over the user with its id; `false` when there is none.
    pub async fn update(&self, row: &UserRow) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET name = $1, email = $2, password_hash = $3, updated_at = $4 WHERE id = $5")
            .bind(&row.name)
            .bind(&row.email)
            .bind(&row.password_hash)
            .bind(&row.updated_at)
            .bind(&row.id)
            .execute(&self.pool)
            .await
            .map_err(duplicate_or_query)?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the user with `id`; `false` when there is none.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn from_row(row: AnyRow) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
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
