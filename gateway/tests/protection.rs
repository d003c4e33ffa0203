//! Tokens, roles, rate limit and circuit breaker, through a real gateway in front of a real
//! service.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use courier_config::Secret;
use courier_gateway::config::AuthSettings;
use serde_json::{json, Value};

fn hs256(claims: &Value, secret: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn bearer_routes_check_tokens_and_roles_and_pass_the_caller_on() {
    let world = World::start();
    let _toy = world.toy("toy").await;
    let gateway = Gateway::start(world.gateway_settings()).await;
    gateway.until_routed("/toy/items/1").await;

    let reply = gateway.get("/toy/whoami").await;
    assert_eq!(reply.status(), 401);
    assert_eq!(reply.headers()["www-authenticate"], "Bearer");

    let bad_login = gateway
        .http
        .post(gateway.url("/toy/login"))
        .json(&json!({"email": "a@b.test", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_login.status(), 401);

    let user = gateway.login("toy", &[]).await;
    let admin = gateway.login("toy", &["admin"]).await;
    let with = |token: String, path: &'static str| {
        gateway
            .http
            .get(gateway.url(path))
            .bearer_auth(token)
            .send()
    };
    let reply = with(user.clone(), "/toy/whoami").await.unwrap();
    assert_eq!(reply.status(), 200);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["caller"], json!({"subject": "u1", "roles": []}));
    assert_eq!(
        with(user.clone(), "/toy/admin").await.unwrap().status(),
        403
    );
    let reply = with(admin.clone(), "/toy/admin").await.unwrap();
    assert_eq!(reply.status(), 200);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["caller"]["roles"], json!(["admin"]));

    let expired = hs256(
        &json!({"sub": "u1", "roles": ["admin"], "iat": now() - 600, "exp": now() - 60}),
        SECRET,
    );
    let foreign = hs256(
        &json!({"sub": "u1", "exp": now() + 600}),
        "another-secret-of-at-least-32-bytes",
    );
    let none = format!(
        "{}.{}.",
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
        user.split('.').nth(1).unwrap()
    );
    let mut tampered: Vec<String> = admin.split('.').map(str::to_owned).collect();
    tampered[1] = user.split('.').nth(1).unwrap().to_owned();
    for (what, token) in [
        ("expired", expired),
        ("foreign", foreign),
        ("alg none", none),
        ("tampered", tampered.join(".")),
        ("garbage", "garbage".to_owned()),
    ] {
        let reply = with(token, "/toy/whoami").await.unwrap();
        assert_eq!(reply.status(), 401, "{what}");
        let challenge = reply.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.contains("invalid_token"), "{what}: {challenge}");
    }
}

#[tokio::test]
async fn a_token_from_an_rs256_gateway_is_refused_by_confusion_and_a_gateway_without_keys_says_so()
{
    let world = World::start();
    let _toy = world.toy("toy").await;
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
    let mut settings = world.gateway_settings();
    settings.auth = AuthSettings {
        jwt_public_key: format!("{keys}/rsa-public.pem"),
        jwt_private_key: format!("{keys}/rsa-private.pem"),
        ..AuthSettings::default()
    };
    let gateway = Gateway::start(settings).await;
    gateway.until_routed("/toy/items/1").await;
    let token = gateway.login("toy", &[]).await;
    let whoami = |token: String| {
        gateway
            .http
            .get(gateway.url("/toy/whoami"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(whoami(token).await.unwrap().status(), 200);
    let public = std::fs::read_to_string(format!("{keys}/rsa-public.pem")).unwrap();
    let confused = hs256(&json!({"sub": "u1", "exp": now() + 600}), &public);
    assert_eq!(whoami(confused).await.unwrap().status(), 401);

    let mut bare = world.gateway_settings();
    bare.auth = AuthSettings {
        jwt_secret: Secret::default(),
        ..AuthSettings::default()
    };
    let bare = Gateway::start(bare).await;
    bare.until_routed("/toy/items/1").await;
    let reply = bare.get("/toy/whoami").await;
    assert_eq!(reply.status(), 503);
    let body: Value = reply.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("not configured"),
        "{body}"
    );
    assert_eq!(
        bare.get("/toy/items/1").await.status(),
        200,
        "public routes still work"
    );
    let login = bare
        .http
        .post(bare.url("/toy/login"))
        .json(&json!({"email": "a@b.test", "password": "right"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 503, "no token can be issued");
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let world = World::start();
    let _toy = world.toy("toy").await;
    let mut settings = world.gateway_settings();
    settings.gateway.rate_limit = 5;
    let gateway = Gateway::start(settings).await;
    gateway.until_routed("/toy/items/1").await;
    // until_routed spent some of the burst; within a second at most 5 + 5 pass.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(gateway.get("/toy/items/1").await);
    }
    let limited: Vec<_> = statuses.iter().filter(|r| r.status() == 429).collect();
    assert!(limited.len() >= 5, "{} limited", limited.len());
    assert!(
        limited[0].headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let metrics = gateway.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("courier_gateway_rate_limited_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_failing_service_opens_its_breaker_then_recovers() {
    let world = World::start();
    let _toy = world.toy("toy").await;
    let gateway = Gateway::start(world.gateway_settings()).await;
    gateway.until_routed("/toy/items/1").await;
    for _ in 0..5 {
        assert_eq!(gateway.get("/toy/fail/500").await.status(), 500);
    }
    let started = Instant::now();
    let reply = gateway.get("/toy/items/1").await;
    assert_eq!(reply.status(), 503, "the breaker is open");
    assert!(started.elapsed() < Duration::from_millis(200));
    let metrics = gateway.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("courier_gateway_breaker_state{service=\"toy\"} 1"),
        "{metrics}"
    );
    tokio::time::sleep(courier_gateway::resilience::BREAKER_COOL_DOWN).await;
    assert_eq!(
        gateway.get("/toy/items/1").await.status(),
        200,
        "the probe goes through"
    );
    assert_eq!(
        gateway.get("/toy/items/1").await.status(),
        200,
        "and closes it"
    );
}
