//! The service path under load, every responder in a process of its own on one local
//! nats-server, measured from one load generator in one run:
//!
//! - `bare`: an async-nats responder with a fixed reply (the floor);
//! - `bare, users.get's reply`: the same responder answering with a user as users.get does, to
//!   show how much of users.get's distance to `bare` is its larger reply alone;
//! - `trivial`: a Courier endpoint whose actor adds two numbers;
//! - `users.get`, `users.list`: the users service binary on its real database (SQLite, and
//!   PostgreSQL when one answers at `$COURIER_TEST_POSTGRES_URL`);
//! - `users.create`: argon2id-bound by design, against the hashing pool size; and `users.get`
//!   while creates run at full speed (hashing must not starve reads);
//! - start-up (spawn to ready) and idle RSS of the users binary;
//! - `GET /users/{id}` over HTTP through the gateway (a child process running
//!   `courier_gateway::run`, routes learned from a real Consul) to the users binary, with the
//!   gateway's and the service's CPU per request, and the gateway's start-up and idle RSS;
//! - `HTTP floor -> bare`: the least an HTTP-to-NATS proxy can do on the gateway's framework
//!   (actix-web, a NATS connection per worker, the reply as the body) in front of `bare`: what
//!   HTTP itself costs on this machine, the ceiling of any gateway row.
//!
//! HTTP load comes from a keep-alive client as light as `wrk` (`path/http.rs`), one
//! connection per caller.
//!
//! It prints requests/s, p50 and p99 latency, the responder process's CPU per request (from
//! /proc, user + system, all its threads), and each row's ratios to `bare` at the same
//! concurrency. The NATS rows are measured in rounds (5 by default, `COURIER_BENCH_ROUNDS`):
//! each round measures `bare` and then the rows, so every ratio compares points taken seconds
//! apart; the table shows medians, and each round's ratio beside them. On a shared 2-core
//! machine one round's ratio can be a tenth off the others (the load generator, the server and
//! the responder share the cores with whatever else runs); the median of five is rarely
//! moved by one such round, where that of three often was. Each group of rows
//! (1 worker, 2 workers, PostgreSQL) prints its own bare; rows measured once (reads beside
//! creates, the HTTP rows) compare with the median bare of the group measured last.
//!
//! Run: `cargo bench -p courier-users --bench path` (about twelve minutes). Under `cargo test`
//! (no `--bench` argument) it is a seconds-long smoke that checks every request is answered.
//! `COURIER_BENCH_LEVELS=64` picks concurrencies; `COURIER_BENCH_ONLY=users.get,GET` picks rows (by prefix);
//! `COURIER_BENCH_SECONDS=20` makes each point last long enough to profile a responder.

/// The allocator Courier's service binaries use (see `services/users/src/main.rs`): the
/// responders this bench runs as its own children are measured as a service would run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use courier_store::testing::TestDatabase;
use courier_testkit::TestNats;

#[path = "path/gateway.rs"]
mod gateway;
#[path = "path/http.rs"]
mod http;
use gateway::GATEWAY_SECRET;

/// The subject of the bare responder that answers what users.get answers.
const BARE_USER: &str = "bench.bare.user";

/// Which responder this process is, when the bench runs itself as a child.
const ROLE: &str = "COURIER_BENCH_ROLE";
/// The subject a `bare` responder answers on, and its reply, when not the default ones.
const BARE_SUBJECT: &str = "COURIER_BENCH_BARE_SUBJECT";
const BARE_REPLY: &str = "COURIER_BENCH_BARE_REPLY";

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("bare") => responders::bare(),
        Ok("trivial") => responders::trivial(),
        Ok("gateway") => responders::gateway(),
        Ok("floor") => http::floor(),
        Ok(other) => panic!("unknown {ROLE} {other}"),
        Err(_) => run(),
    }
}

/// The responders that are not the users binary, run as children of the bench.
mod responders {
    use actix::prelude::*;
    use bytes::Bytes;
    use courier_actors::{Call, Endpoint, Request, Service, ServiceError, Supervised};
    use futures::StreamExt;
    use serde::{Deserialize, Serialize};

