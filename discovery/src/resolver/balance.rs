//! Picking one instance: [`Strategy`], the [`Pick`] that counts a call in flight, and
//! [`Discovery`], which offers the same pick over a [`Resolver`] or a fixed list.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::Rng;

use super::{Instance, Resolver};

/// How to choose among healthy instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Each in turn.
    #[default]
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// The power of two choices: of two instances drawn at random, the one with fewer calls in
    /// flight (counted by the [`Pick`]s still held). Nearly as good as scanning all, without
    /// every caller piling onto the same "least loaded" one.
    LeastInFlight,
}

/// A chosen instance. The call counts as in flight on it until the `Pick` is dropped: hold it
/// for the duration of the call.
#[derive(Debug)]
pub struct Pick {
    /// The instance to call.
    pub instance: Instance,
    _in_flight: InFlight,
}

/// One call in flight on an instance; decrements its counter on drop.
#[derive(Debug)]
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Round-robin position and in-flight counts of one set of instances.
#[derive(Debug, Default)]
pub(super) struct Balancer {
    next: AtomicUsize,
    in_flight: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

impl Balancer {
    /// One of `instances` for which `keep` holds, by `strategy`, counted in flight until the
    /// [`Pick`] drops.
    pub(super) fn pick(
        &self,
        instances: &[Instance],
        strategy: &Strategy,
        keep: impl Fn(&Instance) -> bool,
    ) -> Option<Pick> {
        let eligible: Vec<&Instance> = instances.iter().filter(|i| keep(i)).collect();
        if eligible.is_empty() {
            return None;
        }
        let chosen = match strategy {
            Strategy::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % eligible.len(),
            Strategy::Random => rand::thread_rng().gen_range(0..eligible.len()),
            Strategy::LeastInFlight => self.least_of_two(&eligible),
        };
        let instance = eligible[chosen].clone();
        let counter = Arc::clone(self.counters().entry(instance.id.clone()).or_default());
        counter.fetch_add(1, Ordering::Relaxed);
        Some(Pick {
            instance,
            _in_flight: InFlight(counter),
        })
    }

    /// The index of the less busy of two distinct instances drawn at random.
    fn least_of_two(&self, instances: &[&Instance]) -> usize {
        if instances.len() == 1 {
            return 0;
        }
        let mut rng = rand::thread_rng();
        let first = rng.gen_range(0..instances.len());
        let mut second = rng.gen_range(0..instances.len() - 1);
        if second >= first {
            second += 1;
        }
        let busy = |i: usize| self.in_flight(&instances[i].id);
        if busy(second) < busy(first) {
            second
        } else {
            first
        }
    }

    /// Calls in flight on `id`.
    pub(super) fn in_flight(&self, id: &str) -> usize {
        let counters = self.counters();
        counters.get(id).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Forgets the counters of instances no longer in the set (held picks keep theirs alive).
    pub(super) fn retain(&self, instances: &[Instance]) {
        self.counters()
            .retain(|id, _| instances.iter().any(|i| &i.id == id));
    }

    fn counters(&self) -> MutexGuard<'_, HashMap<String, Arc<AtomicUsize>>> {
        // A panic elsewhere while holding the lock leaves the counters valid: use them.
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fixed list of instances with its own round-robin position and in-flight counts. Cheap to
/// clone; clones share the counts.
#[derive(Debug, Clone)]
pub struct StaticInstances {
    instances: Arc<[Instance]>,
    balancer: Arc<Balancer>,
}

impl StaticInstances {
    /// Serves `instances` as they are, forever.
    pub fn new(instances: Vec<Instance>) -> Self {
        Self {
            instances: instances.into(),
            balancer: Arc::default(),
        }
    }

    /// The list.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }
}

impl From<Vec<Instance>> for StaticInstances {
    fn from(instances: Vec<Instance>) -> Self {
        Self::new(instances)
    }
}

/// Where instances come from: Consul, or a fixed list (unit tests of routing, a run without
/// Consul). Both pick the same way.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// The healthy instances Consul lists, kept current by a watch.
    Consul(Resolver),
    /// A fixed list: `Discovery::Static(vec.into())` or `Discovery::from(vec)`.
    Static(StaticInstances),
}

impl Discovery {
    /// The instances now.
    pub fn instances(&self) -> Vec<Instance> {
        match self {
            Self::Consul(resolver) => resolver.instances(),
            Self::Static(fixed) => fixed.instances().to_vec(),
        }
    }

