//! The HTTP side of the bench: a load client as light as `wrk` (so that the shared cores go to
//! what is measured, not to the client), and the floor an HTTP-to-NATS proxy can reach here.

use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive HTTP/1.1 connection: a request written whole, its reply read to its
/// `Content-Length` (the gateway and the floor never answer chunked).
pub struct Connection {
    stream: TcpStream,
    buf: BytesMut,
}

impl Connection {
    pub async fn open(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
        })
    }

    /// Sends `request` (a whole HTTP/1.1 request) and reads the reply: its status, and its
    /// body when the status is not 200 (to say why).
    pub async fn call(&mut self, request: &[u8]) -> std::io::Result<(u16, Option<String>)> {
        self.stream.write_all(request).await?;
        loop {
            if let Some(head) = find(&self.buf, b"\r\n\r\n") {
                let (status, length) = head_of(&self.buf[..head])?;
                let total = head + 4 + length;
                while self.buf.len() < total {
                    self.fill().await?;
                }
                let body = (status != 200)
                    .then(|| String::from_utf8_lossy(&self.buf[head + 4..total]).into_owned());
                self.buf.advance(total);
                return Ok((status, body));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The status and `Content-Length` of a reply head.
fn head_of(head: &[u8]) -> std::io::Result<(u16, usize)> {
    let bad = |what: &str| std::io::Error::other(format!("{what} in a reply head"));
    let head = std::str::from_utf8(head).map_err(|_| bad("bytes that are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or_else(|| bad("no Content-Length"))?;
    Ok((status, length))
}

/// `GET path` with the given extra header lines (each ending in `\r\n`).
pub fn get(addr: &str, path: &str, headers: &str) -> bytes::Bytes {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n").into()
}

/// What one HTTP caller measured, in the shape of [`super::CallerResult`].
pub async fn caller(
    addr: String,
    requests: std::sync::Arc<[bytes::Bytes]>,
    counter: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    end: Instant,
) -> super::CallerResult {
    let (mut latencies, mut errors, mut first) = (Vec::new(), 0usize, None);
    let mut connection = None;
    while Instant::now() < end {
        let conn = match &mut connection {
            Some(conn) => conn,
            None => match Connection::open(&addr).await {
                Ok(conn) => connection.insert(conn),
                Err(e) => {
                    errors += 1;
                    first.get_or_insert(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = Instant::now();
        match conn.call(&requests[i % requests.len()]).await {
            Ok((200, _)) => latencies.push(t.elapsed()),
            Ok((status, body)) => {
                errors += 1;
                first.get_or_insert(format!("{status}: {}", body.unwrap_or_default()));
            }
            Err(e) => {
                errors += 1;
                first.get_or_insert(e.to_string());
                connection = None;
            }
        }
    }
    (latencies, errors, first)
}

/// The floor: the least an HTTP-to-NATS proxy can do on actix-web, the gateway's framework.
/// `GET /bare/{id}` is a request to the bare responder, `GET /users/{id}` one to `users.get`
/// (`{"id":..}` in JSON); the reply's payload is the body. No routing table, auth, deadline,
/// retries, metrics or transcoding. A worker per core, each with its own NATS connection, as
/// the gateway runs.
pub fn floor() {
    use actix_web::{web, App, HttpResponse, HttpServer};

    async fn forward(
        nats: &async_nats::Client,
        subject: &'static str,
        payload: bytes::Bytes,
    ) -> HttpResponse {
        match nats.request(subject, payload).await {
            Ok(reply) if !super::is_error(&reply) => HttpResponse::Ok()
                .content_type("application/json")
                .body(reply.payload),
            Ok(reply) => HttpResponse::BadGateway().body(reply.payload),
            Err(e) => HttpResponse::BadGateway().body(e.to_string()),
        }
    }

    let url = std::env::var("NATS_URL").expect("NATS_URL");
    let bind = std::env::var("COURIER_GATEWAY__BIND").expect("COURIER_GATEWAY__BIND");
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let url = url.clone();
            App::new()
                .data_factory(move || {
                    let url = url.clone();
                    async move { async_nats::connect(url).await.map_err(|e| e.to_string()) }
                })
                .route(
                    "/bare/{id}",
                    web::get().to(|nats: web::Data<async_nats::Client>| async move {
                        forward(&nats, "bench.bare", bytes::Bytes::from_static(b"{}")).await
                    }),
                )
                .route(
                    "/users/{id}",
                    web::get().to(
                        |nats: web::Data<async_nats::Client>, id: web::Path<String>| async move {
                            let body = format!(r#"{{"id":"{id}"}}"#);
                            forward(&nats, "users.get", body.into()).await
                        },
                    ),
                )
        })
        .workers(workers)
        .disable_signals()
        .bind(&bind)
        .expect("bind the floor");
        println!("ready {bind}");
        server.run().await.expect("the floor serves");
    });
}