    use super::{BARE_REPLY, BARE_SUBJECT};

    fn url() -> String {
        std::env::var("NATS_URL").expect("NATS_URL")
    }

    /// Decode nothing, reply `{"sum":42}` (or `$COURIER_BENCH_BARE_REPLY`): what NATS itself
    /// costs.
    pub fn bare() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let client = async_nats::connect(url()).await.expect("connect");
            // A second bare responder answers on its own subject with a reply of its own.
            let subject = std::env::var(BARE_SUBJECT).unwrap_or_else(|_| "bench.bare".into());
            let answer =
                Bytes::from(std::env::var(BARE_REPLY).unwrap_or_else(|_| r#"{"sum":42}"#.into()));
            let mut sub = client
                .queue_subscribe(subject, "q".into())
                .await
                .expect("subscribe");
            client.flush().await.expect("flush");
            println!("ready");
            while let Some(msg) = sub.next().await {
                if let Some(reply) = msg.reply {
                    let _ = client.publish(reply, answer.clone()).await;
                }
            }
        });
    }

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

    /// The gateway as its binary runs it, settings from the environment.
    pub fn gateway() {
        let settings: courier_gateway::Settings =
            courier_config::Loader::from_env(std::env::vars())
                .load()
                .expect("gateway settings");
        System::new()
            .block_on(courier_gateway::run(
                settings,
                |addr| println!("ready {addr}"),
                std::future::pending(),
            ))
            .expect("the gateway runs");
    }

    /// A Courier endpoint with a trivial actor, on the settings and connections a service
    /// would have (a main and an intake for each worker).
    pub fn trivial() {
        System::new().block_on(async {
            let registry = prometheus::Registry::new();
            let nats = courier_config::NatsSettings {
                url: url(),
                ..Default::default()
            };
            let connections = courier_runtime::nats::connect(&nats, "bench", &registry)
                .await
                .expect("connect");
            let workers: usize = std::env::var("COURIER_SERVICE__WORKERS")
                .ok()
                .and_then(|w| w.parse().ok())
                .unwrap_or(1);
            let service = Service::builder("bench", "1.0.0")
                .endpoint(Endpoint::new::<Add>(
                    "add",
                    format!("bench.trivial.{workers}"),
                    Supervised::per_thread(|| Adder),
                ))
                .build()
                .expect("definition");
            // As for the users binary: the load, not the in-flight limit, is measured.
            let settings = courier_config::ServiceSettings {
                workers,
                max_in_flight: 4096,
                ..Default::default()
            };
            let _running = service
                .start(connections, &settings, &registry)
                .await
                .expect("start");
            println!("ready");
            std::future::pending::<()>().await;
        });
    }
}

/// A responder process and its CPU clock.
struct Responder {
    child: Child,
}

impl Responder {
    fn role(role: &str, nats: &str, workers: usize) -> Self {
        Self::role_with(
            role,
            nats,
            &[("COURIER_SERVICE__WORKERS", &workers.to_string())],
        )
    }

    /// A `bare` responder on `subject` that answers `reply`.
    fn bare_replying(nats: &str, subject: &str, reply: &[u8]) -> Self {
        let reply = String::from_utf8_lossy(reply);
        Self::role_with(
            "bare",
            nats,
            &[(BARE_SUBJECT, subject), (BARE_REPLY, &reply)],
        )
    }

    /// A responder `role` on the server at `nats`, with `env` on top.
    fn role_with(role: &str, nats: &str, env: &[(&str, &str)]) -> Self {
        let exe = std::env::current_exe().expect("the bench's own path");
        let mut cmd = Command::new(exe);
        cmd.env(ROLE, role)
            .env("NATS_URL", nats)
            .envs(env.iter().copied());
        Self::spawn_and_wait(cmd, |line| line == "ready")
    }

