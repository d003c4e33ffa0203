//! Durable events against a real nats-server with JetStream (a store of each test's own):
//! stored once, delivered until handled, retried with backoff, dead-lettered with the reason,
//! drained without loss, and streams that any number of instances may ensure at once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use async_nats::HeaderMap;
use bytes::Bytes;
use courier_actors::durable::{dead_letter_header, ensure_streams, Delivery, EventError};
use courier_actors::meta::header;
use courier_actors::Service;
use courier_actors::{Codec, DurableSubscription, Meta, OutgoingEvent, Publisher, Running};
use courier_config::{EventsSettings, ServiceSettings};
use courier_testkit::{eventually, TestNats};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// Long enough for a loaded two-core machine, short enough to fail fast.
const WITHIN: Duration = Duration::from_secs(10);
const SUBJECT: &str = "events.calc.>";
/// `<service>_<subscription name>`.
const DURABLE: &str = "calc_audit";
const DEAD_LETTERS: &str = "deadletter.calc.calc_audit";

/// What the test event asks its handler to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Mode {
    Ok,
    /// Retry on the first delivery, then succeed.
    RetryOnce,
    /// Retry on every delivery: a poison event.
    AlwaysRetry,
    Reject,
    /// Sleep this long, then succeed.
    SlowMs(u64),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ev {
    n: u32,
    mode: Mode,
}

/// One delivery as the actor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    n: u32,
    id: String,
    delivered: u64,
    request_id: String,
}

/// Records every delivery, and the deliveries whose work finished.
#[derive(Default, Clone)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    finished: Arc<AtomicUsize>,
}

impl Recorder {
    fn deliveries_of(&self, n: u32) -> Vec<u64> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.n == n)
            .map(|s| s.delivered)
            .collect()
    }
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<Delivery<Ev>> for Recorder {
    type Result = ResponseFuture<Result<(), EventError>>;
    fn handle(&mut self, d: Delivery<Ev>, _: &mut Context<Self>) -> Self::Result {
        self.seen.lock().unwrap().push(Seen {
            n: d.body.n,
            id: d.id.clone(),
            delivered: d.delivered,
            request_id: d.meta.request_id.clone(),
        });
        let (delivered, finished) = (d.delivered, self.finished.clone());
        d.serve(move |ev, _meta| async move {
            let result = match ev.mode {
                Mode::Ok => Ok(()),
                Mode::RetryOnce if delivered == 1 => Err(EventError::Retry("not yet".into())),
                Mode::RetryOnce => Ok(()),
                Mode::AlwaysRetry => Err(EventError::Retry("poison".into())),
                Mode::Reject => Err(EventError::Reject("never valid".into())),
                Mode::SlowMs(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(())
                }
            };
            finished.fetch_add(1, Ordering::SeqCst);
            result
        })
    }
}

/// A JetStream store folder of the test's own, removed on drop (after the server stopped).
struct Store(PathBuf);

