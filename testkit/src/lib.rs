//! `courier-testkit`: guards that start real servers for tests, and the NATS micro schema check.
//!
//! - [`TestNats`]: a `nats-server` of the test's own on a free loopback port, stopped on drop.
//! - [`TestConsul`]: a `consul agent -dev` of the test's own on free loopback ports.
//! - [`micro_schema`] — validates `$SRV` replies against the official schemas in
//!   `../shared/schemas/micro-v1/` (the `nats` CLI skips replies that fail them), falling back to
//!   our own check of the required fields where that folder is absent.
//! - [`eventually`] — waits for a condition with a deadline, instead of a bare sleep.
//!
//! Dev-only: depends on no Courier crate, so every crate's tests can use it.

pub mod consul;
pub mod micro_schema;
mod nats;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use consul::TestConsul;
pub use nats::TestNats;

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

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
