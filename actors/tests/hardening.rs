//! The bridge's promises under hostile input, overload and time limits, against a real
//! nats-server: replies always arrive and are bounded, bytes after a body are refused, a
//! malformed header block only costs the intake connection, deadlines stop work and limits
//! bound it, time travels as a budget, and events wait in a bounded buffer.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use async_nats::HeaderMap;
use bytes::Bytes;
use courier_actors::meta::{header, unix_millis};
use courier_actors::{
    Call, Client, Connections, Endpoint, Event, Meta, Request, Running, Service, ServiceError,
    Subscription, Supervised,
};
use courier_config::ServiceSettings;
use courier_testkit::micro_schema::{assert_valid, Kind};
use courier_testkit::{eventually, TestNats};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Echoes a text; decoding a wrong type quotes the offending value (serde does).
#[derive(Debug, Deserialize, Serialize)]
struct Echo {
    text: String,
}
impl Call for Echo {
    type Reply = String;
    type Error = ServiceError;
}

/// Answers with `bytes` bytes: a reply larger than the server takes.
#[derive(Debug, Deserialize, Serialize)]
struct Big {
    bytes: usize,
}
impl Call for Big {
    type Reply = String;
    type Error = ServiceError;
}

/// Sleeps `ms` without looking at cancellation: a handler that cannot be stopped.
#[derive(Debug, Deserialize, Serialize)]
struct Linger {
    ms: u64,
}
impl Call for Linger {
    type Reply = u64;
    type Error = ServiceError;
}

/// Sleeps `ms`, then counts a "commit": served through `Request::serve`, so cancellable.
#[derive(Debug, Deserialize, Serialize)]
struct Hold {
    ms: u64,
}
impl Call for Hold {
    type Reply = u64;
    type Error = ServiceError;
}

/// What the handlers did: how many ran at once at most, how many committed.
#[derive(Default, Clone)]
struct Tally {
    alive: Arc<AtomicUsize>,
    most_alive: Arc<AtomicUsize>,
    committed: Arc<AtomicUsize>,
    events: Arc<AtomicUsize>,
}

impl Tally {
    fn enter(&self) -> Alive {
        let now = self.alive.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_alive.fetch_max(now, Ordering::SeqCst);
        Alive(self.alive.clone())
    }
}

/// One handler alive; counted down however it ends (dropped when cancelled).
struct Alive(Arc<AtomicUsize>);
impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Hard(Tally);
impl Actor for Hard {
    type Context = Context<Self>;
}
impl Handler<Request<Echo>> for Hard {
    type Result = Result<String, ServiceError>;
    fn handle(&mut self, req: Request<Echo>, _: &mut Context<Self>) -> Self::Result {
        Ok(req.body.text)
    }
}
impl Handler<Request<Big>> for Hard {
    type Result = Result<String, ServiceError>;
    fn handle(&mut self, req: Request<Big>, _: &mut Context<Self>) -> Self::Result {
        Ok("x".repeat(req.body.bytes))
    }
}
impl Handler<Request<Linger>> for Hard {
    type Result = ResponseFuture<Result<u64, ServiceError>>;
    fn handle(&mut self, req: Request<Linger>, _: &mut Context<Self>) -> Self::Result {
        let alive = self.0.enter();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(req.body.ms)).await;
            drop(alive);
            Ok(req.body.ms)
        })
    }
}
impl Handler<Request<Hold>> for Hard {
    type Result = ResponseFuture<Result<u64, ServiceError>>;
    fn handle(&mut self, req: Request<Hold>, _: &mut Context<Self>) -> Self::Result {
        let tally = self.0.clone();
        req.serve(move |body, _meta| async move {
            let _alive = tally.enter();
            tokio::time::sleep(Duration::from_millis(body.ms)).await;
            tally.committed.fetch_add(1, Ordering::SeqCst);
            Ok(body.ms)
        })
    }
}

