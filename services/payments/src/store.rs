//! The payments tables and SQL; everything else about the database is `courier-store`'s.
//!
//! - `payments`: one row per order id, the idempotency key of both writes. A charge inserts
//!   it first (as `pending`, never committed so), so a concurrent duplicate waits on the
//!   primary key and then finds it taken.
//! - `ledger`: the books. One `charge` entry per charged order, one `refund` entry per
//!   refunded charge; an entry's id is `<kind>:<order id>`, so neither can be written twice.
//! - `payers`: one row per user, locked by every charge before it reads the user's net
//!   total, so that two charges of one user decide one after the other (on PostgreSQL; a
//!   SQLite write holds the whole database anyway).

use courier_contracts::payments::{Payment, PaymentState};
use courier_store::{FromRow, Migration, Row, StoreError, Write};

/// Schema changes, in order. Never edit one that has shipped: add the next.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "create payments",
        sql: "CREATE TABLE IF NOT EXISTS payments (
            order_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            amount BIGINT NOT NULL,
            currency TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        )",
        sqlite_only: false,
    },
    Migration {
        version: 2,
        name: "index payments by user",
        sql: "CREATE INDEX IF NOT EXISTS payments_by_user ON payments (user_id)",
        sqlite_only: false,
    },
    Migration {
        version: 3,
        name: "create ledger",
        sql: "CREATE TABLE IF NOT EXISTS ledger (
            id TEXT PRIMARY KEY,
            order_id TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('charge', 'refund')),
            amount BIGINT NOT NULL,
            at BIGINT NOT NULL
        )",
        sqlite_only: false,
    },
    Migration {
        version: 4,
        name: "create payers",
        sql: "CREATE TABLE IF NOT EXISTS payers (user_id TEXT PRIMARY KEY)",
        sqlite_only: false,
    },
];

/// Parameters are numbered in the order they first appear in each statement.
pub mod sql {
    /// The payment of order `$1`.
    pub const GET: &str = "SELECT order_id, user_id, amount, currency, state, reason \
                           FROM payments WHERE order_id = $1";
    pub(crate) const INSERT_PENDING: &str =
        "INSERT INTO payments (order_id, user_id, amount, currency, state, reason, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', NULL, $5, $5)";
    pub(crate) const LOCK_PAYER: &str = "INSERT INTO payers (user_id) VALUES ($1) \
         ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id";
    /// User `$1`'s net charged total: charges minus refunds.
    pub const NET: &str = "SELECT CAST(COALESCE(SUM(CASE WHEN l.kind = 'charge' \
         THEN l.amount ELSE -l.amount END), 0) AS BIGINT) \
         FROM ledger l JOIN payments p ON p.order_id = l.order_id WHERE p.user_id = $1";
    pub(crate) const SETTLE: &str =
        "UPDATE payments SET state = $1, reason = $2 WHERE order_id = $3";
    pub(crate) const TOMBSTONE: &str =
        "INSERT INTO payments (order_id, user_id, amount, currency, state, reason, \
         created_at, updated_at) VALUES ($1, '', 0, '', 'refunded', NULL, $2, $2) \
         ON CONFLICT (order_id) DO NOTHING";
    pub(crate) const REFUND: &str = "UPDATE payments SET state = 'refunded', updated_at = $1 \
         WHERE order_id = $2 AND state = 'charged' \
         RETURNING order_id, user_id, amount, currency, state, reason";
    pub(crate) const ENTRY: &str =
        "INSERT INTO ledger (id, order_id, kind, amount, at) VALUES ($1, $2, $3, $4, $5)";
}

/// A `payments` row, as the contract's [`Payment`].
#[derive(Debug)]
pub struct Stored(pub Payment);

impl FromRow for Stored {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self(Payment {
            order_id: row.text(0)?,
            user_id: row.text(1)?,
            amount: row.int(2)?,
            currency: row.text(3)?,
            state: state_of(&row.text(4)?)?,
            reason: row.opt_text(5)?,
        }))
    }
}

/// The column's text for a state (its wire name).
pub fn state_text(state: PaymentState) -> &'static str {
    match state {
        PaymentState::Charged => "charged",
        PaymentState::Declined => "declined",
        PaymentState::Refunded => "refunded",
    }
}

/// A state column read back through the contract's own names.
fn state_of(text: &str) -> Result<PaymentState, StoreError> {
    serde_json::from_value(serde_json::Value::from(text)).map_err(StoreError::Json)
}

/// Writes a ledger entry of `kind` (`charge`, `refund`) for `payment`'s order and amount;
/// [`StoreError::Duplicate`] if the order already has one of that kind.
pub async fn entry(
    write: &mut Write,
    kind: &str,
    payment: &Payment,
    at: i64,
) -> Result<(), StoreError> {
    let id = format!("{kind}:{}", payment.order_id);
    let params = [
        id.as_str().into(),
        (&payment.order_id).into(),
        kind.into(),
        payment.amount.into(),
        at.into(),
    ];
    write.execute(sql::ENTRY, &params).await.map(drop)
}
