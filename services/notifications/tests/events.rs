//! The notifications service on a real nats-server (JetStream) and real databases: events
//! published while it is down are handled when it starts, a redelivered event makes one
//! notification, a poison event goes to the dead letters without stopping the ones after it,
//! and `notifications.list` pages a user's own notifications.

mod common;

use std::time::Duration;

use courier_actors::durable::dead_letter_header as dl;
use courier_actors::CallError;
use courier_contracts::notifications::*;
use courier_contracts::orders::{OrderState, ORDER_CANCELLED, ORDER_CONFIRMED};
use courier_store::testing::TestDatabase;
use courier_testkit::micro_schema::{assert_valid, Kind};
use courier_testkit::{eventually, TestNats};
use serde_json::Value;

use common::*;

#[actix_rt::test]
async fn an_event_published_while_the_service_is_down_is_handled_when_it_starts() {
    let nats = TestNats::start();
    let (_raw, publisher) = publisher(&nats.url()).await;
    let ada = user("u-ada", "Ada", "ada@example.com");
    publish(&publisher, USER_CREATED, "e-ada", json(&ada)).await;

    let t = notifications(&nats.url(), TestDatabase::sqlite("down"), |_| {}).await;
    let found = wait_for(&t, &ada.id, 1, |_| true).await;
    let n = &found[0];
    assert_eq!(n.kind, NotificationKind::Welcome);
    assert_eq!(
        (n.event_id.as_str(), n.order_id.as_deref()),
        ("e-ada", None)
    );
    assert!(n.body.contains("Hello Ada"), "{}", n.body);
    assert!(!n.delivered, "no SMTP server configured: stored only");
    t.remove().await;
    drop(nats);
}

/// The same event stored twice in the stream (its `Nats-Msg-Id` forgotten past the 1 s
/// duplicate window) reaches the consumer twice: one notification.
async fn a_redelivered_event_makes_one_notification(db: TestDatabase) {
    let nats = TestNats::start();
    let t = notifications(&nats.url(), db, |_| {}).await;
    let (raw, publisher) = publisher(&nats.url()).await;
    let ada = user("u-ada", "Ada", "ada@example.com");
    publish(&publisher, USER_CREATED, "e-twice", json(&ada)).await;
    wait_for(&t, &ada.id, 1, |_| true).await;

    // Past the stream's duplicate window, so the same id is stored again.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    publish(&publisher, USER_CREATED, "e-twice", json(&ada)).await;
    let js = async_nats::jetstream::new(raw.clone());
    let mut stream = js.get_stream(events().stream).await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        2,
        "stored twice"
    );
    consumer_done(&raw, "notifications_welcome", 2).await;

    let found = list(&t, &ada.id).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].event_id, "e-twice");
    // Acknowledged as handled, not given up on (the table's unique key would also keep a
    // second row out, but by failing the event until it reached the dead letters).
    let letters = js.get_stream(events().dead_letter_stream).await.unwrap();
    let subject = "deadletter.notifications.notifications_welcome";
    assert!(letters
        .get_last_raw_message_by_subject(subject)
        .await
        .is_err());
    t.remove().await;
    drop(nats);
}

#[actix_rt::test]
async fn a_redelivered_event_makes_one_notification_on_sqlite() {
    a_redelivered_event_makes_one_notification(TestDatabase::sqlite("twice")).await;
}

#[actix_rt::test]
async fn a_redelivered_event_makes_one_notification_on_postgresql() {
    if let Some(db) = TestDatabase::postgres("notifications_twice").await {
        a_redelivered_event_makes_one_notification(db).await;
    }
}

