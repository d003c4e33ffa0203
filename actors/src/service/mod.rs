//! A service: its definition ([`ServiceBuilder`]), and a started instance ([`Running`]) that
//! serves it over NATS until it is drained.

mod bridge;
mod endpoint;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use endpoint::{Endpoint, Subscription};

use crate::micro::{self, EndpointData, InfoResponse, PingResponse, StatsResponse};
use crate::stats::{EndpointStats, Metrics};
use crate::Error;

/// A service definition: name, version, description, metadata, endpoints and subscriptions.
pub struct Service {
    name: String,
    version: String,
    description: String,
    metadata: BTreeMap<String, String>,
    endpoints: Vec<Endpoint>,
    subscriptions: Vec<Subscription>,
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

    /// Subscribes every endpoint, subscription and `$SRV` subject, then serves them.
    /// Returns once all subscriptions are registered with the server.
    pub async fn start(
        self,
        nats: async_nats::Client,
        settings: &courier_config::ServiceSettings,
        registry: &Registry,
    ) -> Result<Running, Error> {
        let metrics = Metrics::register(registry, &self.name)
            .map_err(|e| Error::Definition(format!("metrics for service {}: {e}", self.name)))?;
        let (stop, stopped) = watch::channel(false);
        let id = nuid::next().to_string();
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        let mut pending = Vec::new();
        for ep in self.endpoints {
            let limit = ep.max_in_flight.unwrap_or(settings.max_in_flight);
            let runtime = Arc::new(EndpointRuntime {
                stats: metrics.endpoint(&ep.name, limit),
                queue_group: ep.queue_group.resolve(&settings.queue_group),
                name: ep.name,
                subject: ep.subject,
                metadata: ep.metadata,
                handler: ep.handler,
            });
            pending.push(runtime.clone());
            endpoints.push(runtime);
        }
        let shared = Arc::new(Shared {
            name: self.name,
            id,
            version: self.version,
            description: self.description,
            metadata: self.metadata,
            started: SystemTime::now(),
            endpoints,
        });
        let mut loops = Vec::new();
        for ep in pending {
            let shared_sub =
                bridge::subscribe(&nats, &ep.subject, ep.queue_group.as_deref()).await?;
            let own =
                bridge::subscribe(&nats, &instance_subject(&shared.id, &ep.subject), None).await?;
            let subs = vec![shared_sub, own];
            loops.push(tokio::spawn(bridge::serve_endpoint(
                ep,
                subs,
                nats.clone(),
                metrics.clone(),
                stopped.clone(),
            )));
        }
        for s in self.subscriptions {
            let group = s.queue_group.resolve(&settings.queue_group);
            let sub = bridge::subscribe(&nats, &s.subject, group.as_deref()).await?;
            let limit = settings.max_in_flight;
            loops.push(tokio::spawn(bridge::serve_events(
                s,
                sub,
                limit,
                metrics.clone(),
                stopped.clone(),
            )));
        }
        let srv = bridge::subscribe_srv(&nats, &shared).await?;
        let srv_loop = tokio::spawn(bridge::serve_srv(
            shared.clone(),
            srv,
            nats.clone(),
            metrics,
        ));
        nats.flush().await.map_err(Error::Flush)?;
        tracing::info!(service = %shared.name, id = %shared.id, version = %shared.version, "Service started.");
        Ok(Running {
            shared,
            nats,
            stop,
            loops,
            srv_loop,
        })
    }
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
        for ep in &s.endpoints {
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
            if ep.max_in_flight == Some(0) {
                return bad(format!(
                    "endpoint {:?} has an in-flight limit of 0",
                    ep.name
                ));
            }
        }
        for sub in &s.subscriptions {
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

/// Tokens separated by dots, none empty, no spaces; wildcards only where allowed.
fn valid_subject(subject: &str, wildcards: bool) -> bool {
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
}

/// What the `$SRV` replies are made of.
pub(crate) struct Shared {
    name: String,
    id: String,
    version: String,
    description: String,
    metadata: BTreeMap<String, String>,
    started: SystemTime,
    endpoints: Vec<Arc<EndpointRuntime>>,
}

impl Shared {
    pub(crate) fn ping(&self) -> PingResponse {
        PingResponse {
            kind: PingResponse::TYPE.to_owned(),
            name: self.name.clone(),
            id: self.id.clone(),
            version: self.version.clone(),
            metadata: self.metadata.clone(),
        }
    }

    pub(crate) fn info(&self) -> InfoResponse {
        InfoResponse {
            kind: InfoResponse::TYPE.to_owned(),
            name: self.name.clone(),
            id: self.id.clone(),
            version: self.version.clone(),
            metadata: self.metadata.clone(),
            description: self.description.clone(),
            endpoints: self
                .endpoints
                .iter()
                .map(|e| micro::EndpointInfo {
                    name: e.name.clone(),
                    subject: e.subject.clone(),
                    queue_group: e.queue_group.clone(),
                    metadata: e.metadata.clone(),
                })
                .collect(),
        }
    }

    fn in_flight(&self) -> usize {
        self.endpoints
            .iter()
            .map(|e| e.stats.in_flight.current())
            .sum()
    }

    fn saturated(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .filter(|e| e.stats.in_flight.is_full())
            .map(|e| e.name.clone())
            .collect()
    }

    pub(crate) fn stats(&self) -> StatsResponse {
        StatsResponse {
            kind: StatsResponse::TYPE.to_owned(),
            name: self.name.clone(),
            id: self.id.clone(),
            version: self.version.clone(),
            metadata: self.metadata.clone(),
            started: humantime::format_rfc3339_nanos(self.started).to_string(),
            endpoints: self
                .endpoints
                .iter()
                .map(|e| {
                    let s = e.stats.snapshot();
                    micro::EndpointStats {
                        name: e.name.clone(),
                        subject: e.subject.clone(),
                        queue_group: e.queue_group.clone(),
                        num_requests: s.num_requests,
                        num_errors: s.num_errors,
                        last_error: s.last_error,
                        processing_time: s.processing_time_ns,
                        average_processing_time: s
                            .processing_time_ns
                            .checked_div(s.num_requests)
                            .unwrap_or(0),
                        data: EndpointData {
                            in_flight: s.in_flight,
                            max_in_flight: s.max_in_flight,
                            rejected: s.rejected,
                        },
                    }
                })
                .collect(),
        }
    }
}

/// A started service instance. Stop it with [`Running::stop`]; dropping it leaves it serving
/// until the NATS connection closes.
pub struct Running {
    shared: Arc<Shared>,
    nats: async_nats::Client,
    stop: watch::Sender<bool>,
    loops: Vec<JoinHandle<()>>,
    srv_loop: JoinHandle<()>,
}

/// Reads a running instance's load; cheap to clone, valid after the instance stops.
#[derive(Clone)]
pub struct Monitor(Arc<Shared>);

impl Monitor {
    /// Requests in flight over all endpoints.
    pub fn in_flight(&self) -> usize {
        self.0.in_flight()
    }

    /// Names of the endpoints at their in-flight limit, which refuse new requests now.
    pub fn saturated(&self) -> Vec<String> {
        self.0.saturated()
    }

    /// The `$SRV.STATS` reply.
    pub fn stats(&self) -> StatsResponse {
        self.0.stats()
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Requests still in flight when the grace period ran out (0 after a clean drain).
    pub abandoned: usize,
    /// How long the drain took.
    pub took: Duration,
}

impl Running {
    /// The service name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// This instance's id, as `$SRV` replies show it.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The version.
    pub fn version(&self) -> &str {
        &self.shared.version
    }

    /// The `$SRV.INFO` reply, for callers in the same process (admin listener, registration).
    pub fn info(&self) -> InfoResponse {
        self.shared.info()
    }

    /// The `$SRV.STATS` reply.
    pub fn stats(&self) -> StatsResponse {
        self.shared.stats()
    }

    /// Requests in flight over all endpoints.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// A handle that reads this instance's load while it runs (for readiness checks).
    pub fn monitor(&self) -> Monitor {
        Monitor(self.shared.clone())
    }

    /// Drains: stops taking new requests (unsubscribes, keeping what the server already sent),
    /// lets the requests in flight finish within `grace`, then stops answering `$SRV` and
    /// flushes the replies to the server. Requests past `grace` are counted, not waited for.
    pub async fn stop(self, grace: Duration) -> Result<DrainReport, Error> {
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + grace;
        tracing::info!(service = %self.shared.name, in_flight = self.in_flight(), ?grace, "Draining.");
        // Receivers live as long as the loops; a send error only means they already ended.
        let _ = self.stop.send(true);
        let loops = futures::future::join_all(self.loops);
        let idle = futures::future::join_all(
            self.shared
                .endpoints
                .iter()
                .map(|e| e.stats.in_flight.idle()),
        );
        let finished = tokio::time::timeout_at(deadline, async {
            loops.await;
            idle.await;
        })
        .await
        .is_ok();
        let abandoned = if finished { 0 } else { self.shared.in_flight() };
        self.srv_loop.abort();
        self.nats.flush().await.map_err(Error::Flush)?;
        let report = DrainReport {
            abandoned,
            took: started.elapsed(),
        };
        if abandoned > 0 {
            tracing::warn!(service = %self.shared.name, abandoned, "Grace period over with requests in flight.");
        } else {
            tracing::info!(service = %self.shared.name, took = ?report.took, "Drained.");
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::valid_subject;

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
