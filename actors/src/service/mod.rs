//! A service: its definition ([`ServiceBuilder`]), and a started instance ([`Running`]) that
//! serves it over NATS until it is drained.

mod bridge;
mod endpoint;
mod running;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use prometheus::Registry;
use tokio::sync::watch;

pub use endpoint::{Endpoint, Subscription};
pub(crate) use running::Shared;
pub use running::{DrainReport, Monitor, Running};

use crate::micro;
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
        let (shared, subscriptions) = self.into_shared(settings, &metrics);
        // If a subscription below fails, dropping `stop` makes the loops already spawned drain
        // and end: nothing is left serving half a service.
        let (stop, stopped) = watch::channel(false);
        let mut loops = Vec::new();
        for ep in &shared.endpoints {
            let queued = bridge::subscribe(&nats, &ep.subject, ep.queue_group.as_deref()).await?;
            let own_subject = instance_subject(&shared.id, &ep.subject);
            let own = bridge::subscribe(&nats, &own_subject, None).await?;
            let serve = bridge::serve_endpoint(
                ep.clone(),
                vec![queued, own],
                nats.clone(),
                metrics.clone(),
                stopped.clone(),
            );
            loops.push(tokio::spawn(serve));
        }
        for s in subscriptions {
            let group = s.queue_group.resolve(&settings.queue_group);
            let sub = bridge::subscribe(&nats, &s.subject, group.as_deref()).await?;
            let serve = bridge::serve_events(
                s,
                sub,
                settings.max_in_flight,
                metrics.clone(),
                stopped.clone(),
            );
            loops.push(tokio::spawn(serve));
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
                    name: ep.name,
                    subject: ep.subject,
                    metadata: ep.metadata,
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
