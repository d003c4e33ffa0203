//! `courier-contracts`: what the Courier services say to each other and to their callers,
//! the Rust way of the seed's `libs/common` DTOs. Each request type names its subject and
//! reply ([`courier_actors::Subject`], [`courier_actors::Call`]): a service serves it with
//! `Methods::serve`, another calls it with `Client::send`, neither depending on the other's
//! crate. Errors cross as [`courier_actors::ServiceError`] (code, message, details).
//!
//! Types are plain data with JSON Schemas (for the gateway's OpenAPI document) and no logic
//! beyond decoding. Must not depend on any service crate, a database or NATS.

pub mod fields;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod products;
pub mod users;

/// Declares request types: each one's subject and reply, errors as `ServiceError`.
///
/// ```ignore
/// contract! { GetProduct => Product, "products.get" }
/// ```
#[macro_export]
macro_rules! contract {
    ($( $request:ty => $reply:ty, $subject:literal );+ $(;)?) => {
        $(
            impl courier_actors::Call for $request {
                type Reply = $reply;
                type Error = courier_actors::ServiceError;
            }
            impl courier_actors::Subject for $request {
                const SUBJECT: &'static str = $subject;
            }
        )+
    };
}
