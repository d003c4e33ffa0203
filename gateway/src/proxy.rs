//! The request path: HTTP request -> route -> checks -> payload -> service -> HTTP response.
//!
//! The payload a service receives is one JSON object (sent as MessagePack): the body's fields,
//! then the query's (as strings), then the path parameters. A later source wins a clash, so
//! `PATCH /users/1 {"id":"2"}` updates user 1: the path names the resource.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{Method as HttpMethod, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use courier_actors::meta::TraceContext;
use courier_actors::trace::{Open, Span, SpanKind};
use courier_actors::{Access, Caller, Meta, Method};
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::auth::Tokens;
use crate::config::GatewaySettings;
use crate::error::GatewayError;
use crate::forward::Forwarder;
use crate::learn::{Directory, Snapshot};
use crate::metrics::{Metrics, UNMATCHED};
use crate::resilience::RateLimiter;
use crate::routes::{Lookup, RouteEntry};

/// The header a client may send to shorten its deadline: milliseconds, or a duration (`2s`).
pub const REQUEST_TIMEOUT: &str = "X-Request-Timeout";
/// The request id header, accepted when sane and always answered.
pub const REQUEST_ID: &str = "X-Request-Id";
/// Longest request id accepted from a client.
const MAX_REQUEST_ID: usize = 128;

/// The header names read on every request, made once: a lookup by `&str` lowercases and
/// copies a custom name on each call.
mod name {
    use actix_web::http::header::HeaderName;

    pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    pub const REQUEST_TIMEOUT: HeaderName = HeaderName::from_static("x-request-timeout");
    pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
}

/// What every HTTP worker shares.
pub struct Gateway {
    /// Routes and instances.
    pub directory: Directory,
    /// Calls to services.
    pub forwarder: Forwarder,
    /// Tokens, when configured.
    pub tokens: Option<Tokens>,
    /// Metrics.
    pub metrics: Metrics,
    /// Limits and time-outs.
    pub settings: GatewaySettings,
    /// The per-client rate limit, when configured.
    pub limiter: Option<RateLimiter>,
    /// Requests in flight.
    pub in_flight: AtomicUsize,
}

/// What one HTTP worker thread serves with: the shared [`Gateway`] and a NATS connection of
/// the worker's own, whose I/O runs on the worker's thread, so a request and its call never
/// cross threads (with one shared connection, its task on another thread cost two hand-offs
/// per request).
pub struct Worker {
    /// What every worker shares.
    pub shared: web::Data<Gateway>,
    /// This worker's client (MessagePack).
    pub nats: courier_actors::Client,
}

impl std::ops::Deref for Worker {
    type Target = Gateway;

    fn deref(&self) -> &Gateway {
        &self.shared
    }
}

/// Serves one request on a learned route.
pub async fn proxy(
    req: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Worker>,
) -> HttpResponse {
    let started = Instant::now();
    let hop = Hop::of(req.headers());
    let request_id = &hop.request_id;
    let method_label = req.method().as_str().to_owned();
    let span = hop.open(&method_label);
    let snapshot = gateway.directory.snapshot();
    let (route, result) = match admit(&gateway, &req) {
        Err(e) => (UNMATCHED.to_owned(), Err(e)),
        Ok(_slot) => {
            let found = find(&snapshot, &req);
            let route = found
                .as_ref()
                .map_or(UNMATCHED.to_owned(), |(e, _)| e.template());
            let result = match found {
                Ok((entry, params)) => {
                    serve(&gateway, &snapshot, &req, payload, &entry, params, &hop).await
                }
                Err(e) => Err(e),
            };
            (route, result)
        }
    };
    let mut response = match result {
        Ok(response) => response,
        Err(e) => e.response(req.path(), request_id),
    };
    if let Ok(value) = header::HeaderValue::from_str(request_id) {
        response.headers_mut().insert(name::REQUEST_ID, value);
    }
    let took = started.elapsed();
    let status = response.status().as_u16();
    gateway
        .metrics
        .observe(&route, &method_label, status, took.as_secs_f64());
    if let Some(mut span) = span {
        span.rename(route.clone());
        if let Some(path) = route.split_once(' ').map(|(_, path)| path) {
            span.set("http.route", path);
        }
        span.set("http.response.status_code", status.to_string());
        span.finish((status >= 500).then(|| format!("HTTP {status}")));
    }
    response
}

/// Who this request is: its request id (the caller's `X-Request-Id`, or a new one) and its
/// place in its trace (the caller's `traceparent` continued, or a new trace).
struct Hop {
    request_id: String,
    trace: TraceContext,
    parent: Option<u64>,
}

impl Hop {
    fn of(headers: &HeaderMap) -> Self {
        let parent = headers
            .get(name::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse);
        Self {
            request_id: request_id(headers),
            trace: parent.map_or_else(TraceContext::new_root, TraceContext::child),
            parent: parent.map(|p| p.span_id),
        }
    }