/// An event that takes `ms` to handle.
#[derive(Debug, Deserialize, Serialize)]
struct Tick {
    ms: u64,
}
impl Handler<Event<Tick>> for Hard {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, ev: Event<Tick>, _: &mut Context<Self>) -> Self::Result {
        let tally = self.0.clone();
        ev.serve(move |tick, _meta| async move {
            tokio::time::sleep(Duration::from_millis(tick.ms)).await;
            tally.events.fetch_add(1, Ordering::SeqCst);
        })
    }
}

const LINGER_LIMIT: usize = 2;
const EVENT_BUFFER: usize = 16;

struct TestHard {
    nats: TestNats,
    client: async_nats::Client,
    running: Running,
    tally: Tally,
    registry: prometheus::Registry,
}

async fn start_with(
    nats: TestNats,
    connections: Connections,
    settings: ServiceSettings,
) -> TestHard {
    let tally = Tally::default();
    let hard = Supervised::local({
        let tally = tally.clone();
        move || Hard(tally.clone())
    });
    let service = Service::builder("hard", "0.1.0")
        .endpoint(Endpoint::new::<Echo>("echo", "hard.echo", hard.clone()))
        .endpoint(Endpoint::new::<Big>("big", "hard.big", hard.clone()))
        .endpoint(
            Endpoint::new::<Linger>("linger", "hard.linger", hard.clone())
                .max_in_flight(LINGER_LIMIT),
        )
        .endpoint(Endpoint::new::<Hold>("hold", "hard.hold", hard.clone()))
        .endpoint(
            Endpoint::new::<Hold>("quick", "hard.quick", hard.clone())
                .timeout(Duration::from_millis(150)),
        )
        .subscription(
            Subscription::new::<Tick>("events.tick", Hard(tally.clone()).start())
                .buffer(EVENT_BUFFER),
        )
        .build()
        .expect("a valid definition");
    let registry = prometheus::Registry::new();
    let client = connections.main.clone();
    let running = service
        .start(connections, &settings, &registry)
        .await
        .expect("service starts");
    TestHard {
        nats,
        client,
        running,
        tally,
        registry,
    }
}

async fn start(settings: ServiceSettings) -> TestHard {
    let nats = TestNats::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    start_with(nats, client.into(), settings).await
}

async fn request(
    client: &async_nats::Client,
    subject: &str,
    headers: HeaderMap,
    payload: impl Into<Bytes>,
    timeout: Duration,
) -> Result<async_nats::Message, async_nats::RequestError> {
    let request = async_nats::Request::new()
        .headers(headers)
        .payload(payload.into())
        .timeout(Some(timeout));
    client.send_request(subject.to_owned(), request).await
}

/// `ms` to live, as the budget Courier sends and as the absolute deadline older callers send.
fn time_to_live(ms: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::TIMEOUT_MS, ms.to_string().as_str());
    let deadline = unix_millis(SystemTime::now() + Duration::from_millis(ms));
    h.insert(header::DEADLINE, deadline.to_string().as_str());
    h
}

fn code(msg: &async_nats::Message) -> Option<u16> {
    msg.headers
        .as_ref()?
        .get(header::SERVICE_ERROR_CODE)?
        .as_str()
        .parse()
        .ok()
}

fn message_size(msg: &async_nats::Message) -> usize {
    let headers: usize = msg
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .map(|(name, values)| {
            let name: &str = name.as_ref();
            name.len() + values.iter().map(|v| v.as_str().len()).sum::<usize>()
        })
        .sum();
    headers + msg.payload.len()
}

// 1. Replies always arrive, and never carry a caller's garbage back.

