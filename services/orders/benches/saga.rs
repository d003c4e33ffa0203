//! Issue 9: what durable events and the order saga cost, on one local nats-server (JetStream
//! on), measured in one run:
//!
//! 1. Events per second from a write to a handler, against bare JetStream, the same JSON
//!    payloads (about 200 bytes) on the services' stream (`COURIER_EVENTS`, file storage):
//!    - `bare`: async-nats publishes (ack futures awaited in chunks of 1024) while a durable
//!      pull consumer (explicit ack, the services' `max_ack_pending`) takes and acks them;
//!      first publish to last ack.
//!    - `outbox`: 16 writers, one event per SQLite transaction (`Write::event`), the outbox
//!      relay publishing them, a Courier service's durable subscription counting them; first
//!      commit to last handled.
//!    - `outbox + handled once`: the same, the handler also claiming each event id in its
//!      own database (`Database::claim_event` + commit), as idempotent consumers do.
//! 2. Order sagas completed per second (users, products, payments and orders services, each
//!    on its own SQLite database) at several concurrencies, with p50 and p99 from
//!    `orders.create` to the order's `events.orders.confirmed` (seen on core NATS: no polling).
//!
//! CPU columns: this process (load generator, writers, relay and every service run here as
//! threads) and the nats-server, user + system from /proc, per 1000 events or per saga.
//!
//! Run: `cargo bench -p courier-orders --bench saga`. Under `cargo test --benches` (no `--bench`
//! argument) it is a seconds-long smoke that checks every event and saga arrives.
//! `COURIER_BENCH_EVENTS=50000`, `COURIER_BENCH_ROUNDS=5`, `COURIER_BENCH_LEVELS=1,8,32`,
//! `COURIER_BENCH_SECONDS=3`.

/// The allocator the service binaries use (see `services/orders/src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::AckPolicy;
use courier_actors::durable::ensure_streams;
use courier_actors::{DrainReport, EventError, Meta, Methods, Service};
use courier_config::EventsSettings;
use courier_contracts::orders::{CreateOrder, ORDER_CANCELLED, ORDER_CONFIRMED};
use courier_contracts::products::{CreateProduct, Item};
use courier_contracts::users::CreateUser;
use courier_runtime::testing::TestService;
use courier_runtime::{Kit, Started};
use courier_store::testing::TestDatabase;
use courier_store::Database;
use courier_testkit::TestNats;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

type Running = TestService<anyhow::Result<DrainReport>>;

/// Concurrent writers of the outbox rows.
const WRITERS: usize = 16;
/// Publishes in flight at once in the bare row, as many as one pass of the outbox relay.
const CHUNK: usize = 1024;
/// How long one event row or one saga may take before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(120);

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let env = |name: &str| std::env::var(name).ok();
    let events: usize = env("COURIER_BENCH_EVENTS")
        .and_then(|n| n.parse().ok())
        .unwrap_or(if full { 50_000 } else { 300 });
    let levels: Vec<usize> = env("COURIER_BENCH_LEVELS")
        .map(|v| v.split(',').filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_else(|| if full { vec![1, 8, 32] } else { vec![4] });
    let seconds = env("COURIER_BENCH_SECONDS")
        .and_then(|s| s.parse().ok())
        .map_or(
            Duration::from_millis(if full { 3000 } else { 300 }),
            Duration::from_secs_f64,
        );
    let rounds: usize = env("COURIER_BENCH_ROUNDS")
        .and_then(|n| n.parse().ok())
        .unwrap_or(if full { 5 } else { 1 });
    let nats = TestNats::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        event_rows(&nats, events, rounds).await;
        saga_rows(&nats, &levels, seconds).await;
    });
    drop(rt);
    drop(nats);
    if !full {
        println!("quick smoke; run `cargo bench -p courier-orders --bench saga` for figures");
    }
}

// ---------------------------------------------------------------------------------------
// 1. Events
// ---------------------------------------------------------------------------------------

