//! A real nats-server, a real Consul agent, a small service that declares routes (served by
//! the runtime as every service is: registered in Consul, `$SRV`), and the gateway in front.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use courier_actors::{Call, Endpoint, Request, Route, Service, ServiceError};
use courier_config::{NatsSettings, Secret, ServiceSettings};
use courier_gateway::config::{AuthSettings, GatewaySettings};
use courier_gateway::Settings;
use courier_testkit::{ServiceThread, TestConsul, TestNats};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The HS256 secret of the test gateways.
pub const SECRET: &str = "a-test-secret-of-at-least-32-bytes!";

/// Echoes its payload and the caller it was given.
#[derive(Debug, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Echo(pub Map<String, Value>);
impl Call for Echo {
    type Reply = Value;
    type Error = ServiceError;
}

/// Fails with the code in its path.
#[derive(Debug, Deserialize, Serialize)]
pub struct Fail {
    pub code: String,
}
impl Call for Fail {
    type Reply = Value;
    type Error = ServiceError;
}

/// Answers after `ms` milliseconds.
#[derive(Debug, Deserialize, Serialize)]
pub struct Slow {
    pub ms: String,
}
impl Call for Slow {
    type Reply = Value;
    type Error = ServiceError;
}

/// `password == "right"` logs in user `u1` with the roles asked for.
#[derive(Debug, Deserialize, Serialize)]
pub struct Login {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub roles: Vec<String>,
}
impl Call for Login {
    type Reply = Value;
    type Error = ServiceError;
}

pub struct Toy;
impl Actor for Toy {
    type Context = Context<Self>;
}

impl Handler<Request<Echo>> for Toy {
    type Result = Result<Value, ServiceError>;
    fn handle(&mut self, req: Request<Echo>, _: &mut Context<Self>) -> Self::Result {
        let caller = req
            .meta
            .caller
            .clone()
            .map(|c| json!({"subject": c.subject, "roles": c.roles}));
        Ok(json!({
            "got": req.body.0,
            "caller": caller,
            "request_id": req.meta.request_id,
            "trace_id": req.meta.trace.trace_id_hex(),
            "remaining_ms": req.meta.remaining().map(|d| d.as_millis() as u64),
        }))
    }
}
impl Handler<Request<Fail>> for Toy {
    type Result = Result<Value, ServiceError>;
    fn handle(&mut self, req: Request<Fail>, _: &mut Context<Self>) -> Self::Result {
        let code = req.body.code.parse().unwrap_or(500);
        Err(
            ServiceError::new(code, format!("failed with {code} at secret/internal.rs:42"))
                .with_details(json!({"asked": code})),
        )
    }
}
impl Handler<Request<Slow>> for Toy {
    type Result = ResponseFuture<Result<Value, ServiceError>>;
    fn handle(&mut self, req: Request<Slow>, _: &mut Context<Self>) -> Self::Result {
        req.serve(|body, _| async move {
            let ms = body.ms.parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!({ "slept_ms": ms }))
        })
    }
}
impl Handler<Request<Login>> for Toy {
    type Result = Result<Value, ServiceError>;
    fn handle(&mut self, req: Request<Login>, _: &mut Context<Self>) -> Self::Result {
        if req.body.password != "right" {
            return Err(ServiceError::new(401, "invalid email or password"));
        }
        Ok(json!({"id": "u1", "email": req.body.email, "roles": req.body.roles}))
    }
}

/// The toy service `name`: its routes live under `/<name>/...`.
pub fn toy_service(name: &str) -> Service {
    let toy = Toy.start();
    let at = |path: &str| format!("/{name}{path}");
    Service::builder(name, "1.0.0")
        .endpoint(
            Endpoint::new::<Echo>("echo", format!("{name}.echo"), toy.clone()).route(
                Route::post(at("/echo"))
                    .status(201)
                    .request_schema(echo_request_schema()),
            ),
        )
        .endpoint(
            Endpoint::new::<Echo>("get", format!("{name}.get"), toy.clone()).route(
                Route::get(at("/items/{id}"))
                    .request_schema(item_request_schema())
                    .reply_schema(item_reply_schema()),
            ),
        )
        .endpoint(
            Endpoint::new::<Echo>("whoami", format!("{name}.whoami"), toy.clone())
                .route(Route::get(at("/whoami")).bearer()),
        )
        .endpoint(
            Endpoint::new::<Echo>("admin", format!("{name}.admin"), toy.clone())
                .route(Route::get(at("/admin")).role("admin")),
        )
        .endpoint(
            Endpoint::new::<Echo>("remove", format!("{name}.remove"), toy.clone())
                .route(Route::delete(at("/items/{id}")).status(204)),
        )
        .endpoint(
            Endpoint::new::<Fail>("fail", format!("{name}.fail"), toy.clone())
                .route(Route::get(at("/fail/{code}"))),
        )
        .endpoint(
            Endpoint::new::<Slow>("slow", format!("{name}.slow"), toy.clone())
                .route(Route::get(at("/slow/{ms}"))),
        )
        .endpoint(
            Endpoint::new::<Login>("login", format!("{name}.login"), toy)
                .route(Route::post(at("/login")).login()),
        )
        .build()
        .expect("the toy service is well defined")
}

