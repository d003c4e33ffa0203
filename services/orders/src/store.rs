//! The orders table and its SQL; the rest of the database is `courier-store`'s. An order row
//! is also its saga's state: the `step` to run next (`reserve`, `charge`, `release`, `done`),
//! how often it has failed, when to try next, and the lease of the instance running it.

use courier_contracts::orders::{Order, OrderState};
use courier_store::{FromRow, Migration, Row, StoreError};

/// Schema changes, in order. Never edit one that has shipped: add the next.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "create orders",
        sql: "CREATE TABLE IF NOT EXISTS orders (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            lines TEXT NOT NULL,
            total BIGINT NOT NULL,
            currency TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            step TEXT NOT NULL,
            attempts BIGINT NOT NULL,
            next_attempt_at BIGINT NOT NULL,
            lease_until BIGINT NOT NULL
        )",
        sqlite_only: false,
    },
    Migration {
        version: 2,
        name: "index orders by user",
        sql: "CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, id)",
        sqlite_only: false,
    },
    Migration {
        version: 3,
        name: "index unfinished sagas",
        sql: "CREATE INDEX IF NOT EXISTS orders_by_step ON orders (step, next_attempt_at)",
        sqlite_only: false,
    },
    Migration {
        version: 4,
        name: "the trace of the request that took the order",
        sql: "ALTER TABLE orders ADD COLUMN traceparent TEXT",
        sqlite_only: false,
    },
    Migration {
        version: 5,
        name: "index orders by state, for the census",
        sql: "CREATE INDEX IF NOT EXISTS orders_by_state ON orders (state, created_at)",
        sqlite_only: false,
    },
];

/// The saga's steps, as stored.
pub mod step {
    pub const RESERVE: &str = "reserve";
    pub const CHARGE: &str = "charge";
    pub const RELEASE: &str = "release";
    pub const DONE: &str = "done";
}

const ORDER: &str = "id, user_id, lines, total, currency, state, reason, created_at, updated_at, \
                     step, attempts, traceparent";

pub fn insert() -> String {
    format!(
        "INSERT INTO orders ({ORDER}, next_attempt_at, lease_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12, 0)"
    )
}

pub fn get() -> String {
    format!("SELECT {ORDER} FROM orders WHERE id = $1")
}

pub fn list() -> String {
    format!("SELECT {ORDER} FROM orders WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3")
}

/// Unfinished sagas due now and not leased by a running instance, oldest due first.
pub const DUE: &str = "SELECT id FROM orders WHERE step <> 'done' AND next_attempt_at <= $1 \
                       AND lease_until <= $1 ORDER BY next_attempt_at LIMIT $2";

/// Takes the lease of saga `$1` until `$2`, if nobody holds it at `$3`.
pub const LEASE: &str = "UPDATE orders SET lease_until = $2 \
                         WHERE id = $1 AND step <> 'done' AND lease_until <= $3";

/// Moves saga `$1` from step `$7` to step `$2` (order state `$3`, reason `$4` if given),
/// due at `$5`, its lease given back.
pub fn advance() -> String {
    format!(
        "UPDATE orders SET step = $2, state = $3, reason = COALESCE($4, reason), attempts = 0, \
         next_attempt_at = $5, lease_until = 0, updated_at = $6 \
         WHERE id = $1 AND step = $7 RETURNING {ORDER}"
    )
}

/// Counts a failed try of saga `$1` at step `$3` and puts the next at `$2`.
pub const RETRY: &str = "UPDATE orders SET attempts = attempts + 1, next_attempt_at = $2, \
                         lease_until = 0 WHERE id = $1 AND step = $3";

/// Orders by state: the state, how many, and the oldest one's `created_at`.
pub const CENSUS: &str = "SELECT state, COUNT(*), MIN(created_at) FROM orders GROUP BY state";

/// An order row: the order and where its saga stands.
#[derive(Debug, Clone)]
pub struct OrderRow {
    /// The order.
    pub order: Order,
    /// The saga's next step.
    pub step: String,
    /// Failed tries of that step.
    pub attempts: i64,
    /// The W3C trace context of the request that took the order: the saga's steps continue
    /// that trace.
    pub traceparent: Option<String>,
}

impl FromRow for OrderRow {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        let lines = serde_json::from_str(&row.text(2)?).map_err(StoreError::Json)?;
        let state = match row.text(5)?.as_str() {
            "confirmed" => OrderState::Confirmed,
            "cancelled" => OrderState::Cancelled,
            _ => OrderState::Pending,
        };
        Ok(Self {
            order: Order {
                id: row.text(0)?,
                user_id: row.text(1)?,
                lines,
                total: row.int(3)?,
                currency: row.text(4)?,
                state,
                reason: row.opt_text(6)?,
                created_at: row.text(7)?,
                updated_at: row.text(8)?,
            },
            step: row.text(9)?,
            attempts: row.int(10)?,
            traceparent: row.opt_text(11)?,
        })
    }
}

/// An order state as stored.
pub fn state_column(state: OrderState) -> &'static str {
    match state {
        OrderState::Pending => "pending",
        OrderState::Confirmed => "confirmed",
        OrderState::Cancelled => "cancelled",
    }
}
