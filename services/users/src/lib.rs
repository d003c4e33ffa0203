//! `courier-users`: the users service. Accounts with argon2id password hashes, in the
//! service's own database (SQLite file by default, PostgreSQL when configured), served on
//! `users.*` and announcing changes on `events.users.*`.
//!
//! # Layout
//! - [`endpoints`] — the wire: request and reply types, the service definition (each
//!   endpoint a method of [`users::Users`], served by an actor per worker thread).
//! - [`users`] — the logic, plain async methods.
//! - [`domain`] — the `User`, input rules, the domain error and its wire mapping.
//! - [`store`] — the users table, its migrations and SQL (the rest is `courier-store`'s).
//! - [`fingerprint`] — what a write asked for, so that a reused request id is refused.
//! - [`hasher`] — argon2id on sync actors.
//! - [`config`] — settings.
//!
//! # Callers
//! The HTTP gateway checks each route's rule and sends the token's user along
//! (`Courier-Auth-Subject`, `Courier-Auth-Roles`; `Meta::caller`). With a caller, a request is
//! an end user's: `users.update` and `users.delete` are for the user themself or an `admin`
//! (403 otherwise), and `users.me` answers the caller's own user. A request without a caller
//! comes from inside the system over NATS, where permissions keep end users out, and is
//! trusted. Roles: a user created with an email in `users.admin_emails` is `admin`
//! ([`config::UsersSettings::admin_emails`]); roles are never changed through an endpoint.
//! See the table in [`endpoints`].
//!
//! `main.rs` loads the settings and calls [`run`]; tests call [`run`] with their own
//! shutdown future. Events (`events.users.created`, `events.users.deleted`) are written in
//! the write's transaction and published as durable events by the outbox relay.
//! Depends on `courier-actors`, `courier-store` and `courier-runtime`; never on another
//! service.

pub mod config;
pub mod domain;
pub mod endpoints;
pub mod fingerprint;
pub mod hasher;
pub mod store;
pub mod users;

use std::future::Future;

use anyhow::Context as _;
use courier_actors::DrainReport;
use courier_runtime::{Kit, Started};

pub use config::Settings;

/// Opens the database, starts the actors, serves until `shutdown`, drains.
/// `on_start` sees the running instance (its `$SRV` id, its admin address) once it serves.
pub async fn run(
    settings: Settings,
    on_start: impl FnOnce(&Started<'_>),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<DrainReport> {
    let kit = Kit::open("courier-users", &settings, store::MIGRATIONS)
        .await
        .context("starting the users service")?;
    let users = users::Users::from(users::Deps {
        store: store::Store::from(kit.db.clone()),
        hasher: hasher::HasherHandle::start(settings.users.hash_workers),
        max_page_size: settings.users.max_page_size,
        admin_emails: settings.users.normalized_admin_emails().into(),
    });
    let service = endpoints::service(users);
    Ok(kit.serve(service, &settings, on_start, shutdown).await?)
}
