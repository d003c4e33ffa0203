//! The products service: the catalogue (`products.*`) and stock reservations for orders
//! (`inventory.*`).
//!
//! | subject             | HTTP (gateway)                      | request             | reply           |
//! |---------------------|-------------------------------------|---------------------|-----------------|
//! | `products.create`   | `POST /products`, admin, 201        | [`CreateProduct`]   | [`Product`]     |
//! | `products.get`      | `GET /products/{id}`, public        | [`GetProduct`]      | [`Product`]     |
//! | `products.list`     | `GET /products?limit&after`, public | [`ListProducts`]    | [`ProductPage`] |
//! | `products.update`   | `PATCH /products/{id}`, admin       | [`UpdateProduct`]   | [`Product`]     |
//! | `products.delete`   | `DELETE /products/{id}`, admin, 204 | [`DeleteProduct`]   | [`Deleted`]     |
//! | `inventory.reserve` | none (internal)                     | [`Reserve`]         | [`Reservation`] |
//! | `inventory.release` | none (internal)                     | [`Release`]         | [`Reservation`] |
//!
//! Reservations are idempotent per order id: a reserve repeated for an order gets the same
//! reservation, all or nothing (409 `insufficient stock`, with the short items in `details`,
//! and nothing reserved); a release puts the stock back once, and a release that comes
//! before its reserve (a saga compensating a reserve whose answer it never saw) closes the
//! order id, so that the late reserve is refused (409) instead of taking stock nobody frees.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fields::number_or_numeric_string;

/// A product of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Product {
    /// UUIDv7.
    pub id: String,
    /// 1 to 200 characters.
    pub name: String,
    /// Up to 2000 characters.
    pub description: String,
    /// Unit price in minor units of `currency` (cents).
    pub price: i64,
    /// ISO 4217 code, upper case (`EUR`).
    pub currency: String,
    /// Units available to reserve.
    pub stock: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// `products.create`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    /// 1 to 200 characters.
    pub name: String,
    /// Up to 2000 characters; empty unless given.
    #[serde(default)]
    pub description: String,
    /// Unit price in minor units, 0 or more.
    pub price: i64,
    /// ISO 4217 code (`EUR`).
    pub currency: String,
    /// Units in stock, 0 or more.
    pub stock: i64,
}

/// `products.get`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetProduct {
    /// The product's id.
    pub id: String,
}

/// `products.list`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListProducts {
    /// Page size, 20 unless given: a number, or a string of one.
    #[serde(default, deserialize_with = "number_or_numeric_string")]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(default)]
    pub after: Option<String>,
}

/// A page of products, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductPage {
    /// The products.
    pub products: Vec<Product>,
    /// Pass as `after` for the next page; `null` on the last one.
    pub next: Option<String>,
}

/// `products.update`: the fields given change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    /// The product's id.
    pub id: String,
    /// A new name.
    #[serde(default)]
    pub name: Option<String>,
    /// A new description.
    #[serde(default)]
    pub description: Option<String>,
    /// A new unit price.
    #[serde(default)]
    pub price: Option<i64>,
    /// A new currency.
    #[serde(default)]
    pub currency: Option<String>,
    /// A new stock level (restocking).
    #[serde(default)]
    pub stock: Option<i64>,
}

/// `products.delete`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteProduct {
    /// The product's id.
    pub id: String,
}

/// The reply of `products.delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Deleted {
    /// The id that was deleted.
    pub id: String,
}

/// A quantity of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// The product's id.
    pub product_id: String,
    /// Units, 1 or more.
    pub quantity: i64,
}

/// `inventory.reserve`: every item or none, for one order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reserve {
    /// The order the stock is held for: the idempotency key.
    pub order_id: String,
    /// 1 to 100 items, each product once.
    pub items: Vec<Item>,
}

/// `inventory.release`: gives an order's reserved stock back.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The order.
    pub order_id: String,
}

/// Where an order's reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// The stock is held for the order.
    Reserved,
    /// The stock was given back, or never taken (released before any reserve).
    Released,
}

/// An order's reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reservation {
    /// The order.
    pub order_id: String,
    /// Reserved or released.
    pub state: ReservationState,
    /// What is (or was) held.
    pub items: Vec<Item>,
}

crate::contract! {
    CreateProduct => Product, "products.create";
    GetProduct => Product, "products.get";
    ListProducts => ProductPage, "products.list";
    UpdateProduct => Product, "products.update";
    DeleteProduct => Deleted, "products.delete";
    Reserve => Reservation, "inventory.reserve";
    Release => Reservation, "inventory.release";
}
