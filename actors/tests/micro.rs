//! `$SRV.PING|INFO|STATS` in all three subject forms, validated against the official micro-v1
//! schemas, and the same counters in STATS and Prometheus.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use courier_actors::micro::Verb;
use courier_actors::{Client, Meta};
use courier_testkit::micro_schema::{assert_valid, Kind};
use serde_json::Value;

async fn ask(client: &async_nats::Client, subject: &str) -> Value {
    let reply = client
        .request(subject.to_owned(), Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
    serde_json::from_slice(&reply.payload).unwrap_or_else(|e| panic!("{subject}: {e}"))
}

fn kind(verb: Verb) -> Kind {
    match verb {
        Verb::Ping => Kind::Ping,
        Verb::Info => Kind::Info,
        Verb::Stats => Kind::Stats,
    }
}

#[actix_rt::test]
async fn every_verb_in_every_subject_form_answers_a_valid_reply() {
    let t = start().await;
    let id = t.running.id().to_owned();
    for verb in Verb::ALL {
        for subject in verb.subjects("calc", &id) {
            let reply = ask(&t.client, &subject).await;
            assert_valid(kind(verb), &reply);
            assert_eq!(reply["id"], id.as_str(), "{subject}");
            assert_eq!(reply["version"], "1.2.3-rc.1");
            assert_eq!(reply["metadata"]["team"], "core");
        }
    }
}

#[actix_rt::test]
async fn info_lists_every_endpoint_with_its_queue_group() {
    let t = start().await;
    let info = ask(&t.client, "$SRV.INFO.calc").await;
    assert_eq!(info["description"], "Arithmetic for tests");
    let endpoints = info["endpoints"].as_array().unwrap();
    let find = |name: &str| {
        endpoints
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {info}"))
    };
    assert_eq!(find("add")["subject"], "calc.add");
    assert_eq!(find("add")["queue_group"], "q");
    assert_eq!(find("add")["metadata"]["idempotent"], "true");
    assert_eq!(find("crunch")["queue_group"], "cpu");
    assert!(
        find("trace").get("queue_group").is_none(),
        "no queue group: {}",
        find("trace")
    );
    assert_eq!(endpoints.len(), 7);
}

#[actix_rt::test]
async fn two_instances_both_answer_the_bare_ping_and_only_one_its_own_id() {
    let t = start().await;
    let other = start_on(&t).await;
    let inbox = t.client.new_inbox();
    let mut replies = t.client.subscribe(inbox.clone()).await.unwrap();
    t.client
        .publish_with_reply("$SRV.PING", inbox.clone(), Bytes::new())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let msg = tokio::time::timeout(
            Duration::from_secs(5),
            futures::StreamExt::next(&mut replies),
        )
        .await
        .unwrap()
        .unwrap();
        let ping: Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_valid(Kind::Ping, &ping);
        ids.push(ping["id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    let mut expected = vec![t.running.id().to_owned(), other.id().to_owned()];
    expected.sort();
    assert_eq!(ids, expected);
    let own = ask(&t.client, &format!("$SRV.PING.calc.{}", other.id())).await;
    assert_eq!(own["id"], other.id());
}

#[actix_rt::test]
async fn stats_and_prometheus_report_the_same_counters() {
    let t = start().await;
    let client = Client::new(t.client.clone(), Duration::from_secs(5));
    for i in 0..5 {
        let _: Sum = client
            .call("calc.add", &Add { a: i, b: 1 }, &Meta::root())
            .await
            .unwrap();
    }
    let _ = client
        .call::<_, Sum>("calc.add", &Add { a: i64::MAX, b: 1 }, &Meta::root())
        .await
        .unwrap_err();
    let stats = ask(&t.client, "$SRV.STATS.calc").await;
    assert_valid(Kind::Stats, &stats);
    let add = stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "add")
        .unwrap()
        .clone();
    assert_eq!(add["num_requests"], 6);
    assert_eq!(add["num_errors"], 1);
    assert_eq!(add["last_error"], "422 overflow");
    assert!(add["processing_time"].as_u64().unwrap() > 0);
    assert_eq!(
        add["average_processing_time"].as_u64().unwrap(),
        add["processing_time"].as_u64().unwrap() / 6
    );

    let text = prometheus::TextEncoder::new()
        .encode_to_string(&t.registry.gather())
        .unwrap();
    let metric = |name: &str| -> f64 {
        let prefix = match name.strip_suffix("#422") {
            Some(name) => format!("{name}{{code=\"422\",endpoint=\"add\",service=\"calc\"}} "),
            None => format!("{name}{{endpoint=\"add\",service=\"calc\"}} "),
        };
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{prefix} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(metric("courier_endpoint_requests_total"), 6.0);
    assert_eq!(metric("courier_endpoint_errors_total#422"), 1.0);
    let sum_ns = (metric("courier_endpoint_processing_seconds_sum") * 1e9) as u64;
    assert!(
        sum_ns.abs_diff(add["processing_time"].as_u64().unwrap()) <= 1,
        "{sum_ns} vs {add}"
    );
}

/// A second instance of the calc service on the same server.
async fn start_on(t: &TestService) -> courier_actors::Running {
    use courier_actors::{Endpoint, Service, Supervised};
    let client = Client::new(t.client.clone(), Duration::from_secs(5));
    let calc = Supervised::local(move || Calc::new(client.clone()));
    Service::builder("calc", "1.2.3-rc.1")
        .endpoint(Endpoint::new::<Add>("add", "calc.add", calc))
        .build()
        .unwrap()
        .start(
            t.client.clone(),
            &Default::default(),
            &prometheus::Registry::new(),
        )
        .await
        .unwrap()
}

#[actix_rt::test]
async fn the_instance_subject_reaches_that_instance_only() {
    let t = start().await;
    let other = start_on(&t).await;
    let client = Client::new(t.client.clone(), Duration::from_secs(5));
    for _ in 0..5 {
        let subject = courier_actors::instance_subject(other.id(), "calc.add");
        let sum: Sum = client
            .call(&subject, &Add { a: 1, b: 1 }, &Meta::root())
            .await
            .unwrap();
        assert_eq!(sum, Sum { sum: 2 });
    }
    let requests = |stats: courier_actors::micro::StatsResponse| {
        stats
            .endpoints
            .iter()
            .find(|e| e.name == "add")
            .map(|e| e.num_requests)
            .unwrap()
    };
    assert_eq!(requests(other.stats()), 5);
    assert_eq!(requests(t.running.stats()), 0);
}

#[test]
fn endpoint_subjects_may_not_use_the_instance_or_dollar_prefixes() {
    use courier_actors::{Endpoint, Service, Supervised};
    actix_rt::System::new().block_on(async {
        let crunch = Supervised::sync(1, || Cruncher);
        for subject in ["_COURIER.x.calc.add", "$SRV.x", "$JS.API.x"] {
            let endpoint = Endpoint::new::<Crunch>("crunch", subject, crunch.clone());
            let built = Service::builder("calc", "1.0.0").endpoint(endpoint).build();
            assert!(built.is_err(), "{subject} must be refused");
        }
    });
}
