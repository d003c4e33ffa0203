//! Routes learned live from a real service through a real Consul, requests forwarded over a
//! real nats-server: payload merging, ids, errors, live additions, OpenAPI, `/services`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn a_route_declared_by_a_service_is_served_with_path_query_and_body_merged() {
    let world = World::start();
    let _toy = world.toy("toy").await;
    let gateway = Gateway::start(world.gateway_settings()).await;
    gateway.until_routed("/toy/items/1").await;

    let reply = gateway.get("/toy/items/a%20b?limit=5&id=ignored").await;
    assert_eq!(reply.status(), 200);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["got"], json!({"id": "a b", "limit": "5"}));
    assert_eq!(body["caller"], Value::Null);

    let reply = gateway
        .http
        .post(gateway.url("/toy/echo"))
        .header("X-Request-Id", "req-123")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("X-Request-Timeout", "1500")
        .header("Courier-Auth-Subject", "forged")
        .json(&json!({"name": "Ann", "n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201, "the route's declared status");
    assert_eq!(reply.headers()["x-request-id"], "req-123");
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["got"], json!({"name": "Ann", "n": 1}));
    assert_eq!(body["request_id"], "req-123");
    assert_eq!(body["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        body["caller"],
        Value::Null,
        "an HTTP client cannot set the caller"
    );
    let left = body["remaining_ms"].as_u64().unwrap();
    assert!(
        left <= 1500 && left > 1000,
        "the client's deadline travels: {left}"
    );

    let reply = gateway
        .http
        .delete(gateway.url("/toy/items/9"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 204);
    assert_eq!(reply.text().await.unwrap(), "");
    let reply = gateway
        .http
        .head(gateway.url("/toy/items/9"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
}

#[tokio::test]
async fn bad_requests_get_the_documented_statuses_and_error_shape() {
    let world = World::start();
    let _toy = world.toy("toy").await;
    let mut settings = world.gateway_settings();
    settings.gateway.max_body = 1024;
    let gateway = Gateway::start(settings).await;
    gateway.until_routed("/toy/items/1").await;

    let reply = gateway.get("/nothing/here").await;
    assert_eq!(reply.status(), 404);
    assert!(reply.headers().contains_key("x-request-id"));
    let body: Value = reply.json().await.unwrap();
    for key in [
        "statusCode",
        "message",
        "error",
        "timestamp",
        "path",
        "requestId",
    ] {
        assert!(body.get(key).is_some(), "{key} in {body}");
    }
    assert_eq!(body["path"], "/nothing/here");

    let reply = gateway
        .http
        .put(gateway.url("/toy/items/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 405);
    assert_eq!(reply.headers()["allow"], "GET, DELETE");

    let post = |body: &'static str, content_type: &'static str| {
        gateway
            .http
            .post(gateway.url("/toy/echo"))
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    assert_eq!(post("{\"a\":1}", "text/plain").await.unwrap().status(), 415);
    assert_eq!(
        post("[1,2]", "application/json").await.unwrap().status(),
        400
    );
    assert_eq!(
        post("{\"a\":", "application/json").await.unwrap().status(),
        400
    );
    let big: &'static str =
        Box::leak(format!("{{\"a\":\"{}\"}}", "x".repeat(2000)).into_boxed_str());
    assert_eq!(post(big, "application/json").await.unwrap().status(), 413);

    let reply = gateway.get("/toy/fail/409").await;
    assert_eq!(reply.status(), 409);
    let body: Value = reply.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("failed with 409"),
        "{body}"
    );
    assert_eq!(body["details"], json!({"asked": 409}));

    let reply = gateway.get("/toy/fail/500").await;
    assert_eq!(reply.status(), 500);
    let text = reply.text().await.unwrap();
    assert!(
        !text.contains("internal.rs") && !text.contains("asked"),
        "a 5xx leaks: {text}"
    );

    let reply = gateway
        .http
        .get(gateway.url("/toy/items/1"))
        .header("X-Request-Timeout", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
}

#[tokio::test]
async fn a_slow_service_is_a_504_at_the_clients_deadline() {
    let world = World::start();
    let _toy = world.toy("toy").await;
    let gateway = Gateway::start(world.gateway_settings()).await;
    gateway.until_routed("/toy/items/1").await;
    let started = Instant::now();
    let reply = gateway
        .http
        .get(gateway.url("/toy/slow/5000"))
        .header("X-Request-Timeout", "300ms")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 504);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn a_service_started_later_is_served_and_documented_without_a_restart() {
    let world = World::start();
    let _toy = world.toy("toy").await;
    let gateway = Gateway::start(world.gateway_settings()).await;
    gateway.until_routed("/toy/items/1").await;
    assert_eq!(gateway.get("/extra/items/1").await.status(), 404);

    let _extra = world.toy("extra").await;
    gateway.until_routed("/extra/items/1").await;
    assert_eq!(gateway.get("/extra/items/1").await.status(), 200);

    let doc: Value = gateway
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(
        doc["paths"]["/extra/items/{id}"]["get"].is_object(),
        "{doc}"
    );
    assert_eq!(
        doc["paths"]["/toy/whoami"]["get"]["security"],
        json!([{"bearer": []}])
    );

    let services: Value = gateway.get("/services").await.json().await.unwrap();
    let names: Vec<&str> = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["extra", "toy"]);
    assert_eq!(services["services"][1]["version"], "1.0.0");
    assert_eq!(
        services["services"][1]["instances"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn with_every_instance_gone_the_route_stays_and_answers_503_at_once() {
    let world = World::start();
    let toy = world.toy("toy").await;
    let gateway = Gateway::start(world.gateway_settings()).await;
    gateway.until_routed("/toy/items/1").await;
    toy.stop().await;
    courier_testkit::eventually(Duration::from_secs(20), "the instance to leave", || async {
        (gateway.get("/toy/items/1").await.status() == 503).then_some(())
    })
    .await;
    let started = Instant::now();
    let reply = gateway.get("/toy/items/1").await;
    assert_eq!(reply.status(), 503);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let body: Value = reply.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("toy"), "{body}");
}

#[tokio::test]
async fn with_consul_stopped_the_gateway_keeps_routing_from_what_it_knows() {
    let mut world = World::start();
    let _toy = world.toy("toy").await;
    let gateway = Gateway::start(world.gateway_settings()).await;
    gateway.until_routed("/toy/items/1").await;
    world.consul.stop();
    for _ in 0..20 {
        assert_eq!(gateway.get("/toy/items/1").await.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn health_readiness_metrics_and_cors() {
    let world = World::start();
    let _toy = world.toy("toy").await;
    let mut settings = world.gateway_settings();
    settings.gateway.cors_origins = vec!["http://app.test".into()];
    let gateway = Gateway::start(settings).await;
    gateway.until_routed("/toy/items/1").await;
    assert_eq!(gateway.get("/health").await.status(), 200);
    assert_eq!(gateway.get("/health/ready").await.status(), 200);

    let metrics = gateway.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"courier_gateway_requests_total{method="GET",route="GET /toy/items/{id}",status="200"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("courier_gateway_upstream_duration_seconds_bucket{service=\"toy\""),
        "{metrics}"
    );
    // A known service's breaker and retries have series before any retry or breaker change,
    // and the process says what it is and that it is connected.
    for line in [
        r#"courier_gateway_breaker_state{service="toy"} 0"#,
        r#"courier_gateway_retries_total{outcome="sent",service="toy"} 0"#,
        r#"courier_gateway_retries_total{outcome="refused_by_budget",service="toy"} 0"#,
        r#"courier_nats_connected{connection="main"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    assert!(
        metrics.contains(r#"courier_build_info{service="gateway",version=""#),
        "{metrics}"
    );

    let preflight = gateway
        .http
        .request(reqwest::Method::OPTIONS, gateway.url("/toy/echo"))
        .header("Origin", "http://app.test")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://app.test"
    );
    let reply = gateway
        .http
        .get(gateway.url("/toy/items/1"))
        .header("Origin", "http://app.test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.headers()["access-control-allow-origin"],
        "http://app.test"
    );
    let foreign = gateway
        .http
        .get(gateway.url("/toy/items/1"))
        .header("Origin", "http://evil.test")
        .send()
        .await
        .unwrap();
    assert!(!foreign
        .headers()
        .contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn the_openapi_document_validates_and_swagger_ui_is_served_offline() {
    let world = World::start();
    let _toy = world.toy("toy").await;
    let gateway = Gateway::start(world.gateway_settings()).await;
    gateway.until_routed("/toy/items/1").await;

    let doc = gateway
        .get("/api-docs/openapi.json")
        .await
        .text()
        .await
        .unwrap();
    let file = std::env::temp_dir().join(format!("courier-openapi-{}.json", std::process::id()));
    std::fs::write(&file, &doc).unwrap();
    let out = std::process::Command::new(courier_testkit::tool("openapi-spec-validator"))
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    let _ = std::fs::remove_file(&file);
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the document does not validate: {said}\n{doc}"
    );
    assert!(said.contains("OK"), "{said}");
    assert_declared_schemas_are_documented(&serde_json::from_str(&doc).unwrap());

    let page = gateway.get("/api").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/api-docs/openapi.json") && html.contains("swagger-ui-bundle.js"),
        "{html}"
    );
    let bundle = gateway.get("/api/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status(), 200);
    assert!(
        bundle.text().await.unwrap().len() > 100_000,
        "the bundle is served by the gateway"
    );
}

/// The toy's schemas (`common::toy_service`): components, `$ref`s to them, no path parameter in
/// a body, the rest of a `GET`'s request as query parameters.
fn assert_declared_schemas_are_documented(doc: &Value) {
    let schema = |op: &Value, status: &str| {
        op["responses"][status]["content"]["application/json"]["schema"].clone()
    };
    let components = &doc["components"]["schemas"];
    let echo = &doc["paths"]["/toy/echo"]["post"];
    let body = &echo["requestBody"];
    assert_eq!(body["required"], true, "{doc}");
    let body = &body["content"]["application/json"]["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/toy_echo_request");
    let note = json!({ "$ref": "#/components/schemas/toy_Note" });
    assert_eq!(components["toy_echo_request"]["properties"]["note"], note);
    assert_eq!(components["toy_Note"]["maxLength"], 100);
    assert_eq!(schema(echo, "201"), json!({ "type": "object" }));

    let get = &doc["paths"]["/toy/items/{id}"]["get"];
    assert_eq!(get.get("requestBody"), None);
    let verbose = json!({ "name": "verbose", "in": "query", "required": false,
        "schema": { "type": "boolean" } });
    assert_eq!(get["parameters"][1], verbose, "{doc}");
    assert_eq!(
        schema(get, "200"),
        json!({ "$ref": "#/components/schemas/toy_get_reply" })
    );
    let reply = &components["toy_get_reply"];
    assert_eq!(reply["title"], "Got");
    assert_eq!(reply.get("$schema"), None);
    let item = json!({ "$ref": "#/components/schemas/toy_Item" });
    assert_eq!(reply["properties"]["got"], item);
    assert_eq!(components["toy_Item"]["properties"]["id"]["type"], "string");
}

#[tokio::test]
async fn on_the_shipped_nats_permissions_the_gateway_routes_through_its_own_inbox() {
    let world = World::start_secured();
    let _toy = world.toy("toy").await;
    let gateway = Gateway::start(world.gateway_settings()).await;
    gateway.until_routed("/toy/items/1").await;
    let reply = gateway.get("/toy/items/7").await;
    assert_eq!(reply.status(), 200);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["got"]["id"], "7");
    assert!(
        !world.nats.log().contains("Permissions Violation"),
        "{}",
        world.nats.log()
    );
}

/// An instance Consul lists as healthy whose endpoint takes requests and never answers (a
/// process wedged, or a request lost with a NATS server): it holds `toy.get` on its own
/// subject until dropped.
async fn black_hole(world: &World) -> async_nats::Subscriber {
    use courier_discovery::{Consul, Registration};
    let id = "blackhole1";
    let consul = Consul::new(&courier_discovery::testing::settings(&world.consul, "")).unwrap();
    let subjects = "toy.echo,toy.get,toy.whoami,toy.admin,toy.remove,toy.fail,toy.slow,toy.login";
    consul
        .register(&Registration {
            id: id.into(),
            name: "toy".into(),
            address: "127.0.0.1".into(),
            port: 9,
            tags: vec!["courier".into(), "v1.0.0".into()],
            meta: [
                ("version".to_owned(), "1.0.0".to_owned()),
                ("srv_id".to_owned(), id.to_owned()),
                ("subjects".to_owned(), subjects.to_owned()),
                (
                    "instance_prefix".to_owned(),
                    courier_actors::instance_subject(id, ""),
                ),
            ]
            .into(),
            checks: Vec::new(),
        })
        .await
        .unwrap();
    let nats = async_nats::connect(world.nats.url()).await.unwrap();
    let held = nats
        .subscribe(courier_actors::instance_subject(id, "toy.get"))
        .await
        .unwrap();
    nats.flush().await.unwrap();
    held
}

#[tokio::test]
async fn with_an_attempt_timeout_a_get_sent_to_a_silent_instance_is_answered_by_another() {
    let world = World::start();
    let _toy = world.toy("toy").await;
    let mut settings = world.gateway_settings();
    settings.gateway.strategy = courier_gateway::config::StrategySetting::RoundRobin;
    settings.gateway.attempt_timeout = Duration::from_millis(200);
    // Retries are not what the budget is tested for here.
    settings.gateway.retry_budget = 1.0;
    let gateway = Gateway::start(settings).await;
    gateway.until_routed("/toy/items/1").await;
    // Added once the routes are learned (it answers no `$SRV.INFO` either), then waited for
    // among the gateway's instances.
    let mut held = black_hole(&world).await;
    courier_testkit::eventually(
        Duration::from_secs(20),
        "the gateway's second toy",
        || async {
            let services: Value = gateway.get("/services").await.json().await.ok()?;
            let toy = services["services"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == "toy")?
                .clone();
            (toy["instances"].as_array()?.len() == 2).then_some(())
        },
    )
    .await;
    let started = Instant::now();
    for i in 0..6 {
        let reply = gateway
            .http
            .get(gateway.url(&format!("/toy/items/{i}")))
            .header("X-Request-Timeout", "3s")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "request {i}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Round robin sent some to the silent instance: they were held there, then answered by
    // the other.
    use futures::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(1), held.next()).await;
    assert!(first.is_ok(), "the silent instance got requests");
    let metrics = gateway.get("/metrics").await.text().await.unwrap();
    assert!(
        !metrics.contains(r#"courier_gateway_retries_total{outcome="sent",service="toy"} 0"#),
        "{metrics}"
    );
}