impl Drop for Store {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A JetStream server; the server stops before its store is removed (fields drop in order).
struct Js {
    nats: TestNats,
    _store: Store,
    client: async_nats::Client,
}

async fn jetstream() -> Js {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "courier-durable-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let nats = TestNats::start_with_args(&["-js", "-sd", dir.to_str().unwrap()]);
    let client = async_nats::connect(nats.url()).await.unwrap();
    Js {
        nats,
        _store: Store(dir),
        client,
    }
}

/// Short waits, so retries and dead letters take milliseconds.
fn settings() -> EventsSettings {
    EventsSettings {
        ack_wait: Duration::from_secs(2),
        max_deliver: 3,
        backoff: vec![Duration::from_millis(50), Duration::from_millis(100)],
        ..Default::default()
    }
}

async fn start(js: &Js, recorder: &Recorder) -> (Running, prometheus::Registry) {
    let actor = recorder.clone().start();
    let service = Service::builder("calc", "1.0.0")
        .events(settings())
        .durable(DurableSubscription::new::<Ev>("audit", SUBJECT, actor))
        .build()
        .expect("a valid definition");
    let registry = prometheus::Registry::new();
    let running = service
        .start(js.client.clone(), &ServiceSettings::default(), &registry)
        .await
        .expect("the service starts");
    (running, registry)
}

async fn publish(js: &Js, n: u32, mode: Mode) -> OutgoingEvent {
    let event = OutgoingEvent::json("events.calc.done", &Ev { n, mode }, &Meta::root()).unwrap();
    Publisher::new(js.client.clone())
        .publish(event.clone())
        .await
        .expect("the stream stores the event");
    event
}

async fn stream_messages(js: &Js, stream: &str) -> u64 {
    let mut stream = async_nats::jetstream::new(js.client.clone())
        .get_stream(stream)
        .await
        .unwrap();
    stream.info().await.unwrap().state.messages
}

async fn consumer_info(js: &Js) -> async_nats::jetstream::consumer::Info {
    async_nats::jetstream::new(js.client.clone())
        .get_stream("COURIER_EVENTS")
        .await
        .unwrap()
        .consumer_info(DURABLE)
        .await
        .unwrap()
}

fn metric(registry: &prometheus::Registry, name: &str) -> String {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    let prefix =
        format!("{name}{{consumer=\"{DURABLE}\",service=\"calc\",subject=\"{SUBJECT}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or("absent")
        .to_owned()
}

fn header_of<'a>(msg: &'a async_nats::Message, name: &str) -> &'a str {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map_or("", |v| v.as_str())
}

async fn next_dead_letter(dead: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WITHIN, dead.next())
        .await
        .expect("a dead letter in time")
        .expect("the subscription is open")
}

#[actix_rt::test]
async fn an_event_published_while_no_consumer_runs_is_handled_once_the_service_starts() {
    let js = jetstream().await;
    ensure_streams(&js.client, &settings()).await.unwrap();
    let sent = publish(&js, 1, Mode::Ok).await;
    // MessagePack too: the consumer decodes by Content-Type.
    let packed = OutgoingEvent {
        payload: Codec::MsgPack
            .encode(&Ev {
                n: 2,
                mode: Mode::Ok,
            })
            .unwrap(),
        codec: Codec::MsgPack,
        ..OutgoingEvent::json("events.calc.done", &(), &Meta::root()).unwrap()
    };
    Publisher::new(js.client.clone())
        .publish(packed)
        .await
        .unwrap();
    let recorder = Recorder::default();
    let (running, registry) = start(&js, &recorder).await;
    eventually(WITHIN, "both events handled and acked", || async {
        (consumer_info(&js).await.ack_floor.stream_sequence == 2).then_some(())
    })
    .await;
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].id, sent.id, "the id is the Nats-Msg-Id");
    assert_eq!(Some(&seen[0].request_id), sent.request_id.as_ref());
    assert_eq!((seen[0].delivered, seen[1].n), (1, 2));
    assert_eq!(metric(&registry, "courier_consumer_acked_total"), "2");
    assert_eq!(metric(&registry, "courier_consumer_delivered_total"), "2");
    assert_ne!(metric(&registry, "courier_consumer_pending"), "absent");
    assert!(running.stop(Duration::from_secs(5)).await.complete);
}

#[actix_rt::test]
async fn a_publish_repeated_with_the_same_id_is_stored_once() {
    let js = jetstream().await;
    ensure_streams(&js.client, &settings()).await.unwrap();
    let sent = publish(&js, 1, Mode::Ok).await;
    let publisher = Publisher::new(js.client.clone());
    publisher
        .publish(sent.clone())
        .await
        .expect("a duplicate is success");
    assert_eq!(stream_messages(&js, "COURIER_EVENTS").await, 1);
    publisher
        .publish(sent.with_id(courier_actors::durable::new_event_id()))
        .await
        .unwrap();
    assert_eq!(stream_messages(&js, "COURIER_EVENTS").await, 2);
}

