//! A service: its definition ([`ServiceBuilder`]), and a started instance ([`Running`]) that
//! serves it over NATS until it is drained.

mod bridge;
mod deadlines;
mod endpoint;
mod events;
mod running;
mod workers;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use futures::FutureExt;
use prometheus::Registry;
use tokio::sync::watch;

pub(crate) use bridge::CancelOnDrop;
pub use endpoint::{Endpoint, Subscription};
pub(crate) use running::Shared;
pub use running::{DrainReport, Monitor, Running};
pub(crate) use workers::Workers;

use crate::durable::{self, DurableSubscription};
use crate::micro;
use crate::stats::{EndpointStats, Metrics};
use crate::Error;

/// The NATS connections an instance uses. `intake` receives its requests and events; `main`
/// sends the replies, answers `$SRV`, and carries the calls and events its handlers send.
///
/// Apart, they limit what one bad client can do: async-nats drops (and re-opens) a connection
/// on a header block it cannot parse, and such a message can only arrive on the intake, so
/// `$SRV`, replies to requests already taken in, outgoing calls and events carry on. One
/// client for both (`From<async_nats::Client>`) is fine where that does not matter, in tests.
///
/// With several workers, each further worker can have a pair of its own
/// ([`Connections::per_worker`]), opened on its thread: its requests and replies then never
/// leave that thread. Without, every worker's requests and replies pass through these two,
/// whose I/O runs on the thread that started the service.
#[derive(Clone)]
pub struct Connections {
    /// Replies, `$SRV`, outgoing calls and events.
    pub main: async_nats::Client,
    /// Endpoint and event subscriptions.
    pub intake: async_nats::Client,
    per_worker: Option<ConnectWorker>,
}

/// Makes the future that opens worker `index`'s connections (index 1 and up); the future runs
/// on that worker's thread.
type ConnectWorker = Arc<
    dyn Fn(usize) -> BoxFuture<'static, Result<Connections, async_nats::ConnectError>>
        + Send
        + Sync,
>;

impl Connections {
    /// `main` and `intake`, shared by every worker.
    pub fn new(main: async_nats::Client, intake: async_nats::Client) -> Self {
        Self {
            main,
            intake,
            per_worker: None,
        }
    }

    /// Each further worker opens a pair of its own: `connect(index)` (index 1 and up) is called
    /// at start, and the future it returns runs on the worker's thread, so that the
    /// connections' I/O runs there. Their endpoint subscriptions and replies go over them;
    /// `$SRV`, events and durable consumers stay on these two. [`Running::stop`] drains and
    /// closes a further worker's pair (these two stay open for their owner); what `connect`
    /// returns is used as a pair (its own `per_worker` unused).
    pub fn per_worker<F>(mut self, connect: impl Fn(usize) -> F + Send + Sync + 'static) -> Self
    where
        F: Future<Output = Result<Connections, async_nats::ConnectError>> + Send + 'static,
    {
        self.per_worker = Some(Arc::new(move |index| connect(index).boxed()));
        self
    }
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("main", &self.main)
            .field("intake", &self.intake)
            .field("per_worker", &self.per_worker.is_some())
            .finish_non_exhaustive()
    }
}

impl From<async_nats::Client> for Connections {
    fn from(client: async_nats::Client) -> Self {
        Self::new(client.clone(), client)
    }
}

/// A service definition: name, version, description, metadata, endpoints and subscriptions.
pub struct Service {
    name: String,
    version: String,
    description: String,
    metadata: BTreeMap<String, String>,
    endpoints: Vec<Endpoint>,
    subscriptions: Vec<Subscription>,
    durables: Vec<DurableSubscription>,
    events: courier_config::EventsSettings,
}

/// Builds a [`Service`]; [`ServiceBuilder::build`] checks it against the NATS micro rules.
pub struct ServiceBuilder(Service);

impl Service {
    /// Starts a definition. `name` is `[A-Za-z0-9_-]+`, `version` is semver.
    pub fn builder(name: impl Into<String>, version: impl Into<String>) -> ServiceBuilder {
        ServiceBuilder(Service {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            metadata: BTreeMap::new(),
            endpoints: Vec::new(),
            subscriptions: Vec::new(),
            durables: Vec::new(),
            events: courier_config::EventsSettings::default(),
        })
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The subjects its endpoints serve, in declaration order.
    pub fn subjects(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|e| e.subject.as_str())
    }