/// What `POST /<name>/echo` declares it takes: a `note`, defined in `$defs`.
pub fn echo_request_schema() -> Value {
    json!({
        "type": "object",
        "required": ["note"],
        "properties": { "note": { "$ref": "#/$defs/Note" } },
        "$defs": { "Note": { "type": "string", "maxLength": 100 } },
    })
}

/// What `GET /<name>/items/{id}` declares it takes: the path's `id`, and `verbose`.
pub fn item_request_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id"],
        "properties": { "id": { "type": "string" }, "verbose": { "type": "boolean" } },
    })
}

/// What `GET /<name>/items/{id}` declares it answers: an `Item`, defined in draft-07
/// `definitions`.
pub fn item_reply_schema() -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Got",
        "type": "object",
        "properties": { "got": { "$ref": "#/definitions/Item" } },
        "definitions": {
            "Item": { "type": "object", "properties": { "id": { "type": "string" } } },
        },
    })
}

/// NATS and Consul for one test.
pub struct World {
    pub nats: TestNats,
    pub consul: TestConsul,
    /// Whether NATS runs the shipped users and permissions (`ops/nats/`).
    secured: bool,
}

impl World {
    pub fn start() -> Self {
        Self {
            nats: TestNats::start(),
            consul: TestConsul::start(),
            secured: false,
        }
    }

    /// NATS with the shipped configuration: services connect as `service`, the gateway as
    /// `gateway` (which may read replies only in its own inbox).
    pub fn start_secured() -> Self {
        let store = std::env::temp_dir().join(format!("courier-gw-nats-{}", nuid::next()));
        Self {
            nats: TestNats::start_with_ops_config(&store),
            consul: TestConsul::start(),
            secured: true,
        }
    }

    /// The NATS URL for `user`, with its password when NATS is secured.
    fn url_for(&self, user: &str) -> String {
        match self.secured {
            true => self.nats.url().replacen(
                "nats://",
                &format!("nats://{user}:{}@", courier_testkit::ops_password(user)),
                1,
            ),
            false => self.nats.url(),
        }
    }

    /// Runs the toy service `name` in-process, registered in Consul, until the handle drops.
    pub async fn toy(&self, name: &str) -> ServiceThread<()> {
        let settings = NatsSettings {
            url: self.url_for("service"),
            ..NatsSettings::default()
        };
        let consul = courier_discovery::testing::settings(&self.consul, "");
        let name = name.to_owned();
        let (_, thread) =
            ServiceThread::start(Duration::from_secs(20), move |started, stop| async move {
                let registry = prometheus::Registry::new();
                let nats = courier_runtime::nats::connect(&settings, "toy", &registry)
                    .await
                    .expect("connect");
                let admin = courier_config::AdminSettings::default();
                let service = ServiceSettings::default();
                let runtime = courier_runtime::RuntimeSettings {
                    service: &service,
                    admin: &admin,
                    consul: &consul,
                };
                courier_runtime::serve(
                    toy_service(&name),
                    nats,
                    runtime,
                    &registry,
                    None,
                    |_| started.send(()),
                    stop,
                )
                .await
                .expect("the toy service runs");
            })
            .await;
        thread
    }

    /// Gateway settings for this world, HS256 with [`SECRET`].
    pub fn gateway_settings(&self) -> Settings {
        Settings {
            nats: NatsSettings {
                url: self.url_for("gateway"),
                ..Settings::default().nats
            },
            consul: courier_discovery::testing::settings(&self.consul, ""),
            gateway: GatewaySettings {
                bind: "127.0.0.1:0".into(),
                workers: 2,
                timeout: Duration::from_secs(5),
                ..GatewaySettings::default()
            },
            auth: AuthSettings {
                jwt_secret: Secret::new(SECRET),
                ..AuthSettings::default()
            },
            ..Settings::default()
        }
    }
}

/// A gateway run in-process until dropped, and an HTTP client of it.
pub struct Gateway {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    _thread: ServiceThread<()>,
}

impl Gateway {
    pub async fn start(settings: Settings) -> Self {
        let (addr, thread) =
            ServiceThread::start(Duration::from_secs(20), move |started, stop| async move {
                courier_gateway::run(settings, |addr| started.send(addr), stop)
                    .await
                    .expect("the gateway runs");
            })
            .await;
        Self {
            addr,
            http: reqwest::Client::new(),
            _thread: thread,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("the gateway answers")
    }

    /// Waits until `path` answers something other than 404 (its route is learned).
    pub async fn until_routed(&self, path: &str) {
        courier_testkit::eventually(
            Duration::from_secs(20),
            &format!("a route for {path}"),
            || async { (self.get(path).await.status() != 404).then_some(()) },
        )
        .await;
    }

    /// A token signed with [`SECRET`].
    pub async fn login(&self, service: &str, roles: &[&str]) -> String {
        let body = json!({"email": "a@b.test", "password": "right", "roles": roles});
        let response = self
            .http
            .post(self.url(&format!("/{service}/login")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let token: Value = response.json().await.unwrap();
        token["access_token"].as_str().unwrap().to_owned()
    }
}
