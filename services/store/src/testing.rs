//! Databases for tests (feature `testing`): a SQLite file in a fresh folder, or a database of
//! the test's own on the PostgreSQL server, removed afterwards.

use std::path::PathBuf;

use courier_config::{DatabaseSettings, Secret};
use sqlx::Connection as _;

/// The PostgreSQL server for tests: `$COURIER_TEST_POSTGRES_URL`, else the local one.
pub fn postgres_admin_url() -> String {
    std::env::var("COURIER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database for one test. SQLite folders are removed on drop; a PostgreSQL database by
/// [`TestDatabase::remove`] (it needs a connection, so an `async` call at the end of a test).
#[derive(Debug)]
pub struct TestDatabase {
    /// What the service under test is given.
    pub settings: DatabaseSettings,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Sqlite(PathBuf),
    Postgres(String),
    /// Another handle's database: left alone on drop and remove.
    Again,
}

impl TestDatabase {
    /// A SQLite file `<name>.db` in a new folder under the system's temporary folder.
    pub fn sqlite(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "courier-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        let url = format!("sqlite://{}/{name}.db", dir.display());
        Self {
            settings: DatabaseSettings {
                url: Secret::new(url),
                max_connections: 4,
                sqlite_synchronous: Default::default(),
            },
            kind: Kind::Sqlite(dir),
        }
    }

    /// A new database on the PostgreSQL server, or `None` (with a note on stderr) when no
    /// server answers and `COURIER_REQUIRE_POSTGRES` is not set.
    pub async fn postgres(prefix: &str) -> Option<Self> {
        let admin = postgres_admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(e) if std::env::var_os("COURIER_REQUIRE_POSTGRES").is_none() => {
                eprintln!("note: skipping PostgreSQL test, no server at {admin}: {e}");
                return None;
            }
            Err(e) => panic!("COURIER_REQUIRE_POSTGRES is set but {admin} does not answer: {e}"),
        };
        let prefix: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!("courier_{prefix}_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        Some(Self {
            settings: DatabaseSettings {
                url: Secret::new(format!("{base}/{name}")),
                max_connections: 5,
                sqlite_synchronous: Default::default(),
            },
            kind: Kind::Postgres(name),
        })
    }

    /// A second handle to the same database (for a service restarted on it), which leaves
    /// the database to this one.
    pub fn again(&self) -> Self {
        Self {
            settings: self.settings.clone(),
            kind: Kind::Again,
        }
    }

    /// Drops a PostgreSQL database (its connections first); removes a SQLite folder.
    pub async fn remove(self) {
        if let Kind::Postgres(name) = &self.kind {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::query(&drop).execute(&mut conn).await;
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Kind::Sqlite(dir) = &self.kind {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
