//! The users service's tables and SQL. Everything else about its database (connection,
//! migrations, reads on the calling thread, idempotent writes, the outbox) is
//! `courier-store`'s; this module holds what only users have: the `users` table, its rows and
//! its statements.

use std::ops::Deref;

use courier_config::DatabaseSettings;
use courier_store::{ByKey, Database, FromRow, Migration, Row};
pub use courier_store::{Claim, StoreError, Write, WriteKey};

use crate::domain::User;

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

/// Schema changes, in order. Never edit one that has shipped: add the next. (2, 3 and 5 made
/// the idempotency table before the kit did; the kit's `IF NOT EXISTS` leaves it as it is.)
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "create users",
        sql: "CREATE TABLE IF NOT EXISTS users (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            email TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )",
        sqlite_only: false,
    },
    Migration {
        version: 2,
        name: "create idempotency keys",
        sql: "CREATE TABLE IF NOT EXISTS idempotency_keys (
            request_id TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            reply TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (request_id, endpoint)
        )",
        sqlite_only: false,
    },
    Migration {
        version: 3,
        name: "index idempotency keys by age",
        sql: "CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys (created_at)",
        sqlite_only: false,
    },
    Migration {
        version: 4,
        name: "add roles to users",
        // Comma-separated role names (letters, digits, `_`); existing users get none.
        sql: "ALTER TABLE users ADD COLUMN roles TEXT NOT NULL DEFAULT ''",
        sqlite_only: false,
    },
    Migration {
        version: 5,
        name: "add request fingerprints to idempotency keys",
        // NULL for keys stored before: they match any request until pruned, a day later.
        sql: "ALTER TABLE idempotency_keys ADD COLUMN fingerprint TEXT",
        sqlite_only: false,
    },
    // 6 to 9 rebuild `users` on SQLite as a `WITHOUT ROWID` table: its rows are then stored in
    // the id's B-tree, and `users.get` finds one in a single search instead of two (the
    // primary key's index, then the row by rowid); `users.list`, which reads in id order,
    // reads the table in its own order. PostgreSQL stores tables otherwise and skips them.
    Migration {
        version: 6,
        name: "create users stored by id (SQLite)",
        sql: "CREATE TABLE users_by_id (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            email TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            roles TEXT NOT NULL DEFAULT ''
        ) WITHOUT ROWID",
        sqlite_only: true,
    },
    Migration {
        version: 7,
        name: "copy users into users stored by id (SQLite)",
        sql:
            "INSERT INTO users_by_id (id, name, email, password_hash, created_at, updated_at, roles)
            SELECT id, name, email, password_hash, created_at, updated_at, roles FROM users",
        sqlite_only: true,
    },
    Migration {
        version: 8,
        name: "drop users stored by rowid (SQLite)",
        sql: "DROP TABLE users",
        sqlite_only: true,
    },
    Migration {
        version: 9,
        name: "rename users stored by id to users (SQLite)",
        sql: "ALTER TABLE users_by_id RENAME TO users",
        sqlite_only: true,
    },
];

const COLUMNS: &str = "id, name, email, roles, password_hash, created_at, updated_at";

mod sql {
    /// Users by id as others see them (no hash), read in batches ([`courier_store::ByKey`]
    /// adds the `WHERE`).
    pub const PUBLIC: &str = "SELECT id, name, email, roles, created_at, updated_at FROM users";
    pub const BY_EMAIL: &str = "SELECT id, name, email, roles, password_hash, created_at, \
                                updated_at FROM users WHERE email = $1";
    pub const LIST: &str = "SELECT id, name, email, roles, password_hash, created_at, updated_at \
                            FROM users WHERE id > $1 ORDER BY id LIMIT $2";
}

impl FromRow for UserRow {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.text(0)?,
            name: row.text(1)?,
            email: row.text(2)?,
            roles: roles_of(&row.text(3)?),
            password_hash: row.text(4)?,
            created_at: row.text(5)?,
            updated_at: row.text(6)?,
        })
    }
}

/// A user as others see it, read without the hash it has no use for.
#[derive(Debug, Clone)]
struct Public(User);

impl FromRow for Public {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self(User {
            id: row.text(0)?,
            name: row.text(1)?,
            email: row.text(2)?,
            roles: roles_of(&row.text(3)?),
            created_at: row.text(4)?,
            updated_at: row.text(5)?,
        }))
    }
}

/// The users database: the kit's [`Database`] (claims, replies, events) plus the reads of
/// users. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Database,
    /// `users.get`, the hot read: the gets waiting at one moment share one trip.
    by_id: ByKey<Public>,
}

