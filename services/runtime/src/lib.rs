//! `courier-runtime`: what every Courier service binary shares, so a new service is its
//! domain and nothing else.
//!
//! - [`telemetry::init`] — `tracing` output as configured (`RUST_LOG` wins).
//! - [`connect_nats`] — one NATS connection, named, with connection events logged.
//! - [`shutdown_signal`] — resolves on SIGTERM or SIGINT.
//! - [`serve`] — starts a service, its admin listener ([`admin`]: `/health`, `/health/ready`,
//!   `/metrics`) and its Consul registration ([`heartbeat`]), waits for the shutdown future,
//!   then leaves in order: deregister, drain, stop. Tests call it with a future of their own.
//!
//! Must not depend on any service crate. Binaries call these; libraries receive built values.

pub mod admin;
pub mod heartbeat;
pub mod telemetry;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use actix::{Addr, AsyncContext};
use courier_actors::{DrainReport, Running, Service};
use courier_config::{AdminSettings, ConsulSettings, NatsSettings, ServiceSettings};
use courier_discovery::{Check, Consul, Registration};

use crate::admin::{Admin, Readiness};
use crate::heartbeat::{Heartbeat, Leave};

/// How long deregistering may take on the way out before the drain starts anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);

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

/// Connects to NATS as `client_name` (shown by `nats server report connections`).
pub async fn connect_nats(
    settings: &NatsSettings,
    client_name: &str,
) -> Result<async_nats::Client, RuntimeError> {
    let url = settings.url.clone();
    async_nats::ConnectOptions::new()
        .name(client_name)
        .connection_timeout(settings.connect_timeout)
        .request_timeout(Some(settings.request_timeout))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("NATS connected."),
                async_nats::Event::Disconnected => {
                    tracing::warn!("NATS disconnected; reconnecting.")
                }
                other => tracing::info!(event = %other, "NATS event."),
            }
        })
        .connect(url.as_str())
        .await
        .map_err(|source| RuntimeError::Connect { url, source })
}

/// Resolves when the process is asked to stop (SIGTERM or SIGINT), naming the signal.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    // Invariant: installing a handler only fails outside a Tokio runtime, and binaries call
    // this from inside one.
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Starts `service` with its admin listener and Consul registration, runs until `shutdown`
/// resolves, then leaves in order: deregister from Consul (so no new traffic is routed here),
/// drain within `service.drain_grace`, stop the admin listener, close the connection.
pub async fn serve(
    service: Service,
    nats: async_nats::Client,
    settings: RuntimeSettings<'_>,
    registry: &prometheus::Registry,
    on_start: impl FnOnce(&Started<'_>),
    shutdown: impl Future<Output = ()>,
) -> Result<DrainReport, RuntimeError> {
    let consul = Consul::new(settings.consul)?;
    let running = service
        .start(nats.clone(), settings.service, registry)
        .await?;
    let readiness = Readiness::new(nats.clone(), running.monitor());
    // The heartbeat needs the admin port for its HTTP check, and the listener needs the
    // heartbeat for liveness: bind first, then register.
    let heartbeat_ctx = actix::Context::<Heartbeat>::new();
    let heartbeat = heartbeat_ctx.address();
    let admin = Admin::start(
        &settings.admin.bind,
        readiness.clone(),
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
    ));
    on_start(&Started {
        running: &running,
        admin: admin.addr,
    });

    shutdown.await;
    readiness.start_draining();
    if settings.consul.register {
        leave(&heartbeat).await;
        // Callers watching Consul see the instance go within a blocking query's round trip;
        // until then they may still pick it and send to its own subject.
        tokio::time::sleep(settings.consul.leave_delay).await;
    }
    let report = running.stop(settings.service.drain_grace).await?;
    admin.stop().await;
    // Replies are flushed; close the connection so the server forgets us at once.
    if let Err(error) = nats.drain().await {
        tracing::debug!(%error, "NATS connection drain failed at exit.");
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
            url: format!("http://{address}:{port}/health/ready"),
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
