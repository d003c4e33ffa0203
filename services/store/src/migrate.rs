//! The schema: a service's migrations, then the kit's own tables, applied at start, safely
//! when several instances start at once; and SQLite's journal mode.

use sqlx::{Any, AnyConnection, Connection as _, Transaction};

use crate::{Database, StoreError};

/// One schema change. Never edit one that has shipped: add the next. One statement each
/// (PostgreSQL prepares them, and a prepared statement holds one).
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its place in the order, unique in the list.
    pub version: i64,
    /// What it does, for the log and the migrations table.
    pub name: &'static str,
    /// The statement, valid on SQLite and PostgreSQL (unless `sqlite_only`).
    pub sql: &'static str,
    /// Run on SQLite only; elsewhere it is recorded as applied and skipped. For how SQLite
    /// stores a table, which PostgreSQL has no counterpart of: making it `WITHOUT ROWID` takes
    /// a rebuild (create, copy, drop, rename), one migration per statement. A rebuild copies
    /// every row under the migrations' write lock: other instances wait for it to end.
    pub sqlite_only: bool,
}

/// The kit's tables, recorded apart from the service's own (`courier_kit_migrations`), so that
/// a service numbers its migrations from 1 and the kit can add to its own later. Every one is
/// `IF NOT EXISTS`: the users service made its idempotency table itself before the kit did.
const KIT: &[Migration] = &[
    Migration {
        version: 1,
        name: "create idempotency keys",
        sql: "CREATE TABLE IF NOT EXISTS idempotency_keys (
            request_id TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            reply TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            fingerprint TEXT,
            PRIMARY KEY (request_id, endpoint)
        )",
        sqlite_only: false,
    },
    Migration {
        version: 2,
        name: "index idempotency keys by age",
        sql: "CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys (created_at)",
        sqlite_only: false,
    },
    Migration {
        version: 3,
        name: "create outbox",
        // `id` is the event's UUIDv7 (its `Nats-Msg-Id`): text order is time order.
        sql: "CREATE TABLE IF NOT EXISTS outbox (
            id TEXT PRIMARY KEY,
            subject TEXT NOT NULL,
            payload TEXT NOT NULL,
            request_id TEXT,
            traceparent TEXT,
            created_at BIGINT NOT NULL
        )",
        sqlite_only: false,
    },
    Migration {
        version: 4,
        name: "create handled events",
        sql: "CREATE TABLE IF NOT EXISTS handled_events (
            consumer TEXT NOT NULL,
            event_id TEXT NOT NULL,
            handled_at BIGINT NOT NULL,
            PRIMARY KEY (consumer, event_id)
        )",
        sqlite_only: false,
    },
    Migration {
        version: 5,
        name: "index handled events by age",
        sql: "CREATE INDEX IF NOT EXISTS handled_events_by_age ON handled_events (handled_at)",
        sqlite_only: false,
    },
];

/// The PostgreSQL advisory lock that serialises migrations across instances starting at once
/// ("courier" in ASCII): any constant works, as long as nothing else in the database uses it.
const MIGRATION_LOCK: i64 = 0x0063_6f75_7269_6572;

impl Database {
    /// Puts a SQLite file in WAL mode (it stays so): readers then never wait for a writer,
    /// which the reads on the calling thread rely on, and a read takes no file lock calls
    /// beyond the shared one. sqlx leaves the journal mode as it is unless told. Switching
    /// needs the file to itself: when another instance holds it (two starting at once on one
    /// file), one of them switches and the other finds WAL already on; if it still fails, the
    /// service runs on, its reads waiting for writes.
    pub(crate) async fn use_wal(&self) -> Result<(), StoreError> {
        let mode = |sql| sqlx::query_scalar::<_, String>(sql).fetch_one(&self.pool);
        if mode("PRAGMA journal_mode")
            .await?
            .eq_ignore_ascii_case("wal")
        {
            return Ok(());
        }
        match mode("PRAGMA journal_mode = WAL").await {
            Ok(now) if now.eq_ignore_ascii_case("wal") => {}
            Ok(now) => tracing::warn!(
                mode = now,
                "SQLite kept its journal mode; reads may wait for writes."
            ),
            Err(error) => {
                tracing::warn!(%error, "SQLite could not switch to WAL; reads may wait for writes.")
            }
        }
        Ok(())
    }

    /// Applies each migration not yet recorded, the service's then the kit's, all in one
    /// transaction that first takes the database's lock for migrations, because several
    /// instances may start at once on one database: PostgreSQL's `CREATE TABLE IF NOT EXISTS`
    /// is not safe against a concurrent one (both may pass the check and one fails on
    /// `pg_type`), so the instances queue on an advisory lock; SQLite takes its write lock up
    /// front (`BEGIN IMMEDIATE`) rather than fail a read-to-write upgrade with "database is
    /// locked". Under the lock each migration is claimed by inserting its row, and applied
    /// only if the claim inserted it (a `sqlite_only` one is only claimed on PostgreSQL).
    pub(crate) async fn migrate(&self, service: &'static [Migration]) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = locked(&mut conn).await?;
        apply(&mut tx, "courier_migrations", service).await?;
        apply(&mut tx, "courier_kit_migrations", KIT).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A transaction holding the database's lock for migrations.
async fn locked(conn: &mut AnyConnection) -> Result<Transaction<'_, Any>, StoreError> {
    if conn.backend_name() == <sqlx::Postgres as sqlx::Database>::NAME {
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    } else {
        Ok(conn.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Applies the migrations of `list` that `table` does not record yet, and records them (a
/// `sqlite_only` one is recorded without running on any other database).
async fn apply(
    tx: &mut Transaction<'_, Any>,
    table: &str,
    list: &'static [Migration],
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY, name TEXT NOT NULL)"
    ))
    .execute(&mut **tx)
    .await?;
    let claim = format!(
        "INSERT INTO {table} (version, name) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING"
    );
    let sqlite = tx.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME;
    for &Migration {
        version,
        name,
        sql,
        sqlite_only,
    } in list
    {
        let failed = |source| StoreError::Migrate {
            version,
            name,
            source,
        };
        let claimed = sqlx::query(&claim)
            .bind(version)
            .bind(name)
            .execute(&mut **tx)
            .await
            .map_err(failed)?;
        if claimed.rows_affected() != 1 {
            continue;
        }
        if sqlite_only && !sqlite {
            tracing::info!(table, version, name, "Migration for SQLite only: skipped.");
        } else {
            sqlx::query(sql).execute(&mut **tx).await.map_err(failed)?;
            tracing::info!(table, version, name, "Migration applied.");
        }
    }
    Ok(())
}
