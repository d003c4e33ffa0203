//! `courier-payments`: the payments service. Charges and refunds per order id against a
//! simulated provider, kept in the service's own database (SQLite file by default, PostgreSQL
//! when configured): a `payments` row per order and a `ledger` of charges and refunds, the
//! books from which each user's net charged total is read. Internal only: served on
//! `payments.*` over NATS (no HTTP route), publishing no events. The wire is
//! `courier_contracts::payments`, whose idempotency rules this crate implements.
//!
//! # Layout
//! - [`endpoints`] — the service definition: each contract type served by a [`Payments`] method.
//! - [`payments`] — the logic: charge, refund, get, and the simulated provider.
//! - [`domain`] — input rules, the decline rule, the domain error and its wire mapping.
//! - [`store`] — the tables, their migrations and SQL (the rest is `courier-store`'s).
//! - [`config`] — settings (`payments.user_limit`, `payments.latency`,
//!   `payments.fail_first_attempts`).
//!
//! `main.rs` loads the settings and calls [`run`]; tests call [`run`] with their own shutdown.
//!
//! # Must not depend on
//! Any other service crate: callers (the orders saga) reach it through `courier-contracts`
//! and NATS, and it reaches nobody. Depends on `courier-runtime`, `courier-actors`,
//! `courier-store` and `courier-contracts` only.

pub mod config;
pub mod domain;
pub mod endpoints;
pub mod payments;
pub mod store;

use std::future::Future;

use anyhow::Context as _;
use courier_actors::DrainReport;
use courier_runtime::{Kit, Started};

pub use config::Settings;
pub use payments::Payments;

/// Opens the database, serves the endpoints until `shutdown`, drains.
/// `on_start` sees the running instance (its `$SRV` id, its admin address) once it serves.
pub async fn run(
    settings: Settings,
    on_start: impl FnOnce(&Started<'_>),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<DrainReport> {
    let kit = Kit::open("courier-payments", &settings, store::MIGRATIONS)
        .await
        .context("starting the payments service")?;
    let payments = Payments::new(kit.db.clone(), &settings.payments);
    let service = endpoints::service(payments);
    Ok(kit.serve(service, &settings, on_start, shutdown).await?)
}
