//! The users service behind the gateway, end to end: real `courier-users` processes registered
//! in a real Consul, a real nats-server, the gateway in front. Every route of the users
//! service, its error paths, and what happens to a steady stream of GETs when an instance is
//! killed, terminated or stopped.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use courier_config::{NatsSettings, Secret};
use courier_gateway::config::{AuthSettings, GatewaySettings};
use courier_testkit::{eventually, ServiceThread, TestConsul, TestNats};
use serde_json::{json, Value};

const ADMIN: &str = "root@example.com";
/// How often Consul checks a users instance in these tests.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

struct System {
    nats: TestNats,
    consul: TestConsul,
    dir: std::path::PathBuf,
    database: String,
}

impl System {
    fn start(test: &str) -> Self {
        let (dir, db) = sqlite_file(test);
        Self {
            nats: TestNats::start(),
            consul: TestConsul::start(),
            dir,
            database: db.url.expose().to_owned(),
        }
    }

    /// A `courier-users` process registered in Consul, checked every second.
    fn users(&self) -> Binary {
        self.users_checked_every(CHECK_INTERVAL)
    }

    /// A `courier-users` process whose Consul checks run every `interval`.
    fn users_checked_every(&self, interval: Duration) -> Binary {
        let go = |d: Duration| humantime::format_duration(d).to_string();
        Binary::spawn(&[
            ("NATS_URL", self.nats.url()),
            ("DATABASE_URL", self.database.clone()),
            ("CONSUL_HTTP_ADDR", self.consul.url()),
            ("COURIER_CONSUL__REGISTER", "true".into()),
            ("COURIER_CONSUL__CHECK_INTERVAL", go(interval)),
            ("COURIER_CONSUL__TTL", go(interval * 3)),
            ("COURIER_USERS__ADMIN_EMAILS", ADMIN.into()),
            ("COURIER_USERS__HASH_WORKERS", "1".into()),
        ])
    }

