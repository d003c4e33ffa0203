//! The notifications logic: one notification per event, stored once and mailed once, and the
//! list of a user's notifications; the domain error and its wire codes.
//!
//! An event is handled in three steps. (1) Its id is claimed for the consumer and the
//! notification inserted in one transaction ([`Database::claim_event`]): a redelivered event
//! finds the claim and is acknowledged with no second row. (2) Only the handler that inserted
//! the row mails it, after the commit (an order's user's address is asked of the users
//! service then). (3) Once the SMTP server accepted the mail, the row is marked `delivered`.
//! A mail that fails is logged and counted and never tried again: the notification stays,
//! with `delivered = false`. So a notification is never lost and never mailed twice; the
//! price is that a mail cut short (SMTP down, the users service unreachable, the handler's
//! time limit) is not sent at all.

use courier_actors::durable::EventError;
use courier_actors::{Cancelled, Client, Meta, ServiceError};
use courier_contracts::notifications::*;
use courier_contracts::orders::Order;
use courier_contracts::users::{GetUser, User};
use courier_store::{Database, StoreError};
use serde_json::json;

use crate::mailer::{MailCounter, Mailer};
use crate::store::{self, NotificationRow};
use crate::{config::NotificationsSettings, messages};

/// Why a notifications request failed.
#[derive(Debug, thiserror::Error)]
pub enum NotificationsError {
    /// A field breaks a rule.
    #[error("{field} {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The database failed, or the deadline passed (the kit's wire codes: 500, 504).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Cancelled> for NotificationsError {
    fn from(_: Cancelled) -> Self {
        Self::Store(StoreError::DeadlinePassed)
    }
}

impl From<NotificationsError> for ServiceError {
    fn from(e: NotificationsError) -> Self {
        let message = e.to_string();
        match e {
            NotificationsError::Invalid { field, .. } => {
                ServiceError::bad_request(message).with_details(json!({ "field": field }))
            }
            NotificationsError::Store(e) => e.into(),
        }
    }
}

/// The service's name: its durable consumers are `notifications_<subscription name>`.
pub const SERVICE: &str = "notifications";
/// The subscription to `events.users.created`.
pub const WELCOME: &str = "welcome";
/// The subscription to `events.orders.confirmed`.
pub const ORDER_CONFIRMED: &str = "order_confirmed";
/// The subscription to `events.orders.cancelled`.
pub const ORDER_CANCELLED: &str = "order_cancelled";

/// The durable consumer of subscription `name` (as the kit names it), which is also the key
/// its events are claimed under.
pub fn consumer(name: &str) -> String {
    format!("{SERVICE}_{name}")
}

/// Where a notification's mail goes: a known address, or a user to look up.
enum Recipient {
    Address(String),
    User,
}

/// The service's state. Cheap to clone.
#[derive(Clone)]
pub struct Notifications {
    db: Database,
    client: Client,
    mailer: Option<Mailer>,
    mails: MailCounter,
    max_page_size: u32,
}

impl Notifications {
    /// The logic over `db`, asking the users service for addresses with `client`, mailing
    /// with `mailer` (none: stored only).
    pub fn new(
        db: Database,
        client: Client,
        mailer: Option<Mailer>,
        mails: MailCounter,
        settings: &NotificationsSettings,
    ) -> Self {
        let max_page_size = settings.max_page_size;
        Self {
            db,
            client,
            mailer,
            mails,
            max_page_size,
        }
    }

    /// `events.users.created`: a welcome for the new user, at the address the event carries.
    pub async fn welcome(self, user: User, event_id: String, meta: Meta) -> Result<(), EventError> {
        let welcome = messages::welcome(&user, &event_id);
        let to = Recipient::Address(user.email);
        self.handle(WELCOME, welcome, to, &meta).await
    }

    /// `events.orders.confirmed`: the news for the order's user.
    pub async fn order_confirmed(
        self,
        order: Order,
        event_id: String,
        meta: Meta,
    ) -> Result<(), EventError> {
        let news = messages::order_confirmed(&order, &event_id);
        self.handle(ORDER_CONFIRMED, news, Recipient::User, &meta)
            .await
    }

