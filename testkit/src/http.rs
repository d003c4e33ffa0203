//! [`http_get`]: a bare HTTP/1.0 GET for tests (testkit has no HTTP client, and a readiness probe
//! or an admin endpoint needs no more).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Sends `GET path` with `headers` to `addr` as HTTP/1.0 (so the answer is never chunked and the
/// server closes the connection after it), and returns the status and the body. Waits at most
/// `read_timeout` for each read. An answer without a status line is an `InvalidData` error.
pub fn http_get(
    addr: impl ToSocketAddrs,
    path: &str,
    headers: &[(&str, &str)],
    read_timeout: Duration,
) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(read_timeout))?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, format!("not HTTP: {answer:?}"));
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(malformed)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(malformed)?;
    Ok((status, body.to_owned()))
}
