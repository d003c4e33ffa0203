//! Failures as values: ACL refusals from a real agent; a 500, silence and a closed port from
//! what a real agent cannot be made to do.

mod common;

use std::time::{Duration, Instant};

use common::{canned_server, fake_settings, registration, silent_server, SOON};
use courier_discovery::testing::settings;
use courier_discovery::{Consul, DiscoveryError, Resolver};
use courier_testkit::TestConsul;

/// A UUID, as Consul 1.8 wants its master token (others log a deprecation warning).
const MASTER_TOKEN: &str = "6f1f2a4e-3c2d-4b8a-9e51-0a7c6d5b4e3f";

#[tokio::test]
async fn an_acl_agent_refuses_a_missing_or_unknown_token_and_accepts_the_master() {
    let agent = TestConsul::start_with_acl(MASTER_TOKEN);
    let users_1 = registration("users-1", "users", 9090, vec![]);
    for token in ["", "not-a-token"] {
        let consul = Consul::new(&settings(&agent, token)).expect("valid settings");
        let error = consul
            .register(&users_1)
            .await
            .expect_err("refused without token");
        assert!(
            matches!(error, DiscoveryError::Forbidden { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("CONSUL_HTTP_TOKEN"), "{error}");
    }

    let admin = Consul::new(&settings(&agent, MASTER_TOKEN)).expect("valid settings");
    admin
        .register(&users_1)
        .await
        .expect("the master token may register");
    let resolver = Resolver::watch(admin, "users");
    let seen = resolver.wait_for(|set| set.len() == 1, SOON).await;
    assert!(seen, "the master token reads the instance");
    // Reads are not refused but filtered: without a token the synced instance is invisible.
    let anonymous = Consul::new(&settings(&agent, "")).expect("valid settings");
    let (_, hidden) = anonymous
        .healthy("users", None, Duration::ZERO)
        .await
        .expect("health");
    assert!(hidden.is_empty());
}

#[tokio::test]
async fn an_answer_of_500_is_a_status_error() {
    let answer = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 12\r\n\
                  Connection: close\r\n\r\nraft failure";
    let addr = canned_server(answer).await;
    let consul = Consul::new(&fake_settings(addr, Duration::from_secs(5))).expect("valid");

    let error = consul.deregister("users-1").await.expect_err("500");
    let DiscoveryError::Status { code, body, .. } = &error else {
        panic!("expected Status, got {error:?}");
    };
    assert_eq!((*code, body.as_str()), (500, "raft failure"));
    assert!(error.is_transient());
    assert!(!consul.leader_ok().await);
}

#[tokio::test]
async fn an_agent_that_never_answers_times_out_within_the_timeout() {
    let addr = silent_server().await;
    let timeout = Duration::from_millis(300);
    let consul = Consul::new(&fake_settings(addr, timeout)).expect("valid");

    let started = Instant::now();
    let error = consul.deregister("users-1").await.expect_err("silence");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(error, DiscoveryError::TimedOut { after, .. } if after == timeout));
}

#[tokio::test]
async fn a_blocking_query_allows_its_wait_plus_jitter_plus_the_timeout() {
    let addr = silent_server().await;
    let consul = Consul::new(&fake_settings(addr, Duration::from_millis(200))).expect("valid");

    let started = Instant::now();
    let wait = Duration::from_millis(800);
    let error = consul
        .healthy("users", Some(7), wait)
        .await
        .expect_err("silence");
    let took = started.elapsed();
    let allowed = Duration::from_millis(800 + 50 + 200);
    assert!(matches!(error, DiscoveryError::TimedOut { after, .. } if after == allowed));
    assert!(took >= allowed && took < allowed * 3, "took {took:?}");
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let port = courier_testkit::free_port();
    let addr = format!("127.0.0.1:{port}")
        .parse()
        .expect("a socket address");
    let consul = Consul::new(&fake_settings(addr, Duration::from_secs(5))).expect("valid");

    let error = consul
        .deregister("users-1")
        .await
        .expect_err("connection refused");
    assert!(
        matches!(error, DiscoveryError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(
        std::error::Error::source(&error).is_some(),
        "the cause is kept"
    );
}
