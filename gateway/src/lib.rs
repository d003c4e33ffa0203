//! `courier-gateway`: HTTP in front of every Courier service.
//!
//! A request goes: [`http`] (the listener, CORS) -> [`proxy`] (rate limit, in-flight cap,
//! route match, token check, body to one JSON object, deadline) -> [`forward`] (healthy
//! instance picked through discovery, MessagePack over NATS to its own subject, retries on
//! another instance within the deadline and a retry budget, the service's circuit breaker) ->
//! back to JSON, every failure through [`error`] to one JSON error shape.
//!
//! # Layout
//! - [`learn`] — which services exist (Consul's catalog), their healthy instances (a
//!   `Resolver` each) and the routes each version declares (its `$SRV.INFO`), as one snapshot.
//! - [`routes`] — the route table and matching (pure).
//! - [`auth`] — JWT: HS256, RS256, ES256; issuing at login, verifying on bearer routes.
//! - [`resilience`] — retry budget, circuit breakers, rate limit (pure).
//! - [`openapi`] — the OpenAPI 3.1 document of the live table.
//! - [`metrics`] — metric names and the one place that records them.
//! - [`config`] — settings.
//!
//! # Must not depend on
//! Any service crate: the gateway learns routes live and speaks to services through subjects
//! and the codec only. It uses `courier-runtime` for what every process shares (NATS
//! connection, telemetry, signals, `/metrics`), not for serving a service.

pub mod auth;
pub mod config;
pub mod error;
pub mod forward;
pub mod http;
pub mod learn;
pub mod metrics;
pub mod openapi;
pub mod proxy;
pub mod resilience;
pub mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use actix_web::web;
use anyhow::Context as _;
use courier_actors::{Client, Codec};
use courier_discovery::{Check, Consul, Registration, Strategy};

pub use config::Settings;

use crate::auth::Tokens;
use crate::config::StrategySetting;
use crate::forward::Forwarder;
use crate::learn::Directory;
use crate::proxy::Gateway;
use crate::resilience::RateLimiter;

/// The name the gateway registers under in Consul.
pub const SERVICE_NAME: &str = "gateway";
/// How long deregistering may take on the way out.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one `$SRV.INFO` may take (see [`learn`]).
const INFO_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the gateway until `shutdown` resolves; `on_start` gets the listener's address once it
/// serves. Then it deregisters, stops accepting, lets requests in flight finish and closes.
pub async fn run(
    settings: Settings,
    on_start: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let tokens = Tokens::from_settings(&settings.auth).context("loading the JWT keys")?;
    if tokens.is_none() {
        tracing::warn!(
            "No auth.jwt_secret or auth.jwt_public_key: login and bearer routes answer 503."
        );
    }
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::register(&registry).context("registering metrics")?;
    let events = courier_runtime::nats::NatsEvents::register(&registry)?;
    courier_runtime::metrics::build_info(&registry, SERVICE_NAME, env!("CARGO_PKG_VERSION"))?;
    let registered = courier_runtime::metrics::consul_registered(&registry)?;
    let nats = events
        .connect(&settings.nats, "courier-gateway", "main")
        .await?;
    let consul = Consul::new(&settings.consul)?;
    let info = Client::new(nats.clone(), INFO_TIMEOUT).with_codec(Codec::Json);
    let directory = Directory::watch(consul.clone(), info, static_routes(&settings));
    let gateway = web::Data::new(Gateway {
        directory: directory.clone(),
        forwarder: Forwarder::new(
            strategy(settings.gateway.strategy),
            settings.gateway.retry_budget,
            settings.gateway.attempt_timeout,
            metrics.clone(),
        ),
        tokens,
        metrics,
        limiter: (settings.gateway.rate_limit > 0)
            .then(|| RateLimiter::new(settings.gateway.rate_limit)),
        in_flight: AtomicUsize::new(0),
        settings: settings.gateway.clone(),
    });
    let readiness = http::Readiness { nats: nats.clone() };
    let worker_nats = http::WorkerNats {
        settings: settings.nats.clone(),
        events,
    };
    let listener = http::Listener::start(gateway, readiness, worker_nats, registry)
        .with_context(|| format!("listening on {}", settings.gateway.bind))?;
    tracing::info!(addr = %listener.addr, "Gateway listening.");
    let registration = registration(&settings, listener.addr);
    if settings.consul.register {
        match consul.register(&registration).await {
            Ok(()) => registered.set(1),
            Err(error) => tracing::warn!(%error, "Could not register in Consul; serving anyway."),
        }
    }
    on_start(listener.addr);

    shutdown.await;
    if settings.consul.register {
        registered.set(0);
        match tokio::time::timeout(LEAVE_TIMEOUT, consul.deregister(&registration.id)).await {
            Ok(Ok(())) => tracing::info!("Deregistered from Consul."),
            _ => tracing::warn!("Could not deregister from Consul; its check will fail."),
        }
    }
    listener.stop().await;
    directory.stop();
    let _ = nats.drain().await;
    tracing::info!("Gateway stopped.");
    Ok(())
}

/// The routes of the settings (checked when they were loaded), served by their subjects.
fn static_routes(settings: &Settings) -> Vec<routes::RouteEntry> {
    let statics = settings.gateway.routes.iter();
    let entries = statics.filter_map(|r| {
        let route = r.to_route().ok()?;
        Some(routes::RouteEntry {
            route,
            service: STATIC_SERVICE.to_owned(),
            endpoint: r.subject.replace('.', "_"),
            subject: r.subject.clone(),
            direct: true,
        })
    });
    entries.collect()
}

/// The service name of static routes in metrics, `/services` and breaker state.
pub const STATIC_SERVICE: &str = "static";

fn strategy(setting: StrategySetting) -> Strategy {
    match setting {
        StrategySetting::LeastInFlight => Strategy::LeastInFlight,
        StrategySetting::RoundRobin => Strategy::RoundRobin,
        StrategySetting::Random => Strategy::Random,
    }
}

/// The gateway in Consul: tags `courier` and `gateway` (so other gateways do not route to
/// it), checked on `/health/ready`.
fn registration(settings: &Settings, addr: SocketAddr) -> Registration {
    let id = format!("{SERVICE_NAME}-{}", courier_actors::Meta::root().request_id);
    let address = settings.consul.advertise_address.clone();
    let host = match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => address.clone(),
    };
    Registration {
        id: id.clone(),
        name: SERVICE_NAME.to_owned(),
        address,
        port: addr.port(),
        tags: vec![learn::SERVICE_TAG.to_owned(), learn::GATEWAY_TAG.to_owned()],
        meta: [("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())].into(),
        checks: vec![Check::Http {
            id: format!("{id}:ready"),
            name: "readiness (/health/ready)".to_owned(),
            url: format!("http://{host}:{}/health/ready", addr.port()),
            interval: settings.consul.check_interval,
            timeout: settings.consul.check_interval.min(Duration::from_secs(2)),
            deregister_critical_after: Some(settings.consul.deregister_critical_after),
        }],
    }
}