/// The relay's way: a batch published together, each event's result in its place, with the
/// meaning one publish would give it.
#[actix_rt::test]
async fn a_batch_publish_answers_for_each_event_in_its_place() {
    use courier_actors::durable::DurableError;
    let js = jetstream().await;
    ensure_streams(&js.client, &settings()).await.unwrap();
    // A core subscriber that never answers: a publish to it gets no acknowledgement.
    let _silent = js.client.subscribe("silent.events").await.unwrap();
    js.client.flush().await.unwrap();
    let event = |subject: &str, n: u32| {
        OutgoingEvent::json(subject, &Ev { n, mode: Mode::Ok }, &Meta::root()).unwrap()
    };
    let stored_before = publish(&js, 0, Mode::Ok).await;
    let mut batch: Vec<OutgoingEvent> = (1..=300).map(|n| event("events.calc.done", n)).collect();
    batch.insert(10, stored_before.clone());
    batch.insert(20, event("nowhere.calc.done", 0));
    batch.insert(30, event("silent.events", 0));
    let publisher = Publisher::with_timeout(js.client.clone(), Duration::from_millis(500));
    let results = publisher.publish_all(&batch).await;

    assert_eq!(results.len(), batch.len());
    for (i, result) in results.iter().enumerate() {
        match i {
            20 => assert!(
                matches!(result, Err(DurableError::NoStream { subject }) if subject == "nowhere.calc.done"),
                "{result:?}"
            ),
            30 => assert!(
                matches!(result, Err(DurableError::TimedOut { subject }) if subject == "silent.events"),
                "{result:?}"
            ),
            _ => assert!(result.is_ok(), "event {i}: {result:?}"),
        }
    }
    assert_eq!(
        stream_messages(&js, "COURIER_EVENTS").await,
        301,
        "every event stored once, the one stored before not again"
    );
    assert!(publisher.publish_all(&[]).await.is_empty());
}

#[actix_rt::test]
async fn publishing_where_no_stream_listens_is_a_typed_error() {
    let js = jetstream().await;
    let event = OutgoingEvent::json("events.calc.done", &1, &Meta::root()).unwrap();
    let err = Publisher::new(js.client.clone())
        .publish(event)
        .await
        .unwrap_err();
    assert!(
        matches!(err, courier_actors::durable::DurableError::NoStream { .. }),
        "{err:?}"
    );
}

#[actix_rt::test]
async fn a_retry_is_redelivered_and_a_poison_event_goes_to_the_dead_letters_without_blocking() {
    let js = jetstream().await;
    let mut dead = js.client.subscribe(DEAD_LETTERS).await.unwrap();
    let recorder = Recorder::default();
    let (running, registry) = start(&js, &recorder).await;
    publish(&js, 1, Mode::RetryOnce).await;
    let poison = publish(&js, 2, Mode::AlwaysRetry).await;
    publish(&js, 3, Mode::Ok).await;
    let letter = next_dead_letter(&mut dead).await;
    assert_eq!(
        header_of(&letter, dead_letter_header::REASON),
        "max_deliver"
    );
    assert_eq!(header_of(&letter, dead_letter_header::ERROR), "poison");
    assert_eq!(header_of(&letter, dead_letter_header::DELIVERED), "3");
    assert_eq!(
        header_of(&letter, dead_letter_header::ORIGINAL_SUBJECT),
        "events.calc.done"
    );
    assert_eq!(header_of(&letter, dead_letter_header::EVENT_ID), poison.id);
    assert_eq!(letter.payload, poison.payload, "the original payload");
    assert_eq!(
        header_of(&letter, header::REQUEST_ID),
        poison.request_id.as_deref().unwrap(),
        "the original headers"
    );
    eventually(WITHIN, "the good events handled", || async {
        (recorder.deliveries_of(1) == [1, 2] && recorder.deliveries_of(3) == [1]).then_some(())
    })
    .await;
    assert_eq!(recorder.deliveries_of(2), [1, 2, 3]);
    assert_eq!(stream_messages(&js, "COURIER_DEAD_LETTERS").await, 1);
    eventually(WITHIN, "the counters", || async {
        (metric(&registry, "courier_consumer_acked_total") == "2").then_some(())
    })
    .await;
    assert_eq!(
        metric(&registry, "courier_consumer_dead_lettered_total"),
        "1"
    );
    assert_eq!(metric(&registry, "courier_consumer_nacked_total"), "3");
    assert_eq!(metric(&registry, "courier_consumer_redelivered_total"), "3");
    assert!(running.stop(Duration::from_secs(5)).await.complete);
}