    /// An HTTP role (`gateway` or `floor`) on a free port, against `consul`; and its address.
    fn http(role: &str, nats: &str, consul: &str) -> (Self, String) {
        let exe = std::env::current_exe().expect("the bench's own path");
        let bind = format!("127.0.0.1:{}", courier_testkit::free_port());
        let mut cmd = Command::new(exe);
        cmd.env(ROLE, role)
            .env("NATS_URL", nats)
            .env("CONSUL_HTTP_ADDR", consul)
            .env("COURIER_GATEWAY__BIND", &bind)
            .env("COURIER_GATEWAY__MAX_IN_FLIGHT", "100000")
            .env("COURIER_AUTH__JWT_SECRET", GATEWAY_SECRET)
            .env("RUST_LOG", "warn");
        (
            Self::spawn_and_wait(cmd, |line| line.starts_with("ready")),
            bind,
        )
    }

    fn users(nats: &str, database: &str, hash_workers: usize, workers: usize) -> (Self, Duration) {
        Self::users_in(nats, database, hash_workers, workers, None)
    }

    /// The users binary; registered in the Consul at `consul` when one is given.
    fn users_in(
        nats: &str,
        database: &str,
        hash_workers: usize,
        workers: usize,
        consul: Option<&str>,
    ) -> (Self, Duration) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_courier-users"));
        if let Some(consul) = consul {
            cmd.env("CONSUL_HTTP_ADDR", consul)
                .env("COURIER_CONSUL__REGISTER", "true")
                .env("COURIER_CONSUL__CHECK_INTERVAL", "1s");
        } else {
            cmd.env("COURIER_CONSUL__REGISTER", "false");
        }
        cmd.env("NATS_URL", nats)
            .env("COURIER_SERVICE__WORKERS", workers.to_string())
            // The load, not the in-flight limit, is what is measured: a caller's next request
            // can arrive before the slot of its last one is given back.
            .env("COURIER_SERVICE__MAX_IN_FLIGHT", "4096")
            .env("DATABASE_URL", database)
            .env("COURIER_USERS__HASH_WORKERS", hash_workers.to_string())
            .env("COURIER_LOG__FORMAT", "json")
            .env("RUST_LOG", "info");
        let started = Instant::now();
        let me = Self::spawn_and_wait(cmd, |line| line.contains("Service started."));
        (me, started.elapsed())
    }

    /// Spawns `cmd` and waits for the line on stdout or stderr that says it serves.
    fn spawn_and_wait(
        mut cmd: Command,
        ready: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a responder");
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = Arc::new(ready);
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (tx, ready) = (tx.clone(), ready.clone());
            // Keeps reading to the end, so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if ready(&line) {
                        let _ = tx.send(());
                    }
                }
            });
        }
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the responder starts");
        Self { child }
    }

    /// User + system CPU time of the whole process so far.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .map(|f| f.parse().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default();
        let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
        Duration::from_secs_f64(ticks as f64 / TICKS_PER_SECOND)
    }

    /// Resident memory, in MiB.
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second of `/proc` CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Makes the payload of the `i`th request.
type Payload = Arc<dyn Fn(usize) -> Bytes + Send + Sync>;

struct Point {
    requests: usize,
    errors: usize,
    /// What the first failed request got, to say why.
    first_error: Option<String>,
    took: Duration,
    cpu: Duration,
    latencies: Vec<Duration>,
}

/// What one caller task of a load loop measured: latencies of its successes, its error count
/// and the first error's text.
type CallerResult = (Vec<Duration>, usize, Option<String>);

impl Point {
    /// Waits for every caller and merges what they measured; `cpu` is left for the caller.
    async fn gather(
        callers: impl IntoIterator<Item = tokio::task::JoinHandle<CallerResult>>,
        started: Instant,
    ) -> Self {
        let mut point = Point {
            requests: 0,
            errors: 0,
            first_error: None,
            took: Duration::ZERO,
            cpu: Duration::ZERO,
            latencies: Vec::new(),
        };
        for caller in futures::future::join_all(callers).await {
            let (latencies, errors, first) = caller.expect("caller task");
            point.latencies.extend(latencies);
            point.errors += errors;
            point.first_error = point.first_error.or(first);
        }
        point.took = started.elapsed();
        point.requests = point.latencies.len();
        point.latencies.sort_unstable();
        point
    }

