//! Registration in a real Consul agent: the admin listener, checks that pass, a TTL check that
//! catches a wedged actor system, and registration that survives Consul going away.

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use courier_actors::{Call, Endpoint, Request, Service, ServiceError, Supervised};
use courier_config::{AdminSettings, ConsulSettings, ServiceSettings};
use courier_discovery::testing::{self, check_status, has_id, healthy, until_check};
use courier_discovery::{CheckStatus, Consul};
use courier_runtime::{http_check_id, serve, ttl_check_id, RuntimeSettings};
use courier_testkit::{eventually, ServiceThread, TestConsul, TestNats};
use serde::{Deserialize, Serialize};

/// Blocks the actor system's thread for `ms`: a wedged system.
#[derive(Deserialize, Serialize)]
struct Wedge {
    ms: u64,
}
impl Call for Wedge {
    type Reply = ();
    type Error = ServiceError;
}

struct Wedgy;
impl Actor for Wedgy {
    type Context = Context<Self>;
}
impl Handler<Request<Wedge>> for Wedgy {
    type Result = Result<(), ServiceError>;
    fn handle(&mut self, req: Request<Wedge>, _: &mut Context<Self>) -> Self::Result {
        std::thread::sleep(Duration::from_millis(req.body.ms));
        Ok(())
    }
}

/// Sleeps `ms` without blocking: a slow request that holds its in-flight slot.
#[derive(Deserialize, Serialize)]
struct Nap {
    ms: u64,
}
impl Call for Nap {
    type Reply = ();
    type Error = ServiceError;
}
impl Handler<Request<Nap>> for Wedgy {
    type Result = ResponseFuture<Result<(), ServiceError>>;
    fn handle(&mut self, req: Request<Nap>, _: &mut Context<Self>) -> Self::Result {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(req.body.ms)).await;
            Ok(())
        })
    }
}

/// A `wedgy` instance served on a thread of its own (a [`ServiceThread`]) until dropped.
struct Instance {
    id: String,
    admin: SocketAddr,
    _thread: ServiceThread<()>,
}

impl Instance {
    async fn start(nats_url: String, consul: ConsulSettings) -> Self {
        let ((id, admin), thread) =
            ServiceThread::start(Duration::from_secs(20), move |started, stop| async move {
                let nats = async_nats::connect(nats_url).await.expect("connect");
                let (service_settings, admin) =
                    (ServiceSettings::default(), AdminSettings::default());
                let settings = RuntimeSettings {
                    service: &service_settings,
                    admin: &admin,
                    consul: &consul,
                };
                let on_start = |s: &courier_runtime::Started<'_>| {
                    started.send((s.running.id().to_owned(), s.admin));
                };
                let registry = prometheus::Registry::new();
                serve(wedgy(), nats, settings, &registry, None, on_start, stop)
                    .await
                    .expect("serves and drains");
            })
            .await;
        Self {
            id,
            admin,
            _thread: thread,
        }
    }
}

/// The `wedgy` service: `wedge` blocks the actor system, `nap` holds its single slot.
fn wedgy() -> Service {
    Service::builder("wedgy", "0.1.0")
        .endpoint(Endpoint::new::<Wedge>(
            "wedge",
            "wedgy.wedge",
            Supervised::local(|| Wedgy),
        ))
        .endpoint(
            Endpoint::new::<Nap>("nap", "wedgy.nap", Supervised::local(|| Wedgy)).max_in_flight(1),
        )
        .build()
        .expect("definition")
}

/// Waits until Consul lists the `wedgy` instance `id` as healthy.
async fn until_healthy(consul: &Consul, id: &str, within: Duration, what: &str) {
    testing::until_healthy(consul, "wedgy", within, what, |now| has_id(now, id)).await;
}

/// Whether Consul lists the `wedgy` instance `id` as healthy now (not when it does not answer).
async fn is_healthy(consul: &Consul, id: &str) -> bool {
    healthy(consul, "wedgy")
        .await
        .is_ok_and(|now| has_id(&now, id))
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    courier_testkit::http_get(addr, path, &[], Duration::from_secs(30))
        .expect("admin listener answers")
}