#[actix_rt::test]
async fn an_error_about_600_kb_of_input_reaches_the_caller_small() {
    let t = start(ServiceSettings::default()).await;
    let huge = "a".repeat(600_000);
    let wait = Duration::from_secs(3);
    // A string where a number belongs: serde quotes the whole string in its message.
    let wrong_type = format!(r#"{{"bytes": "{huge}"}}"#);
    let wrong_msgpack = rmp_serde::to_vec_named(&Echo { text: huge.clone() }).unwrap();
    let mut msgpack = HeaderMap::new();
    msgpack.insert(header::CONTENT_TYPE, "application/msgpack");
    for (headers, payload) in [
        (HeaderMap::new(), Bytes::from(wrong_type)),
        (msgpack, Bytes::from(wrong_msgpack)),
    ] {
        let reply = request(&t.client, "hard.big", headers, payload, wait)
            .await
            .expect("an answer, not silence");
        assert_eq!(code(&reply), Some(400));
        assert!(message_size(&reply) < 8 * 1024, "{}", message_size(&reply));
    }
    let mut unknown_type = HeaderMap::new();
    unknown_type.insert(header::CONTENT_TYPE, huge.as_str());
    let mut bad_deadline = HeaderMap::new();
    bad_deadline.insert(header::DEADLINE, huge.as_str());
    for headers in [unknown_type, bad_deadline] {
        let reply = request(&t.client, "hard.echo", headers, r#"{"text":"x"}"#, wait)
            .await
            .expect("an answer, not silence");
        assert_eq!(code(&reply), Some(400));
        assert!(message_size(&reply) < 8 * 1024, "{}", message_size(&reply));
    }
}

#[actix_rt::test]
async fn a_reply_too_large_for_the_server_becomes_a_small_500() {
    let t = start(ServiceSettings::default()).await;
    let max = t.client.server_info().max_payload;
    let payload = format!(r#"{{"bytes": {}}}"#, max + 1);
    let reply = request(
        &t.client,
        "hard.big",
        HeaderMap::new(),
        payload,
        Duration::from_secs(3),
    )
    .await
    .expect("an answer, not silence");
    assert_eq!(code(&reply), Some(500));
    let body: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("too large"),
        "{body}"
    );
}

#[actix_rt::test]
async fn stats_keeps_answering_after_large_errors() {
    let t = start(ServiceSettings::default()).await;
    let huge = "b".repeat(400_000);
    for _ in 0..3 {
        // Quoted whole by serde's message: 400 KB of last_error each, unbounded.
        let payload = format!(r#"{{"bytes": "{huge}"}}"#);
        let wait = Duration::from_secs(3);
        let reply = request(&t.client, "hard.big", HeaderMap::new(), payload, wait).await;
        assert_eq!(code(&reply.expect("an answer")), Some(400));
    }
    let reply = request(
        &t.client,
        "$SRV.STATS.hard",
        HeaderMap::new(),
        "",
        Duration::from_secs(3),
    )
    .await
    .expect("$SRV.STATS answers");
    let stats: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_valid(Kind::Stats, &stats);
    let big = stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "big")
        .unwrap();
    assert_eq!(big["num_errors"], 3);
    let last_error = big["last_error"].as_str().unwrap();
    assert!(
        last_error.len() <= 300,
        "last_error of {} bytes",
        last_error.len()
    );
}

#[actix_rt::test]
async fn bytes_after_a_complete_body_are_400() {
    let t = start(ServiceSettings::default()).await;
    let wait = Duration::from_secs(3);
    for payload in [&br#"{"text":"a"}garbage"#[..], br#"{"text":"a"}{"text":1}"#] {
        let reply = request(&t.client, "hard.echo", HeaderMap::new(), payload, wait)
            .await
            .unwrap();
        assert_eq!(
            code(&reply),
            Some(400),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
    let mut packed = rmp_serde::to_vec_named(&Echo { text: "a".into() }).unwrap();
    packed.extend_from_slice(b"\xc1junk");
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, "application/msgpack");
    let reply = request(&t.client, "hard.echo", h, packed, wait)
        .await
        .unwrap();
    assert_eq!(code(&reply), Some(400));
}

// 4. A malformed header block costs the intake connection only.

/// Header blocks async-nats 0.51 cannot parse: each drops the connection it arrives on.
const POISON: &[&[u8]] = &[
    b"NATS/1.0\r\nX-Junk: \xff\r\n\r\n",
    b"NATS/1.0\r\nX-Junk\r\n\r\n",
    b"NATS/1.0\r\nX Junk: 1\r\n\r\n",
    b"NATS/1.0 abc\r\n\r\n",
    b"NATS/2.0\r\n\r\n",
];

/// A raw protocol client: what a hostile or buggy NATS client can send.
struct RawClient(TcpStream);

impl RawClient {
    fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut info = String::new();
        BufReader::new(stream.try_clone().unwrap())
            .read_line(&mut info)
            .unwrap();
        assert!(info.starts_with("INFO"), "{info}");
        let mut raw = Self(stream);
        raw.send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n");
        raw
    }

    fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).unwrap();
    }

    fn hpub(&mut self, subject: &str, headers: &[u8], payload: &[u8]) {
        let total = headers.len() + payload.len();
        let line = format!("HPUB {subject} _INBOX.raw {} {total}\r\n", headers.len());
        let mut frame = line.into_bytes();
        frame.extend_from_slice(headers);
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.send(&frame);
    }
}