#[actix_rt::test]
async fn a_poison_event_is_dead_lettered_and_the_next_one_is_handled() {
    let nats = TestNats::start();
    let t = notifications(&nats.url(), TestDatabase::sqlite("poison"), |_| {}).await;
    let (raw, publisher) = publisher(&nats.url()).await;
    publish(
        &publisher,
        ORDER_CONFIRMED,
        "e-poison",
        b"{not json".to_vec(),
    )
    .await;
    let confirmed = order("o-1", "u-ada", OrderState::Confirmed, None);
    publish(&publisher, ORDER_CONFIRMED, "e-good", json(&confirmed)).await;
    let cancelled = order(
        "o-2",
        "u-ada",
        OrderState::Cancelled,
        Some("payment declined"),
    );
    publish(&publisher, ORDER_CANCELLED, "e-cancel", json(&cancelled)).await;

    // Two consumers, each at its own pace: in either order.
    let found = wait_for(&t, "u-ada", 2, |_| true).await;
    let of = |kind| {
        found
            .iter()
            .find(|n| n.kind == kind)
            .expect("one of each kind")
    };
    assert_eq!(
        of(NotificationKind::OrderConfirmed).order_id.as_deref(),
        Some("o-1")
    );
    let cancel = of(NotificationKind::OrderCancelled);
    assert_eq!(cancel.order_id.as_deref(), Some("o-2"));
    assert!(cancel.body.contains("payment declined"), "{}", cancel.body);

    let subject = "deadletter.notifications.notifications_order_confirmed";
    let js = async_nats::jetstream::new(raw.clone());
    let letter = eventually(WITHIN, "the dead letter", || async {
        let stream = js.get_stream(events().dead_letter_stream).await.ok()?;
        stream.get_last_raw_message_by_subject(subject).await.ok()
    })
    .await;
    let header = |name| letter.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header(dl::REASON).as_deref(), Some("decode_error"));
    assert_eq!(header(dl::EVENT_ID).as_deref(), Some("e-poison"));
    assert_eq!(letter.payload.as_ref(), b"{not json");
    t.remove().await;
    drop(nats);
}

#[actix_rt::test]
async fn the_list_is_the_callers_own_paged_and_needs_a_user() {
    let nats = TestNats::start();
    let t = notifications(&nats.url(), TestDatabase::sqlite("list"), |_| {}).await;
    let (_raw, publisher) = publisher(&nats.url()).await;
    let ada = user("u-ada", "Ada", "ada@example.com");
    publish(&publisher, USER_CREATED, "e-ada", json(&ada)).await;
    for i in 1..=2 {
        let o = order(&format!("o-{i}"), &ada.id, OrderState::Confirmed, None);
        publish(&publisher, ORDER_CONFIRMED, &format!("e-o{i}"), json(&o)).await;
    }
    let bob = user("u-bob", "Bob", "bob@example.com");
    publish(&publisher, USER_CREATED, "e-bob", json(&bob)).await;
    let all = wait_for(&t, &ada.id, 3, |_| true).await;
    wait_for(&t, &bob.id, 1, |_| true).await;

    // Through the gateway the token's user wins over a `user_id` in the request.
    let first = ListNotifications {
        user_id: Some(bob.id.clone()),
        limit: Some(2),
        after: None,
    };
    let page = list_as(&t, &ada.id, &first).await;
    assert_eq!(page.notifications, all[..2]);
    let rest = ListNotifications {
        limit: Some(2),
        after: page.next,
        ..Default::default()
    };
    let page = list_as(&t, &ada.id, &rest).await;
    assert_eq!((page.notifications, page.next), (all[2..].to_vec(), None));

    let nobody = t.send(&ListNotifications::default()).await;
    match nobody {
        Err(CallError::Service { error, .. }) => {
            assert_eq!(error.code, 400);
            assert_eq!(error.details.unwrap()["field"], "user_id");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    t.remove().await;
    drop(nats);
}

#[actix_rt::test]
async fn srv_info_lists_the_endpoint_with_its_route_in_a_valid_reply() {
    let nats = TestNats::start();
    let t = notifications(&nats.url(), TestDatabase::sqlite("info"), |_| {}).await;
    let subject = format!("$SRV.INFO.notifications.{}", t.id);
    let reply = t.raw.request(subject, Vec::new().into()).await.unwrap();
    let info: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_valid(Kind::Info, &info);
    let endpoints = info["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    assert_eq!(endpoints[0]["subject"], "notifications.list");
    let metadata = &endpoints[0]["metadata"];
    assert_eq!(metadata["http.route"], "GET /notifications");
    assert_eq!(metadata["http.auth"], "bearer");
    t.remove().await;
    drop(nats);
}