#[tokio::test]
async fn an_instance_appears_with_passing_checks_and_its_admin_endpoints_answer() {
    let (nats, consul) = (TestNats::start(), TestConsul::start());
    let settings = testing::settings(&consul, "");
    let client = Consul::new(&settings).unwrap();
    let instance = Instance::start(nats.url(), settings.clone()).await;
    until_healthy(
        &client,
        &instance.id,
        Duration::from_secs(8),
        "the instance healthy in Consul",
    )
    .await;
    assert_eq!(
        check_status(&client, &instance.id, &ttl_check_id(&instance.id)).await,
        Some(CheckStatus::Passing)
    );
    assert_eq!(
        check_status(&client, &instance.id, &http_check_id(&instance.id)).await,
        Some(CheckStatus::Passing)
    );
    let (_, found) = client
        .healthy("wedgy", None, Duration::from_secs(1))
        .await
        .unwrap();
    let me = found.iter().find(|i| i.id == instance.id).unwrap();
    assert_eq!(
        (me.address.as_str(), me.port),
        ("127.0.0.1", instance.admin.port())
    );
    assert_eq!(me.meta["srv_id"], instance.id);
    assert_eq!(me.meta["subjects"], "wedgy.wedge,wedgy.nap");

    assert_eq!(http_get(instance.admin, "/health").0, 200);
    let (code, body) = http_get(instance.admin, "/health/ready");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(instance.admin, "/metrics");
    assert_eq!(code, 200);
    assert!(body.contains("courier_endpoint_requests_total"), "{body}");
    for line in [
        r#"courier_build_info{service="wedgy",version="0.1.0"} 1"#,
        "courier_consul_registered 1",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} in\n{body}");
    }
}

