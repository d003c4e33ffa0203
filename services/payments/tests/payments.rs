//! The payments service over NATS, on SQLite: each rule of the contract, with the books
//! checked behind every answer.

mod common;

use std::time::{Duration, Instant};

use common::*;
use courier_contracts::payments::{Charge, GetPayment, Refund};
use courier_testkit::micro_schema::{assert_valid, Kind};
use serde_json::Value;

#[actix_rt::test]
async fn a_charge_within_the_limit_is_charged_once() {
    let t = sqlite("charge", |_| {}).await;
    flows::charged_once(&t, "a").await;
    assert_eq!(t.entries().await, 1);
    t.stop().await;
}

#[actix_rt::test]
async fn twenty_concurrent_duplicates_charge_once() {
    let t = sqlite("duplicates", |_| {}).await;
    flows::concurrent_duplicates(&t, "a").await;
    assert_eq!(t.entries().await, 1);
    t.stop().await;
}

#[actix_rt::test]
async fn over_the_limit_is_declined_without_an_entry_and_stays_declined() {
    let t = sqlite("declined", |_| {}).await;
    flows::declined_stays_declined(&t, "a").await;
    t.stop().await;
}

#[actix_rt::test]
async fn a_refund_gives_the_charge_back_once() {
    let t = sqlite("refund", |_| {}).await;
    flows::refunded_once(&t, "a").await;
    t.stop().await;
}

#[actix_rt::test]
async fn a_refund_before_the_charge_leaves_a_tombstone_and_nothing_charged() {
    let t = sqlite("tombstone", |_| {}).await;
    flows::refund_before_charge(&t, "a").await;
    assert_eq!(t.entries().await, 0);
    t.stop().await;
}

#[actix_rt::test]
async fn a_users_charges_at_once_stay_under_the_limit() {
    let t = sqlite("rush", |_| {}).await;
    flows::the_limit_holds_under_concurrency(&t, "a").await;
    t.stop().await;
}

#[actix_rt::test]
async fn the_user_limit_is_a_setting() {
    let t = sqlite("limit", |s| s.payments.user_limit = 100).await;
    let over = t.send(&charge("o1", "u1", 101)).await.unwrap();
    assert_payment(&over, "o1", "declined", 101);
    let within = t.send(&charge("o2", "u1", 100)).await.unwrap();
    assert_payment(&within, "o2", "charged", 100);
    t.stop().await;
}

#[actix_rt::test]
async fn the_first_attempts_fail_with_503_then_the_order_is_charged_once() {
    let t = sqlite("flaky", |s| s.payments.fail_first_attempts = 2).await;
    let body = charge("o1", "u1", 300);
    for attempt in 1..=2 {
        let e = error(t.send(&body).await);
        assert_eq!(
            (e.code, e.message.as_str()),
            (503, "provider unavailable"),
            "{attempt}"
        );
        // Nothing written: the order is still unknown.
        let get = t
            .send(&GetPayment {
                order_id: "o1".into(),
            })
            .await;
        assert_eq!(error(get).code, 404);
    }
    let third = t.send(&body).await.unwrap();
    assert_payment(&third, "o1", "charged", 300);
    assert_eq!(t.send(&body).await.unwrap(), third);
    assert_eq!(t.ledger("o1").await, ["charge 300"]);
    // Counted per order id: another order fails its own first attempts.
    assert_eq!(error(t.send(&charge("o2", "u1", 1)).await).code, 503);
    t.stop().await;
}

#[actix_rt::test]
async fn latency_is_added_before_a_charge_decides() {
    let t = sqlite("latency", |s| {
        s.payments.latency = Duration::from_millis(300)
    })
    .await;
    let started = Instant::now();
    let paid = t.send(&charge("o1", "u1", 1)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_payment(&paid, "o1", "charged", 1);
    t.stop().await;
}

#[actix_rt::test]
async fn bad_input_is_a_400_naming_the_field() {
    let t = sqlite("invalid", |_| {}).await;
    let with = |change: fn(&mut Charge)| {
        let mut body = charge("o1", "u1", 100);
        change(&mut body);
        body
    };
    let cases = [
        (with(|c| c.amount = 0), "amount"),
        (with(|c| c.amount = -1), "amount"),
        (with(|c| c.currency = "eur".into()), "currency"),
        (with(|c| c.currency = "EURO".into()), "currency"),
        (with(|c| c.order_id = String::new()), "order_id"),
        (with(|c| c.user_id = " ".into()), "user_id"),
    ];
    for (body, field) in cases {
        let e = error(t.send(&body).await);
        assert_eq!(
            (e.code, e.details),
            (400, Some(serde_json::json!({ "field": field })))
        );
    }
    let refund = error(
        t.send(&Refund {
            order_id: String::new(),
        })
        .await,
    );
    let get = error(
        t.send(&GetPayment {
            order_id: String::new(),
        })
        .await,
    );
    for e in [refund, get] {
        assert_eq!(
            (e.code, e.details),
            (400, Some(serde_json::json!({ "field": "order_id" })))
        );
    }
    assert_eq!(t.entries().await, 0);
    // Nothing was stored for the refused charge.
    assert_eq!(
        error(
            t.send(&GetPayment {
                order_id: "o1".into()
            })
            .await
        )
        .code,
        404
    );
    t.stop().await;
}

#[actix_rt::test]
async fn srv_info_names_the_three_endpoints_in_a_valid_reply() {
    let t = sqlite("info", |_| {}).await;
    let reply = t
        .raw
        .request("$SRV.INFO.payments", Default::default())
        .await
        .unwrap();
    let info: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_valid(Kind::Info, &info);
    assert_eq!(info["name"], "payments");
    let endpoints = info["endpoints"].as_array().unwrap();
    let subjects: Vec<&str> = endpoints
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        ["payments.charge", "payments.refund", "payments.get"]
    );
    // Internal only: no endpoint declares an HTTP route for the gateway.
    for endpoint in endpoints {
        assert!(
            endpoint["metadata"].get("http.route").is_none(),
            "{endpoint}"
        );
    }
    t.stop().await;
}
