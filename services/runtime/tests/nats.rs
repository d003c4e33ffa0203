//! The instance's NATS connections against a real nats-server that requires users (the
//! shipped `ops/nats` configuration): credentials in `nats.url` are used, a wrong password is
//! a clear error that does not print the password, connection events are counted, and the
//! connected gauge follows the server away and back.

use courier_config::NatsSettings;
use courier_runtime::nats::{connect, NATS_CONNECTED, NATS_EVENTS};
use courier_runtime::RuntimeError;
use std::time::Duration;

use courier_testkit::{eventually, ops_password, TestNats};

fn server() -> (TestNats, std::path::PathBuf) {
    let store = std::env::temp_dir().join(format!("courier-runtime-nats-{}", std::process::id()));
    (TestNats::start_with_ops_config(&store), store)
}

fn settings(nats: &TestNats, user: &str, password: &str) -> NatsSettings {
    NatsSettings {
        url: format!("nats://{user}:{password}@127.0.0.1:{}", nats.port()),
        ..NatsSettings::default()
    }
}

#[tokio::test]
async fn credentials_in_the_url_open_both_connections_and_their_events_are_counted() {
    let (nats, store) = server();
    let registry = prometheus::Registry::new();
    let connections = connect(
        &settings(&nats, "service", ops_password("service")),
        "test",
        &registry,
    )
    .await
    .expect("the service user connects");
    // The service user may serve: requests from main to a subscription on the intake, until
    // the server has the subscription.
    let mut sub = connections.intake.subscribe("users.ping").await.unwrap();
    let main = connections.main.clone();
    let answer = tokio::spawn(async move {
        use futures::StreamExt;
        while let Some(msg) = sub.next().await {
            let reply = msg.reply.expect("a request");
            main.publish(reply, "pong".into()).await.unwrap();
        }
    });
    let reply = eventually(
        Duration::from_secs(5),
        "an answer on the intake",
        || async { connections.main.request("users.ping", "".into()).await.ok() },
    )
    .await;
    assert_eq!(reply.payload.as_ref(), b"pong");
    answer.abort();
    assert_events(&registry, "connected", 1);
    let _ = std::fs::remove_dir_all(store);
}

#[tokio::test]
async fn a_wrong_password_is_a_connect_error_that_hides_it() {
    let (nats, store) = server();
    let registry = prometheus::Registry::new();
    let error = connect(&settings(&nats, "service", "wrongPw9"), "test", &registry)
        .await
        .expect_err("refused");
    assert!(matches!(error, RuntimeError::Connect { .. }), "{error}");
    let message = error.to_string();
    assert!(!message.contains("wrongPw9"), "{message}");
    assert!(message.contains("***"), "{message}");
    let _ = std::fs::remove_dir_all(store);
}

/// Asserts that `registry` counted `event` `count` times for the main and for the intake.
fn assert_events(registry: &prometheus::Registry, event: &str, count: u64) {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    for connection in ["main", "intake"] {
        let line = format!(r#"{NATS_EVENTS}{{connection="{connection}",event="{event}"}} {count}"#);
        assert!(text.contains(&line), "{line} in\n{text}");
    }
}

/// The value of `courier_nats_connected{connection}` in `registry`, 0 before its first event.
fn connected(registry: &prometheus::Registry, connection: &str) -> i64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    let prefix = format!(r#"{NATS_CONNECTED}{{connection="{connection}"}} "#);
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn the_connected_gauge_follows_the_server_away_and_back() {
    let mut nats = TestNats::start();
    let registry = prometheus::Registry::new();
    let settings = NatsSettings {
        url: nats.url(),
        ..NatsSettings::default()
    };
    let _connections = connect(&settings, "test", &registry).await.unwrap();
    let both = |want: i64| {
        let registry = registry.clone();
        move || {
            let registry = registry.clone();
            async move {
                (connected(&registry, "main") == want && connected(&registry, "intake") == want)
                    .then_some(())
            }
        }
    };
    eventually(Duration::from_secs(5), "both connected", both(1)).await;
    let port = nats.port();
    nats.stop();
    eventually(Duration::from_secs(10), "both down", both(0)).await;
    let _back = TestNats::start_on(port);
    eventually(Duration::from_secs(20), "both reconnected", both(1)).await;
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    let line = format!(r#"{NATS_EVENTS}{{connection="main",event="connected"}} 2"#);
    assert!(text.contains(&line), "{line} in\n{text}");
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Ping {}
impl courier_actors::Call for Ping {
    type Reply = String;
    type Error = courier_actors::ServiceError;
}
struct Pong;
impl actix::Actor for Pong {
    type Context = actix::Context<Self>;
}
impl actix::Handler<courier_actors::Request<Ping>> for Pong {
    type Result = Result<String, courier_actors::ServiceError>;
    fn handle(&mut self, _: courier_actors::Request<Ping>, _: &mut Self::Context) -> Self::Result {
        Ok("pong".to_owned())
    }
}

#[actix_rt::test]
async fn each_further_worker_of_a_service_opens_a_main_and_an_intake_of_its_own() {
    use courier_actors::{Endpoint, Service, Supervised};
    let nats = TestNats::start();
    let registry = prometheus::Registry::new();
    let settings = NatsSettings {
        url: nats.url(),
        ..NatsSettings::default()
    };
    let connections = connect(&settings, "test", &registry).await.unwrap();
    let three = courier_config::ServiceSettings {
        workers: 3,
        ..Default::default()
    };
    let running = Service::builder("pairs", "1.0.0")
        .endpoint(Endpoint::new::<Ping>(
            "ping",
            "pairs.ping",
            Supervised::per_thread(|| Pong),
        ))
        .build()
        .unwrap()
        .start(connections.clone(), &three, &prometheus::Registry::new())
        .await
        .unwrap();
    assert_eq!(running.connections().len(), 3, "a pair for each worker");
    eventually(
        Duration::from_secs(5),
        "a main and an intake for each of three workers",
        || async {
            (connected(&registry, "main") == 3 && connected(&registry, "intake") == 3).then_some(())
        },
    )
    .await;
    let courier = courier_actors::Client::new(connections.main.clone(), Duration::from_secs(5));
    for _ in 0..30 {
        let pong: String = courier
            .call("pairs.ping", &Ping {}, &courier_actors::Meta::root())
            .await
            .unwrap();
        assert_eq!(pong, "pong");
    }
    let report = running.stop(Duration::from_secs(1)).await;
    assert!(report.complete, "{report:?}");
    // The further workers' pairs closed with them; the instance's own stay for their owner.
    assert_eq!(
        (connected(&registry, "main"), connected(&registry, "intake")),
        (1, 1)
    );
    assert_events(&registry, "closed", 2);
    let after = courier
        .call::<_, String>("pairs.ping", &Ping {}, &courier_actors::Meta::root())
        .await;
    assert!(
        matches!(after, Err(courier_actors::CallError::NoResponders { .. })),
        "{after:?}"
    );
}
