//! A small service for the bridge tests: arithmetic, chosen failures, panics, slow work and
//! events, served by real actors over a real `nats-server`.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use courier_actors::{
    Call, Client, Endpoint, Event, Request, Running, Service, ServiceError, Subscription,
    Supervised,
};
use courier_config::ServiceSettings;
use courier_testkit::TestNats;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Serialize)]
pub struct Add {
    pub a: i64,
    pub b: i64,
}
#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct Sum {
    pub sum: i64,
}
impl Call for Add {
    type Reply = Sum;
    type Error = ServiceError;
}

/// Fails with the code asked for.
#[derive(Debug, Deserialize, Serialize)]
pub struct Fail {
    pub code: u16,
}
impl Call for Fail {
    type Reply = ();
    type Error = ServiceError;
}

#[derive(Debug, Deserialize, Serialize)]
pub struct Panic {}
impl Call for Panic {
    type Reply = ();
    type Error = ServiceError;
}

/// Messages handled since this actor started: 1 right after a restart.
#[derive(Debug, Deserialize, Serialize)]
pub struct Count {}
impl Call for Count {
    type Reply = u64;
    type Error = ServiceError;
}

#[derive(Debug, Deserialize, Serialize)]
pub struct Slow {
    pub ms: u64,
}
impl Call for Slow {
    type Reply = u64;
    type Error = ServiceError;
}

/// Answers with the trace id and request id it was given, and publishes an event.
#[derive(Debug, Deserialize, Serialize)]
pub struct Trace {}
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Traced {
    pub trace_id: String,
    pub request_id: String,
}
impl Call for Trace {
    type Reply = Traced;
    type Error = ServiceError;
}

pub struct Calc {
    handled: u64,
    client: Client,
}
impl Calc {
    pub fn new(client: Client) -> Self {
        Self { handled: 0, client }
    }
}

impl Actor for Calc {
    type Context = Context<Self>;
}

impl Handler<Request<Add>> for Calc {
    type Result = Result<Sum, ServiceError>;
    fn handle(&mut self, req: Request<Add>, _: &mut Context<Self>) -> Self::Result {
        self.handled += 1;
        let Add { a, b } = req.body;
        a.checked_add(b).map(|sum| Sum { sum }).ok_or_else(|| {
            ServiceError::unprocessable("overflow")
                .with_details(serde_json::json!({"a": a, "b": b}))
        })
    }
}
impl Handler<Request<Fail>> for Calc {
    type Result = Result<(), ServiceError>;
    fn handle(&mut self, req: Request<Fail>, _: &mut Context<Self>) -> Self::Result {
        self.handled += 1;
        Err(ServiceError::new(
            req.body.code,
            format!("failed with {} as asked", req.body.code),
        )
        .with_details(serde_json::json!({"asked": req.body.code})))
    }
}
impl Handler<Request<Panic>> for Calc {
    type Result = Result<(), ServiceError>;
    fn handle(&mut self, _: Request<Panic>, _: &mut Context<Self>) -> Self::Result {
        panic!("asked to panic");
    }
}
impl Handler<Request<Count>> for Calc {
    type Result = Result<u64, ServiceError>;
    fn handle(&mut self, _: Request<Count>, _: &mut Context<Self>) -> Self::Result {
        self.handled += 1;
        Ok(self.handled)
    }
}
impl Handler<Request<Slow>> for Calc {
    type Result = ResponseFuture<Result<u64, ServiceError>>;
    fn handle(&mut self, req: Request<Slow>, _: &mut Context<Self>) -> Self::Result {
        self.handled += 1;
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(req.body.ms)).await;
            Ok(req.body.ms)
        })
    }
}
impl Handler<Request<Trace>> for Calc {
    type Result = ResponseFuture<Result<Traced, ServiceError>>;
    fn handle(&mut self, req: Request<Trace>, _: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        Box::pin(async move {
            let traced = Traced {
                trace_id: req.meta.trace.trace_id_hex(),
                request_id: req.meta.request_id.clone(),
            };
            client
                .publish("events.calc.traced", &traced, &req.meta)
                .await
                .map_err(ServiceError::from)?;
            Ok(traced)
        })
    }
}

/// CPU-bound work on a sync actor; panics on zero.
#[derive(Debug, Deserialize, Serialize)]
pub struct Crunch {
    pub n: u64,
}
impl Call for Crunch {
    type Reply = u64;
    type Error = ServiceError;
}
pub struct Cruncher;
impl Actor for Cruncher {
    type Context = SyncContext<Self>;
}
impl Handler<Request<Crunch>> for Cruncher {
    type Result = Result<u64, ServiceError>;
    fn handle(&mut self, req: Request<Crunch>, _: &mut SyncContext<Self>) -> Self::Result {
        assert!(req.body.n != 0, "asked to crunch zero");
        Ok((1..=req.body.n).fold(0u64, |acc, i| acc.wrapping_add(i * i)))
    }
}

/// Records the events it receives.
#[derive(Default, Clone)]
pub struct Recorder(pub Arc<Mutex<Vec<(Traced, String)>>>);
impl Actor for Recorder {
    type Context = Context<Self>;
}
impl Handler<Event<Traced>> for Recorder {
    type Result = ();
    fn handle(&mut self, ev: Event<Traced>, _: &mut Context<Self>) {
        let trace = ev.meta.trace.trace_id_hex();
        self.0.lock().unwrap().push((ev.body, trace));
    }
}

pub struct TestService {
    pub nats: TestNats,
    pub client: async_nats::Client,
    pub running: Running,
    pub registry: prometheus::Registry,
    pub events: Recorder,
}

pub const SLOW_LIMIT: usize = 4;

pub async fn connect(nats: &TestNats) -> async_nats::Client {
    async_nats::connect(nats.url())
        .await
        .expect("connect to the test nats-server")
}

/// Starts the calc service on a fresh nats-server.
pub async fn start() -> TestService {
    let nats = TestNats::start();
    let client = connect(&nats).await;
    let courier = Client::new(client.clone(), Duration::from_secs(5));
    let calc = Supervised::local({
        let courier = courier.clone();
        move || Calc::new(courier.clone())
    });
    let crunch = Supervised::sync(2, || Cruncher);
    let events = Recorder::default();
    let recorder = events.clone().start();
    let service = Service::builder("calc", "1.2.3-rc.1")
        .description("Arithmetic for tests")
        .metadata("team", "core")
        .endpoint(
            Endpoint::new::<Add>("add", "calc.add", calc.clone()).metadata("idempotent", "true"),
        )
        .endpoint(Endpoint::new::<Fail>("fail", "calc.fail", calc.clone()))
        .endpoint(Endpoint::new::<Panic>("panic", "calc.panic", calc.clone()))
        .endpoint(Endpoint::new::<Count>("count", "calc.count", calc.clone()))
        .endpoint(
            Endpoint::new::<Slow>("slow", "calc.slow", calc.clone()).max_in_flight(SLOW_LIMIT),
        )
        .endpoint(Endpoint::new::<Trace>("trace", "calc.trace", calc.clone()).no_queue_group())
        .endpoint(Endpoint::new::<Crunch>("crunch", "calc.crunch", crunch).queue_group("cpu"))
        .subscription(Subscription::new::<Traced>(
            "events.calc.*",
            recorder.recipient(),
        ))
        .build()
        .expect("a valid definition");
    let registry = prometheus::Registry::new();
    let running = service
        .start(client.clone(), &ServiceSettings::default(), &registry)
        .await
        .expect("service starts");
    TestService {
        nats,
        client,
        running,
        registry,
        events,
    }
}
