//! Request-reply throughput and latency: a bare async-nats responder against the same work
//! behind a `courier-actors` endpoint, on one local nats-server.
//!
//! Run: `cargo bench -p courier-actors --bench reqreply` (about 30 s). Under `cargo test`
//! (no `--bench` argument) it runs a quick smoke of a fraction of a second per point and only
//! checks that every request is answered.
//!
//! Both responders run on one actix system thread (the runtime a Courier service runs on); the
//! load comes from a separate multi-thread runtime over its own connection, one concurrency
//! level at a time, bare and courier interleaved.

use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use courier_actors::{Call, Endpoint, Request, Service, ServiceError, Supervised};
use courier_testkit::TestNats;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Deserialize, Serialize)]
struct Sum {
    sum: i64,
}

impl Call for Add {
    type Reply = Sum;
    type Error = ServiceError;
}

struct Adder;

impl Actor for Adder {
    type Context = Context<Self>;
}

impl Handler<Request<Add>> for Adder {
    type Result = Result<Sum, ServiceError>;
    fn handle(&mut self, req: Request<Add>, _: &mut Context<Self>) -> Self::Result {
        Ok(Sum { sum: req.body.a + req.body.b })
    }
}

/// The same work without Courier: decode, add, encode, reply, one message after another.
async fn bare_responder(client: async_nats::Client) {
    let mut sub = client.queue_subscribe("bench.bare", "q".into()).await.expect("subscribe");
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply else { continue };
        let Ok(add) = serde_json::from_slice::<Add>(&msg.payload) else { continue };
        let body = serde_json::to_vec(&Sum { sum: add.a + add.b }).expect("encode");
        let _ = client.publish(reply, body.into()).await;
    }
}

/// Starts both responders on an actix system thread; returns when they are subscribed.
fn start_responders(url: String) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        System::new().block_on(async move {
            let client = async_nats::connect(&url).await.expect("connect responder");
            tokio::spawn(bare_responder(client.clone()));
            let adder = Supervised::local(|| Adder);
            let service = Service::builder("bench", "1.0.0")
                .endpoint(Endpoint::new::<Add>("add", "bench.courier", adder))
                .build()
                .expect("definition");
            let _running = service
                .start(client.clone(), &Default::default(), &prometheus::Registry::new())
                .await
                .expect("start");
            client.flush().await.expect("flush");
            ready_tx.send(()).expect("signal ready");
            std::future::pending::<()>().await;
        });
    });
    ready_rx.recv().expect("responders ready");
}

struct Point {
    requests: usize,
    errors: usize,
    took: Duration,
    latencies: Vec<Duration>,
}

impl Point {
    fn throughput(&self) -> f64 {
        self.requests as f64 / self.took.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }
}

/// `concurrency` callers in a closed loop for `duration`.
async fn load(client: &async_nats::Client, subject: &'static str, concurrency: usize, duration: Duration) -> Point {
    let payload = Bytes::from_static(br#"{"a": 20, "b": 22}"#);
    let started = Instant::now();
    let end = started + duration;
    let callers = (0..concurrency).map(|_| {
        let client = client.clone();
        let payload = payload.clone();
        tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < end {
                let t = Instant::now();
                match client.request(subject, payload.clone()).await {
                    Ok(msg) if msg.payload.as_ref() == br#"{"sum":42}"# => latencies.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        })
    });
    let mut point = Point { requests: 0, errors: 0, took: Duration::ZERO, latencies: Vec::new() };
    for caller in futures::future::join_all(callers).await {
        let (latencies, errors) = caller.expect("caller task");
        point.latencies.extend(latencies);
        point.errors += errors;
    }
    point.took = started.elapsed();
    point.requests = point.latencies.len();
    point.latencies.sort_unstable();
    point
}

fn micros(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (duration, levels): (Duration, &[usize]) =
        if full { (Duration::from_secs(4), &[1, 16, 64]) } else { (Duration::from_millis(200), &[1, 8]) };
    let nats = TestNats::start();
    start_responders(nats.url());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.expect("connect load");
        // Warm both paths (connections, allocator, actor mailbox).
        load(&client, "bench.bare", 4, duration / 4).await;
        load(&client, "bench.courier", 4, duration / 4).await;
        println!("request-reply, {}s per point, JSON {{a,b}} -> {{sum}}; latencies in µs", duration.as_secs_f64());
        println!("{:>5} {:>11} {:>11} {:>6} | {:>9} {:>9} {:>9} {:>9} {:>8}", "conc", "bare rps", "courier rps", "ratio", "bare p50", "bare p99", "cour p50", "cour p99", "p99 x");
        let mut failures = 0;
        for &c in levels {
            let bare = load(&client, "bench.bare", c, duration).await;
            let courier = load(&client, "bench.courier", c, duration).await;
            failures += bare.errors + courier.errors;
            println!(
                "{c:>5} {:>11.0} {:>11.0} {:>6.2} | {:>9} {:>9} {:>9} {:>9} {:>8.2}",
                bare.throughput(),
                courier.throughput(),
                courier.throughput() / bare.throughput(),
                micros(bare.percentile(0.5)),
                micros(bare.percentile(0.99)),
                micros(courier.percentile(0.5)),
                micros(courier.percentile(0.99)),
                courier.percentile(0.99).as_secs_f64() / bare.percentile(0.99).as_secs_f64(),
            );
        }
        assert_eq!(failures, 0, "every request is answered correctly");
        if !full {
            println!("quick smoke; run `cargo bench -p courier-actors --bench reqreply` for figures");
        }
    });
}