/// The event every row sends: about 200 bytes of JSON.
#[derive(Debug, Serialize, Deserialize)]
struct Shipped {
    order_id: String,
    user_id: String,
    sku: String,
    quantity: u32,
    total: i64,
    currency: String,
    carrier: String,
    note: String,
}

fn shipped(i: usize) -> Shipped {
    Shipped {
        order_id: format!("0190a1b2-c3d4-7e5f-8a9b-{i:012}"),
        user_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_owned(),
        sku: format!("SKU-{:06}", i % 1000),
        quantity: 1 + (i % 5) as u32,
        total: 1250 + i as i64 % 100,
        currency: "EUR".to_owned(),
        carrier: "courier-express".to_owned(),
        note: "leave at the door".to_owned(),
    }
}

/// What the sink service's handlers counted.
#[derive(Default)]
struct Counters {
    plain: AtomicU64,
    once: AtomicU64,
    /// Deliveries the claim found already handled (redeliveries).
    duplicates: AtomicU64,
}

courier_runtime::service_settings! {
    /// The sink service's settings: the kit's, nothing more.
    pub struct SinkSettings {
        database: "data/bench-sink.db",
    }
}

/// The sink's state: its own database, and the counters the bench reads.
#[derive(Clone)]
struct Sink {
    db: Database,
    counters: Arc<Counters>,
}

const SINK: &str = "bench-sink";
const PLAIN_SUBJECT: &str = "events.bench.outbox";
const ONCE_SUBJECT: &str = "events.bench.once";
const BARE_SUBJECT: &str = "events.bench.bare";

