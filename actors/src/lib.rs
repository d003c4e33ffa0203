//! `courier-actors`: actix actors fed by NATS subjects.
//!
//! A service is a name, a semver version and a set of bindings, each from a subject to an actor:
//!
//! - **endpoints** (request-reply): a typed request [`Call`] arrives as [`Request<M>`] at an
//!   actor, a pool of actors, or a `SyncArbiter` for CPU-bound work ([`Supervised`]);
//! - **event subscriptions** (pub/sub, at most once): a typed event arrives as [`Event<E>`];
//! - **durable subscriptions** (JetStream, at least once): a typed event arrives as
//!   [`Delivery<E>`], is acknowledged when its handler returns `Ok`, retried with backoff or
//!   sent to the dead letters ([`durable`]).
//!
//! The [`bridge`](crate::service) is the only place that touches NATS messages. For every request
//! it reads the headers ([`Meta`]: request id, W3C `traceparent`, deadline), refuses work past
//! the in-flight limit (503 with `Retry-After-Ms`) or past its deadline (504), decodes the payload
//! with the request's [`Codec`] (JSON or MessagePack), sends it to the actor, and encodes the
//! reply or the [`ServiceError`] in the same codec with the NATS micro error headers. Every
//! service also answers `$SRV.PING|INFO|STATS` ([`micro`]), and its counters feed both
//! `$SRV.STATS` and Prometheus from one place ([`stats`]).
//!
//! [`Client`] is the other direction: typed calls to other services and event publishing, with
//! no-responders, time-outs and error headers turned into a [`CallError`].
//!
//! # Layout
//! - [`codec`] — JSON / MessagePack by `Content-Type` (pure).
//! - [`error`] — the wire error and the crate's error enums.
//! - [`meta`] — request id, trace context, time budget and cancellation (pure).
//! - [`message`] — `Call`, `Request<M>`, `Event<E>`: what actors see; `Request::serve` runs a
//!   handler's work until the bridge gives up on it.
//! - [`supervise`] — `Dispatch` and `Supervised`, actors that are restarted after a crash, in
//!   a fixed pool or one per worker thread.
//! - [`micro`] — the `$SRV` subjects and replies (pure).
//! - [`route`] — HTTP routes declared next to endpoints, carried in `$SRV.INFO` metadata for
//!   the gateway (pure; this crate serves no HTTP).
//! - [`stats`] — per-endpoint counters, in-flight limits and their Prometheus metrics.
//! - [`service`] — the builder, the bridge and event loops on their worker threads, drain.
//! - [`durable`] — JetStream streams, the [`Publisher`] of durable events, durable consumers
//!   bound to actors, dead letters.
//! - [`client`] — calls and events out.
//! - [`trace`] — the spans of each hop, for the exporter a process installs; a hop cancelled midway is recorded as such.
//!
//! # Must not depend on
//! Consul, HTTP, a database or any service crate. Domain actors never see NATS types: they
//! get `Request<M>` / `Event<E>` / `Delivery<E>` with a [`Meta`] to pass to outgoing calls.

pub mod client;
pub mod codec;
pub mod durable;
pub mod error;
pub mod message;
pub mod meta;
pub mod methods;
pub mod micro;
pub mod route;
pub mod service;
pub mod stats;
pub mod supervise;
pub mod trace;

pub use client::Client;
pub use codec::Codec;
pub use durable::{Delivery, DurableSubscription, EventError, OutgoingEvent, Publisher};
pub use error::{CallError, Error, ServiceError};
pub use message::{Call, Cancelled, Event, Request, Subject};
pub use meta::{Caller, Meta};
pub use methods::Methods;
pub use route::{Access, Method, Route};
pub use service::{
    instance_subject, Connections, DrainReport, Endpoint, Monitor, Running, Service,
    ServiceBuilder, Subscription,
};
pub use supervise::{Dispatch, Supervised};
