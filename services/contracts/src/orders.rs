//! The orders service: orders of a user, each run to `confirmed` or `cancelled` by a durable
//! saga (reserve stock, charge, confirm; or release and cancel).
//!
//! | subject         | HTTP (gateway)                   | request         | reply         |
//! |-----------------|----------------------------------|-----------------|---------------|
//! | `orders.create` | `POST /orders`, bearer, 202      | [`CreateOrder`] | [`Order`]     |
//! | `orders.get`    | `GET /orders/{id}`, owner or admin | [`GetOrder`]  | [`Order`]     |
//! | `orders.list`   | `GET /orders`, bearer (own)      | [`ListOrders`]  | [`OrderPage`] |
//!
//! Events, each with the [`Order`] as it stands: `events.orders.created`,
//! `events.orders.confirmed`, `events.orders.cancelled`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fields::number_or_numeric_string;
use crate::products::Item;

/// Subject of the event sent when an order is taken (state `pending`).
pub const ORDER_CREATED: &str = "events.orders.created";
/// Subject of the event sent when an order is confirmed (stock held, payment taken).
pub const ORDER_CONFIRMED: &str = "events.orders.confirmed";
/// Subject of the event sent when an order is cancelled (`reason` says why).
pub const ORDER_CANCELLED: &str = "events.orders.cancelled";

/// `orders.create`: an order for the caller (through the gateway) or, from inside the
/// system, for `user_id`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    /// 1 to 100 items, each product once.
    pub items: Vec<Item>,
    /// The user ordering, for calls from inside the system; ignored when a caller is known.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// `orders.get`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetOrder {
    /// The order's id.
    pub id: String,
}

/// `orders.list`: the caller's orders (or, from inside the system, `user_id`'s).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListOrders {
    /// Whose orders, for calls from inside the system.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Page size, 20 unless given.
    #[serde(default, deserialize_with = "number_or_numeric_string")]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(default)]
    pub after: Option<String>,
}

/// A page of orders, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPage {
    /// The orders.
    pub orders: Vec<Order>,
    /// Pass as `after` for the next page; `null` on the last one.
    pub next: Option<String>,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Taken; its saga is running.
    Pending,
    /// Stock held and payment taken.
    Confirmed,
    /// Not possible (stock, payment); nothing held, nothing charged. `reason` says why.
    Cancelled,
}

/// One line of an order, priced when the order was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    /// The product.
    pub product_id: String,
    /// Units.
    pub quantity: i64,
    /// Unit price, minor units.
    pub price: i64,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Order {
    /// UUIDv7.
    pub id: String,
    /// Who ordered.
    pub user_id: String,
    /// What, at what price.
    pub lines: Vec<OrderLine>,
    /// Sum of the lines, minor units.
    pub total: i64,
    /// ISO 4217 code of every line.
    pub currency: String,
    /// Pending, confirmed or cancelled.
    pub state: OrderState,
    /// Why it was cancelled.
    pub reason: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

crate::contract! {
    CreateOrder => Order, "orders.create";
    GetOrder => Order, "orders.get";
    ListOrders => OrderPage, "orders.list";
}
