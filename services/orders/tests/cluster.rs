//! Scale out: the same binaries on a three-node NATS cluster (routes on loopback, JetStream on
//! every node, the events stream kept in three replicas: `COURIER_EVENTS__REPLICAS=3`), one
//! Consul, the instances spread over the nodes. Requests cross nodes; then a node is lost
//! while a bounded load runs through the gateway, twice: B stopped (SIGTERM), then, B being
//! back, C killed (SIGKILL). Each lost node first leads the events stream.
//!
//! | node | processes (`NATS_URL` names this node only; clients learn the others from its INFO) |
//! |------|-------------------------------------------------------------------------------------|
//! | A    | gateway, users, payments: never lost                                                |
//! | B    | products #1, notifications: stopped under load, then started again                  |
//! | C    | orders, products #2 (products #1's database): killed under load                     |
//!
//! What each loss may cost is in [`Expect`] and [`check_load`]; that nothing durable is lost,
//! in [`check_settled`]; that clients come back on their own, in [`check_reconnected`].
//!
//! Every service starts at once against the fresh cluster, so they race to create the R3
//! streams (a request that arrives while the stream is being created can go unanswered, and
//! is asked again).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use courier_store::testing::TestDatabase;
use courier_testkit::{free_port, Process, TestCluster, TestConsul};
use serde_json::{json, Value};

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

const ADMIN: &str = "root@example.com";
const BUYER: &str = "ada@example.com";
const PASSWORD: &str = "correct horse";
const STOCK: i64 = 100_000;
/// How long a process or the gateway's knowledge of them may take to start.
const START: Duration = Duration::from_secs(30);
/// Every load request's deadline (`X-Request-Timeout`).
const DEADLINE: Duration = Duration::from_secs(2);
/// How far past its deadline a request may end before it counts as hanging.
const SLACK: Duration = Duration::from_secs(1);
const LOAD_TASKS: usize = 4;
/// Each load task's most requests, and the pause between them.
const LOAD_MOST: usize = 150;
const LOAD_PAUSE: Duration = Duration::from_millis(40);
/// The node goes once the load has sent this many requests.
const LOAD_BEFORE: usize = 60;
/// The load goes on at least this long after the loss's window (see [`Expect::window`]), and
/// until each task has sent this many requests after it.
const LOAD_AFTER: Duration = Duration::from_millis(1500);
const LOAD_AFTER_EACH: usize = 15;
/// The load ends here whatever it has sent.
const LOAD_TIME: Duration = Duration::from_secs(20);
/// How long an order that got a typed 503 or 504 is tried again (same `X-Request-Id`).
const PLACE_WITHIN: Duration = Duration::from_secs(8);
/// After a stopped node's process has exited, how long the survivors may take to notice its
/// closed routes: a request sent later cannot be lost in it.
const NOTICE: Duration = Duration::from_millis(250);
/// After a node is killed, how long until its clients serve again through the gateway:
/// reconnecting takes milliseconds, but Consul may have caught an instance unready in between
/// (its check runs every second) and list it again only at the next check.
const RECOVER: Duration = Duration::from_secs(3);
/// How long durable work (sagas, events) may take to settle after the loads: a killed stream
/// leader is replaced after 4 to 9 s of silence, and a saga's call lost with a node is
/// retried after the caller's 5 s time-out.
const SETTLE: Duration = Duration::from_secs(30);
/// The events stream, which each lost node is made to lead.
const EVENTS_STREAM: &str = "COURIER_EVENTS";

/// One binary connected to one node.
struct Instance {
    label: &'static str,
    node: usize,
    admin: String,
    process: Process,
}

impl Instance {
    /// The name its NATS connections give (the intake's with `-intake`).
    fn client_name(&self) -> String {
        format!(
            "courier-{}",
            self.label.split('#').next().unwrap_or_default()
        )
    }
}

struct System {
    // Dropped in order: processes first, then servers, then the databases' folders.
    _gateway: Process,
    instances: Vec<Instance>,
    cluster: TestCluster,
    _consul: TestConsul,
    _databases: Vec<TestDatabase>,
    base: String,
}