    /// The request's span (server), open until the answer is made (recorded as cancelled if
    /// the client goes first); named by its route template once it is known.
    fn open(&self, method: &str) -> Option<Open> {
        Open::new(|| {
            Span::new(
                format!("{method} (no route)"),
                SpanKind::Server,
                self.trace,
                self.parent,
                Duration::ZERO,
            )
            .with("courier.request_id", self.request_id.clone())
            .with("http.request.method", method)
        })
    }
}

/// The rate limit and the in-flight cap; the slot frees itself on drop.
fn admit<'a>(gateway: &'a Gateway, req: &HttpRequest) -> Result<InFlight<'a>, GatewayError> {
    if let (Some(limiter), Some(ip)) = (&gateway.limiter, client_ip(req)) {
        if let Err(wait) = limiter.check(ip, Instant::now()) {
            gateway.metrics.rate_limited.inc();
            return Err(GatewayError::RateLimited(wait));
        }
    }
    let before = gateway.in_flight.fetch_add(1, Ordering::AcqRel);
    gateway.metrics.in_flight.set(before as i64 + 1);
    let slot = InFlight(gateway);
    if before >= gateway.settings.max_in_flight {
        gateway.metrics.overloaded.inc();
        return Err(GatewayError::Overloaded);
    }
    Ok(slot)
}

/// One request counted in flight until dropped.
struct InFlight<'a>(&'a Gateway);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let before = self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.in_flight.set(before as i64 - 1);
    }
}

type Found = (Arc<RouteEntry>, Vec<(String, String)>);

fn find(snapshot: &Snapshot, req: &HttpRequest) -> Result<Found, GatewayError> {
    let method = http_method(req.method())
        .ok_or_else(|| GatewayError::NotFound(format!("{} {}", req.method(), req.path())))?;
    match snapshot.table.find(method, req.path()) {
        Lookup::Found(entry, params) => {
            let params = params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            Ok((Arc::clone(entry), params))
        }
        Lookup::MethodNotAllowed(allowed) => Err(GatewayError::MethodNotAllowed(allowed)),
        Lookup::NotFound => Err(GatewayError::NotFound(format!(
            "{} {}",
            req.method(),
            req.path()
        ))),
    }
}

/// HEAD is served by the GET route.
fn http_method(method: &HttpMethod) -> Option<Method> {
    if method == HttpMethod::HEAD {
        return Some(Method::Get);
    }
    Method::parse(method.as_str())
}

async fn serve(
    gateway: &Worker,
    snapshot: &Snapshot,
    req: &HttpRequest,
    payload: web::Payload,
    entry: &RouteEntry,
    params: Vec<(String, String)>,
    hop: &Hop,
) -> Result<HttpResponse, GatewayError> {
    let caller = authorize(gateway, entry, req.headers())?;
    let body = read_body(req, payload, gateway.settings.max_body).await?;
    let payload = merge(body, req.query_string(), params)?;
    let meta = meta(gateway, req.headers(), hop, caller)?;
    let method = http_method(req.method()).unwrap_or(Method::Get);
    let reply = gateway
        .forwarder
        .call(&gateway.nats, snapshot, entry, method, &payload, &meta)
        .await?;
    if entry.route.access == Access::Login {
        let user: Value = serde_json::from_slice(&reply.0).map_err(|_| GatewayError::BadGateway)?;
        return login(gateway, &user);
    }
    let status = StatusCode::from_u16(entry.route.status).unwrap_or(StatusCode::OK);
    if status == StatusCode::NO_CONTENT || req.method() == HttpMethod::HEAD {
        return Ok(HttpResponse::build(status).finish());
    }
    Ok(HttpResponse::build(status)
        .content_type("application/json")
        .body(reply.0))
}

/// The route's access rule against the request's token.
fn authorize(
    gateway: &Gateway,
    entry: &RouteEntry,
    headers: &HeaderMap,
) -> Result<Option<Caller>, GatewayError> {
    let roles = match &entry.route.access {
        Access::Public => return Ok(None),
        // Without a key no token can be issued: say so before the password is checked.
        Access::Login if gateway.tokens.as_ref().is_some_and(Tokens::can_issue) => return Ok(None),
        Access::Login => return Err(GatewayError::AuthNotConfigured),
        Access::Bearer { roles } => roles,
    };
    let tokens = gateway
        .tokens
        .as_ref()
        .ok_or(GatewayError::AuthNotConfigured)?;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = Tokens::bearer(authorization).map_err(GatewayError::Unauthorized)?;
    let claims = tokens.verify(token).map_err(GatewayError::Unauthorized)?;
    if !roles.is_empty() && !roles.iter().any(|r| claims.roles.contains(r)) {
        return Err(GatewayError::Forbidden(roles.join(", ")));
    }
    Ok(Some(Caller {
        subject: claims.sub,
        roles: claims.roles,
    }))
}

