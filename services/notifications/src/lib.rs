//! `courier-notifications`: the notifications service. It consumes `events.users.created`
//! (a welcome) and `events.orders.confirmed` / `events.orders.cancelled` (news for the order's
//! user), keeps one notification per event in its own database, mails it by SMTP when
//! `notifications.smtp_url` is set, and serves `notifications.list` (`GET /notifications`).
//! The wire is `courier_contracts::notifications`.
//!
//! # Layout
//! - [`endpoints`] — the service definition: the endpoint and the durable subscriptions.
//! - [`notifications`] — the logic: store once, mail once, list; the domain error.
//! - [`messages`] — what each notification says (pure).
//! - [`mailer`] — SMTP (lettre) and the mail counter.
//! - [`config`] — the `notifications` settings.
//! - [`store`] — the table and its SQL.
//!
//! Depends on the kit and `courier-contracts`; never on another service's crate: it asks the
//! users service for an order's user's address through its contract.

pub mod config;
pub mod endpoints;
pub mod mailer;
pub mod messages;
pub mod notifications;
pub mod store;

use std::future::Future;

use courier_actors::DrainReport;
use courier_runtime::{Kit, Started};

pub use notifications::Notifications;

courier_runtime::service_settings! {
    /// Everything `courier-notifications` reads at start (see `courier_config` for the layers).
    pub struct Settings {
        database: "data/notifications.db",
        /// SMTP, the sender, paging.
        notifications: config::NotificationsSettings,
    }
}

/// Opens the database, serves until `shutdown`, drains.
pub async fn run(
    settings: Settings,
    on_start: impl FnOnce(&Started<'_>),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<DrainReport> {
    let kit = Kit::open("courier-notifications", &settings, store::MIGRATIONS).await?;
    let mails = mailer::MailCounter::register(&kit.registry)?;
    let mailer = mailer::Mailer::new(&settings.notifications)?;
    if mailer.is_none() {
        tracing::info!("No notifications.smtp_url: notifications are stored, not mailed.");
    }
    let notifications = Notifications::new(
        kit.db.clone(),
        kit.client.clone(),
        mailer,
        mails,
        &settings.notifications,
    );
    let service = endpoints::service(notifications);
    Ok(kit.serve(service, &settings, on_start, shutdown).await?)
}