impl Deref for Store {
    type Target = Database;
    fn deref(&self) -> &Database {
        &self.db
    }
}

impl From<Database> for Store {
    fn from(db: Database) -> Self {
        let by_id = ByKey::new(&db, sql::PUBLIC, "id");
        Self { db, by_id }
    }
}

impl Store {
    /// Opens and migrates the database.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        Database::connect(settings, MIGRATIONS)
            .await
            .map(Self::from)
    }

    /// The kit's database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The user with `id`.
    pub async fn get(&self, id: &str) -> Result<Option<User>, StoreError> {
        Ok(self.by_id.get(id).await?.map(|Public(user)| user))
    }

    /// The user with `email` (already lower-cased).
    pub async fn by_email(&self, email: &str) -> Result<Option<UserRow>, StoreError> {
        self.db.one(sql::BY_EMAIL, &[email.into()]).await
    }

    /// Up to `limit` users after `after` (an id), oldest first.
    pub async fn list(&self, after: Option<&str>, limit: u32) -> Result<Vec<UserRow>, StoreError> {
        let after = after.unwrap_or("");
        self.db.all(sql::LIST, &[after.into(), limit.into()]).await
    }
}

/// The users writes, on a [`Write`] of the kit. (`async fn` in a public trait: callers are
/// this crate's actors, whose futures need not be `Send`.)
#[allow(async_fn_in_trait)]
pub trait UserWrites {
    /// Inserts a user; [`StoreError::Duplicate`] when the email is taken.
    async fn insert(&mut self, row: &UserRow) -> Result<(), StoreError>;
    /// Sets the given columns only, in one statement, so that concurrent updates of other
    /// columns are kept; the row as it is now, or `None` when there is no such user.
    /// [`StoreError::Duplicate`] when the new email is taken.
    async fn update(&mut self, change: &UserChange) -> Result<Option<UserRow>, StoreError>;
    /// Deletes the user with `id`; `false` when there is none.
    async fn delete(&mut self, id: &str) -> Result<bool, StoreError>;
}

