//! One trace across the system, as an OTLP collector receives it: the real binaries of the
//! gateway, users, products, payments and orders, exporting spans over OTLP/HTTP (JSON) to a
//! receiver of the test's own, with a real nats-server and Consul. An order taken through the
//! gateway is one trace id in the gateway's request span, the orders service's handling and
//! its database calls, its events' publish, its saga's steps and calls, and the products and
//! payments services' handling of those.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_testkit::{eventually, free_port, workspace_binary, Process, TestConsul, TestNats};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The bodies of every `POST /v1/traces` received, as JSON.
type Received = Arc<Mutex<Vec<Value>>>;

/// A minimal OTLP/HTTP receiver: answers every POST with `200 {}` on keep-alive connections
/// and keeps the JSON bodies.
async fn receiver() -> (u16, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Received::default();
    let kept = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if read.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if let Ok(json) = serde_json::from_slice(&body) {
                        kept.lock().unwrap().push(json);
                    }
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                 content-length: 2\r\n\r\n{}";
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, received)
}

/// One received span: the service that sent it, its name, trace, id and parent.
#[derive(Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
}

impl std::fmt::Debug for ReceivedSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (trace, span, parent) = (&self.trace_id, &self.span_id, &self.parent);
        write!(
            f,
            "{} {:?} trace {trace} span {span} parent {parent:?}",
            self.service, self.name
        )
    }
}

fn spans(received: &Received) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for body in received.lock().unwrap().iter() {
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_owned();
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let text = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
                    out.push(ReceivedSpan {
                        service: service.clone(),
                        name: text("name"),
                        trace_id: text("traceId"),
                        span_id: text("spanId"),
                        parent: text("parentSpanId"),
                    });
                }
            }
        }
    }
    out
}

/// The five binaries, exporting to `otlp`, registered in `consul`.
struct System {
    gateway: String,
    /// The services' processes, by name (the gateway's under `gateway`).
    processes: Vec<(&'static str, Process)>,
    _data: tempdir::Dir,
}

mod tempdir {
    /// A folder removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl System {
    /// What `service` has logged so far.
    fn log(&self, service: &str) -> String {
        let (_, process) = self
            .processes
            .iter()
            .find(|(name, _)| *name == service)
            .unwrap();
        process.log()
    }

