//! Per-endpoint counters and the in-flight limit. Each number lives in one place, a Prometheus
//! metric, and `$SRV.STATS` reads the same metric, so the two never disagree.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use tokio::sync::Notify;

/// Metric names, one place each (counters end in `_total`, durations in `_seconds`).
pub mod metric_names {
    /// Requests received by an endpoint (`$SRV.STATS` `num_requests`).
    pub const REQUESTS: &str = "courier_endpoint_requests_total";
    /// Requests answered with an error, by wire code (`$SRV.STATS` `num_errors` is the
    /// endpoint's sum over codes).
    pub const ERRORS: &str = "courier_endpoint_errors_total";
    /// Requests refused at once because the endpoint was at its in-flight limit.
    pub const REJECTED: &str = "courier_endpoint_rejected_total";
    /// Time in handlers (`$SRV.STATS` `processing_time` is its sum).
    pub const PROCESSING: &str = "courier_endpoint_processing_seconds";
    /// Requests being handled now.
    pub const IN_FLIGHT: &str = "courier_endpoint_in_flight";
    /// Messages that arrived without a reply subject and so could not be answered.
    pub const NO_REPLY: &str = "courier_messages_without_reply_total";
    /// Events received by a subscription, by outcome (`ok`, `decode_error`, `crashed`).
    pub const EVENTS: &str = "courier_events_total";
}

/// Bounded label sets: the service name is a constant label, endpoints by name, never subjects.
#[derive(Clone)]
pub(crate) struct Metrics {
    requests: IntCounterVec,
    /// Labels `endpoint`, `code`.
    errors: IntCounterVec,
    rejected: IntCounterVec,
    processing: HistogramVec,
    in_flight: IntGaugeVec,
    pub(crate) no_reply: IntCounter,
    pub(crate) events: IntCounterVec,
}

/// The longest `last_error` kept per endpoint: every endpoint's is in each `$SRV.STATS` reply,
/// which must stay far below the server's max payload.
const LAST_ERROR_BYTES: usize = 256;

/// Handler-time buckets, 100 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl Metrics {
    pub(crate) fn register(registry: &Registry, service: &str) -> Result<Self, prometheus::Error> {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("service", service);
        let labels = &["endpoint"];
        let requests =
            IntCounterVec::new(opts(metric_names::REQUESTS, "Requests received."), labels)?;
        let errors = IntCounterVec::new(
            opts(
                metric_names::ERRORS,
                "Requests answered with an error, by code.",
            ),
            &["endpoint", "code"],
        )?;
        let rejected = IntCounterVec::new(
            opts(
                metric_names::REJECTED,
                "Requests refused at the in-flight limit.",
            ),
            labels,
        )?;
        let processing = HistogramVec::new(
            HistogramOpts::new(metric_names::PROCESSING, "Time spent in handlers.")
                .const_label("service", service)
                .buckets(BUCKETS.to_vec()),
            labels,
        )?;
        let in_flight = IntGaugeVec::new(
            opts(metric_names::IN_FLIGHT, "Requests being handled."),
            labels,
        )?;
        let no_reply = IntCounter::with_opts(opts(
            metric_names::NO_REPLY,
            "Requests without a reply subject.",
        ))?;
        let events = IntCounterVec::new(
            opts(metric_names::EVENTS, "Events received."),
            &["subscription", "outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(processing.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(no_reply.clone()))?;
        registry.register(Box::new(events.clone()))?;
        Ok(Self {
            requests,
            errors,
            rejected,
            processing,
            in_flight,
            no_reply,
            events,
        })
    }

    pub(crate) fn endpoint(&self, name: &str, max_in_flight: usize) -> EndpointStats {
        EndpointStats {
            requests: self.requests.with_label_values(&[name]),
            endpoint: name.to_owned(),
            errors: self.errors.clone(),
            errors_total: Arc::default(),
            rejected: self.rejected.with_label_values(&[name]),
            processing: self.processing.with_label_values(&[name]),
            last_error: Arc::new(Mutex::new(String::new())),
            in_flight: InFlight::new(max_in_flight, self.in_flight.with_label_values(&[name])),
        }
    }
}

/// The counters of one endpoint.
#[derive(Clone)]
pub(crate) struct EndpointStats {
    endpoint: String,
    requests: IntCounter,
    /// Every endpoint's errors by code: a code's series appears with its first error.
    errors: IntCounterVec,
    /// This endpoint's errors over every code, counted with them in [`EndpointStats::failed`]
    /// (so that `$SRV.STATS` reads a number instead of gathering the counter).
    errors_total: Arc<AtomicU64>,
    rejected: IntCounter,
    processing: Histogram,
    last_error: Arc<Mutex<String>>,
    pub(crate) in_flight: InFlight,
}

/// A snapshot, in the units `$SRV.STATS` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Requests received.
    pub num_requests: u64,
    /// Requests answered with an error.
    pub num_errors: u64,
    /// `"<code> <message>"` of the last error, empty when none.
    pub last_error: String,
    /// Total handler time, nanoseconds.
    pub processing_time_ns: u64,
    /// Requests that reached a handler (not refused at the door), the average's divisor.
    pub handled: u64,
    /// Requests refused at the in-flight limit.
    pub rejected: u64,
    /// Requests being handled now.
    pub in_flight: usize,
    /// The in-flight limit.
    pub max_in_flight: usize,
}

