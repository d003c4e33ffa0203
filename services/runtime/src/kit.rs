//! The start and the end every service shares: [`Kit::open`] opens the database, NATS and the
//! event streams; [`Kit::serve`] runs the service with its outbox relay until shutdown;
//! [`main`] is a binary's whole `main`.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use courier_actors::durable::{ensure_streams, OutgoingEvent, Publisher};
use courier_actors::{Client, Codec, Connections, DrainReport, ServiceBuilder};
use courier_store::{Database, Migration, PendingEvent, Relay};
use tokio::sync::oneshot;

use crate::{Common, RuntimeError, RuntimeSettings, Started};

/// What a service's logic is built from, opened in order: its database (migrated), its NATS
/// connections, the durable event streams.
pub struct Kit {
    /// The service's own database.
    pub db: Database,
    /// The instance's NATS connections.
    pub nats: Connections,
    /// The process's metrics, served on `/metrics`.
    pub registry: prometheus::Registry,
    /// Calls to other services, with the configured time-out.
    pub client: Client,
    /// Background work started with [`Kit::spawn`], stopped first on shutdown.
    tasks: Vec<RelayHandle>,
}

impl Kit {
    /// Opens the database and applies `migrations` (then the kit's tables), connects to NATS
    /// as `binary`, and creates or updates the event streams.
    pub async fn open(
        binary: &str,
        settings: &impl Common,
        migrations: &'static [Migration],
    ) -> Result<Self, RuntimeError> {
        let db = Database::connect(settings.database(), migrations).await?;
        let registry = prometheus::Registry::new();
        let nats = crate::nats::connect(settings.nats(), binary, &registry).await?;
        ensure_streams(&nats.main, settings.events())
            .await
            .map_err(courier_actors::Error::from)?;
        let client = Client::new(nats.main.clone(), settings.nats().request_timeout);
        Ok(Self {
            db,
            nats,
            registry,
            client,
            tasks: Vec::new(),
        })
    }

    /// Runs `task` beside the service (a saga runner, say) until shutdown: it gets a future
    /// that resolves when the service is asked to stop, and is awaited before the drain.
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(Pin<Box<dyn Future<Output = ()>>>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = actix::spawn(task(Box::pin(async {
            let _ = stopped.await;
        })));
        self.tasks.push(RelayHandle { stop, task });
    }

    /// Builds `service` with the configured events, serves it (admin listener, Consul,
    /// outbox relay) until `shutdown`, drains, and closes the database.
    pub async fn serve(
        self,
        service: ServiceBuilder,
        settings: &impl Common,
        on_start: impl FnOnce(&Started<'_>),
        shutdown: impl Future<Output = ()>,
    ) -> Result<DrainReport, RuntimeError> {
        let service = service.events(settings.events().clone()).build()?;
        let runtime = RuntimeSettings {
            service: settings.service(),
            admin: settings.admin(),
            consul: settings.consul(),
        };
        let tasks = self.tasks;
        let shutdown = async move {
            shutdown.await;
            for task in tasks {
                task.stop().await;
            }
        };
        let report = crate::serve(
            service,
            self.nats,
            runtime,
            &self.registry,
            Some(&self.db),
            on_start,
            shutdown,
        )
        .await;
        self.db.close().await;
        report
    }
}

/// A running outbox relay, or a task of [`Kit::spawn`].
pub(crate) struct RelayHandle {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RelayHandle {
    /// Signals the stop and waits for the task to end (the relay makes one last pass).
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Runs the outbox relay of `db`, publishing on `nats` as durable events (JSON), until `stop`
/// resolves, then makes one last pass: what `Kit::serve` runs beside a service.
pub async fn run_relay(db: Database, nats: async_nats::Client, stop: impl Future<Output = ()>) {
    let publisher = Publisher::new(nats);
    let publish = move |pending: Vec<PendingEvent>| {
        let publisher = publisher.clone();
        async move {
            let events: Vec<OutgoingEvent> = pending
                .into_iter()
                .map(|event| OutgoingEvent {
                    id: event.id,
                    subject: event.subject,
                    payload: event.payload.into(),
                    codec: Codec::Json,
                    request_id: event.request_id,
                    traceparent: event.traceparent,
                })
                .collect();
            publisher.publish_all(&events).await
        }
    };
    Relay::new(db).run(publish, stop).await;
}

/// [`run_relay`] on a task of its own, until stopped.
pub(crate) fn spawn_relay(db: Database, nats: async_nats::Client) -> RelayHandle {
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(run_relay(db, nats, async {
        let _ = stopped.await;
    }));
    RelayHandle { stop, task }
}

/// A service binary's `main`: loads the settings (exit 64 with one line when they are bad),
/// starts logging, runs `run` in an actix system until SIGTERM / SIGINT, and turns the
/// outcome into the exit code (failure when the drain was incomplete).
///
/// ```ignore
/// fn main() -> ExitCode {
///     courier_runtime::main("courier-products", |settings, stop| courier_products::run(settings, |_| {}, stop))
/// }
/// ```
pub fn main<S, F, Fut, E>(binary: &'static str, run: F) -> ExitCode
where
    S: Common + serde::Serialize + serde::de::DeserializeOwned + Default + courier_config::Validate,
    F: FnOnce(S, std::pin::Pin<Box<dyn Future<Output = ()>>>) -> Fut,
    Fut: Future<Output = Result<DrainReport, E>>,
    E: std::fmt::Display,
{
    let settings: S = match crate::settings_or_exit(binary) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let service = binary.strip_prefix("courier-").unwrap_or(binary);
    let telemetry = crate::telemetry::init(service, settings.log());
    let shutdown = Box::pin(async {
        let signal = crate::shutdown_signal().await;
        tracing::info!(signal, "Stopping.");
    });
    let code = match actix::System::new().block_on(run(settings, shutdown)) {
        Ok(report) if report.complete => ExitCode::SUCCESS,
        Ok(report) => {
            // Requests abandoned past the grace period, or replies that may not have reached
            // the server: a supervisor should know this stop lost something.
            tracing::error!(
                abandoned = report.abandoned,
                "Stopped without a complete drain."
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{binary} failed.");
            eprintln!("{binary}: {e:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}