    fn start(nats: &TestNats, consul: &TestConsul, otlp: u16) -> Self {
        let data = tempdir::Dir(
            std::env::temp_dir().join(format!("courier-traces-{}", std::process::id())),
        );
        std::fs::create_dir_all(&data.0).unwrap();
        let common = |extra: &[(&'static str, String)]| {
            let mut env = vec![
                ("NATS_URL", nats.url()),
                ("COURIER_CONSUL__ADDR", consul.url()),
                ("COURIER_CONSUL__REGISTER", "true".into()),
                ("COURIER_CONSUL__CHECK_INTERVAL", "1s".into()),
                ("COURIER_ADMIN__BIND", "127.0.0.1:0".into()),
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("http://127.0.0.1:{otlp}"),
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
                // Batches leave every 100 ms, not every 5 s.
                ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ];
            env.extend_from_slice(extra);
            env
        };
        let mut processes = Vec::new();
        for service in ["users", "products", "payments", "orders"] {
            let db = format!("sqlite://{}/{service}.db", data.0.display());
            // JSON logs, whose lines carry the request and trace ids.
            let mut env = common(&[
                ("COURIER_DATABASE__URL", db),
                ("COURIER_LOG__FORMAT", "json".into()),
            ]);
            if service == "users" {
                env.push(("COURIER_USERS__ADMIN_EMAILS", "root@example.com".into()));
            }
            let mut process =
                Process::spawn(&workspace_binary(&format!("courier-{service}")), &env);
            process.wait_for_log("Service started", Duration::from_secs(30));
            processes.push((service, process));
        }
        let bind = format!("127.0.0.1:{}", free_port());
        let env = common(&[
            ("COURIER_GATEWAY__BIND", bind.clone()),
            ("COURIER_GATEWAY__WORKERS", "1".into()),
            (
                "COURIER_AUTH__JWT_SECRET",
                "a-test-secret-of-at-least-32-bytes!".into(),
            ),
        ]);
        let mut gateway = Process::spawn(&workspace_binary("courier-gateway"), &env);
        gateway.wait_for_log("Gateway listening", Duration::from_secs(30));
        processes.push(("gateway", gateway));
        Self {
            gateway: format!("http://{bind}"),
            processes,
            _data: data,
        }
    }
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let reply = request.send().await.expect("the gateway answers");
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_one_trace_across_the_gateway_orders_and_payments() {
    let (nats, consul) = (TestNats::start(), TestConsul::start());
    let (otlp, received) = receiver().await;
    let system = System::start(&nats, &consul, otlp);
    let http = reqwest::Client::new();
    let at = |path: &str| format!("{}{path}", system.gateway);
    use reqwest::Method;

    // The gateway learns each service's routes in its own time.
    eventually(Duration::from_secs(30), "the gateway's routes", || async {
        let (_, known) = send(&http, Method::GET, at("/services"), None, None).await;
        let known = known.to_string();
        ["users.create", "products.create", "orders.create"]
            .iter()
            .all(|subject| known.contains(subject))
            .then_some(())
    })
    .await;
    let password = "correct horse battery";
    let (status, _) = send(
        &http,
        Method::POST,
        at("/users"),
        None,
        Some(json!({"name": "Root", "email": "root@example.com", "password": password})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, login) = send(
        &http,
        Method::POST,
        at("/auth/login"),
        None,
        Some(json!({"email": "root@example.com", "password": password})),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let token = login["access_token"].as_str().unwrap().to_owned();
    let (status, tea) = send(
        &http,
        Method::POST,
        at("/products"),
        Some(&token),
        Some(json!({"name": "Tea", "price": 450, "currency": "EUR", "stock": 5})),
    )
    .await;
    assert_eq!(status, 201, "{tea}");
    let (status, order) = send(
        &http,
        Method::POST,
        at("/orders"),
        Some(&token),
        Some(json!({"items": [{"product_id": tea["id"], "quantity": 2}]})),
    )
    .await;
    assert_eq!(status, 202, "{order}");
    let path = format!("/orders/{}", order["id"].as_str().unwrap());
    eventually(Duration::from_secs(20), "the order confirmed", || async {
        let (_, now) = send(&http, Method::GET, at(&path), Some(&token), None).await;
        (now["state"] == "confirmed").then_some(())
    })
    .await;

    // The trace of `POST /orders`, as the gateway exported it, holds the orders service's
    // handling, its saga's calls, and their handling by products and payments. Each process
    // sends its spans in batches of its own: wait until all are in.
    let expected = [
        ("gateway", "POST /orders"),
        ("gateway", "orders.create"),
        ("orders", "orders.create"),
        // Its database calls: the order's row, and the commit.
        ("orders", "INSERT"),
        ("orders", "COMMIT"),
        ("orders", "events.orders.created"),
        ("orders", "saga order reserve"),
        ("orders", "inventory.reserve"),
        ("orders", "saga order charge"),
        ("orders", "payments.charge"),
        ("orders", "events.orders.confirmed"),
        ("products", "inventory.reserve"),
        ("payments", "payments.charge"),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let trace = loop {
        let all = spans(&received);
        let root = all
            .iter()
            .find(|s| s.service == "gateway" && s.name == "POST /orders");
        let in_trace: Vec<ReceivedSpan> = root.map_or_else(Vec::new, |root| {
            all.iter()
                .filter(|s| s.trace_id == root.trace_id)
                .cloned()
                .collect()
        });
        let missing: Vec<_> = expected
            .iter()
            .filter(|(service, name)| {
                !in_trace
                    .iter()
                    .any(|s| s.service == *service && s.name == *name)
            })
            .collect();
        if missing.is_empty() {
            break in_trace;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "within 20 s, the trace of the gateway's POST /orders lacks {missing:?}; \
             received: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // One tree: every span but the gateway's request has its parent in the trace.
    let ids: BTreeSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    for span in &trace {
        if span.name != "POST /orders" {
            assert!(
                ids.contains(span.parent.as_str()),
                "{span:?}'s parent is in the trace: {trace:#?}"
            );
        }
    }

    // The saga's log line, in JSON, carries the order's request id and the trace id.
    let root = trace.iter().find(|s| s.name == "POST /orders").unwrap();
    let order_id = order["id"].as_str().unwrap();
    let log = system.log("orders");
    let finished = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "Order finished.")
        .unwrap_or_else(|| panic!("an \"Order finished.\" JSON line in the orders log:\n{log}"));
    assert_eq!(
        finished["span"]["trace_id"],
        root.trace_id.as_str(),
        "{finished}"
    );
    assert_eq!(
        finished["span"]["request_id"],
        format!("{order_id}:charge"),
        "{finished}"
    );
}
