//! The orders service on the wire: `courier_contracts::orders`, each subject served by an
//! [`Orders`] method, with its HTTP route. Every route needs a token; an order is its
//! owner's (or an `admin`'s) to read.

use courier_actors::{Methods, Route, Service, ServiceBuilder};
use courier_contracts::orders::*;

use crate::orders::Orders;

/// The service definition.
pub fn service(orders: Orders) -> ServiceBuilder {
    let m = Methods::per_thread(orders);
    Service::builder("orders", env!("CARGO_PKG_VERSION"))
        .description("Orders, each run to confirmed or cancelled by a durable saga")
        .endpoint(
            m.serve("create", Orders::create).route(
                Route::post("/orders")
                    .bearer()
                    .status(202)
                    .schemas::<CreateOrder, Order>(),
            ),
        )
        .endpoint(
            m.serve("get", Orders::get).route(
                Route::get("/orders/{id}")
                    .bearer()
                    .schemas::<GetOrder, Order>(),
            ),
        )
        .endpoint(
            m.serve("list", Orders::list).route(
                Route::get("/orders")
                    .bearer()
                    .schemas::<ListOrders, OrderPage>(),
            ),
        )
}