#[actix_rt::test]
async fn a_malformed_header_block_costs_the_intake_only_and_the_service_keeps_serving() {
    let nats = TestNats::start();
    let main = async_nats::connect(nats.url()).await.unwrap();
    let intake = async_nats::connect(nats.url()).await.unwrap();
    let connections = Connections::new(main.clone(), intake.clone());
    let t = start_with(nats, connections, ServiceSettings::default()).await;
    let caller = async_nats::connect(t.nats.url()).await.unwrap();
    let mut raw = RawClient::connect(t.nats.port());
    let mut outcomes = Outcomes::default();
    for poison in POISON {
        // Other callers' requests around each poisoned message: 60 before, 60 after.
        let before = spawn_requests(&caller, 60);
        tokio::time::sleep(Duration::from_millis(5)).await;
        raw.hpub("hard.echo", poison, br#"{"text":"x"}"#);
        let after = spawn_requests(&caller, 60);
        for task in before.into_iter().chain(after) {
            outcomes.count(task.await.unwrap());
        }
        // $SRV lives on the main connection: it answers straight after.
        let ping = request(
            &t.client,
            "$SRV.PING.hard",
            HeaderMap::new(),
            "",
            Duration::from_secs(2),
        )
        .await;
        assert!(ping.is_ok(), "$SRV.PING after a poisoned message: {ping:?}");
        // The intake comes back, and requests are served again.
        eventually(Duration::from_secs(10), "the intake to serve again", || {
            let caller = caller.clone();
            async move {
                let reply = request(
                    &caller,
                    "hard.echo",
                    HeaderMap::new(),
                    r#"{"text":"ok"}"#,
                    Duration::from_millis(500),
                )
                .await;
                reply.is_ok_and(|m| code(&m).is_none()).then_some(())
            }
        })
        .await;
    }
    let (intake_connects, main_connects) = (
        intake.statistics().connects.load(Ordering::Relaxed),
        main.statistics().connects.load(Ordering::Relaxed),
    );
    println!(
        "poisoned messages: {}; other callers' requests: {} answered, {} refused at once (no responders while the intake reconnected), {} lost (no answer in 2 s); intake connects: {intake_connects}, main connects: {main_connects}",
        POISON.len(),
        outcomes.answered,
        outcomes.refused,
        outcomes.lost,
    );
    assert_eq!(main_connects, 1, "the main connection never dropped");
    assert!(
        intake_connects > 1,
        "the poisoned messages did reach the intake (else this test tests nothing)"
    );
}

/// How the other callers' requests ended.
#[derive(Default, Debug)]
struct Outcomes {
    answered: usize,
    refused: usize,
    lost: usize,
}

impl Outcomes {
    fn count(&mut self, result: Result<async_nats::Message, async_nats::RequestError>) {
        use async_nats::client::RequestErrorKind;
        match result {
            Ok(reply) if code(&reply).is_none() => self.answered += 1,
            Ok(_) => self.refused += 1,
            Err(e) if e.kind() == RequestErrorKind::NoResponders => self.refused += 1,
            Err(_) => self.lost += 1,
        }
    }
}

fn spawn_requests(
    caller: &async_nats::Client,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<async_nats::Message, async_nats::RequestError>>> {
    (0..n)
        .map(|_| {
            let caller = caller.clone();
            tokio::spawn(async move {
                let payload = r#"{"text":"ok"}"#;
                request(
                    &caller,
                    "hard.echo",
                    HeaderMap::new(),
                    payload,
                    Duration::from_secs(2),
                )
                .await
            })
        })
        .collect()
}

// 5-7. Deadlines stop work; limits bound work.

#[actix_rt::test]
async fn a_cancelled_request_stops_its_work_before_it_commits() {
    let t = start(ServiceSettings::default()).await;
    let h = time_to_live(100);
    let started = Instant::now();
    let reply = request(
        &t.client,
        "hard.hold",
        h,
        r#"{"ms": 600}"#,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(code(&reply), Some(504), "the service itself answered 504");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        t.tally.committed.load(Ordering::SeqCst),
        0,
        "no commit after the 504"
    );
    assert_eq!(
        t.tally.alive.load(Ordering::SeqCst),
        0,
        "the work was dropped"
    );
}

#[actix_rt::test]
async fn the_in_flight_limit_bounds_work_that_outlives_its_deadline() {
    let t = start(ServiceSettings::default()).await;
    for _wave in 0..10 {
        let mut wave = futures::stream::FuturesUnordered::new();
        for _ in 0..LINGER_LIMIT {
            let h = time_to_live(40);
            wave.push(request(
                &t.client,
                "hard.linger",
                h,
                r#"{"ms": 400}"#,
                Duration::from_secs(5),
            ));
        }
        while let Some(reply) = wave.next().await {
            let code = code(&reply.unwrap());
            assert!(matches!(code, Some(504) | Some(503)), "{code:?}");
        }
    }
    let most = t.tally.most_alive.load(Ordering::SeqCst);
    assert!(
        most <= LINGER_LIMIT,
        "{most} handlers alive at once, limit {LINGER_LIMIT}"
    );
}

#[actix_rt::test]
async fn without_a_deadline_the_handler_time_limit_answers_504_and_stops_the_work() {
    let settings = ServiceSettings {
        handler_timeout: Duration::from_millis(300),
        ..ServiceSettings::default()
    };
    let t = start(settings).await;
    let started = Instant::now();
    let reply = request(
        &t.client,
        "hard.hold",
        HeaderMap::new(),
        r#"{"ms": 5000}"#,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(code(&reply), Some(504));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // The per-endpoint limit wins over the service's: 150 ms.
    let started = Instant::now();
    let reply = request(
        &t.client,
        "hard.quick",
        HeaderMap::new(),
        r#"{"ms": 5000}"#,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(code(&reply), Some(504));
    assert!(
        started.elapsed() < Duration::from_millis(290),
        "{:?}",
        started.elapsed()
    );
    eventually(Duration::from_secs(2), "the slots to be free", || async {
        (t.running.in_flight() == 0).then_some(())
    })
    .await;
    assert_eq!(t.tally.committed.load(Ordering::SeqCst), 0);
}

// 8. Time travels as a budget.

#[actix_rt::test]
async fn a_budget_is_kept_although_the_callers_clock_is_behind() {
    let t = start(ServiceSettings::default()).await;
    let mut h = HeaderMap::new();
    let behind = SystemTime::now() - Duration::from_secs(10);
    h.insert(header::DEADLINE, unix_millis(behind).to_string().as_str());
    h.insert(header::TIMEOUT_MS, "2000");
    let reply = request(
        &t.client,
        "hard.hold",
        h,
        r#"{"ms": 10}"#,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(code(&reply), None, "answered 200, not a false 504");
    // And our own client sends the budget.
    let client = Client::new(t.client.clone(), Duration::from_millis(150));
    let err = client
        .call::<_, u64>("hard.hold", &Hold { ms: 2000 }, &Meta::root())
        .await
        .unwrap_err();
    assert_eq!(err.code(), 504, "{err}");
}

// 10. Events wait in a bounded buffer; what does not fit is counted.

#[actix_rt::test]
async fn events_past_the_buffer_are_dropped_and_counted() {
    let settings = ServiceSettings {
        max_in_flight: 1,
        ..ServiceSettings::default()
    };
    let t = start(settings).await;
    let publisher = async_nats::connect(t.nats.url()).await.unwrap();
    let sent = 300usize;
    for _ in 0..sent {
        publisher
            .publish("events.tick", Bytes::from_static(br#"{"ms": 20}"#))
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    let count = |outcome: &str| -> usize {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&t.registry.gather())
            .unwrap();
        let prefix = format!(
            "courier_events_total{{outcome=\"{outcome}\",service=\"hard\",subscription=\"events.tick\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.parse().unwrap())
    };
    let (handled, dropped) = eventually(
        Duration::from_secs(10),
        "every event handled or dropped",
        || async {
            let (ok, dropped) = (count("ok"), count("dropped"));
            (ok + dropped == sent).then_some((ok, dropped))
        },
    )
    .await;
    println!("events sent {sent}, handled {handled}, dropped {dropped}");
    assert!(dropped > 0, "the buffer of {EVENT_BUFFER} overflowed");
    assert!(handled >= EVENT_BUFFER, "{handled}");
    assert!(
        handled < sent / 2,
        "{handled} handled: the buffer was not bounded"
    );
}

#[actix_rt::test]
async fn an_event_handler_past_its_time_limit_is_cancelled_and_counted() {
    let settings = ServiceSettings {
        handler_timeout: Duration::from_millis(100),
        ..ServiceSettings::default()
    };
    let t = start(settings).await;
    let publisher = async_nats::connect(t.nats.url()).await.unwrap();
    publisher
        .publish("events.tick", Bytes::from_static(br#"{"ms": 5000}"#))
        .await
        .unwrap();
    let text = eventually(Duration::from_secs(3), "a timed-out event", || async {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&t.registry.gather())
            .unwrap();
        text.contains(r#"courier_events_total{outcome="timed_out",service="hard",subscription="events.tick"} 1"#)
            .then_some(text)
    })
    .await;
    assert!(!text.contains(r#"outcome="ok""#), "{text}");
}

// Start-up: "started" means the server knows every subscription.

#[actix_rt::test]
async fn a_caller_on_another_connection_is_answered_the_moment_start_returns() {
    let nats = TestNats::start();
    let caller = async_nats::connect(nats.url()).await.unwrap();
    for i in 0..40 {
        let server = async_nats::connect(nats.url()).await.unwrap();
        let subject = format!("fresh{i}.echo");
        let service = Service::builder(format!("fresh{i}"), "0.1.0")
            .endpoint(Endpoint::new::<Echo>(
                "echo",
                subject.clone(),
                Hard(Tally::default()).start(),
            ))
            .build()
            .unwrap();
        let _running = service
            .start(
                server,
                &ServiceSettings::default(),
                &prometheus::Registry::new(),
            )
            .await
            .unwrap();
        let reply = request(
            &caller,
            &subject,
            HeaderMap::new(),
            r#"{"text":"x"}"#,
            Duration::from_secs(2),
        )
        .await;
        assert!(reply.is_ok(), "service {i}: {reply:?}");
    }
}
