//! The products service on the wire: each subject of `courier_contracts::products` served by
//! a [`Products`] method, and the HTTP route the gateway serves it at. Reads are public, the
//! catalogue's writes need role `admin`; `inventory.*` is for the orders saga only.

use courier_actors::{Methods, Route, Service, ServiceBuilder};
use courier_contracts::products::*;

use crate::products::{Products, ADMIN};

/// The service definition.
pub fn service(products: Products) -> ServiceBuilder {
    let m = Methods::per_thread(products);
    Service::builder("products", env!("CARGO_PKG_VERSION"))
        .description("The catalogue, and stock reserved for orders")
        .endpoint(
            m.serve("create", Products::create).route(
                Route::post("/products")
                    .role(ADMIN)
                    .status(201)
                    .schemas::<CreateProduct, Product>(),
            ),
        )
        .endpoint(
            m.serve("get", |p: Products, req, _| p.get(req))
                .route(Route::get("/products/{id}").schemas::<GetProduct, Product>()),
        )
        .endpoint(
            m.serve("list", |p: Products, req, _| p.list(req))
                .route(Route::get("/products").schemas::<ListProducts, ProductPage>()),
        )
        .endpoint(
            m.serve("update", Products::update).route(
                Route::patch("/products/{id}")
                    .role(ADMIN)
                    .schemas::<UpdateProduct, Product>(),
            ),
        )
        .endpoint(
            m.serve("delete", Products::delete).route(
                Route::delete("/products/{id}")
                    .role(ADMIN)
                    .status(204)
                    .schemas::<DeleteProduct, Deleted>(),
            ),
        )
        .endpoint(m.serve("reserve", |p: Products, req, _| p.reserve(req)))
        .endpoint(m.serve("release", |p: Products, req, _| p.release(req)))
}
