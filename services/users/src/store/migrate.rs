//! The schema: migrations applied at start, safely when several instances start at once,
//! and SQLite's journal mode.

use sqlx::Connection as _;

use super::{Store, StoreError};

/// Schema changes, in order. Never edit one that has shipped: add the next. One statement each
/// (PostgreSQL prepares them, and a prepared statement holds one).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
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
    ),
    (
        2,
        "create idempotency keys",
        "CREATE TABLE IF NOT EXISTS idempotency_keys (
        request_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        reply TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (request_id, endpoint)
    )",
    ),
    (
        3,
        "index idempotency keys by age",
        "CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys (created_at)",
    ),
    (
        4,
        "add roles to users",
        // Comma-separated role names (letters, digits, `_`); existing users get none.
        "ALTER TABLE users ADD COLUMN roles TEXT NOT NULL DEFAULT ''",
    ),
    (
        5,
        "add request fingerprints to idempotency keys",
        // `crate::fingerprint`, in hex. NULL for keys stored before (or, during a rolling
        // upgrade, by an older instance): they match any request until pruned, a day later.
        "ALTER TABLE idempotency_keys ADD COLUMN fingerprint TEXT",
    ),
];

/// The PostgreSQL advisory lock that serialises migrations across instances starting at once
/// ("courier" in ASCII): any constant works, as long as nothing else in the database uses it.
const MIGRATION_LOCK: i64 = 0x0063_6f75_7269_6572;

impl Store {
    /// Puts a SQLite file in WAL mode (it stays so): readers then never wait for a writer,
    /// which the reads on the calling thread ([`local`]) rely on, and a read takes no file
    /// lock calls beyond the shared one. sqlx leaves the journal mode as it is unless told.
    /// Switching needs the file to itself: when another instance holds it (two starting at
    /// once on one file), one of them switches and the other finds WAL already on; if it
    /// still fails, the service runs on, its reads waiting for writes.
    pub(super) async fn use_wal(&self) -> Result<(), StoreError> {
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

    /// Applies each migration not yet recorded, all in one transaction that first takes the
    /// database's lock for migrations, because several instances may start at once on one
    /// database: PostgreSQL's `CREATE TABLE IF NOT EXISTS` is not safe against a concurrent
    /// one (both may pass the check and one fails on `pg_type`), so the instances queue on an
    /// advisory lock; SQLite takes its write lock up front (`BEGIN IMMEDIATE`) rather than
    /// fail a read-to-write upgrade with "database is locked". Under the lock each migration
    /// is claimed by inserting its row, and applied only if the claim inserted it.
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = if conn.backend_name() == <sqlx::Postgres as sqlx::Database>::NAME {
            let mut tx = conn.begin().await?;
            sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
            tx
        } else {
            conn.begin_with("BEGIN IMMEDIATE").await?
        };
        sqlx::query("CREATE TABLE IF NOT EXISTS courier_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)")
            .execute(&mut *tx)
            .await?;
        for &(version, name, sql) in MIGRATIONS {
            let failed = |source| StoreError::Migrate {
                version,
                name,
                source,
            };
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
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use courier_config::{DatabaseSettings, Secret};
    use sqlx::AnyPool;

    use super::super::WriteKey;
    use super::*;
    use crate::fingerprint::Fingerprint;

    /// A SQLite file with the schema of migrations `..version` and one user, Ada.
    async fn schema_before(version: i64, url: &str) {
        let pool = AnyPool::connect(&format!("{url}?mode=rwc")).await.unwrap();
        let mut statements = vec![
            "CREATE TABLE courier_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)"
                .to_owned(),
        ];
        for &(v, name, sql) in MIGRATIONS.iter().filter(|m| m.0 < version) {
            statements.push(sql.to_owned());
            statements.push(format!(
                "INSERT INTO courier_migrations VALUES ({v}, '{name}')"
            ));
        }
        statements.push(
            "INSERT INTO users (id, name, email, password_hash, created_at, updated_at) \
             VALUES ('u1', 'Ada', 'ada@example.com', 'h', 't', 't')"
                .to_owned(),
        );
        for sql in statements {
            sqlx::query(&sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }

    #[tokio::test]
    async fn users_stored_before_roles_existed_have_none() {
        sqlx::any::install_default_drivers();
        let dir = std::env::temp_dir().join(format!("courier-roles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/users.db", dir.display());
        schema_before(4, &url).await;
        let settings = DatabaseSettings {
            url: Secret::new(url),
            max_connections: 2,
        };
        let store = Store::connect(&settings).await.unwrap();
        let ada = store.get("u1").await.unwrap().expect("Ada is kept");
        assert_eq!(
            (ada.email.as_str(), ada.roles.len()),
            ("ada@example.com", 0)
        );
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_reply_stored_before_fingerprints_existed_is_replayed_to_its_key() {
        sqlx::any::install_default_drivers();
        let dir = std::env::temp_dir().join(format!("courier-fingerprint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/users.db", dir.display());
        schema_before(5, &url).await;
        let pool = AnyPool::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO idempotency_keys (request_id, endpoint, reply, created_at) \
             VALUES ('r', 'users.delete', '{\"id\":\"u1\"}', 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let settings = DatabaseSettings {
            url: Secret::new(url),
            max_connections: 2,
        };
        let store = Store::connect(&settings).await.unwrap();
        let fingerprint = Fingerprint::delete("users.delete", None, "u2");
        let key = WriteKey {
            request_id: "r",
            endpoint: "users.delete",
            fingerprint: &fingerprint,
        };
        let reply: Option<serde_json::Value> = store.reply(key).await.unwrap();
        assert_eq!(reply, Some(serde_json::json!({"id": "u1"})));
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
