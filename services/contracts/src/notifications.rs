//! The notifications service: what users were told, and when, about their account and their
//! orders. It consumes events and keeps one notification per event; mail goes out by SMTP
//! when configured.
//!
//! | subject              | HTTP (gateway)                         | request               | reply                |
//! |----------------------|----------------------------------------|-----------------------|----------------------|
//! | `notifications.list` | `GET /notifications`, bearer (own)     | [`ListNotifications`] | [`NotificationPage`] |
//!
//! Events consumed (durable, each handled once): `events.users.created` (a welcome),
//! `events.orders.confirmed` and `events.orders.cancelled` (to the order's user; the
//! cancellation says why).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fields::number_or_numeric_string;

/// `notifications.list`: the caller's notifications (or, from inside the system,
/// `user_id`'s), oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListNotifications {
    /// Whose notifications, for calls from inside the system; ignored when a caller is known.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Page size, 20 unless given.
    #[serde(default, deserialize_with = "number_or_numeric_string")]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(default)]
    pub after: Option<String>,
}

/// A page of notifications, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationPage {
    /// The notifications.
    pub notifications: Vec<Notification>,
    /// Pass as `after` for the next page; `null` on the last one.
    pub next: Option<String>,
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A new account (`events.users.created`).
    Welcome,
    /// An order was confirmed (`events.orders.confirmed`).
    OrderConfirmed,
    /// An order was cancelled (`events.orders.cancelled`).
    OrderCancelled,
}

impl NotificationKind {
    /// Its name on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Welcome => "welcome",
            Self::OrderConfirmed => "order_confirmed",
            Self::OrderCancelled => "order_cancelled",
        }
    }

    /// The kind named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Welcome, Self::OrderConfirmed, Self::OrderCancelled]
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// A notification, kept whether or not a mail went out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Notification {
    /// UUIDv7: sorts by creation time.
    pub id: String,
    /// Whom it is for.
    pub user_id: String,
    /// What it is about.
    pub kind: NotificationKind,
    /// The mail's subject line.
    pub subject_line: String,
    /// The mail's text.
    pub body: String,
    /// The id of the event it was made for (one notification per event).
    pub event_id: String,
    /// The order it is about, for order notifications.
    pub order_id: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Whether an SMTP server accepted the mail. `false` when no SMTP server is configured,
    /// or when sending failed (it is not tried again).
    pub delivered: bool,
}

crate::contract! {
    ListNotifications => NotificationPage, "notifications.list";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_the_names_they_are_written_as() {
        for kind in [
            NotificationKind::Welcome,
            NotificationKind::OrderConfirmed,
            NotificationKind::OrderCancelled,
        ] {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
            assert_eq!(NotificationKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(NotificationKind::parse("spam"), None);
    }
}