#[actix_rt::test]
async fn a_rejected_event_goes_to_the_dead_letters_at_once() {
    let js = jetstream().await;
    let mut dead = js.client.subscribe(DEAD_LETTERS).await.unwrap();
    let recorder = Recorder::default();
    let (running, _registry) = start(&js, &recorder).await;
    let rejected = publish(&js, 1, Mode::Reject).await;
    let letter = next_dead_letter(&mut dead).await;
    assert_eq!(header_of(&letter, dead_letter_header::REASON), "rejected");
    assert_eq!(header_of(&letter, dead_letter_header::DELIVERED), "1");
    assert_eq!(
        header_of(&letter, dead_letter_header::EVENT_ID),
        rejected.id
    );
    // Terminated: never delivered again, even after the ack wait and every backoff.
    tokio::time::sleep(settings().ack_wait + Duration::from_millis(300)).await;
    assert_eq!(recorder.deliveries_of(1), [1]);
    assert_eq!(consumer_info(&js).await.num_ack_pending, 0);
    assert!(running.stop(Duration::from_secs(5)).await.complete);
}

#[actix_rt::test]
async fn an_event_that_cannot_be_decoded_goes_to_the_dead_letters() {
    let js = jetstream().await;
    let mut dead = js.client.subscribe(DEAD_LETTERS).await.unwrap();
    let recorder = Recorder::default();
    let (running, _registry) = start(&js, &recorder).await;
    let jetstream = async_nats::jetstream::new(js.client.clone());
    jetstream
        .publish("events.calc.done", Bytes::from_static(b"{\"n\": \"one\"}"))
        .await
        .unwrap()
        .await
        .unwrap();
    let mut xml = HeaderMap::new();
    xml.insert(header::CONTENT_TYPE, "text/xml");
    jetstream
        .publish_with_headers("events.calc.done", xml, Bytes::from_static(b"<ev/>"))
        .await
        .unwrap()
        .await
        .unwrap();
    publish(&js, 3, Mode::Ok).await;
    for _ in 0..2 {
        let letter = next_dead_letter(&mut dead).await;
        assert_eq!(
            header_of(&letter, dead_letter_header::REASON),
            "decode_error"
        );
        assert_eq!(header_of(&letter, dead_letter_header::DELIVERED), "1");
        // Published without an id: the stream sequence stands in, stable across deliveries.
        assert!(header_of(&letter, dead_letter_header::EVENT_ID).starts_with("COURIER_EVENTS:"));
    }
    eventually(WITHIN, "the good event handled", || async {
        (recorder.deliveries_of(3) == [1]).then_some(())
    })
    .await;
    assert_eq!(
        recorder.seen.lock().unwrap().len(),
        1,
        "the actor saw no bad event"
    );
    assert!(running.stop(Duration::from_secs(5)).await.complete);
}

