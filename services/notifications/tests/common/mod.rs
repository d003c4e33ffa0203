//! What the notifications tests share: the service on a test NATS server, events published
//! the way the services' outbox relays publish them, and the list read back.

#![allow(dead_code)] // Each test binary uses its own part of it.

use std::time::Duration;

use courier_actors::durable::{ensure_streams, OutgoingEvent, Publisher};
use courier_actors::{Caller, Codec, DrainReport, Meta};
use courier_config::EventsSettings;
use courier_contracts::notifications::{ListNotifications, Notification, NotificationPage};
use courier_contracts::orders::{Order, OrderLine, OrderState};
use courier_contracts::users::User;
use courier_runtime::testing::TestService;
use courier_store::testing::TestDatabase;
use courier_testkit::eventually;

pub type Running = TestService<anyhow::Result<DrainReport>>;

pub const USER_CREATED: &str = "events.users.created";

/// How long a test waits for an event to be handled.
pub const WITHIN: Duration = Duration::from_secs(15);

/// The events settings of every test: the stream forgets a `Nats-Msg-Id` after 1 s, so a test
/// can store one event twice; redeliveries come at once.
pub fn events() -> EventsSettings {
    EventsSettings {
        duplicate_window: Duration::from_secs(1),
        backoff: vec![Duration::from_millis(100)],
        ..EventsSettings::default()
    }
}

/// The notifications service on the NATS server at `url`, with `configure` applied last.
pub async fn notifications(
    url: &str,
    db: TestDatabase,
    configure: impl FnOnce(&mut courier_notifications::Settings) + Send + 'static,
) -> Running {
    let configure = move |s: &mut courier_notifications::Settings| {
        s.events = events();
        configure(s);
    };
    TestService::join(url, db, configure, |s, on, stop| {
        courier_notifications::run(s, on, stop)
    })
    .await
}

/// A connection to the test's server with the streams made (as a publishing service would).
pub async fn publisher(url: &str) -> (async_nats::Client, Publisher) {
    let raw = async_nats::connect(url).await.expect("connect to NATS");
    ensure_streams(&raw, &events()).await.expect("streams");
    let publisher = Publisher::new(raw.clone());
    (raw, publisher)
}

/// Stores an event with id `id` (its `Nats-Msg-Id`) and `payload` (JSON) on `subject`.
pub async fn publish(publisher: &Publisher, subject: &str, id: &str, payload: Vec<u8>) {
    let event = OutgoingEvent {
        id: id.to_owned(),
        subject: subject.to_owned(),
        payload: payload.into(),
        codec: Codec::Json,
        request_id: Some(format!("req-{id}")),
        traceparent: None,
    };
    publisher
        .publish(event)
        .await
        .expect("the stream stores it");
}

pub fn user(id: &str, name: &str, email: &str) -> User {
    User {
        id: id.to_owned(),
        name: name.to_owned(),
        email: email.to_owned(),
        roles: vec![],
        created_at: "2026-01-01T00:00:00Z".to_owned(),
        updated_at: "2026-01-01T00:00:00Z".to_owned(),
    }
}

pub fn order(id: &str, user_id: &str, state: OrderState, reason: Option<&str>) -> Order {
    Order {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        lines: vec![OrderLine {
            product_id: "tea".to_owned(),
            quantity: 2,
            price: 450,
        }],
        total: 900,
        currency: "EUR".to_owned(),
        state,
        reason: reason.map(str::to_owned),
        created_at: "2026-01-01T00:00:00Z".to_owned(),
        updated_at: "2026-01-01T00:00:00Z".to_owned(),
    }
}

pub fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialisable")
}

/// `user_id`'s notifications, asked from inside the system.
pub async fn list(t: &Running, user_id: &str) -> Vec<Notification> {
    let req = ListNotifications {
        user_id: Some(user_id.to_owned()),
        ..Default::default()
    };
    t.send(&req)
        .await
        .expect("notifications.list")
        .notifications
}

/// The notifications of the caller `user_id`, as the gateway asks (token subject).
pub async fn list_as(t: &Running, user_id: &str, req: &ListNotifications) -> NotificationPage {
    let mut meta = Meta::root();
    meta.caller = Some(Caller {
        subject: user_id.to_owned(),
        roles: vec![],
    });
    t.client.send(req, &meta).await.expect("notifications.list")
}

/// `user_id`'s notifications once there are `n` of them that `ready` accepts.
pub async fn wait_for(
    t: &Running,
    user_id: &str,
    n: usize,
    ready: impl Fn(&Notification) -> bool,
) -> Vec<Notification> {
    let what = format!("{n} notification(s) for {user_id}");
    eventually(WITHIN, &what, || async {
        let found = list(t, user_id).await;
        (found.len() == n && found.iter().all(&ready)).then_some(found)
    })
    .await
}

/// Waits until durable consumer `durable` has acknowledged every event it was given and has
/// been given `delivered` (stream sequence): nothing left for it to do.
pub async fn consumer_done(raw: &async_nats::Client, durable: &str, delivered: u64) {
    let js = async_nats::jetstream::new(raw.clone());
    let what = format!("consumer {durable} to finish");
    eventually(WITHIN, &what, || async {
        let stream = js.get_stream(events().stream).await.ok()?;
        let info = stream.consumer_info(durable).await.ok()?;
        let done = info.delivered.stream_sequence >= delivered
            && info.num_ack_pending == 0
            && info.num_pending == 0;
        done.then_some(())
    })
    .await
}
