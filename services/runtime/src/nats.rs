//! The instance's NATS connections (a main and an intake, and a pair for each further worker),
//! with their events logged and counted.
//!
//! `main` carries replies, `$SRV`, calls and events out; `intake` receives requests and events
//! (see [`courier_actors::Connections`] for why they are apart). Every connection event is
//! counted in `courier_nats_events_total{connection, event}`, so a client that keeps knocking
//! the intake off the bus (a message async-nats cannot parse drops the connection it arrives
//! on) shows as a climbing `disconnected` count on `/metrics`. `courier_nats_connected{connection}`
//! says how many of them are connected now: a `main` and an `intake` for each worker of the
//! service, whose further workers have a pair of their own (so a request and its reply stay
//! on the thread that handles it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_nats::{Client, ConnectError, ConnectOptions, Event};
use courier_actors::Connections;
use courier_config::{redact_url, NatsCredentials, NatsSettings};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::RuntimeError;

/// Metric name: NATS connection events by connection (`main`, `intake`) and event.
pub const NATS_EVENTS: &str = "courier_nats_events_total";
/// Metric name: the process's NATS connections connected now, by connection.
pub const NATS_CONNECTED: &str = "courier_nats_connected";

/// Connects `main` as `client_name` and `intake` as `<client_name>-intake` (the names `nats
/// server report connections` shows), counting their events in `registry`. Each further worker
/// of the service opens a pair of its own the same way, named `<client_name>-<worker>` and
/// `<client_name>-<worker>-intake` ([`Connections::per_worker`]).
pub async fn connect(
    settings: &NatsSettings,
    client_name: &str,
    registry: &Registry,
) -> Result<Connections, RuntimeError> {
    let events = NatsEvents::register(registry)?;
    let (main, intake) = events
        .connect_pair(settings, client_name)
        .await
        .map_err(|source| connect_failed(settings, source))?;
    let (settings, client_name) = (settings.clone(), client_name.to_owned());
    Ok(Connections::new(main, intake).per_worker(move |worker| {
        let (events, settings) = (events.clone(), settings.clone());
        let name = format!("{client_name}-{worker}");
        async move {
            let (main, intake) = events.connect_pair(&settings, &name).await?;
            Ok(Connections::new(main, intake))
        }
    }))
}

/// The `courier_nats_events_total` counter and `courier_nats_connected` gauge of one
/// registry, for processes that open more connections than [`connect`] does (the gateway
/// opens one per HTTP worker thread, so a request and its NATS I/O stay on one thread).
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct NatsEvents {
    events: IntCounterVec,
    connected: IntGaugeVec,
}

impl NatsEvents {
    /// Registers the metrics in `registry` (once per registry).
    pub fn register(registry: &Registry) -> Result<Self, RuntimeError> {
        let events = IntCounterVec::new(
            Opts::new(NATS_EVENTS, "NATS connection events."),
            &["connection", "event"],
        )
        .map_err(RuntimeError::Metrics)?;
        let connected = IntGaugeVec::new(
            Opts::new(NATS_CONNECTED, "NATS connections connected now."),
            &["connection"],
        )
        .map_err(RuntimeError::Metrics)?;
        for metric in [
            Box::new(events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(connected.clone()),
        ] {
            registry.register(metric).map_err(RuntimeError::Metrics)?;
        }
        Ok(Self { events, connected })
    }

    /// One connection named `client_name`, its events counted under `connection` (a bounded
    /// label: `main`, `intake`, `worker`).
    pub async fn connect(
        &self,
        settings: &NatsSettings,
        client_name: &str,
        connection: &'static str,
    ) -> Result<Client, RuntimeError> {
        connect_one(settings, client_name, connection, self.clone())
            .await
            .map_err(|source| connect_failed(settings, source))
    }

    /// `main` named `client_name` and `intake` named `<client_name>-intake`.
    async fn connect_pair(
        &self,
        settings: &NatsSettings,
        client_name: &str,
    ) -> Result<(Client, Client), ConnectError> {
        let main = connect_one(settings, client_name, "main", self.clone()).await?;
        let intake_name = format!("{client_name}-intake");
        let intake = connect_one(settings, &intake_name, "intake", self.clone()).await?;
        Ok((main, intake))
    }

    /// Counts `event` of one connection, and moves the connected gauge when the connection
    /// comes up or goes down (`up` is that connection's own state, so a `closed` after a
    /// `disconnected` counts down once).
    fn record(&self, connection: &'static str, up: &AtomicBool, event: &Event) {
        self.events
            .with_label_values(&[connection, event_label(event)])
            .inc();
        let now_up = match event {
            Event::Connected => true,
            Event::Disconnected | Event::Closed => false,
            _ => return,
        };
        if up.swap(now_up, Ordering::Relaxed) != now_up {
            self.connected
                .with_label_values(&[connection])
                .add(if now_up { 1 } else { -1 });
        }
    }
}

async fn connect_one(
    settings: &NatsSettings,
    client_name: &str,
    connection: &'static str,
    metrics: NatsEvents,
) -> Result<Client, ConnectError> {
    // async-nats does not send credentials written in the URL (nats-io/nats.rs#1623): pass
    // them as options.
    let options = match settings.credentials() {
        Some(NatsCredentials::UserPassword { user, password }) => {
            ConnectOptions::with_user_and_password(user, password.expose().to_owned())
        }
        Some(NatsCredentials::Token(token)) => {
            ConnectOptions::with_token(token.expose().to_owned())
        }
        None => ConnectOptions::new(),
    };
    options
        .name(client_name)
        .custom_inbox_prefix(settings.inbox_prefix.as_str())
        .connection_timeout(settings.connect_timeout)
        .request_timeout(Some(settings.request_timeout))
        .event_callback({
            let up = Arc::new(AtomicBool::new(false));
            let client: Arc<str> = client_name.into();
            move |event| {
                metrics.record(connection, &up, &event);
                let client = client.clone();
                async move { log(connection, &client, &event) }
            }
        })
        .connect(settings.url.as_str())
        .await
}

/// A connect error, with the server's URL (credentials hidden).
fn connect_failed(settings: &NatsSettings, source: ConnectError) -> RuntimeError {
    RuntimeError::Connect {
        url: redact_url(&settings.url),
        source,
    }
}

/// A bounded label for each kind of event.
fn event_label(event: &Event) -> &'static str {
    match event {
        Event::Connected => "connected",
        Event::Disconnected => "disconnected",
        Event::LameDuckMode => "lame_duck_mode",
        Event::Draining => "draining",
        Event::Closed => "closed",
        Event::SlowConsumer(_) => "slow_consumer",
        Event::ServerError(_) => "server_error",
        Event::ClientError(_) => "client_error",
    }
}

/// Logs `event` of the connection named `client` (which worker's, for a further worker's).
fn log(connection: &'static str, client: &str, event: &Event) {
    match event {
        Event::Connected => tracing::info!(connection, client, "NATS connected."),
        Event::Disconnected if connection == "intake" => tracing::warn!(
            connection,
            client,
            "NATS intake disconnected (the server went away, or a client sent a message the \
             NATS client cannot parse); reconnecting. Replies and $SRV carry on."
        ),
        Event::Disconnected => {
            tracing::warn!(connection, client, "NATS disconnected; reconnecting.")
        }
        Event::SlowConsumer(sid) => tracing::warn!(
            connection,
            client,
            sid,
            "NATS subscription fell behind; the client dropped messages."
        ),
        other => tracing::info!(connection, client, event = %other, "NATS event."),
    }
}
