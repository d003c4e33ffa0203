//! `courier-runtime`: what every Courier service binary shares, so a new service is its
//! domain and nothing else.
//!
//! - [`telemetry::init`] — `tracing` output as configured (`RUST_LOG` wins), and OTLP export
//!   of every hop's span when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`nats::connect`] — the instance's NATS connections (a main and an intake, and a pair
//!   for each further worker), named, their events logged and counted.
//! - [`settings_or_exit`] — a binary's settings, or the one-line error and exit code 64.
//! - [`shutdown_signal`] — resolves on SIGTERM or SIGINT; a second one exits at once.
//! - [`serve`] — starts a service, its admin listener ([`admin`]: `/health`, `/health/ready`,
//!   `/metrics`) and its Consul registration ([`heartbeat`]), waits for the shutdown future,
//!   then leaves in order: deregister, drain, stop, each step bounded by one deadline. Tests
//!   call it with a future of their own.
//!
//! Must not depend on any service crate. Binaries call these; libraries receive built values.

pub mod admin;
pub mod heartbeat;
mod kit;
pub mod metrics;
pub mod nats;
mod settings;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use kit::{main, run_relay, Kit};
pub use settings::Common;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use actix::{Addr, AsyncContext};
use courier_actors::{Connections, DrainReport, Running, Service};
use courier_config::{AdminSettings, ConsulSettings, ServiceSettings};
use courier_discovery::{Check, Consul, Registration};
use courier_store::Database;

use crate::admin::{Admin, Readiness};
use crate::heartbeat::{Heartbeat, Leave};

/// How long deregistering may take on the way out before the drain starts anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the steps of a shutdown other than the drain itself may take together: deregistering,
/// the final flush, stopping the admin listener and closing the connections.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(8);

/// Exit code of a process stopped by a second signal while it was shutting down.
pub const EXIT_FORCED: i32 = 130;

