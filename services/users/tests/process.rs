//! The real `courier-users` binary: configuration errors, SIGTERM drain, restart keeps data.

mod common;

use std::time::Duration;

use common::*;
use courier_actors::{Client, Meta};
use courier_testkit::TestNats;
use courier_users::domain::User;
use courier_users::endpoints::*;

#[test]
fn a_bad_setting_stops_start_up_with_exit_64_and_one_line_naming_it() {
    let bin = Binary::spawn(&[("COURIER_SERVICE__MAX_IN_FLIGHT", "none".into())]);
    let (code, stderr) = bin.wait(Duration::from_secs(10));
    assert_eq!(code, Some(64), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("service.max_in_flight") && stderr.contains("none"),
        "{stderr}"
    );
}

/// Runs the binary with only `env` and `args`, to its end: exit code, stdout, stderr.
fn run_binary(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_courier-users"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

#[test]
fn check_config_validates_the_environment_without_connecting_to_anything() {
    // Nothing listens on this port: a binary that tried to connect would fail.
    let nowhere = format!("nats://127.0.0.1:{}", courier_testkit::free_port());
    let good = [
        ("NATS_URL", nowhere.as_str()),
        ("COURIER_EVENTS__REPLICAS", "3"),
    ];
    let (code, stdout, stderr) = run_binary(&good, &["--check-config"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "courier-users: settings ok\n");

    let typo = [
        ("NATS_URL", nowhere.as_str()),
        ("COURIER_EVENTS__REPLICA", "3"),
    ];
    let (code, _, stderr) = run_binary(&typo, &["--check-config"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("events.replica"), "{stderr}");

    let (code, _, stderr) = run_binary(&good, &["--chek-config"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("unknown argument \"--chek-config\""),
        "{stderr}"
    );
    let (code, stdout, _) = run_binary(&good, &["--help"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.starts_with("usage: courier-users [--check-config]"),
        "{stdout}"
    );
}

#[test]
fn an_unreachable_nats_is_a_clear_error() {
    let port = courier_testkit::free_port();
    let (dir, db) = sqlite_file("no-nats");
    let bin = Binary::spawn(&[
        ("NATS_URL", format!("nats://127.0.0.1:{port}")),
        ("DATABASE_URL", db.url.expose().to_owned()),
        ("COURIER_NATS__CONNECT_TIMEOUT", "500ms".into()),
    ]);
    let (code, stderr) = bin.wait(Duration::from_secs(20));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot connect to NATS at nats://127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[actix_rt::test]
async fn sigterm_answers_every_request_in_flight_and_a_restart_keeps_the_data() {
    let nats = TestNats::start();
    let (dir, db) = sqlite_file("sigterm");
    let env = [
        ("NATS_URL", nats.url()),
        ("DATABASE_URL", db.url.expose().to_owned()),
        // One hashing thread makes creates queue up, so many are in flight at SIGTERM.
        ("COURIER_USERS__HASH_WORKERS", "1".into()),
    ];
    let bin = Binary::spawn(&env);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let id = wait_for_users(&client).await;
    let courier = Client::new(client.clone(), Duration::from_secs(30));

    let total = 24;
    let creates: Vec<_> = (0..total)
        .map(|i| {
            let courier = courier.clone();
            tokio::spawn(async move {
                let req = CreateUser {
                    name: format!("U{i}"),
                    email: format!("u{i}@example.com"),
                    password: "correct horse".into(),
                };
                courier
                    .call::<_, User>("users.create", &req, &Meta::root())
                    .await
            })
        })
        .collect();
    let stats = format!("$SRV.STATS.users.{id}");
    let in_flight =
        courier_testkit::eventually(Duration::from_secs(10), "creates in flight", || async {
            let reply = client
                .request(stats.clone(), bytes::Bytes::new())
                .await
                .ok()?;
            let stats: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
            let n = stats["endpoints"][0]["data"]["in_flight"].as_u64()?;
            (n >= 4).then_some(n)
        })
        .await;
    bin.terminate();
    let mut users = Vec::new();
    for create in creates {
        users.push(
            create
                .await
                .unwrap()
                .expect("every request in flight at SIGTERM is answered"),
        );
    }
    let (code, stderr) = bin.wait(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Drained"), "{stderr}");
    eprintln!("{in_flight} creates were in flight at SIGTERM; all {total} answered");

    let _again = Binary::spawn(&env);
    wait_for_users(&client).await;
    for user in &users {
        let got: User = courier
            .call(
                "users.get",
                &GetUser {
                    id: user.id.clone(),
                },
                &Meta::root(),
            )
            .await
            .unwrap();
        assert_eq!(&got, user);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[actix_rt::test]
async fn sigterm_while_nats_is_gone_still_exits_in_bounded_time_and_says_so() {
    let mut nats = TestNats::start();
    let (dir, db) = sqlite_file("sigterm-no-nats");
    let bin = Binary::spawn(&[
        ("NATS_URL", nats.url()),
        ("DATABASE_URL", db.url.expose().to_owned()),
        ("COURIER_SERVICE__DRAIN_GRACE", "1s".into()),
    ]);
    let client = async_nats::connect(nats.url()).await.unwrap();
    wait_for_users(&client).await;
    nats.stop();
    // Let the service notice the server is gone.
    courier_testkit::eventually(Duration::from_secs(5), "the disconnect logged", || async {
        bin.log().contains("NATS disconnected").then_some(())
    })
    .await;
    let asked = std::time::Instant::now();
    bin.terminate();
    // Grace 1 s, flush 2 s, then the connections are abandoned: well under 15 s.
    let (code, stderr) = bin.wait(Duration::from_secs(15));
    assert_eq!(
        code,
        Some(1),
        "replies may be lost: not a clean exit\n{stderr}"
    );
    assert!(stderr.contains("without a complete drain"), "{stderr}");
    eprintln!("exited {:?} after SIGTERM with NATS gone", asked.elapsed());
    let _ = std::fs::remove_dir_all(dir);
}

#[actix_rt::test]
async fn a_second_sigterm_exits_at_once() {
    use sqlx::{Connection, SqliteConnection};
    let nats = TestNats::start();
    let (dir, db) = sqlite_file("second-sigterm");
    let bin = Binary::spawn(&[
        ("NATS_URL", nats.url()),
        ("DATABASE_URL", db.url.expose().to_owned()),
        ("COURIER_SERVICE__DRAIN_GRACE", "60s".into()),
    ]);
    let client = async_nats::connect(nats.url()).await.unwrap();
    wait_for_users(&client).await;
    // A create waits on SQLite's write lock, which the test holds: the drain has to wait.
    let mut holder = SqliteConnection::connect(db.url.expose()).await.unwrap();
    let _lock = holder.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let courier = Client::new(client.clone(), Duration::from_secs(30));
    let stuck = tokio::spawn(async move {
        let req = CreateUser {
            name: "Stuck".into(),
            email: "stuck@example.com".into(),
            password: "correct horse".into(),
        };
        courier
            .call::<_, User>("users.create", &req, &Meta::root())
            .await
    });
    courier_testkit::eventually(Duration::from_secs(5), "the create in flight", || async {
        let reply = client
            .request("$SRV.STATS.users", bytes::Bytes::new())
            .await
            .ok()?;
        let stats: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
        let busy = stats["endpoints"]
            .as_array()?
            .iter()
            .any(|e| e["data"]["in_flight"] == 1);
        busy.then_some(())
    })
    .await;
    bin.terminate();
    courier_testkit::eventually(Duration::from_secs(5), "the drain to start", || async {
        bin.log().contains("Draining").then_some(())
    })
    .await;
    let asked = std::time::Instant::now();
    bin.terminate();
    let (code, stderr) = bin.wait(Duration::from_secs(5));
    assert_eq!(code, Some(courier_runtime::EXIT_FORCED), "{stderr}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert!(stderr.contains("Second signal"), "{stderr}");
    stuck.abort();
    let _ = std::fs::remove_dir_all(dir);
}
