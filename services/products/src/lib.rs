//! `courier-products`: the products service. The catalogue (`products.*`, public reads and
//! admin writes through the gateway) and stock reserved for orders all or nothing
//! (`inventory.*`, internal), in the service's own database. The wire is
//! `courier_contracts::products`.
//!
//! # Layout
//! - [`endpoints`] — the service definition: each subject served by a [`Products`] method,
//!   with its HTTP route.
//! - [`products`] — the logic, plain async methods; the domain rules (what a valid product
//!   is, how stock is reserved) and the domain error.
//! - [`store`] — the tables and their SQL.
//!
//! Depends on the kit (`courier-actors`, `courier-store`, `courier-runtime`) and
//! `courier-contracts`; never on another service.

pub mod endpoints;
pub mod products;
pub mod store;

use std::future::Future;

use courier_actors::DrainReport;
use courier_runtime::{Kit, Started};

pub use products::Products;

courier_runtime::service_settings! {
    /// Everything `courier-products` reads at start (see `courier_config` for the layers).
    pub struct Settings {
        database: "data/products.db",
        /// Paging.
        products: products::ProductsSettings,
    }
}

/// Opens the database, serves until `shutdown`, drains.
pub async fn run(
    settings: Settings,
    on_start: impl FnOnce(&Started<'_>),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<DrainReport> {
    let kit = Kit::open("courier-products", &settings, store::MIGRATIONS).await?;
    let products = Products::new(kit.db.clone(), &settings.products);
    let service = endpoints::service(products);
    Ok(kit.serve(service, &settings, on_start, shutdown).await?)
}