impl EndpointStats {
    pub(crate) fn received(&self) {
        self.requests.inc();
    }

    pub(crate) fn handled(&self, took: Duration) {
        self.processing.observe(took.as_secs_f64());
    }

    pub(crate) fn failed(&self, code: u16, message: &str) {
        self.errors
            .with_label_values(&[self.endpoint.as_str(), &code.to_string()])
            .inc();
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        let last = format!(
            "{code} {}",
            crate::error::truncate(message, LAST_ERROR_BYTES)
        );
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = last;
    }

    pub(crate) fn rejected(&self) {
        self.rejected.inc();
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            num_requests: self.requests.get(),
            num_errors: self.errors_total.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            processing_time_ns: (self.processing.get_sample_sum() * 1e9) as u64,
            handled: self.processing.get_sample_count(),
            rejected: self.rejected.get(),
            in_flight: self.in_flight.current(),
            max_in_flight: self.in_flight.limit,
        }
    }
}

/// Counts requests in flight against a limit, and lets drain wait until none are left.
#[derive(Clone)]
pub(crate) struct InFlight {
    count: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    gauge: IntGauge,
    limit: usize,
}

/// Held while a request is in flight; dropping it (even on panic or abort) releases the slot.
pub(crate) struct Slot(InFlight);

impl InFlight {
    fn new(limit: usize, gauge: IntGauge) -> Self {
        Self {
            count: Arc::default(),
            idle: Arc::default(),
            gauge,
            limit,
        }
    }

    /// A slot, or `None` when `limit` requests are already in flight.
    pub(crate) fn try_enter(&self) -> Option<Slot> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()?;
        self.gauge.inc();
        Some(Slot(self.clone()))
    }

    pub(crate) fn current(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub(crate) fn is_full(&self) -> bool {
        self.current() >= self.limit
    }

    /// Resolves once nothing is in flight.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.current() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.gauge.dec();
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(limit: usize) -> EndpointStats {
        let metrics = Metrics::register(&Registry::new(), "test").unwrap();
        metrics.endpoint("get", limit)
    }

    #[test]
    fn slots_stop_at_the_limit_and_free_on_drop() {
        let s = stats(2);
        let a = s.in_flight.try_enter().unwrap();
        let _b = s.in_flight.try_enter().unwrap();
        assert!(s.in_flight.try_enter().is_none());
        drop(a);
        assert!(s.in_flight.try_enter().is_some());
    }

    #[test]
    fn the_snapshot_reads_the_prometheus_counters() {
        let registry = Registry::new();
        let s = Metrics::register(&registry, "users")
            .unwrap()
            .endpoint("get", 4);
        s.received();
        s.received();
        s.failed(404, "no such user");
        s.failed(404, "no such user");
        s.failed(400, "id: not a UUID");
        s.handled(Duration::from_millis(3));
        let snap = s.snapshot();
        assert_eq!((snap.num_requests, snap.num_errors), (2, 3));
        assert_eq!(snap.last_error, "400 id: not a UUID");
        s.failed(404, "no such user");
        assert_eq!(s.snapshot().num_errors, 4, "every code counts");
        assert_eq!(s.snapshot().last_error, "404 no such user");
        assert!(
            (2_900_000..3_100_000).contains(&snap.processing_time_ns),
            "{}",
            snap.processing_time_ns
        );
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains(r#"courier_endpoint_requests_total{endpoint="get",service="users"} 2"#),
            "{text}"
        );
        for (code, count) in [("400", 1), ("404", 3)] {
            let line = format!(
                r#"courier_endpoint_errors_total{{code="{code}",endpoint="get",service="users"}} {count}"#
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    #[tokio::test]
    async fn idle_resolves_when_the_last_slot_drops() {
        let s = stats(1);
        let slot = s.in_flight.try_enter().unwrap();
        let waiter = tokio::spawn({
            let f = s.in_flight.clone();
            async move { f.idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(slot);
        waiter.await.unwrap();
    }
}
