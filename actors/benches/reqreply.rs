//! Request-reply throughput and latency: a bare async-nats responder against the same work
//! behind a `courier-actors` endpoint, on one local nats-server.
//!
//! Run: `cargo bench -p courier-actors --bench reqreply` (about 45 s). For profiling, one
//! responder at one concurrency: `COURIER_BENCH_ONLY=courier COURIER_BENCH_LEVELS=64 cargo bench
//! -p courier-actors --bench reqreply`. Under `cargo test`
//! (no `--bench` argument) it runs a quick smoke of a fraction of a second per point and only
//! checks that every request is answered.
//!
//! Three responders run on one actix system thread (the runtime a Courier service runs on):
//! - `bare`: decode, add, encode, reply, with no headers: the floor;
//! - `bare+hdr`: the same plus the two reply headers Courier's wire contract requires
//!   (`Content-Type`, `X-Request-Id`), to separate the cost of the contract from the framework's;
//! - `courier`: the same work as an actor behind a `courier-actors` endpoint.
//!
//! The load comes from a separate two-thread runtime over its own connection, one concurrency
//! level at a time, the three interleaved. Besides throughput and latency it prints the CPU time
//! the responders' thread spent per request (from /proc), which is steadier than throughput on a
//! small machine where the server, the load and the responder share the cores.

/// The allocator Courier's service binaries use (see `services/users/src/main.rs`); all three
/// responders share it, since they run in this one process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Ok(Sum {
            sum: req.body.a + req.body.b,
        })
    }
}

/// The same work without Courier: decode, add, encode, reply, one message after another;
/// with `headers`, the reply also carries Courier's two reply headers.
async fn bare_responder(client: async_nats::Client, subject: &'static str, headers: bool) {
    let mut sub = client
        .queue_subscribe(subject, "q".into())
        .await
        .expect("subscribe");
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply else { continue };
        let Ok(add) = serde_json::from_slice::<Add>(&msg.payload) else {
            continue;
        };
        let body = serde_json::to_vec(&Sum { sum: add.a + add.b }).expect("encode");
        if headers {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Content-Type", "application/json");
            h.insert("X-Request-Id", nuid::next().to_string().as_str());
            let _ = client.publish_with_headers(reply, h, body.into()).await;
        } else {
            let _ = client.publish(reply, body.into()).await;
        }
    }
}

/// CPU time (user + system) the thread `tid` of this process has used, in clock ticks.
fn thread_cpu_ticks(tid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Clock ticks per second of `/proc` CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Starts the responders on an actix system thread; returns its thread id once they are
/// subscribed.
fn start_responders(url: String) -> String {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let responders = std::thread::Builder::new().name("responders".into());
    let spawned = responders.spawn(move || {
        System::new().block_on(async move {
            let client = async_nats::connect(&url).await.expect("connect responder");
            tokio::spawn(bare_responder(client.clone(), "bench.bare", false));
            tokio::spawn(bare_responder(client.clone(), "bench.bare_headers", true));
            let adder = Supervised::local(|| Adder);
            let service = Service::builder("bench", "1.0.0")
                .endpoint(Endpoint::new::<Add>("add", "bench.courier", adder))
                .build()
                .expect("definition");
            let _running = service
                .start(
                    client.clone(),
                    &Default::default(),
                    &prometheus::Registry::new(),
                )
                .await
                .expect("start");
            client.flush().await.expect("flush");
            let tid = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            ready_tx.send(tid).expect("signal ready");
            std::future::pending::<()>().await;
        });
    });
    spawned.expect("spawn the responders' thread");
    ready_rx.recv().expect("responders ready")
}

struct Point {
    /// CPU time of the responders' thread per request.
    cpu_per_request: Duration,
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
async fn load(
    client: &async_nats::Client,
    tid: &str,
    subject: &'static str,
    concurrency: usize,
    duration: Duration,
) -> Point {
    let cpu_before = thread_cpu_ticks(tid);
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
                    Ok(msg) if msg.payload.as_ref() == br#"{"sum":42}"# => {
                        latencies.push(t.elapsed())
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        })
    });
    let mut point = Point {
        cpu_per_request: Duration::ZERO,
        requests: 0,
        errors: 0,
        took: Duration::ZERO,
        latencies: Vec::new(),
    };
    for caller in futures::future::join_all(callers).await {
        let (latencies, errors) = caller.expect("caller task");
        point.latencies.extend(latencies);
        point.errors += errors;
    }
    point.took = started.elapsed();
    point.requests = point.latencies.len();
    point.latencies.sort_unstable();
    let cpu = (thread_cpu_ticks(tid) - cpu_before) as f64 / TICKS_PER_SECOND;
    point.cpu_per_request = Duration::from_secs_f64(cpu / point.requests.max(1) as f64);
    point
}

fn micros(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (duration, default_levels): (Duration, &[usize]) = if full {
        (Duration::from_secs(4), &[1, 16, 64])
    } else {
        (Duration::from_millis(200), &[1, 8])
    };
    let levels: Vec<usize> = std::env::var("COURIER_BENCH_LEVELS")
        .map(|v| v.split(',').filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_else(|_| default_levels.to_vec());
    let only = std::env::var("COURIER_BENCH_ONLY").ok();
    let nats = TestNats::start();
    let tid = start_responders(nats.url());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.expect("connect load");
        let all = [("bare", "bench.bare"), ("bare+hdr", "bench.bare_headers"), ("courier", "bench.courier")];
        let subjects: Vec<_> = all.into_iter().filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name)).collect();
        // Warm every path (connections, allocator, actor mailbox).
        for (_, subject) in &subjects {
            load(&client, &tid, subject, 4, duration / 4).await;
        }
        println!("request-reply, {}s per point, JSON {{a,b}} -> {{sum}}; rps = requests/s, latency and responder CPU in µs", duration.as_secs_f64());
        println!("{:>4} {:>9} {:>8} {:>8} {:>8} {:>8}", "conc", "responder", "rps", "p50", "p99", "cpu/req");
        let mut failures = 0;
        for &c in &levels {
            let mut points = Vec::new();
            for &(name, subject) in &subjects {
                let point = load(&client, &tid, subject, c, duration).await;
                failures += point.errors;
                println!(
                    "{c:>4} {name:>9} {:>8.0} {:>8} {:>8} {:>8.2}",
                    point.throughput(),
                    micros(point.percentile(0.5)),
                    micros(point.percentile(0.99)),
                    point.cpu_per_request.as_secs_f64() * 1e6,
                );
                points.push(point);
            }
            let [bare, with_headers, courier] = &points[..] else { continue };
            let p99 = |p: &Point| p.percentile(0.99).as_secs_f64();
            println!(
                "{c:>4} courier/bare: throughput {:.2}, p99 {:.2}x; courier/bare+hdr: throughput {:.2}, p99 {:.2}x",
                courier.throughput() / bare.throughput(),
                p99(courier) / p99(bare),
                courier.throughput() / with_headers.throughput(),
                p99(courier) / p99(with_headers),
            );
        }
        assert_eq!(failures, 0, "every request is answered correctly");
        if !full {
            println!("quick smoke; run `cargo bench -p courier-actors --bench reqreply` for figures");
        }
    });
}
