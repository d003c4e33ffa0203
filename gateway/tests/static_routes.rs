//! Routes from the gateway's own settings, for subjects whose responders are not in Consul:
//! served through the subject's queue group, and winning a conflict with a learned route.

mod common;

use common::*;
use courier_gateway::config::StaticRoute;
use serde_json::Value;

fn route(route: &str, subject: &str, auth: &str) -> StaticRoute {
    StaticRoute {
        route: route.into(),
        subject: subject.into(),
        auth: auth.into(),
        status: 200,
    }
}

#[tokio::test]
async fn a_static_route_is_served_by_its_subject_and_wins_over_a_learned_one() {
    let world = World::start();
    let _toy = world.toy("toy").await;
    let mut settings = world.gateway_settings();
    settings.gateway.routes = vec![
        route("GET /legacy/{id}", "toy.get", "public"),
        route("GET /legacy-secure", "toy.whoami", "bearer"),
        route("GET /nobody", "nobody.home", "public"),
        // The toy service declares GET /toy/items/{id} -> toy.get; the setting wins.
        route("GET /toy/items/{ms}", "toy.slow", "public"),
    ];
    let gateway = Gateway::start(settings).await;

    let reply = gateway.get("/legacy/42").await;
    assert_eq!(reply.status(), 200);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["got"]["id"], "42");
    assert_eq!(gateway.get("/legacy-secure").await.status(), 401);
    assert_eq!(gateway.get("/nobody").await.status(), 503);

    gateway.until_routed("/toy/whoami").await;
    let body: Value = gateway.get("/toy/items/7").await.json().await.unwrap();
    assert_eq!(body["slept_ms"], 7, "{body}");
    let doc: Value = gateway
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/legacy/{id}"]["get"].is_object(), "{doc}");
}

#[test]
fn a_static_route_that_is_not_a_route_is_a_config_error() {
    let vars = [(
        "COURIER_CONFIG_DIR".to_owned(),
        std::env::temp_dir()
            .join(format!("courier-static-{}", std::process::id()))
            .display()
            .to_string(),
    )];
    let dir = std::path::PathBuf::from(&vars[0].1);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("base.toml"),
        "[[gateway.routes]]\nroute = \"FETCH /x\"\nsubject = \"x.get\"\n",
    )
    .unwrap();
    let err = courier_config::Loader::from_env(vars)
        .load::<courier_gateway::Settings>()
        .unwrap_err()
        .to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        err.contains("gateway.routes") && err.contains("FETCH /x"),
        "{err}"
    );
}
