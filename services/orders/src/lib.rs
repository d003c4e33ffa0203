//! `courier-orders`: the orders service. An order is taken (`orders.create`: the user checked
//! with the users service, the items priced by the products service), stored `pending`, and
//! run by a durable saga ([`saga`]) to `confirmed` (stock reserved, payment charged) or
//! `cancelled` (out of stock; or payment declined, then the stock released). The wire is
//! `courier_contracts::orders`; events `events.orders.created/confirmed/cancelled` leave
//! through the outbox.
//!
//! # Layout
//! - [`endpoints`] — the service definition and HTTP routes.
//! - [`orders`] — taking and reading orders; the domain error.
//! - [`saga`] — the saga: its steps, and the runner that drives every unfinished one.
//! - [`metrics`] — the saga's steps counted and timed, and the orders by state.
//! - [`store`] — the table and its SQL.
//!
//! Depends on the kit and `courier-contracts`; never on another service's crate: it calls
//! users, products and payments through their contracts.

pub mod endpoints;
pub mod metrics;
pub mod orders;
pub mod saga;
pub mod store;

use std::future::Future;

use courier_actors::DrainReport;
use courier_runtime::{Kit, Started};

pub use orders::Orders;

courier_runtime::service_settings! {
    /// Everything `courier-orders` reads at start (see `courier_config` for the layers).
    pub struct Settings {
        database: "data/orders.db",
        /// Paging and the saga's pace.
        orders: saga::OrdersSettings,
    }
}

/// Opens the database, starts the saga runner, serves until `shutdown`, drains.
pub async fn run(
    settings: Settings,
    on_start: impl FnOnce(&Started<'_>),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<DrainReport> {
    let mut kit = Kit::open("courier-orders", &settings, store::MIGRATIONS).await?;
    let saga_metrics = metrics::SagaMetrics::register(&kit.registry, "orders")?;
    let runner = saga::Runner::new(
        kit.db.clone(),
        kit.client.clone(),
        &settings.orders,
        saga_metrics.clone(),
    );
    let (db, every) = (kit.db.clone(), settings.orders.census_every);
    kit.spawn(move |stop| metrics::census(saga_metrics, db, every, stop));
    let orders = Orders::new(
        kit.db.clone(),
        kit.client.clone(),
        runner.waker(),
        &settings.orders,
    );
    kit.spawn(|stop| runner.run(stop));
    let service = endpoints::service(orders);
    Ok(kit.serve(service, &settings, on_start, shutdown).await?)
}
