//! The admin listener every instance runs: `/health`, `/health/ready`, `/metrics`.
//!
//! It runs on actix-web's own worker thread, apart from the actors: so `/health` can tell a
//! wedged actor system (the liveness probe asks the heartbeat actor and times out) from a slow
//! one, and Consul's HTTP check keeps working while the service is busy.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::{web, App, HttpResponse, HttpServer};
use courier_actors::{Connections, Monitor};
use serde_json::json;

use crate::heartbeat::{Heartbeat, Ping};

/// How long `/health` waits for the actor system to answer.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(1);

/// What readiness is made of: connected, subscribed (the listener starts after the
/// subscriptions are), not draining. Load is not in it: an endpoint at its in-flight limit
/// answers fast 503s and callers pick less loaded instances, while an instance that turned
/// unready under load would leave the registry, and under uniform overload every instance
/// would leave at once. Cloned into every admin worker.
#[derive(Clone)]
pub struct Readiness {
    /// Every NATS connection the instance serves over, by the name its reason gives.
    connections: Arc<[(String, async_nats::Client)]>,
    draining: Arc<AtomicBool>,
}

impl Readiness {
    /// Each worker's `connections`, by worker ([`courier_actors::Running::connections`]).
    pub(crate) fn new(connections: &[Connections]) -> Self {
        let mut all = Vec::new();
        for (worker, pair) in connections.iter().enumerate() {
            let whose = match worker {
                0 => String::new(),
                n => format!("worker {n}'s "),
            };
            all.push((format!("{whose}main connection"), pair.main.clone()));
            all.push((format!("{whose}intake connection"), pair.intake.clone()));
        }
        Self {
            connections: all.into(),
            draining: Arc::default(),
        }
    }

    /// From now on the instance reports not ready (SIGTERM received).
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Why the instance is not ready; empty when it is.
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.draining.load(Ordering::Acquire) {
            reasons.push("draining: shutting down".to_owned());
        }
        for (name, nats) in self.connections.iter() {
            let state = nats.connection_state();
            if state != async_nats::connection::State::Connected {
                reasons.push(format!("NATS ({name}) is {state}"));
            }
        }
        reasons
    }
}

#[derive(Clone)]
struct State {
    readiness: Readiness,
    monitor: Monitor,
    registry: prometheus::Registry,
    heartbeat: Addr<Heartbeat>,
}

/// A started admin listener.
pub struct Admin {
    /// The address it listens on (port 0 in the settings becomes the real port here).
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl Admin {
    /// Binds `bind` and serves until [`Admin::stop`].
    pub(crate) fn start(
        bind: &str,
        readiness: Readiness,
        monitor: Monitor,
        registry: prometheus::Registry,
        heartbeat: Addr<Heartbeat>,
    ) -> std::io::Result<Self> {
        let state = State {
            readiness,
            monitor,
            registry,
            heartbeat,
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .route("/health", web::get().to(health))
                .route("/health/ready", web::get().to(ready))
                .route("/metrics", web::get().to(metrics))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(bind)?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("bound to no address"))?;
        let server = server.run();
        let handle = server.handle();
        actix::spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(%error, "Admin listener failed.");
            }
        });
        Ok(Self { addr, handle })
    }

    /// Stops listening.
    pub(crate) async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// Liveness: the actor system answers.
async fn health(state: web::Data<State>) -> HttpResponse {
    match tokio::time::timeout(LIVENESS_TIMEOUT, state.heartbeat.send(Ping)).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({ "status": "ok" })),
        _ => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "unresponsive", "reason": "the actor system did not answer" })),
    }
}

/// Readiness: NATS connected, endpoints subscribed (the listener starts after they are), not
/// draining. Load is reported, not judged.
async fn ready(state: web::Data<State>) -> HttpResponse {
    let reasons = state.readiness.reasons();
    if reasons.is_empty() {
        let monitor = &state.monitor;
        HttpResponse::Ok().json(json!({
            "status": "ready",
            "in_flight": monitor.in_flight(),
            "saturated": monitor.saturated(),
        }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not ready", "reasons": reasons }))
    }
}

/// Prometheus text exposition of the instance's registry.
async fn metrics(state: web::Data<State>) -> HttpResponse {
    render_metrics(&state.registry)
}

/// A `/metrics` response: the Prometheus text exposition of `registry` (the gateway serves its
/// own the same way).
pub fn render_metrics(registry: &prometheus::Registry) -> HttpResponse {
    match prometheus::TextEncoder::new().encode_to_string(&registry.gather()) {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(text),
        Err(error) => {
            tracing::error!(%error, "Metrics could not be encoded.");
            HttpResponse::InternalServerError().finish()
        }
    }
}