    /// One instance by `strategy`, or `None` when there is none.
    pub fn pick(&self, strategy: &Strategy) -> Option<Pick> {
        match self {
            Self::Consul(resolver) => resolver.pick(strategy),
            Self::Static(fixed) => fixed.balancer.pick(fixed.instances(), strategy, |_| true),
        }
    }

    /// One instance for which `keep` holds (say, not one already tried), by `strategy`.
    pub fn pick_where(
        &self,
        strategy: &Strategy,
        keep: impl Fn(&Instance) -> bool,
    ) -> Option<Pick> {
        match self {
            Self::Consul(resolver) => resolver.pick_where(strategy, keep),
            Self::Static(fixed) => fixed.balancer.pick(fixed.instances(), strategy, keep),
        }
    }
}

impl From<Vec<Instance>> for Discovery {
    fn from(instances: Vec<Instance>) -> Self {
        Self::Static(instances.into())
    }
}

impl From<Resolver> for Discovery {
    fn from(resolver: Resolver) -> Self {
        Self::Consul(resolver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::instance;

    fn two() -> Discovery {
        Discovery::from(vec![instance("a", 1), instance("b", 2)])
    }

    fn ids(discovery: &Discovery, strategy: Strategy, n: usize) -> Vec<String> {
        let picks = (0..n).map(|_| discovery.pick(&strategy).expect("two instances"));
        picks.map(|p| p.instance.id).collect()
    }

    #[test]
    fn round_robin_takes_each_in_turn() {
        assert_eq!(ids(&two(), Strategy::RoundRobin, 4), ["a", "b", "a", "b"]);
    }

    #[test]
    fn random_and_least_in_flight_spread_over_both() {
        for strategy in [Strategy::Random, Strategy::LeastInFlight] {
            let picked = ids(&two(), strategy, 200);
            let a = picked.iter().filter(|id| *id == "a").count();
            assert!(
                (40..=160).contains(&a),
                "{strategy:?} picked a {a} times in 200"
            );
        }
    }

    #[test]
    fn least_in_flight_avoids_an_instance_with_a_held_pick() {
        let discovery = two();
        let held = discovery
            .pick(&Strategy::RoundRobin)
            .expect("two instances");
        assert_eq!(held.instance.id, "a");
        assert!(ids(&discovery, Strategy::LeastInFlight, 50)
            .iter()
            .all(|id| id == "b"));
    }

    #[test]
    fn a_dropped_pick_is_no_longer_in_flight() {
        let Discovery::Static(fixed) = two() else {
            unreachable!("two() is static")
        };
        let discovery = Discovery::Static(fixed.clone());
        let pick = discovery
            .pick(&Strategy::RoundRobin)
            .expect("two instances");
        assert_eq!(fixed.balancer.in_flight("a"), 1);
        drop(pick);
        assert_eq!(fixed.balancer.in_flight("a"), 0);
    }

    #[test]
    fn an_empty_list_picks_nothing() {
        let empty = Discovery::from(Vec::new());
        for strategy in [
            Strategy::RoundRobin,
            Strategy::Random,
            Strategy::LeastInFlight,
        ] {
            assert!(empty.pick(&strategy).is_none());
        }
    }

    #[test]
    fn pick_where_leaves_out_what_the_filter_refuses() {
        for strategy in [
            Strategy::RoundRobin,
            Strategy::Random,
            Strategy::LeastInFlight,
        ] {
            for _ in 0..20 {
                let pick = two()
                    .pick_where(&strategy, |i| i.id != "a")
                    .expect("b is left");
                assert_eq!(pick.instance.id, "b");
            }
            assert!(two().pick_where(&strategy, |_| false).is_none());
        }
    }

    #[test]
    fn one_instance_is_always_the_pick() {
        let one = Discovery::from(vec![instance("a", 1)]);
        assert_eq!(ids(&one, Strategy::LeastInFlight, 3), ["a", "a", "a"]);
    }
}
