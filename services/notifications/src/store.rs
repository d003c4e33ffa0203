//! The notifications table and its SQL; the rest of the database (handled events) is
//! `courier-store`'s.

use courier_contracts::notifications::{Notification, NotificationKind};
use courier_store::{FromRow, Migration, Param, Row, StoreError};

/// Schema changes, in order. Never edit one that has shipped: add the next.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "create notifications",
        // `delivered`: 1 once an SMTP server accepted the mail, else 0. One notification per
        // event and kind (the handled-events claim already makes it so; this is the backstop).
        sql: "CREATE TABLE IF NOT EXISTS notifications (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            subject_line TEXT NOT NULL,
            body TEXT NOT NULL,
            event_id TEXT NOT NULL,
            order_id TEXT,
            created_at TEXT NOT NULL,
            delivered BIGINT NOT NULL DEFAULT 0,
            UNIQUE (kind, event_id)
        )",
        sqlite_only: false,
    },
    Migration {
        version: 2,
        name: "index notifications by user",
        sql: "CREATE INDEX IF NOT EXISTS notifications_by_user ON notifications (user_id, id)",
        sqlite_only: false,
    },
];

/// The columns of a notification, in [`Notification`]'s order.
const NOTIFICATION: &str =
    "id, user_id, kind, subject_line, body, event_id, order_id, created_at, delivered";

/// A user's notifications after id `$2`, at most `$3`, oldest first.
pub fn list() -> String {
    format!(
        "SELECT {NOTIFICATION} FROM notifications WHERE user_id = $1 AND id > $2 \
         ORDER BY id LIMIT $3"
    )
}

pub fn insert() -> String {
    format!(
        "INSERT INTO notifications ({NOTIFICATION}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )
}

/// The parameters of [`insert`].
pub fn insert_params(n: &Notification) -> [Param<'_>; 9] {
    [
        n.id.as_str().into(),
        n.user_id.as_str().into(),
        n.kind.as_str().into(),
        n.subject_line.as_str().into(),
        n.body.as_str().into(),
        n.event_id.as_str().into(),
        n.order_id.as_deref().into(),
        n.created_at.as_str().into(),
        i64::from(n.delivered).into(),
    ]
}

/// Whether event `$2` already made a notification of kind `$1`.
pub const SEEN: &str = "SELECT COUNT(*) FROM notifications WHERE kind = $1 AND event_id = $2";

/// Marks notification `$1` delivered.
pub const DELIVERED: &str = "UPDATE notifications SET delivered = 1 WHERE id = $1";

/// A notification row.
pub struct NotificationRow(pub Notification);

impl FromRow for NotificationRow {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        // Written from `NotificationKind::as_str` only; anything else is a corrupt row.
        let kind = serde_json::Value::String(row.text(2)?);
        let kind: NotificationKind = serde_json::from_value(kind).map_err(StoreError::Json)?;
        Ok(Self(Notification {
            id: row.text(0)?,
            user_id: row.text(1)?,
            kind,
            subject_line: row.text(3)?,
            body: row.text(4)?,
            event_id: row.text(5)?,
            order_id: row.opt_text(6)?,
            created_at: row.text(7)?,
            delivered: row.int(8)? != 0,
        }))
    }
}
