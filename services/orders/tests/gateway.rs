//! The order story over HTTP, as a client lives it: the users, products, payments and orders
//! services registered in a real Consul, the gateway in front learning their routes, a real
//! nats-server. Roles, owners, the 202 of an order, and its saga seen through `GET /orders`.

use std::time::{Duration, Instant};

use courier_actors::DrainReport;
use courier_config::{NatsSettings, Secret};
use courier_gateway::config::{AuthSettings, GatewaySettings};
use courier_runtime::testing::TestService;
use courier_runtime::Common;
use courier_store::testing::TestDatabase;
use courier_testkit::{ServiceThread, TestConsul, TestNats};
use serde_json::{json, Value};

type Running = TestService<anyhow::Result<DrainReport>>;

const ADMIN: &str = "root@example.com";

/// Registers a service in the test's Consul.
fn registered<S: Common>(consul: &TestConsul) -> impl FnOnce(&mut S) {
    let settings = courier_discovery::testing::settings(consul, "");
    move |s: &mut S| {
        *s.consul_mut() = courier_config::ConsulSettings {
            register: true,
            ..settings
        };
    }
}

struct Gateway {
    base: String,
    http: reqwest::Client,
    _thread: ServiceThread<()>,
}

impl Gateway {
    async fn start(nats: &TestNats, consul: &TestConsul) -> Self {
        let settings = courier_gateway::Settings {
            nats: NatsSettings {
                url: nats.url(),
                ..NatsSettings::default()
            },
            consul: courier_discovery::testing::settings(consul, ""),
            gateway: GatewaySettings {
                bind: "127.0.0.1:0".into(),
                workers: 1,
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
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            _thread: thread,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request.send().await.expect("the gateway answers");
        let status = reply.status().as_u16();
        (
            status,
            serde_json::from_str(&reply.text().await.unwrap()).unwrap_or(Value::Null),
        )
    }

    /// Signs up (a 409 for an existing email is fine) and logs in; the bearer token.
    async fn user(&self, name: &str, email: &str) -> (String, String) {
        let password = "correct horse";
        let (_, user) = self
            .send(
                reqwest::Method::POST,
                "/users",
                None,
                Some(json!({"name": name, "email": email, "password": password})),
            )
            .await;
        let (status, login) = self
            .send(
                reqwest::Method::POST,
                "/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "{login}");
        (
            user["id"].as_str().unwrap().to_owned(),
            login["access_token"].as_str().unwrap().to_owned(),
        )
    }
}

#[actix_rt::test]
async fn the_order_story_through_the_gateway() {
    let nats = TestNats::start();
    let consul = TestConsul::start();
    let url = nats.url();
    let users_registered = registered::<courier_users::Settings>(&consul);
    let users: Running = TestService::join(
        &url,
        TestDatabase::sqlite("gw-users"),
        move |s: &mut courier_users::Settings| {
            users_registered(s);
            s.users.hash_workers = 1;
            s.users.admin_emails = vec![ADMIN.into()];
        },
        |s, on, stop| courier_users::run(s, on, stop),
    )
    .await;
    let products: Running = TestService::join(
        &url,
        TestDatabase::sqlite("gw-products"),
        registered::<courier_products::Settings>(&consul),
        |s, on, stop| courier_products::run(s, on, stop),
    )
    .await;
    let payments: Running = TestService::join(
        &url,
        TestDatabase::sqlite("gw-payments"),
        registered::<courier_payments::Settings>(&consul),
        |s, on, stop| courier_payments::run(s, on, stop),
    )
    .await;
    let orders: Running = TestService::join(
        &url,
        TestDatabase::sqlite("gw-orders"),
        registered::<courier_orders::Settings>(&consul),
        |s, on, stop| courier_orders::run(s, on, stop),
    )
    .await;
    let notifications: Running = TestService::join(
        &url,
        TestDatabase::sqlite("gw-notifications"),
        registered::<courier_notifications::Settings>(&consul),
        |s, on, stop| courier_notifications::run(s, on, stop),
    )
    .await;
    let gateway = Gateway::start(&nats, &consul).await;
    use reqwest::Method;

    // The gateway learns every service's routes from Consul and $SRV.INFO, each service in
    // its own time: a route not learned yet is a 404, a learned bearer route without a token
    // a 401.
    let deadline = Instant::now() + Duration::from_secs(20);
    let learned = async || {
        for (path, known) in [
            ("/products", 200),
            ("/orders", 401),
            ("/users/profile", 401),
            ("/notifications", 401),
        ] {
            if gateway.send(Method::GET, path, None, None).await.0 != known {
                return false;
            }
        }
        true
    };
    while !learned().await {
        assert!(
            Instant::now() < deadline,
            "the gateway did not learn the routes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (_, admin) = gateway.user("Root", ADMIN).await;
    let (ada_id, ada) = gateway.user("Ada", "ada@example.com").await;
    let (_, bob) = gateway.user("Bob", "bob@example.com").await;

    let tea = json!({"name": "Tea", "price": 450, "currency": "EUR", "stock": 20});
    assert_eq!(
        gateway
            .send(Method::POST, "/products", Some(&ada), Some(tea.clone()))
            .await
            .0,
        403,
        "only an admin stocks"
    );
    let (status, product) = gateway
        .send(Method::POST, "/products", Some(&admin), Some(tea))
        .await;
    assert_eq!(status, 201, "{product}");
    let (status, listed) = gateway
        .send(Method::GET, "/products?limit=5", None, None)
        .await;
    assert_eq!(
        (status, listed["products"][0]["id"].clone()),
        (200, product["id"].clone()),
        "public"
    );

    let items = json!({"items": [{"product_id": product["id"], "quantity": 2}]});
    assert_eq!(
        gateway
            .send(Method::POST, "/orders", None, Some(items.clone()))
            .await
            .0,
        401
    );
    let (status, order) = gateway
        .send(Method::POST, "/orders", Some(&ada), Some(items))
        .await;
    assert_eq!(
        (status, order["state"].as_str(), order["user_id"].as_str()),
        (202, Some("pending"), Some(ada_id.as_str())),
        "{order}"
    );
    let path = format!("/orders/{}", order["id"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let confirmed = loop {
        let (status, now) = gateway.send(Method::GET, &path, Some(&ada), None).await;
        assert_eq!(status, 200, "{now}");
        if now["state"] != "pending" {
            break now;
        }
        assert!(Instant::now() < deadline, "still pending");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (confirmed["state"].as_str(), confirmed["total"].as_i64()),
        (Some("confirmed"), Some(900))
    );
    assert_eq!(
        gateway.send(Method::GET, &path, Some(&bob), None).await.0,
        403,
        "another user's order"
    );
    assert_eq!(
        gateway.send(Method::GET, &path, Some(&admin), None).await.0,
        200,
        "an admin reads any"
    );
    let (_, mine) = gateway.send(Method::GET, "/orders", Some(&ada), None).await;
    let (_, bobs) = gateway.send(Method::GET, "/orders", Some(&bob), None).await;
    assert_eq!(
        (
            mine["orders"].as_array().unwrap().len(),
            bobs["orders"].as_array().unwrap().len()
        ),
        (1, 0)
    );
    let (_, stocked) = gateway
        .send(
            Method::GET,
            &format!("/products/{}", product["id"].as_str().unwrap()),
            None,
            None,
        )
        .await;
    assert_eq!(stocked["stock"], 18);

    // Ada's notifications: her welcome and her confirmed order, each once.
    let deadline = Instant::now() + Duration::from_secs(20);
    let kinds = loop {
        let (status, page) = gateway
            .send(Method::GET, "/notifications", Some(&ada), None)
            .await;
        assert_eq!(status, 200, "{page}");
        let mut kinds: Vec<String> = page["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["kind"].as_str().unwrap().to_owned())
            .collect();
        kinds.sort();
        if kinds.len() >= 2 || Instant::now() > deadline {
            break kinds;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(kinds, ["order_confirmed", "welcome"]);

    // `nats micro ls`: every service answers $SRV.INFO, each reply valid.
    let mut infos = users.raw.subscribe("_INBOX.micro-ls").await.unwrap();
    users
        .raw
        .publish_with_reply("$SRV.INFO", "_INBOX.micro-ls", Vec::new().into())
        .await
        .unwrap();
    let mut names = Vec::new();
    while let Ok(Some(reply)) =
        tokio::time::timeout(Duration::from_secs(1), futures::StreamExt::next(&mut infos)).await
    {
        let info: Value = serde_json::from_slice(&reply.payload).unwrap();
        courier_testkit::micro_schema::assert_valid(
            courier_testkit::micro_schema::Kind::Info,
            &info,
        );
        names.push(info["name"].as_str().unwrap().to_owned());
    }
    names.sort();
    assert_eq!(
        names,
        ["notifications", "orders", "payments", "products", "users"]
    );
    drop((gateway, notifications, orders, payments, products, users));
}