#[actix_rt::test]
async fn a_drain_finishes_and_acks_the_event_in_hand_so_a_restart_does_not_see_it_again() {
    let js = jetstream().await;
    let recorder = Recorder::default();
    let (running, _registry) = start(&js, &recorder).await;
    publish(&js, 1, Mode::SlowMs(700)).await;
    eventually(WITHIN, "the slow event started", || async {
        (recorder.deliveries_of(1) == [1]).then_some(())
    })
    .await;
    let report = running.stop(Duration::from_secs(5)).await;
    assert!(report.complete, "{report:?}");
    assert_eq!(recorder.finished.load(Ordering::SeqCst), 1, "it finished");
    let info = consumer_info(&js).await;
    assert_eq!(
        (info.ack_floor.stream_sequence, info.num_ack_pending),
        (1, 0),
        "acked before the drain ended"
    );
    // A new instance, past the ack wait: nothing comes back.
    let again = Recorder::default();
    let (running, _registry) = start(&js, &again).await;
    publish(&js, 2, Mode::Ok).await;
    eventually(WITHIN, "the next event handled", || async {
        (again.deliveries_of(2) == [1]).then_some(())
    })
    .await;
    tokio::time::sleep(settings().ack_wait + Duration::from_millis(300)).await;
    assert_eq!(again.deliveries_of(1), Vec::<u64>::new());
    assert_eq!(consumer_info(&js).await.num_redelivered, 0);
    assert!(running.stop(Duration::from_secs(5)).await.complete);
}

#[actix_rt::test]
async fn each_subscription_has_its_own_consumer_and_sees_every_event_on_any_worker() {
    let js = jetstream().await;
    let (first, second) = (Recorder::default(), Recorder::default());
    let service = Service::builder("calc", "1.0.0")
        .events(settings())
        .durable(DurableSubscription::new::<Ev>(
            "audit",
            SUBJECT,
            first.clone().start(),
        ))
        .durable(
            DurableSubscription::new::<Ev>("mirror", "events.calc.done", second.clone().start())
                .concurrency(1),
        )
        .build()
        .unwrap();
    let two_workers = ServiceSettings {
        workers: 2,
        ..Default::default()
    };
    let registry = prometheus::Registry::new();
    let running = service
        .start(js.client.clone(), &two_workers, &registry)
        .await
        .unwrap();
    for n in 1..=3 {
        publish(&js, n, Mode::Ok).await;
    }
    eventually(WITHIN, "both consumers handle all three", || async {
        let all = |r: &Recorder| (1..=3).all(|n| r.deliveries_of(n) == [1]);
        (all(&first) && all(&second)).then_some(())
    })
    .await;
    assert!(running.stop(Duration::from_secs(5)).await.complete);
}

#[actix_rt::test]
async fn a_durable_subscription_with_a_bad_name_is_refused_at_build() {
    let actor = Recorder::default().start();
    let built = Service::builder("calc", "1.0.0")
        .durable(DurableSubscription::new::<Ev>("a.b", SUBJECT, actor))
        .build();
    assert!(matches!(built, Err(courier_actors::Error::Definition(_))));
}

#[actix_rt::test]
async fn ensuring_the_streams_again_or_concurrently_is_fine_and_applies_changes() {
    let js = jetstream().await;
    let results = futures::future::join_all((0..4).map(|_| async {
        let client = async_nats::connect(js.nats.url()).await.unwrap();
        ensure_streams(&client, &settings()).await
    }))
    .await;
    for result in results {
        result.expect("every instance ensures the streams");
    }
    ensure_streams(&js.client, &settings()).await.unwrap();
    let longer = EventsSettings {
        max_age: Duration::from_secs(3600 * 24 * 30),
        ..settings()
    };
    ensure_streams(&js.client, &longer).await.unwrap();
    let mut stream = async_nats::jetstream::new(js.client.clone())
        .get_stream("COURIER_EVENTS")
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.max_age, longer.max_age);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    assert_eq!(stream_messages(&js, "COURIER_DEAD_LETTERS").await, 0);
}