    /// Subscribes every endpoint, subscription and `$SRV` subject, then serves them; with
    /// durable subscriptions, also ensures the streams ([`durable::ensure_streams`]) and starts
    /// the durable consumers. Returns once all subscriptions are registered with the server.
    /// `nats` is one client for everything, or [`Connections`] with an intake of its own (and
    /// a pair for each further worker, opened here on the worker's thread).
    pub async fn start(
        mut self,
        nats: impl Into<Connections>,
        settings: &courier_config::ServiceSettings,
        registry: &Registry,
    ) -> Result<Running, Error> {
        let connections = nats.into();
        let metrics = Metrics::register(registry, &self.name)
            .map_err(|e| Error::Definition(format!("metrics for service {}: {e}", self.name)))?;
        let durables = std::mem::take(&mut self.durables);
        let events = self.events.clone();
        let (shared, subscriptions) = self.into_shared(settings, &metrics);
        // If a subscription below fails, dropping `stop` makes the loops already spawned drain
        // and end: nothing is left serving half a service.
        let (stop, stopped) = watch::channel(false);
        let workers = workers::Workers::start(settings.workers());
        let connections = worker_connections(connections, &workers).await?;
        let Connections {
            main: nats, intake, ..
        } = connections[0].clone();
        // With several workers, the instance subject is shared among them like the endpoint
        // subject: a queue group of the instance's own.
        let own_group = (workers.count() > 1).then_some(shared.id.as_str());
        let mut loops = Vec::new();
        for ep in &shared.endpoints {
            for worker in 0..workers.count() {
                let Connections {
                    main: worker_main,
                    intake: worker_intake,
                    ..
                } = connections.get(worker).unwrap_or(&connections[0]);
                let queued =
                    bridge::subscribe(worker_intake, &ep.subject, ep.queue_group.as_deref())
                        .await?;
                let own_subject = instance_subject(&shared.id, &ep.subject);
                let own = bridge::subscribe(worker_intake, &own_subject, own_group).await?;
                let serve = bridge::serve_endpoint(
                    ep.clone(),
                    vec![queued, own],
                    worker_main.clone(),
                    metrics.clone(),
                    stopped.clone(),
                );
                loops.push(workers.spawn(worker, serve).await);
            }
        }
        for s in subscriptions {
            let group = s.queue_group.resolve(&settings.queue_group);
            let sub = bridge::subscribe(&intake, &s.subject, group.as_deref()).await?;
            let limits = events::EventLimits {
                concurrency: settings.max_in_flight,
                buffer: s.buffer.unwrap_or(settings.event_buffer),
                timeout: s.timeout.unwrap_or(settings.handler_timeout),
            };
            let serve = events::serve_events(s, sub, limits, metrics.clone(), stopped.clone());
            loops.push(tokio::spawn(serve));
        }
        let consumer_metrics = durable::ConsumerMetrics::register(registry, &shared.name)
            .map_err(|e| Error::Definition(format!("consumer metrics for {}: {e}", shared.name)))?;
        let setup = durable::Setup {
            service: &shared.name,
            intake: &intake,
            main: &nats,
            events: &events,
            service_settings: settings,
            metrics: &consumer_metrics,
        };
        loops.extend(durable::start_all(durables, &setup, &workers, &stopped).await?);
        let srv = bridge::subscribe_srv(&nats, &shared).await?;
        let srv_loop = tokio::spawn(bridge::serve_srv(
            shared.clone(),
            srv,
            nats.clone(),
            metrics,
        ));
        // The server must know every subscription before we say we serve: a caller that asks
        // at once must not get "no responders".
        bridge::round_trip(&intake).await?;
        bridge::round_trip(&nats).await?;
        for worker in &connections[1..] {
            bridge::round_trip(&worker.intake).await?;
            bridge::round_trip(&worker.main).await?;
        }
        tracing::info!(service = %shared.name, id = %shared.id, version = %shared.version, "Service started.");
        Ok(Running {
            shared,
            connections,
            stop,
            loops,
            srv_loop,
            workers,
        })
    }