    /// `events.orders.cancelled`: the news, and why, for the order's user.
    pub async fn order_cancelled(
        self,
        order: Order,
        event_id: String,
        meta: Meta,
    ) -> Result<(), EventError> {
        let news = messages::order_cancelled(&order, &event_id);
        self.handle(ORDER_CANCELLED, news, Recipient::User, &meta)
            .await
    }

    /// Stores `notification` once per event for subscription `name`, then mails it if this
    /// call stored it.
    async fn handle(
        &self,
        name: &str,
        notification: Notification,
        to: Recipient,
        meta: &Meta,
    ) -> Result<(), EventError> {
        let consumer = consumer(name);
        if !self.keep(&consumer, &notification).await.map_err(retry)? {
            let event_id = &notification.event_id;
            tracing::debug!(%consumer, %event_id, "Event handled before; not again.");
            return Ok(());
        }
        if let Some(mailer) = &self.mailer {
            self.mail(mailer, &notification, to, meta).await;
        }
        Ok(())
    }

    /// Claims the event and inserts the notification in one transaction; `false` when the
    /// event was handled before.
    async fn keep(&self, consumer: &str, n: &Notification) -> Result<bool, StoreError> {
        let Some(mut write) = self.db.claim_event(consumer, &n.event_id).await? else {
            return Ok(false);
        };
        write
            .execute(&store::insert(), &store::insert_params(n))
            .await?;
        write.commit().await?;
        Ok(true)
    }

    /// Mails a stored notification and marks it delivered; a failure is logged and counted.
    async fn mail(&self, mailer: &Mailer, n: &Notification, to: Recipient, meta: &Meta) {
        let address = match to {
            Recipient::Address(address) => address,
            Recipient::User => match self.address(&n.user_id, meta).await {
                Some(address) => address,
                None => return self.mails.count("no_address"),
            },
        };
        if let Err(e) = mailer.send(&address, n).await {
            tracing::warn!(id = %n.id, error = %e, "Notification not mailed; kept undelivered.");
            return self.mails.count("failed");
        }
        self.mails.count("sent");
        let marked = async {
            let mut write = self.db.begin().await?;
            write
                .execute(store::DELIVERED, &[n.id.as_str().into()])
                .await?;
            write.commit().await
        };
        if let Err(e) = marked.await {
            tracing::error!(id = %n.id, error = %e, "Notification mailed but not marked delivered.");
        }
    }

    /// The user's address, from the users service.
    async fn address(&self, user_id: &str, meta: &Meta) -> Option<String> {
        let get = GetUser {
            id: user_id.to_owned(),
        };
        match self.client.send(&get, meta).await {
            Ok(user) => Some(user.email),
            Err(e) => {
                tracing::warn!(%user_id, error = %e, "No address for a notification; not mailed.");
                None
            }
        }
    }

    /// The caller's notifications (or `user_id`'s, from inside the system), oldest first.
    pub async fn list(
        self,
        req: ListNotifications,
        meta: Meta,
    ) -> Result<NotificationPage, NotificationsError> {
        let user_id = whose(&meta, req.user_id.as_deref())?;
        let limit = req.limit.unwrap_or(20);
        if limit == 0 || limit > self.max_page_size {
            let reason = format!("must be between 1 and {}", self.max_page_size);
            return Err(NotificationsError::Invalid {
                field: "limit",
                reason,
            });
        }
        let after = req.after.as_deref().unwrap_or("");
        let params = [user_id.as_str().into(), after.into(), (limit + 1).into()];
        let mut rows: Vec<NotificationRow> = self.db.all(&store::list(), &params).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = more.then(|| rows.last().map(|r| r.0.id.clone())).flatten();
        Ok(NotificationPage {
            notifications: rows.into_iter().map(|r| r.0).collect(),
            next,
        })
    }
}

/// A database failure while handling an event: deliver it again later.
fn retry(e: StoreError) -> EventError {
    EventError::Retry(format!("database: {e}"))
}

/// Whose notifications: the caller's (through the gateway), or `user_id` from inside.
fn whose(meta: &Meta, user_id: Option<&str>) -> Result<String, NotificationsError> {
    match (&meta.caller, user_id) {
        (Some(caller), _) => Ok(caller.subject.clone()),
        (None, Some(id)) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        (None, _) => Err(NotificationsError::Invalid {
            field: "user_id",
            reason: "is needed from inside the system (through the gateway, the token's user)"
                .into(),
        }),
    }
}
