//! Helpers of this crate's tests: registrations, and tiny local HTTP servers (a health endpoint
//! for HTTP checks; canned or silent answers for what a real agent cannot be made to do).
//! Settings and clients for a `TestConsul`, and waiting for the agent, are
//! `courier_discovery::testing`, shared with the tests of the runtime and the services.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use courier_config::ConsulSettings;
use courier_discovery::{Check, Registration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Generous bound for what a dev agent does in well under a second.
pub const SOON: Duration = Duration::from_secs(10);

/// A registration of `id` in service `name` on `port`, with `checks`.
pub fn registration(id: &str, name: &str, port: u16, checks: Vec<Check>) -> Registration {
    Registration {
        id: id.to_owned(),
        name: name.to_owned(),
        address: "127.0.0.1".to_owned(),
        port,
        tags: vec!["test".to_owned()],
        meta: BTreeMap::from([("version".to_owned(), "0.1.0".to_owned())]),
        checks,
    }
}

/// A TTL check `<service id>:ttl`.
pub fn ttl_check(service_id: &str, ttl: Duration) -> Check {
    Check::Ttl {
        id: format!("{service_id}:ttl"),
        name: "actors alive".to_owned(),
        ttl,
        deregister_critical_after: Some(Duration::from_secs(60)),
    }
}

/// An HTTP check `<service id>:ready` of `url`, run every second (Consul's minimum).
pub fn http_check(service_id: &str, url: String) -> Check {
    Check::Http {
        id: format!("{service_id}:ready"),
        name: "ready".to_owned(),
        url,
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        deregister_critical_after: Some(Duration::from_secs(60)),
    }
}

/// A listener on a free loopback port, with its address.
async fn loopback_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    (listener, addr)
}

/// A local server answering every request with `response` (a whole HTTP/1.1 answer).
pub async fn canned_server(response: &'static str) -> SocketAddr {
    let (listener, addr) = loopback_listener().await;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0; 4096];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// A local health endpoint answering 200 to everything.
pub async fn ok_server() -> SocketAddr {
    canned_server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await
}

/// A local server that accepts connections and never answers.
pub async fn silent_server() -> SocketAddr {
    let (listener, addr) = loopback_listener().await;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream); // kept open, never read or written
        }
    });
    addr
}

/// Settings pointing at a local fake server.
pub fn fake_settings(addr: SocketAddr, timeout: Duration) -> ConsulSettings {
    ConsulSettings {
        addr: format!("http://{addr}"),
        timeout,
        ..Default::default()
    }
}
