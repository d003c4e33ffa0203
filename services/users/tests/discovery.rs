//! The users binary in a real Consul: two instances resolve and share the picks; SIGTERM
//! leaves Consul before NATS; SIGKILL turns the instance critical within a check interval.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use courier_discovery::testing::{client, has_id, until_check, until_healthy};
use courier_discovery::{CheckStatus, Resolver, Strategy};
use courier_testkit::{eventually, TestConsul, TestNats};

fn env(nats: &TestNats, consul: &TestConsul, database: &str) -> Vec<(&'static str, String)> {
    vec![
        ("NATS_URL", nats.url()),
        ("DATABASE_URL", database.to_owned()),
        ("CONSUL_HTTP_ADDR", consul.url()),
        ("COURIER_CONSUL__REGISTER", "true".into()),
        ("COURIER_CONSUL__CHECK_INTERVAL", "1s".into()),
        ("COURIER_CONSUL__TTL", "3s".into()),
    ]
}

#[tokio::test]
async fn two_instances_both_resolve_and_every_strategy_spreads_picks_over_them() {
    let (nats, consul) = (TestNats::start(), TestConsul::start());
    let (dir, db) = sqlite_file("two");
    let a = Binary::spawn(&env(&nats, &consul, db.url.expose()));
    let b = Binary::spawn(&env(&nats, &consul, db.url.expose()));
    let resolver = Resolver::watch(client(&consul), "users");
    let both = resolver
        .wait_for(|i| i.len() == 2, Duration::from_secs(15))
        .await;
    assert!(
        both,
        "both instances healthy: {:?}\n--- a:\n{}\n--- b:\n{}",
        resolver.instances(),
        a.log(),
        b.log()
    );
    for strategy in [
        Strategy::RoundRobin,
        Strategy::Random,
        Strategy::LeastInFlight,
    ] {
        let picked: HashSet<String> = (0..50)
            .filter_map(|_| resolver.pick(&strategy))
            .map(|p| p.instance.id.clone())
            .collect();
        assert_eq!(picked.len(), 2, "{strategy:?} uses both instances");
    }
    // Each picked instance answers on its own subject.
    let nats_client = async_nats::connect(nats.url()).await.unwrap();
    for instance in resolver.instances() {
        let subject = courier_actors::instance_subject(&instance.id, "users.list");
        let reply = nats_client
            .request(subject, "".into())
            .await
            .expect("the instance answers its own subject");
        assert!(reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error-Code"))
            .is_none());
    }
    resolver.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sigterm_leaves_consul_before_the_nats_subscriptions_stop() {
    let (nats, consul) = (TestNats::start(), TestConsul::start());
    let (dir, db) = sqlite_file("leave");
    let mut env = env(&nats, &consul, db.url.expose());
    env.push(("COURIER_USERS__HASH_WORKERS", "1".into()));
    let bin = Binary::spawn(&env);
    let nats_client = async_nats::connect(nats.url()).await.unwrap();
    let id = wait_for_users(&nats_client).await;
    let consul_client = client(&consul);
    until_healthy(
        &consul_client,
        "users",
        Duration::from_secs(10),
        "registration",
        |now| has_id(now, &id),
    )
    .await;

    // Keep the instance busy, so its drain takes a while after SIGTERM.
    let courier = courier_actors::Client::new(nats_client.clone(), Duration::from_secs(30));
    let creates: Vec<_> = (0..64)
        .map(|i| {
            let courier = courier.clone();
            tokio::spawn(async move {
                let req = courier_users::endpoints::CreateUser {
                    name: format!("U{i}"),
                    email: format!("u{i}@x.io"),
                    password: "correct horse".into(),
                };
                courier
                    .call::<_, courier_users::domain::User>(
                        "users.create",
                        &req,
                        &courier_actors::Meta::root(),
                    )
                    .await
            })
        })
        .collect();
    // Every create must have reached the instance before SIGTERM: one sent after the drain
    // began would rightly find no responder.
    let stats = format!("$SRV.STATS.users.{id}");
    eventually(Duration::from_secs(10), "all creates received", || async {
        let reply = nats_client.request(stats.clone(), "".into()).await.ok()?;
        let stats: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
        (stats["endpoints"][0]["num_requests"].as_u64()? == 64).then_some(())
    })
    .await;
    bin.terminate();
    until_healthy(
        &consul_client,
        "users",
        Duration::from_secs(5),
        "the instance to leave Consul",
        |now| !has_id(now, &id),
    )
    .await;
    let ping = nats_client
        .request(format!("$SRV.PING.users.{id}"), "".into())
        .await;
    assert!(
        ping.is_ok(),
        "out of Consul while still answering on NATS (draining)"
    );
    for create in creates {
        create
            .await
            .unwrap()
            .expect("requests in flight are answered");
    }
    let (code, stderr) = bin.wait(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    let deregistered = stderr.find("Deregistered from Consul").expect("logged");
    let draining = stderr.find("Draining.").expect("logged");
    assert!(stderr.contains("Drained."), "{stderr}");
    assert!(
        deregistered < draining,
        "deregister before the drain starts:\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sigkill_turns_the_instance_critical_within_a_check_interval() {
    let (nats, consul) = (TestNats::start(), TestConsul::start());
    let (dir, db) = sqlite_file("kill");
    let mut bin = Binary::spawn(&env(&nats, &consul, db.url.expose()));
    let nats_client = async_nats::connect(nats.url()).await.unwrap();
    let id = wait_for_users(&nats_client).await;
    let resolver = Resolver::watch(client(&consul), "users");
    assert!(
        resolver
            .wait_for(|i| i.iter().any(|x| x.id == id), Duration::from_secs(15))
            .await
    );
    let consul_client = client(&consul);
    bin.child.kill().unwrap();
    let killed = Instant::now();
    let http_check = courier_runtime::http_check_id(&id);
    until_check(
        &consul_client,
        &id,
        &http_check,
        CheckStatus::Critical,
        Duration::from_secs(5),
        "the HTTP check critical",
    )
    .await;
    let critical = killed.elapsed();
    assert!(
        resolver
            .wait_for(|i| i.iter().all(|x| x.id != id), Duration::from_secs(10))
            .await,
        "resolution drops it"
    );
    let gone = killed.elapsed();
    // One 1 s check interval, plus the check's own connect failure and scheduling slack on a
    // loaded 2-core machine.
    assert!(
        critical < Duration::from_millis(2000),
        "critical after {critical:?}"
    );
    // Resolution follows the check within a blocking query's round trip.
    assert!(
        gone < Duration::from_secs(4),
        "gone from resolution after {gone:?}"
    );
    eprintln!("SIGKILL: critical after {critical:?}, gone from resolution after {gone:?}");
    resolver.stop();
    let _ = std::fs::remove_dir_all(dir);
}
