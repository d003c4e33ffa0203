//! The NATS users and permissions shipped in `ops/nats/` (issue 4b: one hostile or buggy client
//! must not take a service off the bus). A real `nats-server` runs that configuration, a real
//! Courier service serves `users.list` connected as `service`, and clients connect as each
//! user: the unprivileged `guest` reaches nothing, while the service, the gateway and the admin
//! have what they need. With an allow-all configuration the guest tests fail.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use courier_actors::{Call, Endpoint, Request, Running, Service, ServiceError, Supervised};
use courier_config::ServiceSettings;
use courier_testkit::{eventually, ops_config, ops_password, TestNats, OPS_PASSWORDS};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// How long a check may take: generous, since waits end as soon as the condition holds.
const WITHIN: Duration = Duration::from_secs(5);

/// `users.list` for the test: the reply is the number of requests handled so far.
#[derive(Debug, Deserialize, Serialize)]
struct ListUsers {}
impl Call for ListUsers {
    type Reply = usize;
    type Error = ServiceError;
}

/// Counts the requests that reach it, so a test can show that none did.
struct Directory {
    handled: Arc<AtomicUsize>,
}
impl Actor for Directory {
    type Context = Context<Self>;
}
impl Handler<Request<ListUsers>> for Directory {
    type Result = Result<usize, ServiceError>;
    fn handle(&mut self, _: Request<ListUsers>, _: &mut Context<Self>) -> Self::Result {
        Ok(self.handled.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

/// The server errors a connection was sent (`Permissions Violation for ...`).
#[derive(Clone, Default)]
struct Violations(Arc<Mutex<Vec<String>>>);

impl Violations {
    /// Waits until the server has refused something whose message contains `what`.
    async fn wait_for(&self, what: &str) {
        self.wait_for_times(what, 1).await;
    }

    /// Waits until the server has refused `times` things whose message contains `what`.
    async fn wait_for_times(&self, what: &str, times: usize) {
        let wanted = format!("{times} permissions violation(s) for {what}");
        eventually(WITHIN, &wanted, || {
            let seen = self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|m| m.contains(what))
                .count();
            async move { (seen >= times).then_some(()) }
        })
        .await;
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A client connected as `user`, with the violations the server reports to it.
struct Connection {
    client: async_nats::Client,
    violations: Violations,
}

/// The server with the shipped configuration, its JetStream folder, and a Courier service
/// serving `users.list` as the `service` user.
struct Bus {
    nats: TestNats,
    store: PathBuf,
    service: Connection,
    running: Running,
    handled: Arc<AtomicUsize>,
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.nats.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

impl Bus {
    async fn start() -> Self {
        let store = std::env::temp_dir().join(format!("courier-permissions-{}", nuid::next()));
        let nats = TestNats::start_with_ops_config(&store);
        let service = connect(&nats, "service").await;
        let handled = Arc::new(AtomicUsize::new(0));
        let directory = Supervised::local({
            let handled = handled.clone();
            move || Directory {
                handled: handled.clone(),
            }
        });
        let running = Service::builder("users", "0.1.0")
            .endpoint(Endpoint::new::<ListUsers>("list", "users.list", directory))
            .build()
            .expect("a valid definition")
            .start(
                service.client.clone(),
                &ServiceSettings::default(),
                &prometheus::Registry::new(),
            )
            .await
            .expect("the service starts as the service user");
        Self {
            nats,
            store,
            service,
            running,
            handled,
        }
    }

    async fn connect(&self, user: &str) -> Connection {
        connect(&self.nats, user).await
    }

    /// What `users.list` has answered so far.
    fn handled(&self) -> usize {
        self.handled.load(Ordering::SeqCst)
    }
}

/// The inbox prefix of the gateway's connection (`nats.inbox_prefix` in its settings): its
/// replies arrive there, and it may subscribe nowhere else.
const GATEWAY_INBOX: &str = "_GATEWAY_INBOX";

async fn connect(nats: &TestNats, user: &str) -> Connection {
    let violations = Violations::default();
    let seen = violations.clone();
    let options = async_nats::ConnectOptions::with_user_and_password(
        user.to_owned(),
        ops_password(user).to_owned(),
    );
    let options = match user {
        "gateway" => options.custom_inbox_prefix(GATEWAY_INBOX),
        _ => options,
    };
    let client = options
        .request_timeout(Some(Duration::from_secs(2)))
        .event_callback(move |event| {
            let seen = seen.clone();
            async move {
                if let async_nats::Event::ServerError(async_nats::ServerError::Other(message)) =
                    event
                {
                    seen.0.lock().unwrap().push(message);
                }
            }
        })
        .connect(nats.url())
        .await
        .unwrap_or_else(|e| panic!("connect as {user}: {e}\n{}", nats.log()));
    Connection { client, violations }
}

/// Asks `subject` as a Courier caller would (JSON body) and returns the decoded reply.
async fn ask(client: &async_nats::Client, subject: &str) -> serde_json::Value {
    let reply = client
        .request(subject.to_owned(), Bytes::from_static(b"{}"))
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
    serde_json::from_slice(&reply.payload).unwrap_or_else(|e| panic!("{subject}: {e}"))
}

/// The next message on `subscriber`, or a panic naming `what`.
async fn next_payload(subscriber: &mut async_nats::Subscriber, what: &str) -> Bytes {
    tokio::time::timeout(WITHIN, subscriber.next())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("subscription ended before {what}"))
        .payload
}

/// Subscribes to `subject` and returns once the server has the subscription: a probe
/// published on the same connection to `probe` (which `subject` matches) has come back.
/// (`flush` only empties the client's buffer; it does not wait for the server.)
async fn subscribe_confirmed(
    client: &async_nats::Client,
    subject: &str,
    probe: &str,
) -> async_nats::Subscriber {
    let mut subscriber = client.subscribe(subject.to_owned()).await.unwrap();
    client
        .publish(probe.to_owned(), Bytes::from_static(b"probe"))
        .await
        .unwrap();
    assert_eq!(next_payload(&mut subscriber, "the probe").await, "probe");
    subscriber
}

#[test]
fn the_shipped_configuration_is_valid_and_needs_every_password() {
    let check = |env: &[(&str, &str)]| {
        std::process::Command::new(courier_testkit::tool("nats-server"))
            .args(["-c", ops_config().to_str().unwrap(), "-t"])
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .expect("run nats-server -t")
    };
    let all = check(&OPS_PASSWORDS);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    // A missing password stops the server: it never starts with an account open to anyone.
    let without_guest = check(&OPS_PASSWORDS[..3]);
    assert!(!without_guest.status.success());
    let stderr = String::from_utf8_lossy(&without_guest.stderr);
    assert!(stderr.contains("COURIER_NATS_GUEST_PASSWORD"), "{stderr}");
}

#[actix_rt::test]
async fn a_client_without_the_right_credentials_is_refused_at_connect() {
    let bus = Bus::start().await;
    let anonymous = async_nats::connect(bus.nats.url()).await.unwrap_err();
    assert_eq!(
        anonymous.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation
    );
    let wrong = async_nats::ConnectOptions::with_user_and_password("service".into(), "x".into())
        .connect(bus.nats.url())
        .await
        .unwrap_err();
    assert_eq!(
        wrong.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation
    );
}

#[actix_rt::test]
async fn a_guest_cannot_call_a_service() {
    let bus = Bus::start().await;
    let admin = bus.connect("admin").await;
    // A plain subscriber next to the service sees whatever reaches the subject (the probe
    // reaches the service too, without a reply subject, so its actor never sees it).
    let mut listener = subscribe_confirmed(&bus.service.client, "users.list", "users.list").await;

    let guest = bus.connect("guest").await;
    guest
        .client
        .publish("users.list", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    guest.violations.wait_for("Publish to \"users.list\"").await;
    let asked = guest
        .client
        .request("users.list", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert_eq!(asked.kind(), async_nats::RequestErrorKind::TimedOut);
    guest
        .violations
        .wait_for_times("Publish to \"users.list\"", 2)
        .await;

    // The server refused the guest's messages before this marker was sent: had it delivered
    // one, the listener would see it first.
    admin
        .client
        .publish("users.list", Bytes::from_static(b"marker"))
        .await
        .unwrap();
    assert_eq!(next_payload(&mut listener, "the marker").await, "marker");
    assert_eq!(bus.handled(), 0, "a guest request reached the service");
}

#[actix_rt::test]
async fn a_guest_cannot_join_a_service_queue_group_to_swallow_its_requests() {
    let bus = Bus::start().await;
    let guest = bus.connect("guest").await;
    let _thief = guest
        .client
        .queue_subscribe("users.list", "q".to_owned())
        .await
        .unwrap();
    guest
        .violations
        .wait_for("Subscription to \"users.list\"")
        .await;

    // Had the server let the guest into the group, about half of these would go unanswered.
    let gateway = bus.connect("gateway").await;
    for n in 1..=20 {
        assert_eq!(ask(&gateway.client, "users.list").await, n);
    }
}

#[actix_rt::test]
async fn a_guest_can_neither_discover_nor_eavesdrop() {
    let bus = Bus::start().await;
    let guest = bus.connect("guest").await;
    let instance = format!("_COURIER.{}.users.list", bus.running.id());
    // Discovery is for operators and the gateway: one PING makes every instance answer.
    for subject in ["$SRV.PING", instance.as_str()] {
        guest
            .client
            .publish(subject.to_owned(), Bytes::new())
            .await
            .unwrap();
        guest
            .violations
            .wait_for(&format!("Publish to \"{subject}\""))
            .await;
    }
    // Every client's replies land under _INBOX, and events carry names and emails.
    for subject in ["_INBOX.>", "events.>", "_COURIER.>", "$SRV.>", ">"] {
        let _refused = guest.client.subscribe(subject).await.unwrap();
        guest
            .violations
            .wait_for(&format!("Subscription to \"{subject}\""))
            .await;
    }
}

#[actix_rt::test]
async fn services_the_gateway_and_the_admin_have_what_they_need() {
    let bus = Bus::start().await;
    let gateway = bus.connect("gateway").await;
    let admin = bus.connect("admin").await;
    let id = bus.running.id().to_owned();

    // The gateway calls the shared subject, one instance's own subject and $SRV.
    assert_eq!(ask(&gateway.client, "users.list").await, 1);
    let instance = format!("_COURIER.{id}.users.list");
    assert_eq!(ask(&gateway.client, &instance).await, 2);
    assert_eq!(ask(&gateway.client, "$SRV.PING.users").await["id"], id);
    // The admin can do everything the nats CLI does.
    assert_eq!(ask(&admin.client, "users.list").await, 3);
    assert_eq!(ask(&admin.client, "$SRV.INFO.users").await["id"], id);

    // Services publish events.
    let mut events = subscribe_confirmed(&admin.client, "events.>", "events.probe").await;
    bus.service
        .client
        .publish("events.users.created", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(next_payload(&mut events, "the service's event").await, "{}");

    // Refusals arrive before later replies on the same connection, so none is still coming.
    for (user, connection) in [("service", &bus.service), ("gateway", &gateway)] {
        assert_eq!(connection.violations.all(), Vec::<String>::new(), "{user}");
    }
}

#[actix_rt::test]
async fn the_gateway_can_neither_forge_events_nor_take_requests() {
    let bus = Bus::start().await;
    let gateway = bus.connect("gateway").await;
    let admin = bus.connect("admin").await;
    let mut events = subscribe_confirmed(&admin.client, "events.>", "events.probe").await;

    gateway
        .client
        .publish("events.users.created", Bytes::from_static(b"forged"))
        .await
        .unwrap();
    gateway
        .violations
        .wait_for("Publish to \"events.users.created\"")
        .await;
    admin
        .client
        .publish("events.users.created", Bytes::from_static(b"marker"))
        .await
        .unwrap();
    assert_eq!(next_payload(&mut events, "the marker").await, "marker");

    let _thief = gateway
        .client
        .queue_subscribe("users.list", "q".to_owned())
        .await
        .unwrap();
    gateway
        .violations
        .wait_for("Subscription to \"users.list\"")
        .await;
}

#[actix_rt::test]
async fn the_gateway_cannot_read_other_clients_replies() {
    let bus = Bus::start().await;
    let gateway = bus.connect("gateway").await;
    // Every other client's replies land under `_INBOX.`: users.get, users.authenticate.
    let _reader = gateway.client.subscribe("_INBOX.>").await.unwrap();
    gateway
        .violations
        .wait_for("Subscription to \"_INBOX.>\"")
        .await;
    let _own = gateway
        .client
        .subscribe(format!("{GATEWAY_INBOX}.x.>"))
        .await
        .unwrap();
    // Its own inbox is allowed, and requests through it are answered.
    assert_eq!(ask(&gateway.client, "users.list").await, 1);
    assert_eq!(
        gateway.violations.all().len(),
        1,
        "{:?}",
        gateway.violations.all()
    );
}
