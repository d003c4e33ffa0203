//! `courier-users`: the users service. Accounts with argon2id password hashes, in the
//! service's own database (SQLite file by default, PostgreSQL when configured), served on
//! `users.*` and announcing changes on `events.users.*`.
//!
//! # Layout
//! - [`endpoints`] — the wire: request and reply types, the service definition.
//! - [`actor`] — the actor, one forwarding handler per request.
//! - [`users`] — the logic, plain async methods.
//! - [`domain`] — the `User`, input rules, the domain error and its wire mapping.
//! - [`store`] — the database and its migrations.
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
//! shutdown future. Depends on `courier-actors` and `courier-runtime`; never on another service.

pub mod actor;
pub mod config;
pub mod domain;
pub mod endpoints;
pub mod fingerprint;
pub mod hasher;
pub mod store;
pub mod users;

use std::future::Future;

use anyhow::Context as _;
use courier_actors::{Client, DrainReport, Supervised};
use courier_runtime::{RuntimeSettings, Started};

pub use config::Settings;

/// Opens the database, starts the actors, serves until `shutdown`, drains.
/// `on_start` sees the running instance (its `$SRV` id, its admin address) once it serves.
pub async fn run(
    settings: Settings,
    on_start: impl FnOnce(&Started<'_>),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<DrainReport> {
    let store = store::Store::connect(&settings.database)
        .await
        .context("opening the users database")?;
    let registry = prometheus::Registry::new();
    let nats = courier_runtime::nats::connect(&settings.nats, "courier-users", &registry).await?;
    let users = users::Users {
        store: store.clone(),
        hasher: hasher::HasherHandle::start(settings.users.hash_workers),
        events: Client::new(nats.main.clone(), settings.nats.request_timeout),
        max_page_size: settings.users.max_page_size,
        admin_emails: settings.users.normalized_admin_emails().into(),
    };
    let actor = Supervised::per_thread(move || actor::UsersActor(users.clone()));
    let service = endpoints::service(actor).build()?;
    let runtime = RuntimeSettings {
        service: &settings.service,
        admin: &settings.admin,
        consul: &settings.consul,
    };
    let report =
        courier_runtime::serve(service, nats, runtime, &registry, on_start, shutdown).await?;
    store.close().await;
    Ok(report)
}
