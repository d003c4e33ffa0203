//! `courier-testkit`: the one home of the helpers every crate's tests share: guards that start
//! real servers, a harness that runs a service, waiting, and the NATS micro schema check.
//!
//! - [`TestNats`]: a `nats-server` of the test's own on a free loopback port, stopped on drop.
//! - [`TestConsul`]: a `consul agent -dev` of the test's own on free loopback ports.
//! - [`TestCluster`]: three routed `nats-server` nodes with JetStream, for replicated streams
//!   and losing a node.
//! - [`ServiceThread`]: runs a service's future on a thread of its own in a fresh actix
//!   `System`, hands back what it reports once it serves, and stops and joins it.
//! - [`eventually`] (async) and [`poll_blocking`] (sync): wait for a condition with a deadline,
//!   instead of a bare sleep.
//! - [`http_get`]: a bare HTTP/1.0 GET, for readiness probes and admin endpoints.
//! - [`micro_schema`] — validates `$SRV` replies against the official schemas in
//!   `../shared/schemas/micro-v1/` (the `nats` CLI skips replies that fail them), falling back to
//!   our own check of the required fields where that folder is absent.
//!
//! Dev-only: depends on no Courier crate, so every crate's tests can use it (`courier-config`'s
//! and `courier-actors'` included). Helpers that speak Courier types therefore live with those
//! types, behind a `testing` feature that only `[dev-dependencies]` turn on: Consul test settings
//! and waiting for Consul to list instances or for a check's status are
//! `courier_discovery::testing`, built on the guard and the waits here.

pub mod cluster;
pub mod consul;
mod http;
pub mod micro_schema;
mod nats;
mod process;
pub mod service;
mod wait;

use std::path::PathBuf;

pub use cluster::TestCluster;
pub use consul::TestConsul;
pub use http::http_get;
pub use nats::{ops_config, ops_password, TestNats, OPS_PASSWORDS};
pub use process::{workspace_binaries, workspace_binary, Process};
pub use service::{ServiceThread, Started, Stop};
pub use wait::{eventually, poll_blocking};

/// The workspace root (the folder with the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Invariant: this crate lives one level below the workspace root.
    here.parent()
        .expect("testkit lives in the workspace")
        .to_owned()
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener
        .local_addr()
        .expect("bound listener has an address")
        .port()
}

/// Finds a tool: `$COURIER_<NAME>` (upper case, `-` as `_`), then the project's `.tools/bin`,
/// then `PATH`. Panics with the install command when it is nowhere.
pub fn tool(name: &str) -> PathBuf {
    let var = format!("COURIER_{}", name.to_ascii_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        return PathBuf::from(path);
    }
    let local = workspace_root().join(".tools/bin").join(name);
    if local.exists() {
        return local;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| panic!("{name} not found: run ops/install.sh (or set {var})"))
}