/// What can stop a service from running.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// NATS could not be reached at start.
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// The configured URL.
        url: String,
        /// The client's error.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The admin listener could not bind.
    #[error("cannot listen on {bind} for /health and /metrics: {source}")]
    Admin {
        /// The configured address.
        bind: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Consul client could not be built from the settings.
    #[error(transparent)]
    Discovery(#[from] courier_discovery::DiscoveryError),
    /// The service failed to start or to drain.
    #[error(transparent)]
    Service(#[from] courier_actors::Error),
    /// The service's database could not be opened or migrated.
    #[error("the service's database: {0}")]
    Store(#[from] courier_store::StoreError),
    /// A metric could not be registered (a name registered twice in one registry).
    #[error("cannot register metrics: {0}")]
    Metrics(#[source] prometheus::Error),
}

/// The settings `serve` needs, borrowed from a service's own settings struct.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeSettings<'a> {
    /// In-flight limit, drain grace, queue group.
    pub service: &'a ServiceSettings,
    /// The admin listener.
    pub admin: &'a AdminSettings,
    /// Consul registration.
    pub consul: &'a ConsulSettings,
}

/// A running instance, as `serve` shows it to its `on_start` callback.
pub struct Started<'a> {
    /// The service instance.
    pub running: &'a Running,
    /// Where its admin listener listens.
    pub admin: SocketAddr,
}

/// A binary's settings from its environment (and the files it names), or the exit code to
/// return from `main` at once:
/// - bad settings: the one line naming the problem, printed as `<binary>: <error>`, and
///   [`courier_config::EXIT_CONFIG`];
/// - `--check-config`: the settings are loaded and validated as for a start, without
///   connecting to anything; `<binary>: settings ok` and success (deployment checks run it
///   with a manifest's environment);
/// - `--help`: what the binary reads, and success; any other argument: usage and
///   [`courier_config::EXIT_CONFIG`].
pub fn settings_or_exit<T>(binary: &str) -> Result<T, std::process::ExitCode>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Default + courier_config::Validate,
{
    use std::process::ExitCode;
    let usage = format!(
        "usage: {binary} [--check-config]\n\
         Settings come from COURIER_* variables (COURIER_<SECTION>__<KEY>), NATS_URL, \
         CONSUL_HTTP_ADDR, DATABASE_URL and the TOML files COURIER_CONFIG_DIR names; \
         --check-config validates them and exits."
    );
    let mut check = false;
    for arg in std::env::args_os().skip(1) {
        match arg.to_string_lossy().as_ref() {
            "--check-config" => check = true,
            "-h" | "--help" => {
                println!("{usage}");
                return Err(ExitCode::SUCCESS);
            }
            other => {
                eprintln!("{binary}: unknown argument {other:?}\n{usage}");
                return Err(ExitCode::from(courier_config::EXIT_CONFIG as u8));
            }
        }
    }
    let settings = courier_config::Loader::from_env(std::env::vars())
        .load()
        .map_err(|e| {
            eprintln!("{binary}: {e}");
            ExitCode::from(courier_config::EXIT_CONFIG as u8)
        })?;
    if check {
        println!("{binary}: settings ok");
        return Err(ExitCode::SUCCESS);
    }
    Ok(settings)
}

/// Resolves when the process is asked to stop (SIGTERM or SIGINT), naming the signal. From
/// then on a second SIGTERM or SIGINT exits the process at once with [`EXIT_FORCED`]: an
/// operator who asks twice gets no more waiting.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    // Invariant: installing a handler only fails outside a Tokio runtime, and binaries call
    // this from inside one.
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    let first = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tokio::spawn(async move {
        let second = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(
            signal = second,
            "Second signal while stopping: exiting now."
        );
        std::process::exit(EXIT_FORCED);
    });
    first
}

/// Starts `service` with its admin listener and Consul registration, runs until `shutdown`
/// resolves, then leaves in order: deregister from Consul (so no new traffic is routed here),
/// drain within `service.drain_grace`, stop the admin listener, close the connection.
///
/// With an `outbox`, its relay publishes the database's committed events as durable events
/// from start until the drain is over (so that the events of the last requests leave too),
/// before the connections close.
pub async fn serve(
    service: Service,
    nats: impl Into<Connections>,
    settings: RuntimeSettings<'_>,
    registry: &prometheus::Registry,
    outbox: Option<&Database>,
    on_start: impl FnOnce(&Started<'_>),
    shutdown: impl Future<Output = ()>,
) -> Result<DrainReport, RuntimeError> {
    let consul = Consul::new(settings.consul)?;
    let connections: Connections = nats.into();
    let running = service
        .start(connections.clone(), settings.service, registry)
        .await?;
    let identity = &running.info().identity;
    metrics::build_info(registry, &identity.name, &identity.version)?;
    let registered = metrics::consul_registered(registry)?;
    let relay = outbox.map(|db| kit::spawn_relay(db.clone(), connections.main.clone()));
    let readiness = Readiness::new(running.connections());
    // The heartbeat needs the admin port for its HTTP check, and the listener needs the
    // heartbeat for liveness: bind first, then register.
    let heartbeat_ctx = actix::Context::<Heartbeat>::new();
    let heartbeat = heartbeat_ctx.address();
    let admin = Admin::start(
        &settings.admin.bind,
        readiness.clone(),
        running.monitor(),
        registry.clone(),
        heartbeat.clone(),
    )
    .map_err(|source| RuntimeError::Admin {
        bind: settings.admin.bind.clone(),
        source,
    })?;
    tracing::info!(addr = %admin.addr, "Admin listener on /health, /health/ready, /metrics.");
    let registration = registration(&running, admin.addr.port(), settings.consul);
    let ttl_check = ttl_check_id(running.id());
    let tick = settings.consul.ttl / 3;
    heartbeat_ctx.run(Heartbeat::new(
        consul,
        registration,
        ttl_check,
        tick,
        settings.consul.register,
        registered,
    ));
    on_start(&Started {
        running: &running,
        admin: admin.addr,
    });

    shutdown.await;
    // The way out ends by one deadline even with NATS or Consul gone: leaving is bounded by
    // LEAVE_TIMEOUT, the drain by its grace plus a short flush, and closing gets what is left.
    let deadline = tokio::time::Instant::now()
        + settings.service.drain_grace
        + settings.consul.leave_delay
        + SHUTDOWN_MARGIN;
    readiness.start_draining();
    if settings.consul.register {
        leave(&heartbeat).await;
        // Callers watching Consul see the instance go within a blocking query's round trip;
        // until then they may still pick it and send to its own subject.
        tokio::time::sleep(settings.consul.leave_delay).await;
    }
    let report = running.stop(settings.service.drain_grace).await;
    let closed = tokio::time::timeout_at(deadline, async {
        if let Some(relay) = relay {
            relay.stop().await;
        }
        admin.stop().await;
        // Replies are flushed; close the connections so the server forgets us at once.
        for nats in [&connections.intake, &connections.main] {
            if let Err(error) = nats.drain().await {
                tracing::debug!(%error, "NATS connection drain failed at exit.");
            }
        }
    })
    .await;
    if closed.is_err() {
        tracing::warn!(
            "Closing the admin listener and NATS connections took too long; exiting anyway."
        );
    }
    Ok(report)
}

/// Deregisters, bounded by [`LEAVE_TIMEOUT`]; a failure is logged and the drain goes on.
async fn leave(heartbeat: &Addr<Heartbeat>) {
    match tokio::time::timeout(LEAVE_TIMEOUT, heartbeat.send(Leave)).await {
        Ok(Ok(Ok(()))) => tracing::info!("Deregistered from Consul."),
        Ok(Ok(Err(error))) => {
            tracing::warn!(%error, "Could not deregister from Consul; its checks will fail.")
        }
        Ok(Err(_)) | Err(_) => {
            tracing::warn!("Deregistering from Consul took too long; draining anyway.")
        }
    }
}

/// The id of the TTL check the heartbeat keeps passing.
pub fn ttl_check_id(instance_id: &str) -> String {
    format!("{instance_id}:actors")
}

/// The id of the HTTP check on `/health/ready`.
pub fn http_check_id(instance_id: &str) -> String {
    format!("{instance_id}:ready")
}

/// Consul's view of an instance: same name and id as its `$SRV` replies, the admin listener's
/// address, and what a caller needs to reach it over NATS in meta.
fn registration(running: &Running, port: u16, consul: &ConsulSettings) -> Registration {
    let info = running.info();
    let address = consul.advertise_address.clone();
    let check_url = format!("http://{}/health/ready", host_port(&address, port));
    let subjects: Vec<&str> = info.endpoints.iter().map(|e| e.subject.as_str()).collect();
    let meta = BTreeMap::from([
        ("version".to_owned(), info.identity.version.clone()),
        ("srv_id".to_owned(), info.identity.id.clone()),
        ("subjects".to_owned(), subjects.join(",")),
        (
            "instance_prefix".to_owned(),
            courier_actors::instance_subject(&info.identity.id, ""),
        ),
    ]);
    let checks = vec![
        Check::Http {
            id: http_check_id(&info.identity.id),
            name: "readiness (/health/ready)".to_owned(),
            url: check_url,
            interval: consul.check_interval,
            timeout: consul.check_interval.min(Duration::from_secs(2)),
            // Not ready (draining, saturated) is no reason to be forgotten: only a dead process,
            // whose heartbeat stops, is deregistered after a while.
            deregister_critical_after: None,
        },
        Check::Ttl {
            id: ttl_check_id(&info.identity.id),
            name: "actor system heartbeat".to_owned(),
            ttl: consul.ttl,
            deregister_critical_after: Some(consul.deregister_critical_after),
        },
    ];
    Registration {
        id: info.identity.id.clone(),
        name: info.identity.name.clone(),
        address,
        port,
        tags: vec!["courier".to_owned(), format!("v{}", info.identity.version)],
        meta,
        checks,
    }
}

/// `host:port` for a URL: an IPv6 address goes in brackets (`[::1]:9101`).
fn host_port(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn an_ipv6_address_is_bracketed_in_the_check_url() {
        assert_eq!(host_port("::1", 9101), "[::1]:9101");
        assert_eq!(host_port("fd00::2", 80), "[fd00::2]:80");
        assert_eq!(host_port("127.0.0.1", 9101), "127.0.0.1:9101");
        assert_eq!(host_port("users.local", 9101), "users.local:9101");
    }
}
