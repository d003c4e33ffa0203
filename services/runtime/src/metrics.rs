//! The metrics every Courier process exports beside its own: what it is, and whether Consul
//! knows it. (Its NATS connections' are in [`crate::nats`].)

use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};

use crate::RuntimeError;

/// Metric name: always 1, labelled with the process's `service` and `version`, so a
/// dashboard can show which versions run and a query can join on them.
pub const BUILD_INFO: &str = "courier_build_info";
/// Metric name: 1 while the process's Consul registration stands, else 0 (not yet
/// registered, Consul away at start, refused, or left on the way out).
pub const CONSUL_REGISTERED: &str = "courier_consul_registered";

/// Registers `courier_build_info{service, version} 1` in `registry`.
pub fn build_info(registry: &Registry, service: &str, version: &str) -> Result<(), RuntimeError> {
    let info = IntGaugeVec::new(
        Opts::new(BUILD_INFO, "The process's service name and version."),
        &["service", "version"],
    )
    .map_err(RuntimeError::Metrics)?;
    info.with_label_values(&[service, version]).set(1);
    registry
        .register(Box::new(info))
        .map_err(RuntimeError::Metrics)
}

/// Registers `courier_consul_registered` in `registry`, at 0; its owner sets it.
pub fn consul_registered(registry: &Registry) -> Result<IntGauge, RuntimeError> {
    let gauge = IntGauge::new(
        CONSUL_REGISTERED,
        "Whether the process's Consul registration stands (1) or not (0).",
    )
    .map_err(RuntimeError::Metrics)?;
    registry
        .register(Box::new(gauge.clone()))
        .map_err(RuntimeError::Metrics)?;
    Ok(gauge)
}
