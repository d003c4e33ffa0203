//! `courier-discovery`: registration with the local Consul agent, and resolution of the healthy
//! instances of a service, kept current by a watch.
//!
//! # Layout
//!
//! - [`client`]: [`Consul`], a typed client of the agent's HTTP API for the calls Courier makes
//!   (register, deregister, TTL updates, healthy instances with blocking queries, checks, leader
//!   status), with a time-out on every call and the ACL token in `X-Consul-Token`.
//! - [`registration`]: [`Registration`] and [`Check`] (HTTP and TTL), serialized to Consul's
//!   JSON exactly, durations as Go duration strings (`"2s"`, `"1500ms"`).
//! - [`resolver`]: [`Resolver`], a watch task with a last-known-good cache that keeps serving
//!   while Consul is unreachable and announces [`Update`]s; [`Strategy`] and [`Pick`] to choose an
//!   instance (round robin, random, least in flight); [`Discovery`] for the same pick over
//!   Consul or a fixed list.
//! - [`error`]: [`DiscoveryError`], one enum for every failure. A Consul that answers 5xx, or
//!   not at all, is an error value, never a panic.
//! - `testing` (feature `testing`, for tests only): Consul test settings and waiting for the
//!   agent to list instances or for a check's status, shared by the tests of every crate.
//!
//! # Why our own thin client
//!
//! A service must register through the *agent* API (`/v1/agent/service/register`): the agent
//! then owns the instance, runs its checks and keeps the catalog in sync. No maintained Rust
//! crate does that: they register through the catalog API (`/v1/catalog/register`), and an
//! entry put there for a node that has an agent is removed by that agent's anti-entropy within
//! about a minute. The part of the API we use is small and stable, so a typed client of a few
//! hundred lines over `reqwest` costs less than working around a crate.
//!
//! # What it must not depend on
//!
//! No NATS, no actix, no HTTP server: only `courier-config`, `reqwest` (a plain-HTTP client),
//! `serde`, `tokio`, `tracing`, `thiserror` and `rand`. The runtime registers with it and the
//! gateway resolves with it; this crate knows neither. The `testing` feature adds
//! `courier-testkit`; only `[dev-dependencies]` turn it on.

pub mod client;
pub mod error;
pub mod registration;
pub mod resolver;
#[cfg(feature = "testing")]
pub mod testing;
mod wire;

pub use client::{CheckStatus, Consul};
pub use error::DiscoveryError;
pub use registration::{go_duration, Check, Registration};
pub use resolver::{
    Discovery, Instance, Pick, Resolver, StaticInstances, Strategy, Update, DEFAULT_WAIT,
};
