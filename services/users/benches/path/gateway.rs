//! `GET /users/{id}` over HTTP through the gateway to the users binary, both registered in a
//! real Consul, on the nats-server of the rest of the bench: the row to compare with `bare`.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_testkit::{TestConsul, TestNats};

use bytes::Bytes;

use super::{http, Point, Report, Responder};

/// The gateway's HS256 secret in the bench.
pub const GATEWAY_SECRET: &str = "a-bench-secret-of-at-least-32-bytes";

/// The row's name in the table.
pub const ROW: &str = "GET /users/{id} gateway";
/// The floor's rows: the least an HTTP-to-NATS proxy does ([`http::floor`]), in front of
/// `bare`, and in front of the users service as the gateway row has it.
const FLOOR_BARE: &str = "HTTP floor -> bare";
const FLOOR_USERS: &str = "HTTP floor -> users.get";

pub async fn rows(
    client: &async_nats::Client,
    nats: &TestNats,
    scratch: &std::path::Path,
    levels: &[usize],
    duration: Duration,
    report: &mut Report,
) {
    let consul = TestConsul::start();
    let db = format!("sqlite://{}/gateway.db", scratch.display());
    let (users, _) = Responder::users_in(&nats.url(), &db, 2, 0, Some(&consul.url()));
    let spawned = Instant::now();
    let (gateway, bind) = Responder::http("gateway", &nats.url(), &consul.url());
    let (floor, floor_bind) = Responder::http("floor", &nats.url(), &consul.url());
    let http = reqwest::Client::new();
    let base = format!("http://{bind}");
    until(&http, &format!("{base}/health/ready"), |_| true).await;
    let ready_in = spawned.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = gateway.rss_mib();
    until(&http, &format!("{base}/services"), |body| {
        body.contains("\"users.get\"")
    })
    .await;

    let ids = seed(client, 100.min(levels.len() * 25)).await;
    let token = login(&http, &base).await;
    let auth = format!("Authorization: Bearer {token}\r\n");
    let through_gateway: Arc<[Bytes]> = ids
        .iter()
        .map(|id| http::get(&bind, &format!("/users/{id}"), &auth))
        .collect();
    let floor_to = |prefix: &str| -> Arc<[Bytes]> {
        ids.iter()
            .map(|id| http::get(&floor_bind, &format!("/{prefix}/{id}"), ""))
            .collect()
    };
    let rows = [
        (FLOOR_BARE, &floor, None, &floor_bind, floor_to("bare")),
        (
            FLOOR_USERS,
            &floor,
            Some(&users),
            &floor_bind,
            floor_to("users"),
        ),
        (ROW, &gateway, Some(&users), &bind, through_gateway),
    ];
    for (_, proxy, behind, addr, requests) in &rows {
        load(proxy, *behind, addr, requests.clone(), 4, duration / 2).await;
    }
    for &c in levels {
        for (name, proxy, behind, addr, requests) in &rows {
            let (point, behind_cpu) =
                load(proxy, *behind, addr, requests.clone(), c, duration).await;
            let per_request = behind_cpu.as_secs_f64() * 1e6 / point.requests.max(1) as f64;
            report.add(name, c, point);
            if behind.is_some() {
                println!(
                    "{:>26} cpu/req above is the proxy's; the users service's: {per_request:.1} µs",
                    ""
                );
            }
        }
    }
    println!(
        "gateway start-up (spawn to /health/ready 200): {ready_in:?}; idle RSS: {idle_rss:.1} MiB"
    );
}

/// Polls `url` until it answers 200 with a body that satisfies `ok` (30 s at most).
async fn until(http: &reqwest::Client, url: &str, ok: impl Fn(&str) -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if let Ok(reply) = http.get(url).send().await {
            if reply.status() == 200 && ok(&reply.text().await.unwrap_or_default()) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{url} did not answer as expected within 30 s");
}

/// Creates `n` users over NATS and returns their ids.
async fn seed(client: &async_nats::Client, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n.max(1) {
        let body = format!(
            r#"{{"name":"G{i}","email":"g{i}@example.com","password":"correct horse battery"}}"#
        );
        let reply = client
            .request("users.create", body.into())
            .await
            .expect("create");
        let user: serde_json::Value = serde_json::from_slice(&reply.payload).expect("a user");
        ids.push(user["id"].as_str().expect("an id").to_owned());
    }
    ids
}

/// Signs up and logs in over HTTP; the bearer token.
async fn login(http: &reqwest::Client, base: &str) -> String {
    let body = serde_json::json!({"name": "Bench", "email": "bench@example.com", "password": "correct horse battery"});
    let created = http
        .post(format!("{base}/users"))
        .json(&body)
        .send()
        .await
        .expect("sign up");
    assert_eq!(
        created.status(),
        201,
        "{}",
        created.text().await.unwrap_or_default()
    );
    let credentials = serde_json::json!({"email": body["email"], "password": body["password"]});
    let reply = http
        .post(format!("{base}/auth/login"))
        .json(&credentials)
        .send()
        .await
        .expect("log in");
    let token: serde_json::Value = reply.json().await.expect("a token");
    token["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token: {token}"))
        .to_owned()
}

/// `concurrency` HTTP callers (one keep-alive connection each) in a closed loop for
/// `duration`; anything but 200 is an error. The point's CPU is `proxy`'s; `behind`'s comes
/// beside it.
async fn load(
    proxy: &Responder,
    behind: Option<&Responder>,
    addr: &str,
    requests: Arc<[Bytes]>,
    concurrency: usize,
    duration: Duration,
) -> (Point, Duration) {
    let cpu_behind = || behind.map_or(Duration::ZERO, Responder::cpu);
    let (proxy_before, behind_before) = (proxy.cpu(), cpu_behind());
    let started = Instant::now();
    let end = started + duration;
    let counter = Arc::new(AtomicUsize::new(0));
    let callers = (0..concurrency).map(|_| {
        tokio::spawn(http::caller(
            addr.to_owned(),
            requests.clone(),
            counter.clone(),
            end,
        ))
    });
    let point = Point::gather(callers, started).await;
    let point = Point {
        cpu: proxy.cpu().saturating_sub(proxy_before),
        ..point
    };
    (point, cpu_behind().saturating_sub(behind_before))
}
