//! The notifications service on the wire: `courier_contracts::notifications`, and the events
//! it consumes, each bound to a [`Notifications`] method.
//!
//! | what                      | served by                          | HTTP / consumer                     |
//! |---------------------------|------------------------------------|-------------------------------------|
//! | `notifications.list`      | [`Notifications::list`]            | `GET /notifications`, bearer (own)  |
//! | `events.users.created`    | [`Notifications::welcome`]         | durable `notifications_welcome`     |
//! | `events.orders.confirmed` | [`Notifications::order_confirmed`] | durable `notifications_order_confirmed` |
//! | `events.orders.cancelled` | [`Notifications::order_cancelled`] | durable `notifications_order_cancelled` |
//!
//! An event that does not decode goes to `deadletter.notifications.<consumer>` at once; one
//! that fails on the database is delivered again (`events.backoff`, `events.max_deliver`).

use courier_actors::{Methods, Route, Service, ServiceBuilder};
use courier_contracts::notifications::{ListNotifications, NotificationPage};
use courier_contracts::orders::{Order, ORDER_CANCELLED, ORDER_CONFIRMED};
use courier_contracts::users::User;

use crate::notifications::{self as n, Notifications, SERVICE};

/// Subject of the users service's event for a new account (it carries the [`User`]).
pub const USER_CREATED: &str = "events.users.created";

/// The service definition.
pub fn service(notifications: Notifications) -> ServiceBuilder {
    let m = Methods::per_thread(notifications);
    Service::builder(SERVICE, env!("CARGO_PKG_VERSION"))
        .description("What users were told about their account and orders, mailed by SMTP")
        .endpoint(
            m.serve("list", Notifications::list).route(
                Route::get("/notifications")
                    .bearer()
                    .schemas::<ListNotifications, NotificationPage>(),
            ),
        )
        .durable(m.durable::<User, _, _>(n::WELCOME, USER_CREATED, Notifications::welcome))
        .durable(m.durable::<Order, _, _>(
            n::ORDER_CONFIRMED,
            ORDER_CONFIRMED,
            Notifications::order_confirmed,
        ))
        .durable(m.durable::<Order, _, _>(
            n::ORDER_CANCELLED,
            ORDER_CANCELLED,
            Notifications::order_cancelled,
        ))
}
