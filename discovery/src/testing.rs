//! Helpers for tests against a real Consul agent, shared by the tests of this crate, of
//! `courier-runtime` and of every service: Consul test settings, and waiting for the agent to
//! list the healthy instances a test expects or for a check to reach a status.
//!
//! Only with the `testing` feature, which those crates turn on in their `[dev-dependencies]`
//! (this crate through a dev-dependency on itself); no build of a binary has it.
//!
//! # Why here
//!
//! These helpers speak `courier-config`'s and this crate's types ([`ConsulSettings`],
//! [`Consul`], [`Instance`], [`CheckStatus`]). `courier-testkit` must depend on no Courier crate
//! (the tests of `courier-config` and `courier-actors` use it too), so they cannot live there;
//! this crate is the lowest one that knows all those types, and every crate whose tests talk to
//! Consul already depends on it. The agent itself ([`TestConsul`]) and the waiting
//! ([`eventually`]) stay in `courier-testkit`: this module only adds the Consul words.

use std::time::Duration;

use courier_config::{ConsulSettings, Secret};
use courier_testkit::{eventually, TestConsul};

use crate::{CheckStatus, Consul, DiscoveryError, Instance};

/// Settings pointing at `agent` with `token` (empty for none): a check interval of 1 s (Consul's
/// minimum) and a 2 s TTL, so registration tests see checks change within seconds; every other
/// field as in production.
pub fn settings(agent: &TestConsul, token: &str) -> ConsulSettings {
    ConsulSettings {
        addr: agent.url(),
        token: Secret::new(token),
        check_interval: Duration::from_secs(1),
        ttl: Duration::from_secs(2),
        ..ConsulSettings::default()
    }
}

/// A client of `agent` without token.
pub fn client(agent: &TestConsul) -> Consul {
    Consul::new(&settings(agent, "")).expect("a TestConsul URL makes a valid client")
}

/// The healthy instances of `service` now, as the catalog lists them (no blocking query).
pub async fn healthy(consul: &Consul, service: &str) -> Result<Vec<Instance>, DiscoveryError> {
    let (_, instances) = consul.healthy(service, None, Duration::ZERO).await?;
    Ok(instances)
}

/// Whether `instances` include the one with `id`.
pub fn has_id(instances: &[Instance], id: &str) -> bool {
    instances.iter().any(|instance| instance.id == id)
}

/// Waits (at most `within`, else panics naming `what`) until the healthy instances of `service`
/// satisfy `expected`, and returns the catalog index with them; an agent that does not answer
/// is asked again. The agent API answers before the agent has synced a change to the catalog,
/// which health reads: a test must wait for it.
pub async fn until_healthy(
    consul: &Consul,
    service: &str,
    within: Duration,
    what: &str,
    expected: impl Fn(&[Instance]) -> bool,
) -> (u64, Vec<Instance>) {
    eventually(within, what, || async {
        let (index, instances) = consul.healthy(service, None, Duration::ZERO).await.ok()?;
        expected(&instances).then_some((index, instances))
    })
    .await
}

/// The status of check `check_id` of the instance `service_id` on the local agent, or `None`
/// when the agent does not answer or has no such check.
pub async fn check_status(
    consul: &Consul,
    service_id: &str,
    check_id: &str,
) -> Option<CheckStatus> {
    let checks = consul.checks(service_id).await.ok()?;
    checks
        .into_iter()
        .find(|(id, _)| id == check_id)
        .map(|(_, status)| status)
}

/// Waits (at most `within`, else panics naming `what`) until check `check_id` of the instance
/// `service_id` has `status`.
pub async fn until_check(
    consul: &Consul,
    service_id: &str,
    check_id: &str,
    status: CheckStatus,
    within: Duration,
    what: &str,
) {
    eventually(within, what, || async {
        (check_status(consul, service_id, check_id).await == Some(status)).then_some(())
    })
    .await;
}