impl Sink {
    /// Counts the event.
    async fn count(self, _: Shipped, _: String, _: Meta) -> Result<(), EventError> {
        self.counters.plain.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Claims the event id in the sink's database (an idempotent consumer with no other
    /// effect), then counts it.
    async fn once(self, _: Shipped, id: String, _: Meta) -> Result<(), EventError> {
        let retry = |e: courier_store::StoreError| EventError::Retry(e.to_string());
        match self
            .db
            .claim_event(&format!("{SINK}_once"), &id)
            .await
            .map_err(retry)?
        {
            Some(write) => write.commit().await.map_err(retry)?,
            None => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.counters.once.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A service as small as one can be on the kit: two durable subscriptions.
async fn sink(
    settings: SinkSettings,
    on_start: impl FnOnce(&Started<'_>),
    shutdown: impl Future<Output = ()>,
    counters: Arc<Counters>,
) -> anyhow::Result<DrainReport> {
    let kit = Kit::open("courier-bench-sink", &settings, &[]).await?;
    let methods = Methods::per_thread(Sink {
        db: kit.db.clone(),
        counters,
    });
    let service = Service::builder(SINK, "1.0.0")
        .durable(methods.durable("outbox", PLAIN_SUBJECT, Sink::count))
        .durable(methods.durable("once", ONCE_SUBJECT, Sink::once));
    Ok(kit.serve(service, &settings, on_start, shutdown).await?)
}

/// One measured event row.
struct EventRow {
    name: &'static str,
    /// First send to last handled.
    elapsed: Duration,
    /// First send to the last publish acknowledged (bare) or the last commit (outbox).
    sent: Duration,
    cpu: Cpu,
}

async fn event_rows(nats: &TestNats, n: usize, rounds: usize) {
    let settings = EventsSettings::default();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    ensure_streams(&client, &settings).await.expect("streams");
    let size = serde_json::to_string(&shipped(n)).expect("json").len();

    // The producer: a database with an outbox, and its relay as the kit runs it.
    let producer_db = TestDatabase::sqlite("bench-outbox");
    let db = Database::connect(&producer_db.settings, &[])
        .await
        .expect("producer database");
    let relay_client = async_nats::connect(nats.url()).await.expect("connect");
    let (stop_relay, relay_stopped) = oneshot::channel::<()>();
    let relay = tokio::spawn(relay_task(db.clone(), relay_client, relay_stopped));

    // The consumer: a service with durable subscriptions, on its own database.
    let counters = Arc::new(Counters::default());
    let sink_counters = counters.clone();
    let sink_service: Running = TestService::join(
        &nats.url(),
        TestDatabase::sqlite("bench-sink"),
        |_: &mut SinkSettings| {},
        move |s, on, stop| sink(s, on, stop, sink_counters),
    )
    .await;

    // The rows take turns, round after round, so that a slower spell of this shared machine
    // falls on all of them; each ratio is of one round, and the median is printed. Rounds of
    // 20000 events last under a second, short enough for one slow spell to decide a round:
    // the default is 5 rounds of 50000. Even so, compare medians of several runs.
    let mut rows: [Vec<EventRow>; 3] = Default::default();
    for _ in 0..rounds {
        rows[0].push(bare(nats, &settings, n).await);
        let outboxes = [
            ("outbox", PLAIN_SUBJECT, &counters.plain),
            ("outbox + handled once", ONCE_SUBJECT, &counters.once),
        ];
        for (row, (name, subject, handled)) in rows[1..].iter_mut().zip(outboxes) {
            row.push(outbox(name, &db, subject, n, handled, nats_server()).await);
        }
    }
    let duplicates = counters.duplicates.load(Ordering::Relaxed);

    drop(sink_service);
    let _ = stop_relay.send(());
    let _ = relay.await;
    db.close().await;
    drop(producer_db);

    println!();
    println!(
        "Events through JetStream: {n} events of {size} B JSON on {} (file storage), {WRITERS} \
         writers, one nats-server",
        settings.stream
    );
    println!(
        "{rounds} rounds; per row the median of: events/s, its ratio to the bare row of the same \
         round, publishes or commits per second, CPU per 1000 events"
    );
    println!(
        "{:<24} {:>10} {:>8} {:>10} {:>12} {:>12}  x bare by round",
        "row", "events/s", "x bare", "sent/s", "cpu ms/1k", "server ms/1k"
    );
    let per_k = n as f64 / 1000.0;
    for row in &rows {
        let ratios: Vec<f64> = row
            .iter()
            .zip(&rows[0])
            .map(|(r, bare)| bare.elapsed.as_secs_f64() / r.elapsed.as_secs_f64())
            .collect();
        let cpu = |f: &dyn Fn(&EventRow) -> Option<u64>| {
            median(row.iter().filter_map(f).map(|t| t as f64).collect())
                .map_or("-".to_owned(), |t| per(Some(t as u64), per_k))
        };
        println!(
            "{:<24} {:>10.0} {:>8.2} {:>10.0} {:>12} {:>12}  {}",
            row[0].name,
            median(row.iter().map(|r| rate(n, r.elapsed)).collect()).unwrap_or(0.0),
            median(ratios.clone()).unwrap_or(0.0),
            median(row.iter().map(|r| rate(n, r.sent)).collect()).unwrap_or(0.0),
            cpu(&|r| r.cpu.process),
            cpu(&|r| r.cpu.server_ticks),
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    println!(
        "  sent/s: publishes acknowledged (bare) or transactions committed (outbox); \
         redeliveries seen by the claim: {duplicates}"
    );
}

/// Plain async-nats: pipelined publishes, a durable pull consumer acking each message.
async fn bare(nats: &TestNats, settings: &EventsSettings, n: usize) -> EventRow {
    let payloads: Vec<String> = (0..n)
        .map(|i| serde_json::to_string(&shipped(i)).expect("json"))
        .collect();
    let publisher = async_nats::connect(nats.url()).await.expect("connect");
    let reader = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(publisher);
    let config = PullConfig {
        durable_name: Some("bench_bare".to_owned()),
        filter_subject: BARE_SUBJECT.to_owned(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        max_ack_pending: i64::from(settings.max_ack_pending),
        ..Default::default()
    };
    let consumer = async_nats::jetstream::new(reader)
        .create_consumer_on_stream(config, &settings.stream)
        .await
        .expect("bare consumer");
    let mut messages = consumer.messages().await.expect("pull");
    let server = nats_server();
    let cpu = Cpu::start(server.clone());
    let start = Instant::now();
    let take = tokio::spawn(async move {
        for _ in 0..n {
            let msg = messages
                .next()
                .await
                .expect("the pull goes on")
                .expect("a message");
            msg.ack().await.expect("ack");
        }
        Instant::now()
    });
    for chunk in payloads.chunks(CHUNK) {
        let mut acks = Vec::with_capacity(chunk.len());
        for payload in chunk {
            let ack = js
                .publish(BARE_SUBJECT, payload.clone().into())
                .await
                .expect("publish");
            acks.push(ack);
        }
        for ack in acks {
            ack.await.expect("stored");
        }
    }
    let sent = start.elapsed();
    let done = tokio::time::timeout(PATIENCE, take)
        .await
        .expect("every bare message is taken")
        .expect("reader");
    EventRow {
        name: "bare",
        elapsed: done - start,
        sent,
        cpu: cpu.stop(),
    }
}

/// The relay as `courier_runtime` runs it beside a service.
async fn relay_task(db: Database, nats: async_nats::Client, stop: oneshot::Receiver<()>) {
    courier_runtime::run_relay(db, nats, async {
        let _ = stop.await;
    })
    .await;
}

/// `n` events written by [`WRITERS`] writers, one per transaction, until `handled` has
/// counted them all.
async fn outbox(
    name: &'static str,
    db: &Database,
    subject: &'static str,
    n: usize,
    handled: &AtomicU64,
    server: Option<String>,
) -> EventRow {
    let next = Arc::new(AtomicUsize::new(0));
    // Made before the clock starts, as the bare row's payloads are: the write encodes them.
    let events: Arc<[Shipped]> = (0..n).map(shipped).collect();
    let before = handled.load(Ordering::Relaxed);
    let cpu = Cpu::start(server);
    let start = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (db, next, events) = (db.clone(), next.clone(), events.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let meta = Meta::root();
                    let mut write = db.begin().await.expect("begin");
                    write
                        .event(subject, &events[i], &meta)
                        .await
                        .expect("event");
                    write.commit().await.expect("commit");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let sent = start.elapsed();
    let deadline = start + PATIENCE;
    while handled.load(Ordering::Relaxed) - before < n as u64 {
        assert!(
            Instant::now() < deadline,
            "{name}: {} of {n} events handled",
            handled.load(Ordering::Relaxed) - before
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    EventRow {
        name,
        elapsed,
        sent,
        cpu: cpu.stop(),
    }
}

// ---------------------------------------------------------------------------------------
// 2. Sagas
// ---------------------------------------------------------------------------------------

/// How an order ended, and when the bench saw it.
enum Slot {
    Waiting(oneshot::Sender<(Instant, bool)>),
    Arrived(Instant, bool),
}

/// Orders' final events as they pass on core NATS, matched to the clients waiting on them.
#[derive(Clone, Default)]
struct Outcomes(Arc<Mutex<HashMap<String, Slot>>>);

#[derive(Deserialize)]
struct OrderId {
    id: String,
}

impl Outcomes {
    /// Listens to `events.orders.*` until the connection closes.
    async fn listen(self, client: async_nats::Client) {
        let mut sub = client.subscribe("events.orders.*").await.expect("sub");
        client.flush().await.expect("flush");
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let confirmed = match msg.subject.as_str() {
                    ORDER_CONFIRMED => true,
                    ORDER_CANCELLED => false,
                    _ => continue,
                };
                let now = Instant::now();
                let Ok(order) = serde_json::from_slice::<OrderId>(&msg.payload) else {
                    continue;
                };
                let mut slots = self.0.lock().expect("lock");
                match slots.remove(&order.id) {
                    Some(Slot::Waiting(tx)) => {
                        let _ = tx.send((now, confirmed));
                    }
                    _ => {
                        slots.insert(order.id, Slot::Arrived(now, confirmed));
                    }
                }
            }
        });
    }

    /// When order `id` was confirmed (`true`) or cancelled (`false`).
    async fn wait(&self, id: &str) -> Option<(Instant, bool)> {
        let rx = {
            let mut slots = self.0.lock().expect("lock");
            match slots.remove(id) {
                Some(Slot::Arrived(at, confirmed)) => return Some((at, confirmed)),
                _ => {
                    let (tx, rx) = oneshot::channel();
                    slots.insert(id.to_owned(), Slot::Waiting(tx));
                    rx
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .ok()?
            .ok()
    }
}

/// What the clients of one level saw.
#[derive(Default)]
struct Level {
    latencies: Vec<Duration>,
    cancelled: usize,
    errors: usize,
}

async fn saga_rows(nats: &TestNats, levels: &[usize], seconds: Duration) {
    let url = nats.url();
    // As `services/orders/tests/saga.rs` starts them, payments limit raised, orders defaults.
    let users: Running = TestService::join(
        &url,
        TestDatabase::sqlite("users"),
        |s: &mut courier_users::Settings| s.users.hash_workers = 1,
        |s, on, stop| courier_users::run(s, on, stop),
    )
    .await;
    let products: Running = TestService::join(
        &url,
        TestDatabase::sqlite("products"),
        |_: &mut courier_products::Settings| {},
        |s, on, stop| courier_products::run(s, on, stop),
    )
    .await;
    let payments: Running = TestService::join(
        &url,
        TestDatabase::sqlite("payments"),
        |s: &mut courier_payments::Settings| s.payments.user_limit = i64::MAX / 4,
        |s, on, stop| courier_payments::run(s, on, stop),
    )
    .await;
    let orders: Running = TestService::join(
        &url,
        TestDatabase::sqlite("orders"),
        |_: &mut courier_orders::Settings| {},
        |s, on, stop| courier_orders::run(s, on, stop),
    )
    .await;

    let ada = users
        .send(&CreateUser {
            name: "Ada".into(),
            email: "ada@example.com".into(),
            password: "correct horse".into(),
        })
        .await
        .expect("user");
    let tea = products
        .send(&CreateProduct {
            name: "Tea".into(),
            description: String::new(),
            price: 250,
            currency: "EUR".into(),
            stock: 100_000_000,
        })
        .await
        .expect("product");
    let create = CreateOrder {
        items: vec![Item {
            product_id: tea.id.clone(),
            quantity: 1,
        }],
        user_id: Some(ada.id.clone()),
    };

    let outcomes = Outcomes::default();
    outcomes
        .clone()
        .listen(async_nats::connect(&url).await.expect("connect"))
        .await;
    // Warm every path (connections, statements, consumers) before measuring.
    let warm = run_level(&orders, &outcomes, &create, 2, Duration::from_millis(200)).await;
    assert!(
        warm.errors == 0 && warm.cancelled == 0 && !warm.latencies.is_empty(),
        "warm-up sagas are confirmed"
    );

    println!();
    println!(
        "Order sagas (users, products, payments, orders on SQLite, one nats-server), {:.1} s per \
         level; latency from orders.create to events.orders.confirmed",
        seconds.as_secs_f64()
    );
    println!(
        "{:>11} {:>9} {:>9} {:>9} {:>10} {:>9} {:>7} {:>11} {:>11}",
        "concurrency",
        "sagas/s",
        "p50 ms",
        "p99 ms",
        "confirmed",
        "cancelled",
        "errors",
        "cpu ms/saga",
        "server ms/s"
    );
    let server = nats_server();
    for &c in levels {
        let cpu = Cpu::start(server.clone());
        let start = Instant::now();
        let mut level = run_level(&orders, &outcomes, &create, c, seconds).await;
        let elapsed = start.elapsed();
        let cpu = cpu.stop();
        level.latencies.sort();
        let done = level.latencies.len();
        let pct = |p: usize| match done {
            0 => f64::NAN,
            _ => ms(level.latencies[(done - 1) * p / 100]),
        };
        println!(
            "{:>11} {:>9.1} {:>9.1} {:>9.1} {:>10} {:>9} {:>7} {:>11} {:>11}",
            c,
            rate(done, elapsed),
            pct(50),
            pct(99),
            done,
            level.cancelled,
            level.errors,
            cpu.process_per(done as f64),
            cpu.server_per(elapsed.as_secs_f64()),
        );
        assert!(done > 0, "sagas complete at concurrency {c}");
        assert_eq!(
            (level.errors, level.cancelled),
            (0, 0),
            "every saga is confirmed"
        );
    }
    println!("  server ms/s: the nats-server's CPU per wall second of the level");

    // Stopped in reverse (orders first, so no saga step calls a stopped service).
    drop(orders);
    drop(payments);
    drop(products);
    drop(users);
}

/// `c` clients, each creating orders one after the other and waiting for each to finish,
/// until `seconds` have passed; orders started before the end are waited for.
async fn run_level(
    orders: &Running,
    outcomes: &Outcomes,
    create: &CreateOrder,
    c: usize,
    seconds: Duration,
) -> Level {
    let end = Instant::now() + seconds;
    let clients: Vec<_> = (0..c)
        .map(|_| {
            let client = orders.client.clone();
            let (outcomes, create) = (outcomes.clone(), create.clone());
            tokio::spawn(async move {
                let mut level = Level::default();
                while Instant::now() < end {
                    let start = Instant::now();
                    let order = match client.send(&create, &Meta::root()).await {
                        Ok(order) => order,
                        Err(_) => {
                            level.errors += 1;
                            continue;
                        }
                    };
                    match outcomes.wait(&order.id).await {
                        Some((at, true)) => level.latencies.push(at - start),
                        Some((_, false)) => level.cancelled += 1,
                        None => level.errors += 1,
                    }
                }
                level
            })
        })
        .collect();
    let mut all = Level::default();
    for client in clients {
        let level = client.await.expect("client");
        all.latencies.extend(level.latencies);
        all.cancelled += level.cancelled;
        all.errors += level.errors;
    }
    all
}

// ---------------------------------------------------------------------------------------
// Measures
// ---------------------------------------------------------------------------------------

/// The middle value (the mean of the two middle ones for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[mid]),
        _ => Some((values[mid - 1] + values[mid]) / 2.0),
    }
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// CPU seconds (user + system, all threads) of a process from /proc/<pid>/stat, in clock
/// ticks of 1/100 s (USER_HZ).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    // Fields 14 and 15 of the line (utime, stime); the slice starts at field 3.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The nats-server this process started (a child of one of its threads).
fn nats_server() -> Option<String> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "nats-server" {
                return Some(pid.to_owned());
            }
        }
    }
    None
}

/// CPU used between [`Cpu::start`] and [`Cpu::stop`], by this process and by the server.
struct Cpu {
    server: Option<String>,
    process: Option<u64>,
    server_ticks: Option<u64>,
}

impl Cpu {
    fn start(server: Option<String>) -> Self {
        Self {
            process: cpu_ticks("self"),
            server_ticks: server.as_deref().and_then(cpu_ticks),
            server,
        }
    }

    fn stop(self) -> Self {
        let since = |before: Option<u64>, now: Option<u64>| Some(now?.saturating_sub(before?));
        Self {
            process: since(self.process, cpu_ticks("self")),
            server_ticks: since(
                self.server_ticks,
                self.server.as_deref().and_then(cpu_ticks),
            ),
            server: self.server,
        }
    }

    /// Milliseconds of this process's CPU per `units`, or `-`.
    fn process_per(&self, units: f64) -> String {
        per(self.process, units)
    }

    /// Milliseconds of the server's CPU per `units`, or `-`.
    fn server_per(&self, units: f64) -> String {
        per(self.server_ticks, units)
    }
}

fn per(ticks: Option<u64>, units: f64) -> String {
    match ticks {
        Some(ticks) if units > 0.0 => format!("{:.2}", ticks as f64 * 10.0 / units),
        _ => "-".to_owned(),
    }
}