    async fn gateway(&self) -> Gateway {
        let settings = courier_gateway::Settings {
            nats: NatsSettings {
                url: self.nats.url(),
                ..NatsSettings::default()
            },
            consul: courier_discovery::testing::settings(&self.consul, ""),
            gateway: GatewaySettings {
                bind: "127.0.0.1:0".into(),
                workers: 2,
                timeout: Duration::from_secs(2),
                max_body: 4096,
                ..GatewaySettings::default()
            },
            auth: AuthSettings {
                jwt_secret: Secret::new("a-test-secret-of-at-least-32-bytes!"),
                ..AuthSettings::default()
            },
            ..courier_gateway::Settings::default()
        };
        let (addr, thread) =
            ServiceThread::start(Duration::from_secs(20), move |started, stop| async move {
                courier_gateway::run(settings, |addr| started.send(addr), stop)
                    .await
                    .expect("the gateway runs");
            })
            .await;
        Gateway {
            addr,
            http: reqwest::Client::new(),
            _thread: thread,
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Gateway {
    addr: SocketAddr,
    http: reqwest::Client,
    _thread: ServiceThread<()>,
}

impl Gateway {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends and returns the status and the JSON body (`Null` when empty).
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let reply = request.send().await.expect("the gateway answers");
        let status = reply.status().as_u16();
        let text = reply.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path)).bearer_auth(token))
            .await
    }

    async fn sign_up(&self, name: &str, email: &str) -> (u16, Value) {
        let body = json!({"name": name, "email": email, "password": "correct horse"});
        self.send(self.http.post(self.url("/users")).json(&body))
            .await
    }

    async fn login(&self, email: &str) -> String {
        let body = json!({"email": email, "password": "correct horse"});
        let (status, token) = self
            .send(self.http.post(self.url("/auth/login")).json(&body))
            .await;
        assert_eq!(status, 200, "{token}");
        assert_eq!(token["token_type"], "Bearer");
        assert_eq!(token["expires_in"], 3600);
        token["access_token"].as_str().unwrap().to_owned()
    }

    /// Waits until the users routes are learned and an instance answers.
    async fn until_ready(&self) {
        eventually(Duration::from_secs(30), "the users routes", || async {
            let (status, _) = self
                .send(self.http.post(self.url("/auth/login")).json(&json!({})))
                .await;
            (status == 400).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn every_users_route_and_its_error_paths() {
    let system = System::start("gw-routes");
    let _users = system.users();
    let gateway = system.gateway().await;
    gateway.until_ready().await;

    let (status, ann) = gateway.sign_up("Ann", "ann@example.com").await;
    assert_eq!(status, 201, "{ann}");
    assert_eq!(ann["roles"], json!([]));
    let (status, _) = gateway.sign_up("Ann again", "ANN@example.com").await;
    assert_eq!(status, 409);
    let (status, body) = gateway.sign_up("", "not-an-email").await;
    assert_eq!(status, 400, "{body}");
    let (status, root) = gateway.sign_up("Root", ADMIN).await;
    assert_eq!(status, 201);
    assert_eq!(root["roles"], json!(["admin"]));

    let bad = json!({"email": "ann@example.com", "password": "wrong password"});
    let (status, _) = gateway
        .send(gateway.http.post(gateway.url("/auth/login")).json(&bad))
        .await;
    assert_eq!(status, 401);
    let ann_token = gateway.login("ann@example.com").await;
    let root_token = gateway.login(ADMIN).await;

    let (status, me) = gateway.get("/users/profile", &ann_token).await;
    assert_eq!((status, &me["id"]), (200, &ann["id"]), "{me}");
    let (status, _) = gateway.get("/users/profile", "not-a-token").await;
    assert_eq!(status, 401);
    let ann_path = format!("/users/{}", ann["id"].as_str().unwrap());
    let root_path = format!("/users/{}", root["id"].as_str().unwrap());
    let (status, got) = gateway.get(&root_path, &ann_token).await;
    assert_eq!((status, &got["email"]), (200, &json!(ADMIN)));
    let (status, _) = gateway.get("/users/not-an-id", &ann_token).await;
    assert_eq!(status, 400);
    let missing = "/users/01900000-0000-7000-8000-000000000000";
    assert_eq!(gateway.get(missing, &ann_token).await.0, 404);

    assert_eq!(gateway.get("/users?limit=1", &ann_token).await.0, 403);
    let (status, page) = gateway.get("/users?limit=1", &root_token).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["users"].as_array().unwrap().len(), 1);
    let after = page["next"].as_str().unwrap();
    let (_, rest) = gateway
        .get(&format!("/users?limit=5&after={after}"), &root_token)
        .await;
    assert_eq!(rest["users"].as_array().unwrap().len(), 1);

    let rename = json!({"name": "Mallory"});
    let patch = |path: &str, token: &str| {
        gateway
            .http
            .patch(gateway.url(path))
            .bearer_auth(token)
            .json(&rename)
    };
    assert_eq!(gateway.send(patch(&root_path, &ann_token)).await.0, 403);
    let (status, renamed) = gateway.send(patch(&ann_path, &ann_token)).await;
    assert_eq!((status, &renamed["name"]), (200, &json!("Mallory")));
    let (status, _) = gateway.send(patch(&ann_path, &root_token)).await;
    assert_eq!(status, 200, "an admin may change anyone");
    let text = gateway
        .http
        .patch(gateway.url(&ann_path))
        .bearer_auth(&ann_token)
        .header("Content-Type", "text/plain")
        .body("name=x");
    assert_eq!(gateway.send(text).await.0, 415);
    let huge = json!({"name": "x".repeat(5000)});
    let huge = patch(&ann_path, &ann_token).json(&huge);
    assert_eq!(gateway.send(huge).await.0, 413);

    let delete =
        |path: &str, token: &str| gateway.http.delete(gateway.url(path)).bearer_auth(token);
    assert_eq!(gateway.send(delete(&root_path, &ann_token)).await.0, 403);
    let (status, body) = gateway.send(delete(&ann_path, &ann_token)).await;
    assert_eq!((status, body), (204, Value::Null));
    assert_eq!(gateway.get(&ann_path, &root_token).await.0, 404);
}

/// GETs of one user as fast as one client sends them, until told to stop; each failure is kept
/// with the instant its request was sent.
struct Stream {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<(Instant, String)>>,
}

impl Stream {
    fn start(gateway: &Gateway, path: String, token: String) -> Self {
        let (stop, sent) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (http, url) = (gateway.http.clone(), gateway.url(&path));
        let task = tokio::spawn({
            let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
            async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let reply = http.get(&url).bearer_auth(&token).send().await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    match reply {
                        Ok(r) if r.status() == 200 => {}
                        Ok(r) => {
                            let status = r.status();
                            let body = r.text().await.unwrap_or_default();
                            failures.push((at, format!("{status}: {body}")));
                        }
                        Err(e) => failures.push((at, e.to_string())),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                failures
            }
        });
        Self { stop, sent, task }
    }

    /// Stops and returns (sent, failures with the instants their requests were sent).
    async fn finish(self) -> (usize, Vec<(Instant, String)>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.task.await.unwrap();
        (self.sent.load(Ordering::Relaxed), failures)
    }
}

/// Two instances serving, one user signed up and logged in: the path of that user and a token.
async fn two_instances(system: &System, gateway: &Gateway) -> (String, String) {
    gateway.until_ready().await;
    let (status, user) = gateway.sign_up("Ann", "ann@example.com").await;
    assert_eq!(status, 201, "{user}");
    let token = gateway.login("ann@example.com").await;
    let consul = courier_discovery::testing::client(&system.consul);
    courier_discovery::testing::until_healthy(
        &consul,
        "users",
        Duration::from_secs(20),
        "two healthy instances",
        |i| i.len() == 2,
    )
    .await;
    (format!("/users/{}", user["id"].as_str().unwrap()), token)
}

#[tokio::test]
async fn sigkill_of_one_of_two_instances_fails_nothing_after_the_first_check_interval() {
    let system = System::start("gw-kill");
    let (mut a, _b) = (system.users(), system.users());
    let gateway = system.gateway().await;
    let (path, token) = two_instances(&system, &gateway).await;
    let stream = Stream::start(&gateway, path, token);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    a.child.kill().unwrap();
    let _ = a.child.wait();
    // Well past the first check interval and the catalog's update.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (sent, failures) = stream.finish().await;
    assert!(sent > 100, "only {sent} sent");
    // A request the killed instance had already taken is lost with it (the gateway cannot
    // know whether it was handled); nothing sent after the first check interval may fail.
    let late = failures
        .iter()
        .filter(|(at, _)| *at > killed + CHECK_INTERVAL);
    assert_eq!(late.count(), 0, "of {sent}: {failures:?}");
    assert!(
        failures.len() <= 1,
        "at most the request in flight at the kill: {failures:?}"
    );
}

#[tokio::test]
async fn sigterm_of_one_of_two_instances_fails_no_request() {
    let system = System::start("gw-term");
    let (a, _b) = (system.users(), system.users());
    let gateway = system.gateway().await;
    let (path, token) = two_instances(&system, &gateway).await;
    let stream = Stream::start(&gateway, path, token);
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.terminate();
    // Waiting blocks: off the runtime, so the stream keeps sending meanwhile.
    let waited = tokio::task::spawn_blocking(move || a.wait(Duration::from_secs(20)));
    let (code, log) = waited.await.unwrap();
    assert_eq!(code, Some(0), "{log}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent, failures) = stream.finish().await;
    assert!(sent > 100, "only {sent} sent");
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {failures:?}",
        failures.len()
    );
}

#[tokio::test]
async fn a_stopped_instance_is_504_then_a_fast_503_while_the_breaker_is_open_then_recovers() {
    let system = System::start("gw-stop");
    // Consul checks it rarely, so it stays listed while stopped: what the gateway does about
    // an instance the registry still calls healthy is what is tested.
    let users = system.users_checked_every(Duration::from_secs(10));
    let gateway = system.gateway().await;
    gateway.until_ready().await;
    let (_, user) = gateway.sign_up("Ann", "ann@example.com").await;
    let token = gateway.login("ann@example.com").await;
    let path = format!("/users/{}", user["id"].as_str().unwrap());
    let pid = users.child.id().to_string();
    let signal = |name: &str| {
        let ok = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(ok.success());
    };

    signal("-STOP");
    let timed = |path: String, token: String| {
        let gateway = &gateway;
        async move {
            let started = Instant::now();
            let request = gateway
                .http
                .get(gateway.url(&path))
                .bearer_auth(&token)
                .header("X-Request-Timeout", "400");
            let (status, _) = gateway.send(request).await;
            (status, started.elapsed())
        }
    };
    for _ in 0..5 {
        let (status, took) = timed(path.clone(), token.clone()).await;
        assert_eq!(status, 504);
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }
    let (status, took) = timed(path.clone(), token.clone()).await;
    assert_eq!(status, 503, "the breaker is open");
    assert!(took < Duration::from_millis(100), "{took:?}");
    let metrics = gateway
        .http
        .get(gateway.url("/metrics"))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("courier_gateway_breaker_state{service=\"users\"} 1"),
        "{metrics}"
    );

    signal("-CONT");
    eventually(
        Duration::from_secs(20),
        "recovery after SIGCONT",
        || async { (gateway.get(&path, &token).await.0 == 200).then_some(()) },
    )
    .await;
}