impl UserWrites for Write {
    async fn insert(&mut self, row: &UserRow) -> Result<(), StoreError> {
        let sql = format!("INSERT INTO users ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
        let roles = row.roles.join(",");
        let params = [
            (&row.id).into(),
            (&row.name).into(),
            (&row.email).into(),
            roles.as_str().into(),
            (&row.password_hash).into(),
            (&row.created_at).into(),
            (&row.updated_at).into(),
        ];
        self.execute(&sql, &params).await.map(drop)
    }

    async fn update(&mut self, change: &UserChange) -> Result<Option<UserRow>, StoreError> {
        let sql = format!(
            "UPDATE users SET name = COALESCE($1, name), email = COALESCE($2, email), \
             password_hash = COALESCE($3, password_hash), updated_at = $4 \
             WHERE id = $5 RETURNING {COLUMNS}"
        );
        let params = [
            change.name.as_ref().into(),
            change.email.as_ref().into(),
            change.password_hash.as_ref().into(),
            (&change.updated_at).into(),
            (&change.id).into(),
        ];
        self.one(&sql, &params).await
    }

    async fn delete(&mut self, id: &str) -> Result<bool, StoreError> {
        let done = self
            .execute("DELETE FROM users WHERE id = $1", &[id.into()])
            .await?;
        Ok(done == 1)
    }
}

/// The roles in a `roles` column: comma-separated (role names hold no commas).
fn roles_of(column: &str) -> Vec<String> {
    column
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use courier_store::testing::TestDatabase;
    use sqlx::AnyPool;

    use super::*;
    use crate::fingerprint;

    /// A SQLite file with the schema of migrations `..version` and one user, Ada, after which
    /// the statements `then` run.
    async fn schema_before(version: i64, url: &str, then: &[&str]) {
        let file = url.strip_prefix("sqlite://").expect("a SQLite file's URL");
        let folder = std::path::Path::new(file)
            .parent()
            .expect("a file in a folder");
        std::fs::create_dir_all(folder).unwrap();
        let pool = AnyPool::connect(&format!("{url}?mode=rwc")).await.unwrap();
        let mut statements = vec![
            "CREATE TABLE courier_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)"
                .to_owned(),
        ];
        for &Migration {
            version: v,
            name,
            sql,
            ..
        } in MIGRATIONS.iter().filter(|m| m.version < version)
        {
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
        statements.extend(then.iter().map(|sql| (*sql).to_owned()));
        for sql in statements {
            sqlx::query(&sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }

    /// How SQLite finds a user by id, in `EXPLAIN QUERY PLAN`'s words, on a connection of its
    /// own (one opened before the migrations ran would explain with the schema it read then).
    async fn plan_of_get(url: &str) -> String {
        use sqlx::{Connection as _, Row as _};
        let mut connection = sqlx::AnyConnection::connect(url).await.unwrap();
        let explain = format!("EXPLAIN QUERY PLAN {} WHERE id = $1", sql::PUBLIC);
        let rows = sqlx::query(&explain)
            .bind("u1")
            .fetch_all(&mut connection)
            .await
            .unwrap();
        let steps: Vec<String> = rows.iter().map(|row| row.get("detail")).collect();
        steps.join("; ")
    }

    /// A SQLite file for one test (its folder removed on drop), and its URL.
    fn sqlite(name: &str) -> (TestDatabase, String) {
        sqlx::any::install_default_drivers();
        let db = TestDatabase::sqlite(name);
        let url = db.settings.url.expose().to_owned();
        (db, url)
    }

    #[tokio::test]
    async fn a_user_is_found_by_id_in_one_search() {
        let (db, url) = sqlite("by-id");
        let store = Store::connect(&db.settings).await.unwrap();
        // Not `USING INDEX sqlite_autoindex_users_1`, which then reads the row by rowid.
        let plan = plan_of_get(&url).await;
        assert!(plan.contains("USING PRIMARY KEY"), "{plan}");
        store.close().await;
    }

    #[tokio::test]
    async fn users_stored_by_rowid_are_moved_whole_into_the_table_stored_by_id() {
        let (db, url) = sqlite("rebuild");
        // Every column apart, so that a column left out of the copy or moved into another
        // shows.
        let apart =
            "UPDATE users SET roles = 'admin,support', created_at = 't1', updated_at = 't2'";
        schema_before(6, &url, &[apart]).await;
        let store = Store::connect(&db.settings).await.unwrap();
        let plan = plan_of_get(&url).await;
        assert!(plan.contains("USING PRIMARY KEY"), "{plan}");
        let ada = store.by_email("ada@example.com").await.unwrap();
        let ada = ada.expect("Ada is kept, and found by email");
        assert_eq!(
            ada,
            UserRow {
                id: "u1".into(),
                name: "Ada".into(),
                email: "ada@example.com".into(),
                roles: vec!["admin".into(), "support".into()],
                password_hash: "h".into(),
                created_at: "t1".into(),
                updated_at: "t2".into(),
            }
        );
        // The email stays unique, and roles keep their default.
        let insert = "INSERT INTO users (id, name, email, password_hash, created_at, updated_at) \
                      VALUES ($1, 'Bea', $2, 'h', 't', 't')";
        let again = sqlx::query(insert)
            .bind("u2")
            .bind("ada@example.com")
            .execute(store.pool())
            .await;
        assert!(again.is_err(), "a second ada@example.com was stored");
        sqlx::query(insert)
            .bind("u2")
            .bind("bea@example.com")
            .execute(store.pool())
            .await
            .unwrap();
        let bea = store.get("u2").await.unwrap().expect("Bea is stored");
        assert_eq!(bea.roles.len(), 0);
        store.close().await;
    }

    #[tokio::test]
    async fn users_stored_before_roles_existed_have_none() {
        let (db, url) = sqlite("roles");
        schema_before(4, &url, &[]).await;
        let store = Store::connect(&db.settings).await.unwrap();
        let ada = store.get("u1").await.unwrap().expect("Ada is kept");
        assert_eq!(
            (ada.email.as_str(), ada.roles.len()),
            ("ada@example.com", 0)
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_reply_stored_before_fingerprints_existed_is_replayed_to_its_key() {
        let (db, url) = sqlite("fingerprint");
        let stored = "INSERT INTO idempotency_keys (request_id, endpoint, reply, created_at) \
                      VALUES ('r', 'users.delete', '{\"id\":\"u1\"}', 1)";
        schema_before(5, &url, &[stored]).await;
        let store = Store::connect(&db.settings).await.unwrap();
        let fingerprint = fingerprint::delete("users.delete", None, "u2");
        let key = WriteKey {
            request_id: "r",
            endpoint: "users.delete",
            fingerprint: &fingerprint,
        };
        let reply: Option<serde_json::Value> = store.reply(key).await.unwrap();
        assert_eq!(reply, Some(serde_json::json!({"id": "u1"})));
        store.close().await;
    }
}
