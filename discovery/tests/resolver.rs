//! `Resolver` against a real dev agent: updates, picks over live instances, and outages.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{registration, SOON};
use courier_discovery::testing::client;
use courier_discovery::{Consul, Discovery, Instance, Resolver, Strategy, Update};
use courier_testkit::TestConsul;
use tokio::sync::broadcast;

/// Registers `id` in service `users` without checks (so it is healthy at once).
async fn register(consul: &Consul, id: &str, port: u16) {
    let instance = registration(id, "users", port, vec![]);
    consul.register(&instance).await.expect("register");
}

/// The next update, within [`SOON`].
async fn next(updates: &mut broadcast::Receiver<Update>) -> Update {
    let update = tokio::time::timeout(SOON, updates.recv()).await;
    update
        .expect("an update in time")
        .expect("the resolver is alive")
}

fn ids(instances: &[Instance]) -> Vec<&str> {
    instances.iter().map(|i| i.id.as_str()).collect()
}

#[tokio::test]
async fn the_resolver_announces_instances_added_and_removed() {
    let agent = TestConsul::start();
    let consul = client(&agent);
    let resolver = Resolver::watch(consul.clone(), "users");
    let mut updates = resolver.updates();

    register(&consul, "users-1", 1).await;
    let Update::Added(added) = next(&mut updates).await else {
        panic!("expected Added")
    };
    assert_eq!((added.id.as_str(), added.port), ("users-1", 1));
    assert_eq!(ids(&resolver.instances()), ["users-1"]);

    consul.deregister("users-1").await.expect("deregister");
    let Update::Removed(removed) = next(&mut updates).await else {
        panic!("expected Removed")
    };
    assert_eq!(removed, added);
    assert!(resolver.instances().is_empty());
}

#[tokio::test]
async fn picks_spread_over_two_live_instances_and_avoid_a_busy_one() {
    let agent = TestConsul::start();
    let consul = client(&agent);
    register(&consul, "users-1", 1).await;
    register(&consul, "users-2", 2).await;
    let resolver = Resolver::watch(consul, "users");
    assert!(resolver.wait_for(|set| set.len() == 2, SOON).await);

    for strategy in [
        Strategy::RoundRobin,
        Strategy::Random,
        Strategy::LeastInFlight,
    ] {
        let mut counts = BTreeMap::<String, usize>::new();
        for _ in 0..100 {
            let pick = resolver.pick(&strategy).expect("two instances");
            *counts.entry(pick.instance.id).or_default() += 1;
        }
        assert_eq!(counts.len(), 2, "{strategy:?} used only {counts:?}");
        assert!(
            counts.values().all(|&n| n >= 20),
            "{strategy:?} spread {counts:?}"
        );
    }

    let busy = resolver.pick(&Strategy::RoundRobin).expect("two instances");
    assert_eq!(resolver.in_flight(&busy.instance.id), 1);
    let discovery = Discovery::Consul(resolver.clone());
    for _ in 0..20 {
        let pick = discovery
            .pick(&Strategy::LeastInFlight)
            .expect("two instances");
        assert_ne!(
            pick.instance.id, busy.instance.id,
            "picked the busy instance"
        );
    }
    drop(busy);
    assert_eq!(
        resolver.in_flight("users-1") + resolver.in_flight("users-2"),
        0
    );
}

#[tokio::test]
async fn the_cache_is_served_while_consul_is_down_and_the_watch_resumes_after_restart() {
    let mut agent = TestConsul::start();
    let consul = client(&agent);
    register(&consul, "users-1", 1).await;
    let resolver = Resolver::watch(consul.clone(), "users");
    assert!(resolver.wait_for(|set| set.len() == 1, SOON).await);

    agent.stop();
    assert!(!consul.leader_ok().await, "the agent is down");
    // The watch sees the outage at once (its connection drops) and keeps serving its cache.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert_eq!(ids(&resolver.instances()), ["users-1"]);
        assert!(resolver.pick(&Strategy::RoundRobin).is_some());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    agent.restart(); // same port and data dir: users-1 comes back from the agent's state
    register(&consul, "users-2", 2).await;
    let both = |set: &[Instance]| ids(set) == ["users-1", "users-2"];
    assert!(
        resolver.wait_for(both, SOON).await,
        "got {:?}",
        resolver.instances()
    );
}

#[tokio::test]
async fn a_stopped_resolver_keeps_its_last_set_and_sees_no_more_changes() {
    let agent = TestConsul::start();
    let consul = client(&agent);
    register(&consul, "users-1", 1).await;
    let resolver = Resolver::watch(consul.clone(), "users");
    assert!(resolver.wait_for(|set| set.len() == 1, SOON).await);

    resolver.stop();
    register(&consul, "users-2", 2).await;
    let changed = resolver
        .wait_for(|set| set.len() != 1, Duration::from_secs(1))
        .await;
    assert!(!changed, "a stopped resolver still watches");
    assert_eq!(ids(&resolver.instances()), ["users-1"]);
}

#[tokio::test]
async fn wait_for_gives_up_after_its_deadline() {
    let agent = TestConsul::start();
    let resolver = Resolver::watch_with_wait(client(&agent), "nobody", Duration::from_secs(1));
    let started = Instant::now();
    assert!(
        !resolver
            .wait_for(|set| !set.is_empty(), Duration::from_millis(300))
            .await
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}
