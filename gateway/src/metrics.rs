//! The gateway's metrics: names in one place, labels bounded (route templates and service
//! names, never raw paths or ids).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Requests by route template, method and status.
pub const REQUESTS: &str = "courier_gateway_requests_total";
/// Request latency by route template and method.
pub const DURATION: &str = "courier_gateway_request_duration_seconds";
/// Time spent waiting for services, by service.
pub const UPSTREAM: &str = "courier_gateway_upstream_duration_seconds";
/// Retries by service and outcome (`sent`, `refused_by_budget`).
pub const RETRIES: &str = "courier_gateway_retries_total";
/// The outcomes of [`RETRIES`].
pub const RETRY_OUTCOMES: [&str; 2] = ["sent", "refused_by_budget"];
/// Breaker state by service: 0 closed, 1 open, 2 half-open.
pub const BREAKER: &str = "courier_gateway_breaker_state";
/// Requests in flight.
pub const IN_FLIGHT: &str = "courier_gateway_in_flight";
/// Requests refused by the per-client rate limit.
pub const RATE_LIMITED: &str = "courier_gateway_rate_limited_total";
/// Requests refused at the in-flight limit.
pub const OVERLOADED: &str = "courier_gateway_overloaded_total";
/// Routes known.
pub const ROUTES: &str = "courier_gateway_routes";

/// The label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every gateway metric, registered once.
#[derive(Clone)]
pub struct Metrics {
    /// See [`REQUESTS`].
    pub requests: IntCounterVec,
    /// See [`DURATION`].
    pub duration: HistogramVec,
    /// See [`UPSTREAM`].
    pub upstream: HistogramVec,
    /// See [`RETRIES`].
    pub retries: IntCounterVec,
    /// See [`BREAKER`].
    pub breaker: IntGaugeVec,
    /// See [`IN_FLIGHT`].
    pub in_flight: IntGauge,
    /// See [`RATE_LIMITED`].
    pub rate_limited: IntCounter,
    /// See [`OVERLOADED`].
    pub overloaded: IntCounter,
    /// See [`ROUTES`].
    pub routes: IntGauge,
}

impl Metrics {
    /// Registers every metric in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                labels,
            )
        };
        let metrics = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    REQUESTS,
                    "HTTP requests by route template, method and status.",
                ),
                &["route", "method", "status"],
            )?,
            duration: histogram(DURATION, "HTTP request latency.", &["route", "method"])?,
            upstream: histogram(
                UPSTREAM,
                "Time waiting for a service's reply.",
                &["service"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(RETRIES, "Retries on another instance, by outcome."),
                &["service", "outcome"],
            )?,
            breaker: IntGaugeVec::new(
                Opts::new(BREAKER, "Circuit breaker: 0 closed, 1 open, 2 half-open."),
                &["service"],
            )?,
            in_flight: IntGauge::new(IN_FLIGHT, "HTTP requests in flight.")?,
            rate_limited: IntCounter::new(RATE_LIMITED, "Requests refused by the rate limit.")?,
            overloaded: IntCounter::new(OVERLOADED, "Requests refused at the in-flight limit.")?,
            routes: IntGauge::new(ROUTES, "Routes the gateway serves.")?,
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        registry.register(Box::new(metrics.upstream.clone()))?;
        registry.register(Box::new(metrics.retries.clone()))?;
        registry.register(Box::new(metrics.breaker.clone()))?;
        registry.register(Box::new(metrics.in_flight.clone()))?;
        registry.register(Box::new(metrics.rate_limited.clone()))?;
        registry.register(Box::new(metrics.overloaded.clone()))?;
        registry.register(Box::new(metrics.routes.clone()))?;
        Ok(metrics)
    }

    /// One finished request.
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        self.requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// Gives every per-service series of `services` a value (breaker closed, no retries, no
    /// replies yet), so dashboards and alerts see a service as soon as it is known, not at its
    /// first retry or breaker change.
    pub fn cover<'a>(&self, services: impl IntoIterator<Item = &'a str>) {
        for service in services {
            self.breaker.with_label_values(&[service]);
            self.upstream.with_label_values(&[service]);
            for outcome in RETRY_OUTCOMES {
                self.retries.with_label_values(&[service, outcome]);
            }
        }
    }

    /// The latency histogram of one service's replies.
    pub fn upstream(&self, service: &str) -> Histogram {
        self.upstream.with_label_values(&[service])
    }
}