    /// The instance's identity and endpoints with their counters; the subscriptions apart.
    fn into_shared(
        self,
        settings: &courier_config::ServiceSettings,
        metrics: &Metrics,
    ) -> (Arc<Shared>, Vec<Subscription>) {
        let endpoints = self
            .endpoints
            .into_iter()
            .map(|ep| {
                let limit = ep.max_in_flight.unwrap_or(settings.max_in_flight);
                Arc::new(EndpointRuntime {
                    stats: metrics.endpoint(&ep.name, limit),
                    queue_group: ep.queue_group.resolve(&settings.queue_group),
                    timeout: ep.timeout.unwrap_or(settings.handler_timeout),
                    name: ep.name,
                    subject: ep.subject,
                    metadata: with_route(ep.metadata, ep.route.as_ref()),
                    handler: ep.handler,
                })
            })
            .collect();
        let shared = Shared {
            name: self.name,
            id: nuid::next().to_string(),
            version: self.version,
            description: self.description,
            metadata: self.metadata,
            started: SystemTime::now(),
            endpoints,
        };
        (Arc::new(shared), self.subscriptions)
    }
}

/// Each worker's connections by worker, the instance's for worker 0; only worker 0's when the
/// further workers share them. A further worker's own are opened on its thread.
async fn worker_connections(
    instance: Connections,
    workers: &workers::Workers,
) -> Result<Vec<Connections>, Error> {
    let Connections {
        main,
        intake,
        per_worker,
    } = instance;
    let mut all = vec![Connections::new(main, intake)];
    let Some(connect) = per_worker else {
        return Ok(all);
    };
    for worker in 1..workers.count() {
        let task = workers.spawn(worker, connect(worker)).await;
        let opened = match task.await {
            Ok(opened) => opened,
            // Invariant: the worker runs until the service stops, so the task ended by itself.
            Err(ended) => std::panic::resume_unwind(ended.into_panic()),
        };
        let Connections { main, intake, .. } =
            opened.map_err(|source| Error::Connect { worker, source })?;
        all.push(Connections::new(main, intake));
    }
    Ok(all)
}

impl ServiceBuilder {
    /// What the service does, for `nats micro info`.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.0.description = description.into();
        self
    }

    /// Adds service metadata.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.metadata.insert(key.into(), value.into());
        self
    }

    /// Adds a request-reply endpoint.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.0.endpoints.push(endpoint);
        self
    }

    /// Adds an event subscription.
    pub fn subscription(mut self, subscription: Subscription) -> Self {
        self.0.subscriptions.push(subscription);
        self
    }

    /// Adds a durable subscription: a JetStream consumer of the events stream bound to an
    /// actor ([`crate::durable`]).
    pub fn durable(mut self, subscription: DurableSubscription) -> Self {
        self.0.durables.push(subscription);
        self
    }

    /// Where durable events are stored and how they are delivered (`[events]`); the defaults
    /// unless set.
    pub fn events(mut self, settings: courier_config::EventsSettings) -> Self {
        self.0.events = settings;
        self
    }

    /// Checks names, version and subjects, and returns the definition.
    pub fn build(self) -> Result<Service, Error> {
        let s = self.0;
        let bad = |msg: String| Err(Error::Definition(msg));
        if !micro::valid_name(&s.name) {
            return bad(format!(
                "service name {:?} must be letters, digits, _ or -",
                s.name
            ));
        }
        if !micro::valid_version(&s.version) {
            return bad(format!(
                "version {:?} of {} is not semver (like 1.2.3)",
                s.version, s.name
            ));
        }
        let mut names = HashSet::new();
        let mut subjects = HashSet::new();
        let mut routes = HashSet::new();
        for ep in &s.endpoints {
            if let Some(route) = &ep.route {
                route
                    .validate()
                    .map_err(|e| Error::Definition(e.to_string()))?;
                if !routes.insert((route.method, route.path.as_str())) {
                    return bad(format!(
                        "HTTP route {} {} is declared twice",
                        route.method, route.path
                    ));
                }
            }
            if !micro::valid_name(&ep.name) {
                return bad(format!(
                    "endpoint name {:?} must be letters, digits, _ or -",
                    ep.name
                ));
            }
            if !names.insert(ep.name.as_str()) {
                return bad(format!("endpoint name {:?} is used twice", ep.name));
            }
            if !valid_subject(&ep.subject, false)
                || ep.subject.starts_with('$')
                || ep.subject.starts_with(INSTANCE_PREFIX)
            {
                return bad(format!(
                    "endpoint subject {:?} is not a plain NATS subject",
                    ep.subject
                ));
            }
            if !subjects.insert(ep.subject.as_str()) {
                return bad(format!("endpoint subject {:?} is bound twice", ep.subject));
            }
            if ep.timeout == Some(std::time::Duration::ZERO) {
                return bad(format!("endpoint {:?} has a time limit of 0", ep.name));
            }
            if ep.max_in_flight == Some(0) {
                return bad(format!(
                    "endpoint {:?} has an in-flight limit of 0",
                    ep.name
                ));
            }
        }
        durable::check(&s.durables, &s.events).map_err(Error::Definition)?;
        for sub in &s.subscriptions {
            if sub.buffer == Some(0) || sub.timeout == Some(std::time::Duration::ZERO) {
                return bad(format!(
                    "subscription {:?} has a buffer or time limit of 0",
                    sub.subject
                ));
            }
            if !valid_subject(&sub.subject, true) {
                return bad(format!(
                    "subscription subject {:?} is not a NATS subject",
                    sub.subject
                ));
            }
        }
        Ok(s)
    }
}