#[tokio::test]
async fn an_instance_at_its_in_flight_limit_stays_ready_and_registered() {
    let (nats, consul) = (TestNats::start(), TestConsul::start());
    let settings = testing::settings(&consul, "");
    let client = Consul::new(&settings).unwrap();
    let instance = Instance::start(nats.url(), settings).await;
    until_healthy(&client, &instance.id, Duration::from_secs(10), "registered").await;
    // One 4 s nap fills the nap endpoint's single slot.
    let caller = async_nats::connect(nats.url()).await.unwrap();
    let inbox = caller.new_inbox();
    caller
        .publish_with_reply("wedgy.nap", inbox, r#"{"ms": 4000}"#.into())
        .await
        .unwrap();
    let body = eventually(
        Duration::from_secs(2),
        "the nap endpoint saturated",
        || async {
            let (code, body) = http_get(instance.admin, "/health/ready");
            (code == 200 && body.contains(r#""saturated":["nap"]"#)).then_some(body)
        },
    )
    .await;
    assert!(body.contains(r#""status":"ready""#), "{body}");
    // Two check intervals at the limit: Consul's HTTP check still passes, and callers still
    // find the instance (overload is answered by fast 503s, not by leaving the registry).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        check_status(&client, &instance.id, &http_check_id(&instance.id)).await,
        Some(CheckStatus::Passing)
    );
    assert!(is_healthy(&client, &instance.id).await);
}

#[tokio::test]
async fn a_wedged_actor_system_turns_the_ttl_check_critical_while_http_still_answers() {
    let (nats, consul) = (TestNats::start(), TestConsul::start());
    let settings = testing::settings(&consul, "");
    let client = Consul::new(&settings).unwrap();
    let instance = Instance::start(nats.url(), settings).await;
    let ttl = ttl_check_id(&instance.id);
    until_check(
        &client,
        &instance.id,
        &ttl,
        CheckStatus::Passing,
        Duration::from_secs(8),
        "the TTL check passing",
    )
    .await;
    let nats_client = async_nats::connect(nats.url()).await.unwrap();
    let wedge = tokio::spawn(async move {
        let req = async_nats::Request::new()
            .payload(r#"{"ms": 6000}"#.into())
            .timeout(Some(Duration::from_secs(20)));
        nats_client.send_request("wedgy.wedge", req).await
    });
    until_check(
        &client,
        &instance.id,
        &ttl,
        CheckStatus::Critical,
        Duration::from_secs(6),
        "the TTL check critical",
    )
    .await;
    assert_eq!(
        http_get(instance.admin, "/health").0,
        503,
        "liveness sees the wedged system"
    );
    assert!(
        !is_healthy(&client, &instance.id).await,
        "resolution stops returning it"
    );
    wedge
        .await
        .unwrap()
        .expect("the wedged request is answered once the system runs again");
    until_check(
        &client,
        &instance.id,
        &ttl,
        CheckStatus::Passing,
        Duration::from_secs(8),
        "the TTL check passing again",
    )
    .await;
}

#[tokio::test]
async fn with_consul_down_at_start_the_instance_serves_and_registers_once_consul_is_back() {
    let (nats, mut consul) = (TestNats::start(), TestConsul::start());
    let settings = testing::settings(&consul, "");
    consul.stop();
    let instance = Instance::start(nats.url(), settings.clone()).await;
    let nats_client = async_nats::connect(nats.url()).await.unwrap();
    let ping = nats_client
        .request(format!("$SRV.PING.wedgy.{}", instance.id), "".into())
        .await;
    assert!(ping.is_ok(), "serves over NATS without Consul");
    let (_, body) = http_get(instance.admin, "/metrics");
    assert!(
        body.lines().any(|l| l == "courier_consul_registered 0"),
        "unregistered while Consul is away:\n{body}"
    );
    consul.restart();
    let client = Consul::new(&settings).unwrap();
    until_healthy(
        &client,
        &instance.id,
        Duration::from_secs(20),
        "registration after Consul is back",
    )
    .await;
    let (_, body) = http_get(instance.admin, "/metrics");
    assert!(
        body.lines().any(|l| l == "courier_consul_registered 1"),
        "registered once Consul is back:\n{body}"
    );
}

#[tokio::test]
async fn a_consul_restarted_mid_run_has_the_instance_healthy_again() {
    let (nats, mut consul) = (TestNats::start(), TestConsul::start());
    let settings = testing::settings(&consul, "");
    let client = Consul::new(&settings).unwrap();
    let instance = Instance::start(nats.url(), settings).await;
    until_healthy(
        &client,
        &instance.id,
        Duration::from_secs(8),
        "first registration",
    )
    .await;
    consul.stop();
    consul.restart();
    until_healthy(
        &client,
        &instance.id,
        Duration::from_secs(20),
        "registration after the restart",
    )
    .await;
}

#[tokio::test]
async fn an_instance_removed_behind_its_back_registers_again() {
    let (nats, consul) = (TestNats::start(), TestConsul::start());
    let settings = testing::settings(&consul, "");
    let client = Consul::new(&settings).unwrap();
    let instance = Instance::start(nats.url(), settings).await;
    until_healthy(
        &client,
        &instance.id,
        Duration::from_secs(8),
        "first registration",
    )
    .await;
    // As after a Consul that lost its state, or an operator's mistake: the next TTL update is
    // refused, and the heartbeat registers again.
    client.deregister(&instance.id).await.unwrap();
    until_healthy(
        &client,
        &instance.id,
        Duration::from_secs(10),
        "registration again",
    )
    .await;
}

#[tokio::test]
async fn an_acl_agent_takes_the_registration_with_the_configured_token_only() {
    let token = "3f1e5e0a-6a2b-4c3d-9e8f-0a1b2c3d4e5f";
    let (nats, consul) = (TestNats::start(), TestConsul::start_with_acl(token));
    let with_token = testing::settings(&consul, token);
    let admin_client = Consul::new(&with_token).unwrap();
    let good = Instance::start(nats.url(), with_token).await;
    until_healthy(
        &admin_client,
        &good.id,
        Duration::from_secs(10),
        "the registration with the token",
    )
    .await;
    let tokenless = Instance::start(nats.url(), testing::settings(&consul, "")).await;
    // The negative check means something only once the instance has tried: wait until the
    // agent has refused it twice (a first attempt and a retry), then it must not be listed.
    eventually(
        Duration::from_secs(10),
        "two refused registrations in the agent's log",
        || async {
            let refusals = consul
                .log()
                .matches("Permission denied: Missing service:write on wedgy")
                .count();
            (refusals >= 2).then_some(())
        },
    )
    .await;
    let (_, found) = admin_client
        .healthy("wedgy", None, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        found.iter().all(|i| i.id != tokenless.id),
        "no token, no registration: {found:?}"
    );
}