impl System {
    /// The cluster, Consul, every service on its node, the gateway on A; once each serves.
    fn start(binaries: &Binaries) -> Self {
        let cluster = TestCluster::start();
        let consul = TestConsul::start();
        let db = |name: &str| TestDatabase::sqlite(&format!("cluster-{name}"));
        let databases = vec![
            db("users"),
            db("products"),
            db("payments"),
            db("orders"),
            db("notifications"),
        ];
        let url = |i: usize| databases[i].settings.url.expose().to_owned();
        let spawn = |label, node, binary: &str, db: String, extra: &[(&'static str, &str)]| {
            spawn_service(
                &cluster,
                &consul,
                label,
                node,
                binaries.path(binary),
                db,
                extra,
            )
        };
        // Every service at once, as a system starts: they all ask for the R3 streams at the
        // same moment.
        let mut instances = vec![
            spawn(
                "users",
                A,
                "courier-users",
                url(0),
                &[
                    ("COURIER_USERS__ADMIN_EMAILS", ADMIN),
                    ("COURIER_USERS__HASH_WORKERS", "1"),
                ],
            ),
            spawn(
                "payments",
                A,
                "courier-payments",
                url(2),
                &[("COURIER_PAYMENTS__USER_LIMIT", "1000000000")],
            ),
            spawn("products#1", B, "courier-products", url(1), &[]),
            spawn("notifications", B, "courier-notifications", url(4), &[]),
            spawn(
                "orders",
                C,
                "courier-orders",
                url(3),
                &[
                    ("COURIER_ORDERS__RETRY_MIN", "50ms"),
                    ("COURIER_ORDERS__RETRY_MAX", "500ms"),
                ],
            ),
        ];
        for instance in &mut instances {
            instance.process.wait_for_log("Service started", START);
        }
        // The second products instance shares the first's SQLite file: started once the first
        // has migrated it.
        let mut second = spawn("products#2", C, "courier-products", url(1), &[]);
        second.process.wait_for_log("Service started", START);
        instances.push(second);
        let port = free_port();
        let mut gateway = Process::spawn(
            binaries.path("courier-gateway"),
            &[
                ("NATS_URL", cluster.url(A)),
                ("CONSUL_HTTP_ADDR", consul.url()),
                ("COURIER_GATEWAY__BIND", format!("127.0.0.1:{port}")),
                ("COURIER_GATEWAY__WORKERS", "2".into()),
                // A GET lost with a node is sent to another instance within its deadline.
                ("COURIER_GATEWAY__ATTEMPT_TIMEOUT", "500ms".into()),
                (
                    "COURIER_AUTH__JWT_SECRET",
                    "a-test-secret-of-at-least-32-bytes!".into(),
                ),
            ],
        );
        gateway.wait_for_log("Gateway listening", START);
        Self {
            _gateway: gateway,
            instances,
            cluster,
            _consul: consul,
            _databases: databases,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// The binaries the test runs, built (or found fresh) before its clock starts: cargo may
/// wait for another build's lock.
struct Binaries(BTreeMap<&'static str, PathBuf>);

impl Binaries {
    fn build() -> Self {
        const OTHERS: [&str; 5] = [
            "courier-users",
            "courier-products",
            "courier-payments",
            "courier-notifications",
            "courier-gateway",
        ];
        let mut paths: BTreeMap<&str, PathBuf> = OTHERS
            .into_iter()
            .zip(courier_testkit::workspace_binaries(&OTHERS))
            .collect();
        paths.insert(
            "courier-orders",
            env!("CARGO_BIN_EXE_courier-orders").into(),
        );
        Self(paths)
    }

    fn path(&self, name: &str) -> &Path {
        &self.0[name]
    }
}

/// `binary` connected to `node` only, registered in Consul, keeping its events in three
/// replicas.
fn spawn_service(
    cluster: &TestCluster,
    consul: &TestConsul,
    label: &'static str,
    node: usize,
    binary: &Path,
    database: String,
    extra: &[(&'static str, &str)],
) -> Instance {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut env: Vec<(&str, String)> = vec![
        ("NATS_URL", cluster.url(node)),
        ("COURIER_DATABASE__URL", database),
        ("COURIER_ADMIN__BIND", admin.clone()),
        ("CONSUL_HTTP_ADDR", consul.url()),
        ("COURIER_CONSUL__REGISTER", "true".into()),
        ("COURIER_CONSUL__CHECK_INTERVAL", "1s".into()),
        ("COURIER_CONSUL__TTL", "3s".into()),
        ("COURIER_EVENTS__REPLICAS", "3".into()),
        // A delivery whose ack died with the node comes again soon.
        ("COURIER_EVENTS__ACK_WAIT", "3s".into()),
        // One worker: an instance holds its main and intake only (a further worker would
        // add a pair of its own), which the spread and reconnect checks count on.
        ("COURIER_SERVICE__WORKERS", "1".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Instance {
        label,
        node,
        admin: format!("http://{admin}"),
        process: Process::spawn(binary, &env),
    }
}

/// The gateway, as a client uses it.
#[derive(Clone)]
struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    fn new(base: &str) -> Self {
        let client = reqwest::Client::builder()
            // A hang past deadline and slack shows as an error, never as a stuck test.
            .timeout(DEADLINE + SLACK + Duration::from_secs(2))
            .build()
            .expect("a reqwest client");
        Self {
            base: base.to_owned(),
            client,
        }
    }

    /// Sends with a deadline and optional token, body and request id: status and JSON body.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        request_id: Option<&str>,
    ) -> Result<(u16, Value), String> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("X-Request-Timeout", format!("{}ms", DEADLINE.as_millis()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(id) = request_id {
            request = request.header("X-Request-Id", id);
        }
        let reply = request.send().await.map_err(|e| e.to_string())?;
        let status = reply.status().as_u16();
        let text = reply.text().await.map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let sent = self
            .send(reqwest::Method::GET, path, token, None, None)
            .await;
        sent.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let sent = self
            .send(reqwest::Method::POST, path, token, Some(&body), None)
            .await;
        sent.unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Signs up (201) and logs in (200): the user's id and bearer token.
    async fn user(&self, name: &str, email: &str) -> (String, String) {
        let (status, user) = self
            .post(
                "/users",
                None,
                json!({"name": name, "email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, 201, "sign-up: {user}");
        let (status, login) = self
            .post(
                "/auth/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, 200, "login: {login}");
        (
            user["id"].as_str().unwrap().to_owned(),
            login["access_token"].as_str().unwrap().to_owned(),
        )
    }

    /// Every page of `path` (`/orders`, `/notifications`), the items under `key`.
    /// `None` when a page is not 200: [`until`] asks again (the service may be between
    /// nodes, or not listed by Consul again yet).
    async fn all(&self, path: &str, key: &str, token: &str) -> Option<Vec<Value>> {
        let (mut items, mut after) = (Vec::new(), None::<String>);
        loop {
            let page_path = match &after {
                Some(after) => format!("{path}?limit=100&after={after}"),
                None => format!("{path}?limit=100"),
            };
            let (status, page) = self.get(&page_path, Some(token)).await;
            if status != 200 {
                return None;
            }
            items.extend(page[key].as_array()?.iter().cloned());
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => return Some(items),
            }
        }
    }
}

/// A gateway error as the README defines it: 503 or 504, in the one JSON shape.
fn typed_error(status: u16, body: &Value) -> bool {
    let text = |key: &str| body[key].as_str().is_some_and(|s| !s.is_empty());
    matches!(status, 503 | 504)
        && body["statusCode"] == status
        && text("error")
        && text("message")
        && text("requestId")
}

/// Polls `check` every 100 ms until it gives `Some`, or panics naming `what` after `within`.
async fn until<T>(within: Duration, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `courier_nats_events_total` from a `/metrics` page: count by (connection, event).
async fn nats_events(
    http: &reqwest::Client,
    base: &str,
) -> Option<BTreeMap<(String, String), u64>> {
    let page = http.get(format!("{base}/metrics")).send().await.ok()?;
    let text = page.text().await.ok()?;
    let label = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        Some(line[start..].split('"').next()?.to_owned())
    };
    let events = text
        .lines()
        .filter(|line| line.starts_with("courier_nats_events_total{"))
        .filter_map(|line| {
            let value = line.rsplit(' ').next()?.parse().ok()?;
            Some(((label(line, "connection")?, label(line, "event")?), value))
        })
        .collect();
    Some(events)
}

fn count(events: &BTreeMap<(String, String), u64>, connection: &str, event: &str) -> u64 {
    events
        .get(&(connection.to_owned(), event.to_owned()))
        .copied()
        .unwrap_or(0)
}

/// A JetStream API request about the events stream (`$JS.API.<verb>.COURIER_EVENTS`), if
/// answered within a second: a stream between leaders answers nothing.
async fn stream_api(nats: &async_nats::Client, verb: &str) -> Option<Value> {
    let subject = format!("$JS.API.{verb}.{EVENTS_STREAM}");
    let request = nats.request(subject, "".into());
    let reply = tokio::time::timeout(Duration::from_secs(1), request)
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice(&reply.payload).ok()
}

/// The server name of the events stream's leader.
async fn stream_leader(nats: &async_nats::Client) -> Option<String> {
    let info = stream_api(nats, "STREAM.INFO").await?;
    info["cluster"]["leader"].as_str().map(str::to_owned)
}

/// Asks the events stream's leader to step down until `node` leads it (each new leader is
/// one of the followers, at random).
async fn make_leader(cluster: &TestCluster, nats: &async_nats::Client, node: usize) {
    let want = cluster.node_name(node).to_owned();
    let led = async || match stream_leader(nats).await {
        Some(leader) if leader == want => Some(()),
        Some(leader) => {
            stream_api(nats, "STREAM.LEADER.STEPDOWN").await;
            let moved = async || stream_leader(nats).await.filter(|now| *now != leader);
            until(Duration::from_secs(10), "a new stream leader", moved).await;
            None
        }
        None => None,
    };
    until(
        Duration::from_secs(30),
        "the events stream led by the node to lose",
        led,
    )
    .await;
}

/// The names of the Courier clients connected to `node` now.
fn courier_clients(cluster: &TestCluster, node: usize) -> Vec<String> {
    let names = tokio::task::block_in_place(|| cluster.client_names(node));
    let names = names.unwrap_or_else(|e| panic!("the clients of node {node}: {e}"));
    names
        .into_iter()
        .filter(|n| n.starts_with("courier-"))
        .collect()
}

/// What one load request got.
#[derive(Debug)]
struct Sent {
    kind: Kind,
    request_id: Option<String>,
    at: Instant,
    took: Duration,
    outcome: Result<(u16, Value), String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `GET /products/{id}`: products, two instances.
    Product,
    /// `GET /orders/{id}`: orders.
    Order,
    /// `GET /users/profile`: users, on A.
    Profile,
    /// `POST /orders`: orders, which calls users and products; tried again with the same
    /// request id after a typed 503 or 504.
    Place,
}

impl Kind {
    fn success(self) -> u16 {
        if self == Self::Place {
            202
        } else {
            200
        }
    }
}

/// What the load needs to know.
#[derive(Clone)]
struct Load {
    /// Which loss the load runs through: request ids differ between loads.
    name: &'static str,
    http: Http,
    story: Story,
    progress: Arc<AtomicUsize>,
    /// When the loss's window ends (see [`Expect::window`]), set once the node is gone.
    window_end: Arc<OnceLock<Instant>>,
    started: Instant,
}

impl Load {
    fn new(name: &'static str, http: &Http, story: &Story) -> Self {
        Self {
            name,
            http: http.clone(),
            story: story.clone(),
            progress: Arc::default(),
            window_end: Arc::default(),
            started: Instant::now(),
        }
    }

    /// Past [`LOAD_TIME`], or [`LOAD_AFTER`] past the loss's window once this task has sent
    /// [`LOAD_AFTER_EACH`] requests after the window.
    fn over(&self, sent: &[Sent]) -> bool {
        let now = Instant::now();
        let Some(window) = self.window_end.get() else {
            return now > self.started + LOAD_TIME;
        };
        let after = sent.iter().filter(|s| s.at > *window).count();
        now > self.started + LOAD_TIME || (now > *window + LOAD_AFTER && after >= LOAD_AFTER_EACH)
    }

    /// One task's share: requests in turn over the four kinds until the load is over (at
    /// most [`LOAD_MOST`]). Every request sent, and the id of every order placed.
    async fn run(self, task: usize) -> (Vec<Sent>, Vec<String>) {
        let (mut sent, mut placed) = (Vec::new(), Vec::new());
        for i in 0..LOAD_MOST {
            if self.over(&sent) {
                break;
            }
            let kind = [Kind::Product, Kind::Order, Kind::Profile, Kind::Place][(i + task) % 4];
            if kind == Kind::Place {
                let request_id = format!("cluster-{}-{task}-{i}", self.name);
                placed.extend(self.place(&request_id, &mut sent).await);
            } else {
                sent.push(self.once(kind, None).await);
            }
            self.progress.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(LOAD_PAUSE).await;
        }
        (sent, placed)
    }

    /// Places one order, trying again with the same request id while the answer is a typed
    /// 503 or 504 (for at most [`PLACE_WITHIN`]).
    async fn place(&self, request_id: &str, sent: &mut Vec<Sent>) -> Option<String> {
        let first = Instant::now();
        loop {
            let attempt = self.once(Kind::Place, Some(request_id)).await;
            let answer = attempt.outcome.as_ref().ok().cloned();
            sent.push(attempt);
            match answer {
                Some((202, order)) => return order["id"].as_str().map(str::to_owned),
                Some((status, body)) if typed_error(status, &body) => {}
                _ => return None,
            }
            if first.elapsed() > PLACE_WITHIN {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn once(&self, kind: Kind, request_id: Option<&str>) -> Sent {
        let (http, story) = (&self.http, &self.story);
        let token = Some(story.buyer.as_str());
        let get = reqwest::Method::GET;
        let at = Instant::now();
        let outcome = match kind {
            Kind::Product => {
                let path = format!("/products/{}", story.product);
                http.send(get, &path, None, None, None).await
            }
            Kind::Order => {
                let path = format!("/orders/{}", story.first);
                http.send(get, &path, token, None, None).await
            }
            Kind::Profile => http.send(get, "/users/profile", token, None, None).await,
            Kind::Place => {
                let items = json!({"items": [{"product_id": story.product, "quantity": 1}]});
                let post = reqwest::Method::POST;
                http.send(post, "/orders", token, Some(&items), request_id)
                    .await
            }
        };
        Sent {
            kind,
            request_id: request_id.map(str::to_owned),
            at,
            took: at.elapsed(),
            outcome,
        }
    }
}

/// How a node is lost.
#[derive(Debug, Clone, Copy)]
enum Loss {
    /// SIGTERM: the server shuts down in order (its stream leaders hand over at once).
    Stop,
    /// SIGKILL: its stream leaders are replaced after the followers' election time-out.
    Kill,
}

/// What losing a node may cost the load.
struct Expect {
    /// Requests of these kinds reach no instance on the lost node: every one succeeds.
    untouched: &'static [Kind],
    /// Other requests may fail (typed 503 or 504, by their deadline) only when sent before
    /// the node was gone plus this.
    window: Duration,
    /// At most this many may fail: the requests in flight when the node went.
    most_failures: Option<usize>,
}

/// Who asked for what: the buyer's token, the product, the buyer's first order.
#[derive(Clone)]
struct Story {
    buyer: String,
    product: String,
    first: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_serves_across_nodes_and_through_the_loss_of_one() {
    let clock = Instant::now();
    let binaries = tokio::task::block_in_place(Binaries::build);
    eprintln!("cluster: binaries built or found in {:?}", clock.elapsed());
    let t0 = Instant::now();
    let mut system = tokio::task::block_in_place(|| System::start(&binaries));
    let http = Http::new(&system.base);
    let observer = async_nats::ConnectOptions::new()
        .name("test-observer")
        .connect(system.cluster.url(A))
        .await
        .expect("the observer connects to node A");
    learned(&http).await;
    eprintln!("cluster: {:?} system started", t0.elapsed());

    // 1. Requests across nodes; the instances are where they were sent.
    let story = across_nodes(&http).await;
    check_spread(&system);
    eprintln!("cluster: {:?} requests across nodes done", t0.elapsed());

    // 2. B stops under load: products #1 and notifications move; orders and users never
    // notice, and products #2 (on C) takes what products #1 cannot.
    // Product GETs lost in flight with B are tried again on products #2 by the gateway
    // (`gateway.attempt_timeout`): only orders being placed may fail.
    let stop = Expect {
        untouched: &[Kind::Order, Kind::Profile, Kind::Product],
        window: NOTICE,
        most_failures: Some(LOAD_TASKS),
    };
    let mut placed = under_load(&mut system, &http, &observer, &story, (B, Loss::Stop), stop).await;
    eprintln!("cluster: {:?} B stopped under load", t0.elapsed());

    // 3. B starts again; C dies under load: orders (the one instance) and products #2 move,
    // and whatever moved to C in 2. Only users is untouched.
    tokio::task::block_in_place(|| system.cluster.restart(B));
    let kill = Expect {
        untouched: &[Kind::Profile],
        window: RECOVER,
        most_failures: None,
    };
    placed.extend(under_load(&mut system, &http, &observer, &story, (C, Loss::Kill), kill).await);
    eprintln!("cluster: {:?} C killed under load", t0.elapsed());

    // 4. Nothing durable was lost.
    check_settled(&http, &story, &placed).await;
    eprintln!(
        "cluster: {:?} every order settled and notified",
        t0.elapsed()
    );
    drop(observer);
    drop(system);
}

/// Waits until the gateway knows every instance from Consul (both of products) and the
/// routes of each service from its `$SRV.INFO`.
async fn learned(http: &Http) {
    let expected = [
        ("users", 1, true),
        ("products", 2, true),
        ("payments", 1, false),
        ("orders", 1, true),
        ("notifications", 1, true),
    ];
    until(
        START,
        "the gateway to learn every instance and route",
        async || {
            let (_, known) = http.get("/services", None).await;
            let services = known["services"].as_array().cloned().unwrap_or_default();
            let learned = |(name, instances, routed): &(&str, usize, bool)| {
                services.iter().any(|s| {
                    let count = |key: &str| s[key].as_array().map_or(0, Vec::len);
                    s["name"] == *name
                        && count("instances") == *instances
                        && (count("routes") > 0) == *routed
                })
            };
            expected.iter().all(learned).then_some(())
        },
    )
    .await;
}

/// Gateway (A) -> users (A), products (B, C), orders (C) -> users, products, payments (A); the
/// events of users (A) and orders (C) reach notifications (B) through the stream.
async fn across_nodes(http: &Http) -> Story {
    let (_, admin) = http.user("Root", ADMIN).await;
    let (buyer_id, buyer) = http.user("Ada", BUYER).await;
    let tea = json!({"name": "Tea", "price": 450, "currency": "EUR", "stock": STOCK});
    let (status, product) = http.post("/products", Some(&admin), tea).await;
    assert_eq!(status, 201, "{product}");
    let product = product["id"].as_str().unwrap().to_owned();
    let (status, got) = http.get(&format!("/products/{product}"), None).await;
    assert_eq!((status, &got["stock"]), (200, &json!(STOCK)), "{got}");
    let items = json!({"items": [{"product_id": product, "quantity": 1}]});
    let (status, first) = http.post("/orders", Some(&buyer), items).await;
    assert_eq!(
        (status, &first["user_id"]),
        (202, &json!(buyer_id)),
        "{first}"
    );
    let first = first["id"].as_str().unwrap().to_owned();
    let confirmed = until(SETTLE, "the first order to settle", async || {
        let (_, order) = http.get(&format!("/orders/{first}"), Some(&buyer)).await;
        (order["state"] != "pending").then_some(order)
    })
    .await;
    assert_eq!(confirmed["state"], "confirmed", "{confirmed}");
    until(
        SETTLE,
        "the welcome and the order's notification",
        async || {
            let notes = http.all("/notifications", "notifications", &buyer).await?;
            let kinds: HashSet<&str> = notes.iter().filter_map(|n| n["kind"].as_str()).collect();
            (kinds.contains("welcome") && kinds.contains("order_confirmed")).then_some(())
        },
    )
    .await;
    Story {
        buyer,
        product,
        first,
    }
}

/// Each node serves the clients it was given: both connections of each instance sent to
/// it, and on A the gateway's (one per HTTP worker besides its main one).
fn check_spread(system: &System) {
    for node in 0..TestCluster::SIZE {
        let mut expected: Vec<String> = system
            .instances
            .iter()
            .filter(|i| i.node == node)
            .flat_map(|i| [i.client_name(), format!("{}-intake", i.client_name())])
            .collect();
        if node == A {
            let gateway = [
                "courier-gateway",
                "courier-gateway-worker",
                "courier-gateway-worker",
            ];
            expected.extend(gateway.map(String::from));
        }
        expected.sort();
        let clients = courier_clients(&system.cluster, node);
        assert_eq!(clients, expected, "the clients of node {node}");
    }
}

/// Makes `node` lead the events stream, runs the load, loses the node once the load is under
/// way, and checks the load's answers and the clients' return. The orders placed.
async fn under_load(
    system: &mut System,
    http: &Http,
    observer: &async_nats::Client,
    story: &Story,
    (node, loss): (usize, Loss),
    expect: Expect,
) -> Vec<String> {
    make_leader(&system.cluster, observer, node).await;
    let before = Before::read(system, http, node).await;
    let load = Load::new(
        if matches!(loss, Loss::Stop) {
            "stop"
        } else {
            "kill"
        },
        http,
        story,
    );
    let tasks: Vec<_> = (0..LOAD_TASKS)
        .map(|task| tokio::spawn(load.clone().run(task)))
        .collect();
    until(LOAD_TIME, "the load under way", async || {
        (load.progress.load(Ordering::Relaxed) >= LOAD_BEFORE).then_some(())
    })
    .await;
    tokio::task::block_in_place(|| match loss {
        Loss::Stop => system.cluster.stop(node),
        Loss::Kill => system.cluster.kill(node),
    });
    let gone = Instant::now();
    let _ = load.window_end.set(gone + expect.window);
    let (mut sent, mut placed) = (Vec::new(), Vec::new());
    for task in tasks {
        let (s, p) = task.await.expect("a load task");
        sent.extend(s);
        placed.extend(p);
    }
    check_load(&sent, &placed, gone, &expect);
    check_reconnected(system, http, &before).await;
    let metrics = http
        .client
        .get(format!("{}/metrics", system.base))
        .send()
        .await;
    let text = match metrics {
        Ok(page) => page.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let retries: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("courier_gateway_retries_total{") && !l.ends_with(" 0"))
        .collect();
    eprintln!("cluster: the gateway's retries so far: {retries:?}");
    placed
}

/// What [`check_reconnected`] compares with: read just before the node goes.
struct Before {
    /// Each instance's NATS connection events.
    events: Vec<BTreeMap<(String, String), u64>>,
    /// The Courier clients of every node.
    clients: Vec<String>,
    /// The Courier clients of the node that goes.
    on_node: Vec<String>,
}

impl Before {
    async fn read(system: &System, http: &Http, node: usize) -> Self {
        let reads = system.instances.iter().map(|i| async {
            nats_events(&http.client, &i.admin)
                .await
                .expect("its /metrics")
        });
        let mut clients: Vec<String> = (0..TestCluster::SIZE)
            .filter(|&n| system.cluster.is_running(n))
            .flat_map(|n| courier_clients(&system.cluster, n))
            .collect();
        clients.sort();
        Self {
            events: futures::future::join_all(reads).await,
            clients,
            on_node: courier_clients(&system.cluster, node),
        }
    }
}

/// What the load proves:
/// - no request hangs: each ends within its deadline and [`SLACK`];
/// - each gets its route's success or a typed 503/504, never another status or a broken reply;
/// - requests of the `untouched` kinds all succeed;
/// - others fail only when sent before the node was gone plus the `window`, at most
///   `most_failures` of them, and every request sent later succeeds (each task sends
///   [`LOAD_AFTER_EACH`] or more);
/// - every order placed was taken (202) in the end, if need be by a retry with the same
///   request id.
fn check_load(sent: &[Sent], placed: &[String], gone: Instant, expect: &Expect) {
    let later = |s: &&Sent| s.at > gone + expect.window;
    let after = sent.iter().filter(later).count();
    assert!(
        after >= LOAD_TASKS * LOAD_AFTER_EACH,
        "only {after} of {} requests after the window",
        sent.len()
    );
    let mut failed = Vec::new();
    for s in sent {
        assert!(s.took <= DEADLINE + SLACK, "a request hung: {s:?}");
        let (status, body) = s
            .outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("no answer: {e} ({s:?})"));
        if *status != s.kind.success() {
            assert!(typed_error(*status, body), "not a typed error: {s:?}");
            assert!(
                !expect.untouched.contains(&s.kind),
                "an untouched route failed: {s:?}"
            );
            failed.push(s);
        }
    }
    let late: Vec<_> = failed.iter().filter(|s| later(s)).collect();
    assert!(late.is_empty(), "failed after the window: {late:?}");
    if let Some(most) = expect.most_failures {
        assert!(
            failed.len() <= most,
            "more failures than requests in flight: {failed:?}"
        );
    }
    let tries: Vec<&Sent> = sent.iter().filter(|s| s.kind == Kind::Place).collect();
    let logical: HashSet<&str> = tries
        .iter()
        .filter_map(|s| s.request_id.as_deref())
        .collect();
    assert_eq!(
        placed.len(),
        logical.len(),
        "every order taken in the end: {tries:?}"
    );
    let statuses: BTreeMap<u16, usize> = failed.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.outcome.as_ref().map_or(0, |(st, _)| *st))
            .or_default() += 1;
        m
    });
    eprintln!(
        "cluster: {} requests ({after} after the window), failed {statuses:?}, {} orders placed in {} tries",
        sent.len(),
        placed.len(),
        tries.len(),
    );
}

/// The clients of the lost node reconnected on their own and serve: each instance is ready
/// again, the connections lost are exactly those the node held (an instance's two may be on
/// different nodes once they have moved) and each was made again, the survivors hold every
/// Courier client the cluster held before, and the gateway (on A) never lost one.
async fn check_reconnected(system: &System, http: &Http, before: &Before) {
    let mut moved = Vec::new();
    for (instance, events) in system.instances.iter().zip(&before.events) {
        let connections = [
            ("main", instance.client_name()),
            ("intake", format!("{}-intake", instance.client_name())),
        ];
        // Each connection lost (of this loss) made again, and the instance ready.
        let lost = until(
            Duration::from_secs(10),
            "an instance back and ready",
            async || {
                let url = format!("{}/health/ready", instance.admin);
                let ready = http.client.get(url).send().await.ok()?;
                let now = nats_events(&http.client, &instance.admin).await?;
                let gained = |connection: &str, event: &str| {
                    count(&now, connection, event) - count(events, connection, event)
                };
                let lost = connections.clone().map(|(connection, name)| {
                    let dropped = gained(connection, "disconnected");
                    (dropped == gained(connection, "connected")).then_some((name, dropped))
                });
                let lost: Option<Vec<_>> = lost.into_iter().collect();
                lost.filter(|_| ready.status() == 200)
            },
        )
        .await;
        for (name, times) in lost {
            assert!(
                times <= 1,
                "{name} of {} lost {times} times",
                instance.label
            );
            moved.extend((times == 1).then_some(name));
        }
    }
    moved.sort();
    assert_eq!(
        moved, before.on_node,
        "the connections lost are those the node held, each made again"
    );
    until(
        Duration::from_secs(10),
        "every client on a survivor",
        async || {
            let mut clients: Vec<String> = (0..TestCluster::SIZE)
                .filter(|&n| system.cluster.is_running(n))
                .flat_map(|n| courier_clients(&system.cluster, n))
                .collect();
            clients.sort();
            (clients == before.clients).then_some(())
        },
    )
    .await;
    let gateway = nats_events(&http.client, &system.base)
        .await
        .expect("the gateway's /metrics");
    let dropped: u64 = gateway
        .iter()
        .filter(|((_, event), _)| event == "disconnected")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(dropped, 0, "the gateway's connections: {gateway:?}");
}

/// Every order placed (before, during and after the losses) settles: none stays pending, none
/// is doubled by a retry, every one is confirmed (ample stock and credit), the stock counts
/// each once, and each order's event reaches notifications exactly once.
async fn check_settled(http: &Http, story: &Story, placed: &[String]) {
    let mut expected: HashSet<String> = placed.iter().cloned().collect();
    expected.insert(story.first.clone());
    let buyer = story.buyer.as_str();
    let orders = until(SETTLE, "every order to settle", async || {
        let orders = http.all("/orders", "orders", buyer).await?;
        orders
            .iter()
            .all(|o| o["state"] != "pending")
            .then_some(orders)
    })
    .await;
    let ids: HashSet<String> = orders
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), orders.len(), "an order listed twice");
    let unknown: Vec<&Value> = orders
        .iter()
        .filter(|o| !expected.contains(o["id"].as_str().unwrap()))
        .collect();
    let missing: Vec<&String> = expected.difference(&ids).collect();
    assert!(
        unknown.is_empty() && missing.is_empty(),
        "one order per request id: not placed {unknown:?}, not listed {missing:?}"
    );
    let confirmed = orders.iter().filter(|o| o["state"] == "confirmed").count();
    assert_eq!(confirmed, orders.len(), "every order confirmed: {orders:?}");
    let stock = until(SETTLE, "the product's stock", async || {
        let (status, product) = http
            .get(&format!("/products/{}", story.product), None)
            .await;
        (status == 200).then(|| product["stock"].clone())
    })
    .await;
    assert_eq!(stock, json!(STOCK - confirmed as i64), "reserved once each");
    let wanted: HashSet<(String, String)> = ids
        .into_iter()
        .map(|id| (id, "order_confirmed".to_owned()))
        .collect();
    until(SETTLE, "a notification for every order", async || {
        let notes = http.all("/notifications", "notifications", buyer).await?;
        let of_orders: Vec<(String, String)> = notes
            .iter()
            .filter(|n| n["kind"] != "welcome")
            .map(|n| {
                let field = |key: &str| n[key].as_str().unwrap_or_default().to_owned();
                (field("order_id"), field("kind"))
            })
            .collect();
        let distinct: HashSet<(String, String)> = of_orders.iter().cloned().collect();
        assert_eq!(
            distinct.len(),
            of_orders.len(),
            "an event notified twice: {notes:?}"
        );
        assert!(
            distinct.is_subset(&wanted),
            "a notification for no order: {notes:?}"
        );
        (distinct == wanted).then_some(())
    })
    .await;
    eprintln!(
        "cluster: {} orders, all confirmed and notified once",
        orders.len()
    );
}