/// First token of every instance-specific subject. Endpoint subjects may not start with it (nor
/// with `$`), so the two schemes never collide.
pub const INSTANCE_PREFIX: &str = "_COURIER";

/// The subject on which one instance, and only it, serves an endpoint:
/// `_COURIER.<instance id>.<endpoint subject>`, with no queue group. Callers that picked an
/// instance (the gateway, through discovery) send there; plain NATS callers use the endpoint
/// subject and its queue group. Instance ids are NUIDs: one token, no wildcards.
pub fn instance_subject(instance_id: &str, subject: &str) -> String {
    format!("{INSTANCE_PREFIX}.{instance_id}.{subject}")
}

/// Ends when `stop` changes (or its sender is gone). Made once before a loop's `select!` and
/// polled by reference: a `changed()` made anew in each turn would join and leave the
/// channel's list of waiters, a lock each time, for every message the loop takes in.
pub(crate) async fn until_stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.changed().await;
}

/// The endpoint subject an instance subject is for (`_COURIER.<id>.users.get` is
/// `users.get`); any other subject as it is.
pub(crate) fn shared_subject(subject: &str) -> &str {
    subject
        .strip_prefix(INSTANCE_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.split_once('.'))
        .map_or(subject, |(_, endpoint)| endpoint)
}

/// An endpoint's metadata with its HTTP route's entries added.
fn with_route(
    mut metadata: BTreeMap<String, String>,
    route: Option<&crate::route::Route>,
) -> BTreeMap<String, String> {
    metadata.extend(route.into_iter().flat_map(|r| r.to_metadata()));
    metadata
}

/// Tokens separated by dots, none empty, no spaces; wildcards only where allowed.
pub(crate) fn valid_subject(subject: &str, wildcards: bool) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    let last = tokens.len() - 1;
    !subject.is_empty()
        && tokens.iter().enumerate().all(|(i, t)| {
            !t.is_empty()
                && !t.contains(char::is_whitespace)
                && match *t {
                    "*" => wildcards,
                    ">" => wildcards && i == last,
                    t => !t.contains(['*', '>']),
                }
        })
}

/// An endpoint as it runs: its definition plus its counters and in-flight limit.
pub(crate) struct EndpointRuntime {
    pub(crate) name: String,
    pub(crate) subject: String,
    pub(crate) queue_group: Option<String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) handler: Arc<dyn endpoint::Handle>,
    pub(crate) stats: EndpointStats,
    /// How long a request may be handled when its caller's deadline is later or absent.
    pub(crate) timeout: std::time::Duration,
}

#[cfg(test)]
mod tests {
    use super::{instance_subject, shared_subject, valid_subject};

    #[test]
    fn an_instance_subject_names_its_endpoint() {
        assert_eq!(
            shared_subject(&instance_subject("abc", "users.get")),
            "users.get"
        );
        assert_eq!(shared_subject("users.get"), "users.get");
        assert_eq!(shared_subject("_COURIER.abc"), "_COURIER.abc");
    }

    #[test]
    fn endpoint_subjects_are_plain_and_subscriptions_may_use_wildcards() {
        assert!(valid_subject("users.get", false));
        assert!(!valid_subject("users.*", false));
        assert!(valid_subject("events.users.*", true));
        assert!(valid_subject("events.>", true));
        assert!(!valid_subject("events.>.x", true));
        assert!(!valid_subject("users..get", false));
        assert!(!valid_subject("users get", false));
        assert!(!valid_subject("", false));
    }
}
