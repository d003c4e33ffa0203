//! `courier-runtime`: what every Courier service binary shares, so a new service is its
//! domain and nothing else.
//!
//! - [`telemetry::init`] — `tracing` output as configured (`RUST_LOG` wins).
//! - [`connect_nats`] — one NATS connection, named, with connection events logged.
//! - [`shutdown_signal`] — resolves on SIGTERM or SIGINT.
//! - [`serve`] — starts a [`Service`], waits for the shutdown future, drains within the grace
//!   period. Tests call it with a future of their own instead of a signal.
//!
//! Must not depend on any service crate. Binaries call these; libraries receive built values.

pub mod telemetry;

use std::future::Future;

use courier_actors::service::DrainReport;
use courier_actors::{Running, Service};
use courier_config::{NatsSettings, ServiceSettings};

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
    /// The service failed to start or to drain.
    #[error(transparent)]
    Service(#[from] courier_actors::Error),
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

/// Starts `service` and runs it until `shutdown` resolves, then drains it within
/// `settings.drain_grace`. `on_start` sees the running instance once it serves (tests use it
/// to learn the instance id).
pub async fn serve(
    service: Service,
    nats: async_nats::Client,
    settings: &ServiceSettings,
    registry: &prometheus::Registry,
    on_start: impl FnOnce(&Running),
    shutdown: impl Future<Output = ()>,
) -> Result<DrainReport, RuntimeError> {
    let running = service.start(nats.clone(), settings, registry).await?;
    on_start(&running);
    shutdown.await;
    let report = running.stop(settings.drain_grace).await?;
    // Replies are flushed; close the connection so the server forgets us at once.
    if let Err(error) = nats.drain().await {
        tracing::debug!(%error, "NATS connection drain failed at exit.");
    }
    Ok(report)
}
