//! The HTTP listener: the gateway's own routes (`/health`, `/health/ready`, `/metrics`,
//! `/services`, `/api-docs/openapi.json`, Swagger UI at `/api`) and, for every other path, the learned routes
//! ([`crate::proxy`]). CORS for configured origins wraps them all.

use std::net::SocketAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method as HttpMethod;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;

use crate::openapi;
use crate::proxy::{proxy, Gateway, Worker};

/// Headers a browser may send cross-origin.
const CORS_ALLOW_HEADERS: &str =
    "authorization, content-type, x-request-id, x-request-timeout, traceparent";
/// How long a browser may cache a preflight answer, in seconds.
const CORS_MAX_AGE: &str = "600";

/// What `/health/ready` needs besides the gateway.
#[derive(Clone)]
pub struct Readiness {
    /// The gateway's main NATS connection (routes are learned on it).
    pub nats: async_nats::Client,
}

/// How each HTTP worker opens its own NATS connection.
#[derive(Clone)]
pub struct WorkerNats {
    /// Where and how.
    pub settings: courier_config::NatsSettings,
    /// Their events, counted with the main connection's.
    pub events: courier_runtime::nats::NatsEvents,
}

impl WorkerNats {
    /// This worker's [`Worker`]: a connection opened on its thread.
    async fn connect(self, shared: web::Data<Gateway>) -> Result<Worker, String> {
        let nats = self
            .events
            .connect(&self.settings, "courier-gateway-worker", "worker")
            .await
            .map_err(|e| e.to_string())?;
        let nats = courier_actors::Client::new(nats, shared.settings.timeout);
        Ok(Worker { shared, nats })
    }
}

/// A started listener.
pub struct Listener {
    /// Where it listens (port 0 in the settings becomes the real port).
    pub addr: SocketAddr,
    handle: ServerHandle,
}

impl Listener {
    /// Binds and serves until [`Listener::stop`].
    pub fn start(
        gateway: web::Data<Gateway>,
        readiness: Readiness,
        worker_nats: WorkerNats,
        registry: prometheus::Registry,
    ) -> std::io::Result<Self> {
        let workers = match gateway.settings.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let bind = gateway.settings.bind.clone();
        let server = HttpServer::new(move || {
            let (shared, nats) = (gateway.clone(), worker_nats.clone());
            App::new()
                .data_factory(move || nats.clone().connect(shared.clone()))
                .app_data(gateway.clone())
                .app_data(web::Data::new(readiness.clone()))
                .app_data(web::Data::new(registry.clone()))
                .wrap(from_fn(cors))
                .route("/health", web::get().to(health))
                .route("/health/ready", web::get().to(ready))
                .route("/metrics", web::get().to(metrics))
                .route("/services", web::get().to(services))
                .route("/api-docs/openapi.json", web::get().to(openapi::document))
                .route(
                    "/api",
                    web::get().to(|| async {
                        HttpResponse::PermanentRedirect()
                            .insert_header((header::LOCATION, "/api/"))
                            .finish()
                    }),
                )
                .service(openapi::swagger_ui())
                .default_service(web::to(proxy))
        })
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(5)
        .bind(&bind)?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("bound to no address"))?;
        let server = server.run();
        let handle = server.handle();
        actix::spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(%error, "Gateway listener failed.");
            }
        });
        Ok(Self { addr, handle })
    }

    /// Stops accepting, lets requests in flight finish (up to 5 s), then stops.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// Liveness: the listener answers.
async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: NATS connected, and Consul's catalog answered at least once.
async fn ready(gateway: web::Data<Gateway>, readiness: web::Data<Readiness>) -> HttpResponse {
    let mut reasons = Vec::new();
    let state = readiness.nats.connection_state();
    if state != async_nats::connection::State::Connected {
        reasons.push(format!("NATS is {state}"));
    }
    if !gateway.directory.catalog_answered() {
        reasons.push("Consul's catalog has not answered yet".to_owned());
    }
    if reasons.is_empty() {
        let routes = gateway.directory.snapshot().table.entries().len();
        HttpResponse::Ok().json(json!({ "status": "ready", "routes": routes }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not ready", "reasons": reasons }))
    }
}

async fn metrics(
    gateway: web::Data<Gateway>,
    registry: web::Data<prometheus::Registry>,
) -> HttpResponse {
    let snapshot = gateway.directory.snapshot();
    gateway
        .metrics
        .routes
        .set(snapshot.table.entries().len() as i64);
    gateway
        .metrics
        .cover(snapshot.services.keys().map(String::as_str));
    courier_runtime::admin::render_metrics(&registry)
}

/// Every known service: version served, routes, healthy instances; and route conflicts.
async fn services(gateway: web::Data<Gateway>) -> HttpResponse {
    let snapshot = gateway.directory.snapshot();
    let mut names: Vec<&String> = snapshot.services.keys().collect();
    names.sort();
    let list: Vec<_> = names
        .into_iter()
        .map(|name| {
            let routes: Vec<_> = snapshot
                .table
                .entries()
                .iter()
                .filter(|e| &e.service == name)
                .map(|e| json!({ "route": e.template(), "subject": e.subject, "access": openapi::access_label(&e.route.access) }))
                .collect();
            let instances: Vec<_> = snapshot.services[name]
                .instances()
                .into_iter()
                .map(|i| json!({ "id": i.id, "address": i.address, "port": i.port, "version": i.meta.get("version") }))
                .collect();
            json!({ "name": name, "version": snapshot.versions.get(name), "routes": routes, "instances": instances })
        })
        .collect();
    let conflicts: Vec<_> = snapshot
        .table
        .conflicts()
        .iter()
        .map(|c| json!({ "route": c.route, "kept": c.kept, "ignored": c.ignored }))
        .collect();
    HttpResponse::Ok().json(json!({ "services": list, "conflicts": conflicts }))
}

/// CORS for the configured origins: preflights answered here, other answers marked.
async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let gateway = req.app_data::<web::Data<Gateway>>().cloned();
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = match (&gateway, &origin) {
        (Some(g), Some(o)) => allowed_origin(&g.settings.cors_origins, o),
        _ => None,
    };
    let preflight = req.method() == HttpMethod::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let (request, _) = req.into_parts();
        let response = preflight_response(allowed);
        return Ok(ServiceResponse::new(request, response).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    if let Some(origin) = allowed {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id, retry-after, www-authenticate"),
        );
    }
    Ok(response.map_into_left_body())
}

/// The origin to echo, if the configured list allows it.
fn allowed_origin(allowed: &[String], origin: &HeaderValue) -> Option<HeaderValue> {
    let text = origin.to_str().ok()?;
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/') == text)
        .then(|| origin.clone())
}

fn preflight_response(allowed: Option<HeaderValue>) -> HttpResponse {
    let Some(origin) = allowed else {
        // Not an allowed origin: answer without CORS headers, so the browser refuses.
        return HttpResponse::NoContent().finish();
    };
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
        .insert_header((header::VARY, "Origin"))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_METHODS,
            "GET, HEAD, POST, PUT, PATCH, DELETE",
        ))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_ALLOW_HEADERS))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, CORS_MAX_AGE))
        .finish()
}
