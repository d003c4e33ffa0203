//! The `Consul` client against a real dev agent: registration, checks, health, blocking queries.

mod common;

use std::time::{Duration, Instant};

use common::{http_check, ok_server, registration, ttl_check, SOON};
use courier_discovery::testing::{self, client};
use courier_discovery::{CheckStatus, Consul, DiscoveryError, Instance};
use courier_testkit::TestConsul;

/// The ids of the healthy instances of `service` now.
async fn healthy_ids(consul: &Consul, service: &str) -> Vec<String> {
    let instances = testing::healthy(consul, service).await.expect("health");
    instances.into_iter().map(|i| i.id).collect()
}

/// Waits until the healthy instances of `service` are `ids`, in that order. Returns the index
/// and the instances.
async fn until_healthy(consul: &Consul, service: &str, ids: &[&str]) -> (u64, Vec<Instance>) {
    let what = format!("healthy {service} to be {ids:?}");
    testing::until_healthy(consul, service, SOON, &what, |now| {
        now.iter().map(|i| i.id.as_str()).eq(ids.iter().copied())
    })
    .await
}

#[tokio::test]
async fn an_instance_is_healthy_once_its_http_and_ttl_checks_pass() {
    let agent = TestConsul::start();
    let consul = client(&agent);
    let health = ok_server().await;
    let checks = vec![
        http_check("users-1", format!("http://{health}/health/ready")),
        ttl_check("users-1", Duration::from_secs(30)),
    ];
    consul
        .register(&registration("users-1", "users", 9090, checks))
        .await
        .expect("register");
    // A new TTL check starts critical (the agent's own view is immediate).
    let ttl_status = consul.checks("users-1").await.expect("checks")[1].1;
    assert_eq!(ttl_status, CheckStatus::Critical);
    assert!(healthy_ids(&consul, "users").await.is_empty());

    consul
        .update_ttl("users-1:ttl", CheckStatus::Passing, "ok")
        .await
        .expect("update TTL");
    let (_, instances) = until_healthy(&consul, "users", &["users-1"]).await;
    let expected = Instance {
        id: "users-1".into(),
        name: "users".into(),
        address: "127.0.0.1".into(),
        port: 9090,
        tags: vec!["test".into()],
        meta: [("version".to_owned(), "0.1.0".to_owned())].into(),
    };
    assert_eq!(instances, [expected]);
    let checks = consul.checks("users-1").await.expect("checks");
    let passing = CheckStatus::Passing;
    assert_eq!(
        checks,
        [
            ("users-1:ready".into(), passing),
            ("users-1:ttl".into(), passing)
        ]
    );
}

#[tokio::test]
async fn a_ttl_check_not_updated_turns_critical_and_the_instance_leaves_health() {
    let agent = TestConsul::start();
    let consul = client(&agent);
    let ttl = Duration::from_secs(1);
    let checks = vec![ttl_check("users-1", ttl)];
    consul
        .register(&registration("users-1", "users", 9090, checks))
        .await
        .expect("register");
    consul
        .update_ttl("users-1:ttl", CheckStatus::Passing, "ok")
        .await
        .expect("update TTL");
    let passed = Instant::now();
    until_healthy(&consul, "users", &["users-1"]).await;

    until_healthy(&consul, "users", &[]).await;
    assert!(
        passed.elapsed() >= ttl - Duration::from_millis(100),
        "left before its TTL"
    );
    let checks = consul.checks("users-1").await.expect("checks");
    assert_eq!(checks, [("users-1:ttl".into(), CheckStatus::Critical)]);
}

#[tokio::test]
async fn deregister_removes_the_instance_and_its_checks() {
    let agent = TestConsul::start();
    let consul = client(&agent);
    let checks = vec![ttl_check("users-1", Duration::from_secs(30))];
    consul
        .register(&registration("users-1", "users", 9090, checks))
        .await
        .expect("register");
    consul
        .update_ttl("users-1:ttl", CheckStatus::Passing, "")
        .await
        .expect("update TTL");
    until_healthy(&consul, "users", &["users-1"]).await;

    consul.deregister("users-1").await.expect("deregister");
    until_healthy(&consul, "users", &[]).await;
    assert!(consul.checks("users-1").await.expect("checks").is_empty());
    // Consul 1.8 answers 200 for an id it does not know: deregistering twice is fine.
    consul
        .deregister("users-1")
        .await
        .expect("deregister again");
}

#[tokio::test]
async fn updating_an_unknown_ttl_check_is_consuls_500() {
    let agent = TestConsul::start();
    let error = client(&agent)
        .update_ttl("nope", CheckStatus::Passing, "")
        .await;
    let error = error.expect_err("no such check");
    assert!(
        matches!(error, DiscoveryError::Status { code: 500, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_blocking_query_returns_promptly_when_the_set_changes() {
    let agent = TestConsul::start();
    let consul = client(&agent);
    let users_1 = registration("users-1", "users", 1, vec![]);
    consul.register(&users_1).await.expect("register");
    let (mut index, _) = until_healthy(&consul, "users", &["users-1"]).await;

    let writer = consul.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await; // let the query block first
        let users_2 = registration("users-2", "users", 2, vec![]);
        writer.register(&users_2).await.expect("register users-2");
    });
    let started = Instant::now();
    let wait = Duration::from_secs(20);
    loop {
        let answer = consul.healthy("users", Some(index), wait).await;
        let (next, instances) = answer.expect("health");
        assert!(next >= index, "index {next} after {index}");
        if instances.len() == 2 {
            break;
        }
        // Woken by a change elsewhere (Consul's indexes are coarse): block again, as a watch.
        index = next;
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} of a {wait:?} wait"
    );
}

#[tokio::test]
async fn a_blocking_query_returns_after_its_wait_when_nothing_changes() {
    let agent = TestConsul::start();
    let consul = client(&agent);
    let users_1 = registration("users-1", "users", 1, vec![]);
    consul.register(&users_1).await.expect("register");
    let (mut index, first) = until_healthy(&consul, "users", &["users-1"]).await;

    let wait = Duration::from_secs(1);
    for _ in 0..5 {
        let started = Instant::now();
        let answer = consul.healthy("users", Some(index), wait).await;
        let (next, instances) = answer.expect("health");
        let took = started.elapsed();
        assert_eq!(instances, first, "nothing changed");
        if next == index {
            // The wait ran out. Consul adds up to wait/16 of jitter; the upper bound is
            // generous for a loaded machine.
            let (at_least, at_most) = (wait - Duration::from_millis(50), wait * 4);
            assert!(took >= at_least && took < at_most, "took {took:?}");
            return;
        }
        // Woken by a change elsewhere (Consul's indexes are coarse): block again, as a watch.
        index = next;
    }
    panic!("five blocking queries in a row were woken by changes elsewhere");
}

#[tokio::test]
async fn leader_ok_says_whether_the_agent_answers() {
    let mut agent = TestConsul::start();
    let consul = client(&agent);
    assert!(consul.leader_ok().await);
    agent.stop();
    assert!(!consul.leader_ok().await);
}