    fn rps(&self) -> f64 {
        self.requests as f64 / self.took.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> Duration {
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }
    fn cpu_per_request(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

/// `concurrency` callers in a closed loop for `duration`; a reply with an error header counts
/// as an error.
async fn load(
    client: &async_nats::Client,
    responder: &Responder,
    subject: &'static str,
    payload: Payload,
    concurrency: usize,
    duration: Duration,
) -> Point {
    let cpu_before = responder.cpu();
    let started = Instant::now();
    let end = started + duration;
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let callers = (0..concurrency).map(|_| {
        let (client, payload, counter) = (client.clone(), payload.clone(), counter.clone());
        tokio::spawn(async move {
            let (mut latencies, mut errors, mut first) = (Vec::new(), 0usize, None);
            while Instant::now() < end {
                let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let t = Instant::now();
                match client.request(subject, payload(i)).await {
                    Ok(msg) if !is_error(&msg) => latencies.push(t.elapsed()),
                    failed => {
                        errors += 1;
                        first.get_or_insert_with(|| match failed {
                            Ok(msg) => String::from_utf8_lossy(&msg.payload).into_owned(),
                            Err(e) => e.to_string(),
                        });
                    }
                }
            }
            (latencies, errors, first)
        })
    });
    let point = Point::gather(callers, started).await;
    Point {
        cpu: responder.cpu().saturating_sub(cpu_before),
        ..point
    }
}

fn is_error(msg: &async_nats::Message) -> bool {
    msg.headers
        .as_ref()
        .is_some_and(|h| h.get("Nats-Service-Error-Code").is_some())
}

fn fixed(body: &'static str) -> Payload {
    Arc::new(move |_| Bytes::from_static(body.as_bytes()))
}

fn create_payload(prefix: &'static str) -> Payload {
    Arc::new(move |i| {
        Bytes::from(format!(
            r#"{{"name":"Bench {i}","email":"{prefix}{i}-{}@example.com","password":"correct horse battery"}}"#,
            std::process::id()
        ))
    })
}

/// Creates `n` users and returns a payload that gets one of them, round-robin.
async fn seed(client: &async_nats::Client, n: usize, prefix: &'static str) -> Payload {
    let make = create_payload(prefix);
    let mut ids = Vec::new();
    for i in 0..n {
        let reply = client
            .request("users.create", make(i))
            .await
            .expect("seed a user");
        assert!(
            !is_error(&reply),
            "{:?}",
            String::from_utf8_lossy(&reply.payload)
        );
        let user: serde_json::Value = serde_json::from_slice(&reply.payload).expect("a user");
        ids.push(format!(
            r#"{{"id":"{}"}}"#,
            user["id"].as_str().expect("an id")
        ));
    }
    let ids: Arc<[Bytes]> = ids.into_iter().map(Bytes::from).collect();
    Arc::new(move |i| ids[i % ids.len()].clone())
}

struct Report {
    errors: usize,
    /// Bare's median requests/s and p99 at each concurrency.
    bare: BTreeMap<usize, (f64, Duration)>,
}

/// A row measured in rounds: each round measures bare and then the row's targets, so each
/// ratio compares points measured seconds apart, and the median of the rounds' ratios is what
/// a shared machine's drift moves least.
struct Target<'a> {
    name: &'a str,
    responder: &'a Responder,
    subject: &'static str,
    payload: Payload,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

impl Report {
    fn print_header(duration: Duration, rounds: usize) {
        println!(
            "service path, {rounds} round(s) of {}s per point, medians; rps = requests/s; p50, p99 and service CPU per request in µs; ratios to bare at the same concurrency in the same round",
            duration.as_secs_f64()
        );
        println!(
            "{:>26} {:>5} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8}  x bare by round",
            "target", "conc", "rps", "p50", "p99", "cpu/req", "x bare", "p99/bare"
        );
    }

    /// A row measured once, compared with bare's medians at its concurrency.
    fn add(&mut self, name: &str, concurrency: usize, point: Point) {
        let bare = self.bare.get(&concurrency).copied();
        self.print(name, concurrency, &[point], |_| bare);
    }

    /// A row with no bare to compare with (creates are bound by hashing, not by the path).
    fn add_alone(&mut self, name: &str, concurrency: usize, point: Point) {
        self.print(name, concurrency, &[point], |_| None);
    }

    /// A row measured in rounds against `bare`, the bare points of the same rounds.
    fn add_rounds(&mut self, name: &str, concurrency: usize, points: &[Point], bare: &[Point]) {
        if name == "bare" {
            let rps = median(points.iter().map(Point::rps).collect());
            let p99 = median(
                points
                    .iter()
                    .map(|p| p.percentile(0.99).as_secs_f64())
                    .collect(),
            );
            self.bare
                .insert(concurrency, (rps, Duration::from_secs_f64(p99)));
        }
        self.print(name, concurrency, points, |round| {
            bare.get(round).map(|b| (b.rps(), b.percentile(0.99)))
        });
    }

    fn print(
        &mut self,
        name: &str,
        concurrency: usize,
        points: &[Point],
        bare_of_round: impl Fn(usize) -> Option<(f64, Duration)>,
    ) {
        let of = |f: &dyn Fn(&Point) -> f64| median(points.iter().map(f).collect());
        let ratios: Vec<(f64, f64)> = points
            .iter()
            .enumerate()
            .filter_map(|(round, point)| {
                let (rps, p99) = bare_of_round(round)?;
                Some((
                    point.rps() / rps,
                    point.percentile(0.99).as_secs_f64() / p99.as_secs_f64(),
                ))
            })
            .collect();
        let (ratio, p99_ratio, by_round) = if ratios.is_empty() {
            ("-".to_owned(), "-".to_owned(), String::new())
        } else {
            (
                format!("{:.2}", median(ratios.iter().map(|r| r.0).collect())),
                format!("{:.2}", median(ratios.iter().map(|r| r.1).collect())),
                if ratios.len() > 1 {
                    ratios.iter().map(|r| format!("{:.2} ", r.0)).collect()
                } else {
                    String::new()
                },
            )
        };
        println!(
            "{name:>26} {concurrency:>5} {:>8.0} {:>7.0} {:>7.0} {:>8.1} {ratio:>8} {p99_ratio:>8}  {by_round}",
            of(&Point::rps),
            of(&|p| p.percentile(0.5).as_secs_f64() * 1e6),
            of(&|p| p.percentile(0.99).as_secs_f64() * 1e6),
            of(&Point::cpu_per_request),
        );
        for point in points {
            if let Some(error) = &point.first_error {
                println!("{:>26} {} errors, the first: {error}", "", point.errors);
            }
            self.errors += point.errors;
        }
    }
}

/// Measures bare and then each of `targets` at `concurrency`, `rounds` times over, and reports
/// every row with its ratios to bare's point in the same round.
async fn in_rounds(
    client: &async_nats::Client,
    bare: &Responder,
    targets: &[Target<'_>],
    concurrency: usize,
    duration: Duration,
    rounds: usize,
    report: &mut Report,
) {
    let mut bare_points = Vec::new();
    let mut points: Vec<Vec<Point>> = targets.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        let add = fixed(r#"{"a":20,"b":22}"#);
        bare_points.push(load(client, bare, "bench.bare", add, concurrency, duration).await);
        for (target, points) in targets.iter().zip(&mut points) {
            let point = load(
                client,
                target.responder,
                target.subject,
                target.payload.clone(),
                concurrency,
                duration,
            )
            .await;
            points.push(point);
        }
    }
    report.add_rounds("bare", concurrency, &bare_points, &bare_points);
    for (target, points) in targets.iter().zip(&points) {
        report.add_rounds(target.name, concurrency, points, &bare_points);
    }
}

fn run() {
    let full = std::env::args().any(|a| a == "--bench");
    let (duration, default_levels, seeded, rounds): (Duration, &[usize], usize, usize) = if full {
        (Duration::from_secs(2), &[1, 16, 64, 256], 100, 5)
    } else {
        (Duration::from_millis(100), &[1, 16], 4, 1)
    };
    let rounds = std::env::var("COURIER_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(rounds);
    // Longer points for profiling a responder: `COURIER_BENCH_SECONDS=20`.
    let duration = std::env::var("COURIER_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(duration, Duration::from_secs_f64);
    let levels: Vec<usize> = std::env::var("COURIER_BENCH_LEVELS")
        .map(|v| v.split(',').filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_else(|_| default_levels.to_vec());
    let only = std::env::var("COURIER_BENCH_ONLY").ok();
    let wanted = |name: &str| {
        only.as_deref().is_none_or(|only| {
            name == "bare" || only.split(',').any(|o| name.starts_with(o.trim()))
        })
    };
    let nats = TestNats::start();
    let scratch = std::env::temp_dir().join(format!("courier-bench-{}", std::process::id()));
    let sqlite = format!("sqlite://{}/users.db", scratch.display());
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.expect("connect load");
        let mut report = Report {
            errors: 0,
            bare: BTreeMap::new(),
        };
        Report::print_header(duration, rounds);
        let bare = Responder::role("bare", &nats.url(), 1);
        let trivial_1 = Responder::role("trivial", &nats.url(), 1);
        let trivial_2 = Responder::role("trivial", &nats.url(), 2);
        let (users, ready_in) = Responder::users(&nats.url(), &sqlite, cores, 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle_rss = users.rss_mib();
        let get = seed(&client, seeded, "get").await;
        let list = fixed(r#"{"limit":10}"#);
        let add = fixed(r#"{"a":20,"b":22}"#);
        // Bare again, answering what users.get answers: how much of users.get's distance to
        // bare is the size of its reply alone (nats-server and the caller move it too).
        let user = client.request("users.get", get(0)).await.expect("a user");
        assert!(
            !is_error(&user),
            "{:?}",
            String::from_utf8_lossy(&user.payload)
        );
        let bare_user = Responder::bare_replying(&nats.url(), BARE_USER, &user.payload);
        // Warm every path once.
        for (responder, subject, payload) in [
            (&bare, "bench.bare", add.clone()),
            (&bare_user, BARE_USER, get.clone()),
            (&trivial_1, "bench.trivial.1", add.clone()),
            (&trivial_2, "bench.trivial.2", add.clone()),
            (&users, "users.get", get.clone()),
        ] {
            load(&client, responder, subject, payload, 4, duration / 2).await;
        }
        for &c in &levels {
            let targets: Vec<Target<'_>> = [
                (
                    "trivial endpoint 1w",
                    &trivial_1,
                    "bench.trivial.1",
                    add.clone(),
                ),
                (
                    "trivial endpoint 2w",
                    &trivial_2,
                    "bench.trivial.2",
                    add.clone(),
                ),
                (
                    "bare, users.get's reply",
                    &bare_user,
                    BARE_USER,
                    get.clone(),
                ),
                ("users.get sqlite 1w", &users, "users.get", get.clone()),
                ("users.list sqlite 1w", &users, "users.list", list.clone()),
            ]
            .into_iter()
            .filter(|(name, ..)| wanted(name))
            .map(|(name, responder, subject, payload)| Target {
                name,
                responder,
                subject,
                payload,
            })
            .collect();
            in_rounds(&client, &bare, &targets, c, duration, rounds, &mut report).await;
        }
        // One users instance at a time: they share the subjects and queue group. The same
        // file again, with two workers.
        drop(users);
        let (users, _) = Responder::users(&nats.url(), &sqlite, cores, 2);
        load(&client, &users, "users.get", get.clone(), 4, duration / 2).await;
        for &c in &levels {
            let targets: Vec<Target<'_>> = [
                ("users.get sqlite 2w", "users.get", get.clone()),
                ("users.list sqlite 2w", "users.list", list.clone()),
            ]
            .into_iter()
            .filter(|(name, ..)| wanted(name))
            .map(|(name, subject, payload)| Target {
                name,
                responder: &users,
                subject,
                payload,
            })
            .collect();
            if !targets.is_empty() {
                in_rounds(&client, &bare, &targets, c, duration, rounds, &mut report).await;
            }
        }
        // One users instance at a time: they share the subjects and queue group.
        drop(users);
        if wanted("users.create") {
            creates_and_reads(&client, &nats, &scratch, &levels, duration, &mut report).await;
        }
        if wanted("users.get postgres") || wanted("users.list postgres") {
            let rows = (&levels[..], duration, rounds);
            postgres(&client, &nats, &bare, rows, seeded, &mut report).await;
        }
        if wanted(gateway::ROW) {
            gateway::rows(&client, &nats, &scratch, &levels, duration, &mut report).await;
        }
        println!("users start-up (spawn to serving): {ready_in:?}; idle RSS: {idle_rss:.1} MiB");
        report
    });
    let _ = std::fs::remove_dir_all(&scratch);
    assert_eq!(
        report.errors, 0,
        "every request is answered without an error"
    );
    if !full {
        println!("quick smoke; run `cargo bench -p courier-users --bench path` for figures");
    }
}

/// Creates against the hashing pool size, then reads while creates run at full speed.
async fn creates_and_reads(
    client: &async_nats::Client,
    nats: &TestNats,
    scratch: &std::path::Path,
    levels: &[usize],
    duration: Duration,
    report: &mut Report,
) {
    let create_level = levels.iter().copied().max().unwrap_or(16).min(32);
    for pool in [1, 2] {
        let url = format!("sqlite://{}/creates-{pool}.db", scratch.display());
        let (users, _) = Responder::users(&nats.url(), &url, pool, 0);
        let point = load(
            client,
            &users,
            "users.create",
            create_payload("c"),
            create_level,
            duration,
        )
        .await;
        report.add_alone(&format!("users.create pool={pool}"), create_level, point);
        drop(users);
    }
    // Reads at 64 beside creates at full speed on a pool of 2 (the cores of this machine).
    let url = format!("sqlite://{}/mixed.db", scratch.display());
    let (users, _) = Responder::users(&nats.url(), &url, 2, 0);
    let get = seed(client, 8, "mixed").await;
    let reads = 64.min(levels.iter().copied().max().unwrap_or(64));
    let alone = load(client, &users, "users.get", get.clone(), reads, duration).await;
    report.add("users.get alone", reads, alone);
    let creating = load(
        client,
        &users,
        "users.create",
        create_payload("m"),
        16,
        duration,
    );
    let reading = load(client, &users, "users.get", get, reads, duration);
    let (created, read) = futures::future::join(creating, reading).await;
    report.add("users.get beside creates", reads, read);
    report.add_alone("users.create beside reads", 16, created);
}

async fn postgres(
    client: &async_nats::Client,
    nats: &TestNats,
    bare: &Responder,
    (levels, duration, rounds): (&[usize], Duration, usize),
    seeded: usize,
    report: &mut Report,
) {
    let Some(db) = TestDatabase::postgres("bench").await else {
        println!("PostgreSQL: none answers at $COURIER_TEST_POSTGRES_URL; rows skipped");
        return;
    };
    let (users, _) = Responder::users(&nats.url(), db.settings.url.expose(), 2, 0);
    let get = seed(client, seeded, "pg").await;
    let list = fixed(r#"{"limit":10}"#);
    for &c in levels {
        let targets = [
            ("users.get postgres", "users.get", get.clone()),
            ("users.list postgres", "users.list", list.clone()),
        ]
        .map(|(name, subject, payload)| Target {
            name,
            responder: &users,
            subject,
            payload,
        });
        in_rounds(client, bare, &targets, c, duration, rounds, report).await;
    }
    drop(users);
    db.remove().await;
}
