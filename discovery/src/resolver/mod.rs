//! [`Resolver`]: the healthy instances of one service, kept current by a watch task, and a
//! pick among them by [`Strategy`]; [`Discovery`] puts it and a fixed list behind one API.

mod balance;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch as latest};

use crate::Consul;
use balance::Balancer;
pub use balance::{Discovery, Pick, StaticInstances, Strategy};

/// How long a blocking query waits for a change by default: long enough to be cheap, short
/// enough that a lost connection is noticed within a minute even behind a silent firewall.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// How many updates a slow [`Resolver::updates`] receiver may fall behind before it lags.
const UPDATES_CAPACITY: usize = 256;

/// One healthy instance of a service, as the catalog lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The instance id (its `$SRV` id, a NUID).
    pub id: String,
    /// The service name: `users`.
    pub name: String,
    /// Where to reach it (the node's address when the service registered none).
    pub address: String,
    /// Its port.
    pub port: u16,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its metadata.
    pub meta: BTreeMap<String, String>,
}

/// A change of the healthy set. An instance that changed (new port, tags) is `Removed` as it
/// was, then `Added` as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// An instance became healthy, or appeared.
    Added(Instance),
    /// An instance stopped passing, or was deregistered.
    Removed(Instance),
}

/// A cheap handle on the watch of one service's healthy instances. The watch runs in its own
/// task until [`Resolver::stop`] or until the last handle is dropped. While Consul cannot be
/// reached, the last set it gave keeps being served.
#[derive(Clone)]
pub struct Resolver {
    shared: Arc<Shared>,
    owner: Arc<StopOnDrop>,
}

/// What the watch task and the handles share.
struct Shared {
    service: String,
    /// The healthy set, sorted by id; a `watch` channel so [`Resolver::wait_for`] can await it.
    cache: latest::Sender<Vec<Instance>>,
    updates: broadcast::Sender<Update>,
    balancer: Balancer,
}

/// Held only by handles, never by the task: when the last handle goes, the channel closes and
/// the task ends.
struct StopOnDrop(latest::Sender<bool>);

impl Resolver {
    /// Starts watching `service` with blocking queries of [`DEFAULT_WAIT`].
    ///
    /// # Panics
    /// Outside a Tokio runtime (it spawns the watch task).
    pub fn watch(consul: Consul, service: &str) -> Resolver {
        Self::watch_with_wait(consul, service, DEFAULT_WAIT)
    }

    /// Starts watching `service` with blocking queries that wait up to `wait` for a change.
    ///
    /// # Panics
    /// Outside a Tokio runtime (it spawns the watch task).
    pub fn watch_with_wait(consul: Consul, service: &str, wait: Duration) -> Resolver {
        let (updates, _) = broadcast::channel(UPDATES_CAPACITY);
        let shared = Arc::new(Shared {
            service: service.to_owned(),
            cache: latest::Sender::new(Vec::new()),
            updates,
            balancer: Balancer::default(),
        });
        let (stop, stopped) = latest::channel(false);
        tokio::spawn(watch::run(consul, Arc::clone(&shared), wait, stopped));
        Resolver {
            shared,
            owner: Arc::new(StopOnDrop(stop)),
        }
    }

    /// The watched service's name.
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// The healthy instances now, sorted by id (empty until Consul first answers).
    pub fn instances(&self) -> Vec<Instance> {
        self.shared.cache.borrow().clone()
    }

    /// Changes of the healthy set from now on.
    pub fn updates(&self) -> broadcast::Receiver<Update> {
        self.shared.updates.subscribe()
    }

    /// Waits until `pred` holds for the healthy set (checked at once, then at every change);
    /// `false` if it still does not after `within`.
    pub async fn wait_for(&self, pred: impl Fn(&[Instance]) -> bool, within: Duration) -> bool {
        let mut cache = self.shared.cache.subscribe();
        let holds = tokio::time::timeout(within, cache.wait_for(|set| pred(set))).await;
        // An `Err` inside would mean the cache's sender is gone, but `self` holds it.
        matches!(holds, Ok(Ok(_)))
    }

    /// One healthy instance by `strategy`, or `None` when there is none.
    pub fn pick(&self, strategy: &Strategy) -> Option<Pick> {
        self.pick_where(strategy, |_| true)
    }

    /// One healthy instance for which `keep` holds, by `strategy`, or `None`.
    pub fn pick_where(
        &self,
        strategy: &Strategy,
        keep: impl Fn(&Instance) -> bool,
    ) -> Option<Pick> {
        self.shared
            .balancer
            .pick(&self.shared.cache.borrow(), strategy, keep)
    }

    /// Calls to `instance_id` whose [`Pick`] is still held.
    pub fn in_flight(&self, instance_id: &str) -> usize {
        self.shared.balancer.in_flight(instance_id)
    }

    /// Ends the watch task (for every handle); the cache keeps its last set.
    pub fn stop(&self) {
        self.owner.0.send_replace(true);
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("service", &self.shared.service)
            .field("instances", &self.shared.cache.borrow().len())
            .finish()
    }
}

impl Shared {
    /// Replaces the healthy set with `instances` and announces what changed.
    fn apply(&self, mut instances: Vec<Instance>) {
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        let changes = diff(&self.cache.borrow(), &instances);
        if changes.is_empty() {
            return;
        }
        self.balancer.retain(&instances);
        self.cache.send_replace(instances);
        for change in changes {
            // No receiver is fine: nobody subscribed to updates.
            let _ = self.updates.send(change);
        }
    }
}

/// What turns `old` into `new`: removals first, then additions.
fn diff(old: &[Instance], new: &[Instance]) -> Vec<Update> {
    let by_id = |set: &[Instance]| -> HashMap<String, Instance> {
        set.iter().map(|i| (i.id.clone(), i.clone())).collect()
    };
    let (old_ids, new_ids) = (by_id(old), by_id(new));
    let removed = old.iter().filter(|i| new_ids.get(&i.id) != Some(*i));
    let added = new.iter().filter(|i| old_ids.get(&i.id) != Some(*i));
    let removed = removed.cloned().map(Update::Removed);
    removed.chain(added.cloned().map(Update::Added)).collect()
}

#[cfg(test)]
pub(crate) fn instance(id: &str, port: u16) -> Instance {
    Instance {
        id: id.into(),
        name: "users".into(),
        address: "127.0.0.1".into(),
        port,
        tags: Vec::new(),
        meta: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_set_has_no_updates() {
        let set = [instance("a", 1), instance("b", 2)];
        assert!(diff(&set, &set).is_empty());
    }

    #[test]
    fn new_and_gone_instances_are_added_and_removed() {
        let old = [instance("a", 1), instance("b", 2)];
        let new = [instance("b", 2), instance("c", 3)];
        let expected = [
            Update::Removed(instance("a", 1)),
            Update::Added(instance("c", 3)),
        ];
        assert_eq!(diff(&old, &new), expected);
    }

    #[test]
    fn a_changed_instance_is_removed_then_added() {
        let expected = [
            Update::Removed(instance("a", 1)),
            Update::Added(instance("a", 2)),
        ];
        assert_eq!(diff(&[instance("a", 1)], &[instance("a", 2)]), expected);
    }
}