/// The body as a JSON object (empty when there is none).
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Map<String, Value>, GatewayError> {
    let declared: Option<usize> = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::TooLarge(limit));
    }
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| GatewayError::BadRequest(format!("reading the body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(GatewayError::TooLarge(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !content_type.is_some_and(is_json) {
        return Err(GatewayError::UnsupportedMediaType);
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(GatewayError::BadRequest(
            "the body must be a JSON object".into(),
        )),
        Err(e) => Err(GatewayError::BadRequest(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// `application/json`, or a `+json` type, with any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let essence = essence.to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Body, then query, then path parameters: later sources win.
fn merge(
    mut body: Map<String, Value>,
    query: &str,
    params: Vec<(String, String)>,
) -> Result<Value, GatewayError> {
    if !query.is_empty() {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|e| GatewayError::BadRequest(format!("the query string: {e}")))?;
        for (key, value) in pairs.into_inner() {
            body.insert(key, Value::String(value));
        }
    }
    for (key, value) in params {
        body.insert(key, Value::String(value));
    }
    Ok(Value::Object(body))
}

/// Request id, trace context, deadline and caller for the NATS hop.
fn meta(
    gateway: &Gateway,
    headers: &HeaderMap,
    hop: &Hop,
    caller: Option<Caller>,
) -> Result<Meta, GatewayError> {
    let mut meta = Meta::arriving(hop.request_id.clone(), hop.trace, hop.parent);
    meta.caller = caller;
    let asked = match headers.get(name::REQUEST_TIMEOUT) {
        None => None,
        Some(v) => Some(parse_timeout(v.to_str().unwrap_or_default())?),
    };
    let budget = asked.map_or(gateway.settings.timeout, |t| {
        t.min(gateway.settings.timeout)
    });
    Ok(meta.with_timeout(budget))
}

/// `1500` (milliseconds) or a duration such as `1.5s`, above zero.
fn parse_timeout(value: &str) -> Result<Duration, GatewayError> {
    let value = value.trim();
    let parsed = match value.parse::<u64>() {
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) => humantime::parse_duration(value),
    };
    parsed.ok().filter(|d| !d.is_zero()).ok_or_else(|| {
        GatewayError::BadRequest(format!(
            "{REQUEST_TIMEOUT} must be milliseconds or a duration such as 2s, above zero"
        ))
    })
}

/// The token for the user a login endpoint returned.
fn login(gateway: &Gateway, user: &Value) -> Result<HttpResponse, GatewayError> {
    let tokens = gateway
        .tokens
        .as_ref()
        .ok_or(GatewayError::AuthNotConfigured)?;
    let Some(id) = user.get("id").and_then(Value::as_str) else {
        tracing::error!("The login endpoint answered without a user id.");
        return Err(GatewayError::BadGateway);
    };
    let email = user.get("email").and_then(Value::as_str);
    let roles: Vec<String> = user
        .get("roles")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let token = tokens
        .issue(id, email, &roles)
        .ok_or(GatewayError::AuthNotConfigured)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": tokens.ttl().as_secs(),
    })))
}

/// The client's `X-Request-Id` when it is sane (1 to 128 visible ASCII characters), else a new
/// one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(name::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| {
            (1..=MAX_REQUEST_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(courier_actors::meta::new_request_id, str::to_owned)
}

fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_win_over_query_and_body() {
        let body: Map<String, Value> =
            serde_json::from_str(r#"{"id":"2","name":"Ann","limit":5}"#).unwrap();
        let merged = merge(body, "limit=10&after=x", vec![("id".into(), "1".into())]).unwrap();
        assert_eq!(merged["id"], "1");
        assert_eq!(merged["limit"], "10");
        assert_eq!(merged["after"], "x");
        assert_eq!(merged["name"], "Ann");
    }

    #[test]
    fn json_content_types_are_recognised() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/problem+json",
            "Application/JSON",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }

    #[test]
    fn a_timeout_is_milliseconds_or_a_duration() {
        assert_eq!(parse_timeout("1500").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_timeout("2s").unwrap(), Duration::from_secs(2));
        for bad in ["0", "soon", "-1", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_sane_request_ids_are_kept() {
        let mut headers = HeaderMap::new();
        let with = |headers: &mut HeaderMap, v: &str| {
            headers.insert(
                header::HeaderName::from_static("x-request-id"),
                header::HeaderValue::from_str(v).unwrap(),
            );
            request_id(headers)
        };
        assert_eq!(with(&mut headers, "abc-123"), "abc-123");
        assert_ne!(with(&mut headers, "has space"), "has space");
        assert_ne!(with(&mut headers, &"x".repeat(200)), "x".repeat(200));
    }
}
