//! One call to a service: pick a healthy instance, send to its own subject in MessagePack,
//! retry on another instance when that is safe, within the deadline and the retry budget, and
//! keep the service's circuit breaker informed.
//!
//! What is retried: "no responders" and a 503 for every method (the instance never started the
//! work: it was gone, draining or at its in-flight limit); a timeout only for GET, HEAD, PUT
//! and DELETE, where doing the work twice is harmless. Retries come out of the retry budget,
//! except after "no responders": nobody received the request, so retrying adds no load.
//!
//! An instance that is gone, or failed a few times in a row, is left out of picking for a
//! while ([`Outliers`]); when every instance is left out, they are tried anyway.

use std::time::{Duration, Instant};

use courier_actors::{instance_subject, CallError, Client, Meta, Method};
use courier_discovery::Strategy;
use rand::Rng;
use serde_json::Value;

use crate::error::GatewayError;
use crate::learn::Snapshot;
use crate::metrics::Metrics;
use crate::resilience::{Admission, Breakers, Outcome, Outliers, RetryBudget};
use crate::routes::RouteEntry;

/// First pause before a retry; it doubles with each one, up to [`BACKOFF_CAP`], with jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(10);
/// The longest pause before a retry.
const BACKOFF_CAP: Duration = Duration::from_millis(200);
/// Most instances tried for one request.
const MAX_ATTEMPTS: usize = 3;

/// Sends requests to services. Shared by every HTTP worker.
pub struct Forwarder {
    strategy: Strategy,
    budget: RetryBudget,
    breakers: Breakers,
    outliers: Outliers,
    metrics: Metrics,
    /// See `gateway.attempt_timeout`; `None` when off.
    attempt_timeout: Option<Duration>,
}

impl Forwarder {
    /// A forwarder that picks by `strategy`, retries within `retry_budget`, and gives a try
    /// of an idempotent request at most `attempt_timeout` when another may follow (zero: no
    /// limit of its own).
    pub fn new(
        strategy: Strategy,
        retry_budget: f64,
        attempt_timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            strategy,
            budget: RetryBudget::new(retry_budget),
            breakers: Breakers::default(),
            outliers: Outliers::default(),
            attempt_timeout: (!attempt_timeout.is_zero()).then_some(attempt_timeout),
            metrics,
        }
    }

    /// Calls `entry`'s endpoint with `body`, on behalf of `meta` (deadline, ids, caller).
    /// Calls go out on `nats`, the calling worker's own connection (MessagePack).
    pub async fn call(
        &self,
        nats: &Client,
        snapshot: &Snapshot,
        entry: &RouteEntry,
        method: Method,
        body: &Value,
        meta: &Meta,
    ) -> Result<JsonReply, GatewayError> {
        let service = entry.service.as_str();
        if entry.direct {
            return self.call_subject(nats, entry, body, meta).await;
        }
        let discovery = snapshot
            .services
            .get(service)
            .ok_or_else(|| GatewayError::NoInstance(service.to_owned()))?;
        let admission = self.breakers.admit(service, Instant::now());
        if admission == Admission::Refused {
            return Err(GatewayError::CircuitOpen(service.to_owned()));
        }
        self.budget.deposit();
        let mut tried: Vec<String> = Vec::new();
        let mut last: Option<(GatewayError, bool)> = None;
        for attempt in 0..MAX_ATTEMPTS {
            let Some(pick) = self.pick(discovery, entry, &tried) else {
                break;
            };
            let free = last.as_ref().is_some_and(|(_, gone)| *gone);
            if attempt > 0 && !self.retry_allowed(service, meta, attempt, free).await {
                break;
            }
            let subject = instance_subject(&pick.instance.id, &entry.subject);
            let timer = self.metrics.upstream(service).start_timer();
            // A try that may be followed by another on a different instance waits less than
            // the whole deadline, so a request lost with an instance can still be answered.
            let limited = self
                .attempt_timeout
                .filter(|_| method.is_idempotent() && attempt + 1 < MAX_ATTEMPTS)
                .filter(|_| discovery.instances().len() > tried.len() + 1);
            let result: Result<JsonReply, CallError> = match limited {
                Some(limit) => {
                    let meta = meta.clone().with_timeout(limit);
                    nats.call(&subject, body, &meta).await
                }
                None => nats.call(&subject, body, meta).await,
            };
            timer.observe_duration();
            let outcome = outcome(&result);
            if self
                .outliers
                .record(&pick.instance.id, outcome, Instant::now())
            {
                tracing::warn!(service, instance = %pick.instance.id, ?outcome, "Instance left out of picking for a while.");
            }
            match result {
                Ok(reply) => {
                    self.record(service, false);
                    return Ok(reply);
                }
                Err(e) if retryable(&e, method) => {
                    tried.push(pick.instance.id.clone());
                    last = Some((GatewayError::from(e), outcome == Outcome::Gone));
                }
                Err(e) => {
                    let error = GatewayError::from(e);
                    self.record(service, error.is_service_failure());
                    return Err(error);
                }
            }
        }
        let error = last.map_or_else(|| GatewayError::NoInstance(service.to_owned()), |(e, _)| e);
        self.record(
            service,
            error.is_service_failure() || admission == Admission::Probe,
        );
        Err(error)
    }

    /// A static route's call: to the subject itself, whose queue group picks a responder.
    async fn call_subject(
        &self,
        nats: &Client,
        entry: &RouteEntry,
        body: &Value,
        meta: &Meta,
    ) -> Result<JsonReply, GatewayError> {
        let service = entry.service.as_str();
        if self.breakers.admit(service, Instant::now()) == Admission::Refused {
            return Err(GatewayError::CircuitOpen(service.to_owned()));
        }
        let timer = self.metrics.upstream(service).start_timer();
        let result: Result<JsonReply, CallError> = nats.call(&entry.subject, body, meta).await;
        timer.observe_duration();
        let result = result.map_err(|e| match e {
            CallError::NoResponders { .. } => GatewayError::NoInstance(service.to_owned()),
            other => GatewayError::from(other),
        });
        let failed = result.as_ref().is_err_and(GatewayError::is_service_failure);
        self.record(service, failed);
        result
    }

    /// An instance that serves the route's subject and was not tried yet: one not left out
    /// if there is one, else any.
    fn pick(
        &self,
        discovery: &courier_discovery::Discovery,
        entry: &RouteEntry,
        tried: &[String],
    ) -> Option<courier_discovery::Pick> {
        let now = Instant::now();
        let serves = |i: &courier_discovery::Instance| {
            !tried.contains(&i.id)
                && i.meta
                    .get("subjects")
                    .is_none_or(|s| s.split(',').any(|s| s == entry.subject))
        };
        discovery
            .pick_where(&self.strategy, |i| {
                serves(i) && !self.outliers.is_ejected(&i.id, now)
            })
            .or_else(|| discovery.pick_where(&self.strategy, serves))
    }

    /// Whether a retry may go now: the budget has one and the deadline leaves time after the
    /// backoff, which this waits out.
    async fn retry_allowed(&self, service: &str, meta: &Meta, attempt: usize, free: bool) -> bool {
        let pause = if free {
            Duration::ZERO
        } else {
            backoff(attempt)
        };
        if meta.remaining().is_some_and(|left| left <= pause) {
            return false;
        }
        if !free && !self.budget.withdraw() {
            self.metrics
                .retries
                .with_label_values(&[service, "refused_by_budget"])
                .inc();
            return false;
        }
        self.metrics
            .retries
            .with_label_values(&[service, "sent"])
            .inc();
        tokio::time::sleep(pause).await;
        true
    }

    fn record(&self, service: &str, failed: bool) {
        if let Some(state) = self.breakers.record(service, failed, Instant::now()) {
            tracing::warn!(service, ?state, "Circuit breaker changed state.");
            self.metrics
                .breaker
                .with_label_values(&[service])
                .set(state as i64);
        }
    }
}

/// A service's reply, already JSON: transcoded straight from the MessagePack on the wire, with
/// no `serde_json::Value` in between (building one cost more than the rest of the reply path).
#[derive(Debug)]
pub struct JsonReply(pub Vec<u8>);

impl<'de> serde::Deserialize<'de> for JsonReply {
    fn deserialize<D: serde::Deserializer<'de>>(from: D) -> Result<Self, D::Error> {
        let mut json = Vec::with_capacity(256);
        let mut to = serde_json::Serializer::new(&mut json);
        serde_transcode::transcode(from, &mut to).map_err(serde::de::Error::custom)?;
        Ok(Self(json))
    }
}

/// What a call's result says about the instance.
fn outcome(result: &Result<JsonReply, CallError>) -> Outcome {
    match result {
        Err(CallError::NoResponders { .. }) => Outcome::Gone,
        Err(CallError::TimedOut { .. }) => Outcome::Failed,
        Err(CallError::Service { error, .. }) if error.code >= 500 && error.code != 503 => {
            Outcome::Failed
        }
        _ => Outcome::Answered,
    }
}

/// Whether a failed call may be sent to another instance.
fn retryable(error: &CallError, method: Method) -> bool {
    match error {
        CallError::NoResponders { .. } => true,
        CallError::Service { error, .. } => error.code == 503,
        CallError::TimedOut { .. } => method.is_idempotent(),
        _ => false,
    }
}

/// `BACKOFF_BASE * 2^(attempt-1)`, capped, with full jitter in its upper half.
fn backoff(attempt: usize) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1 << attempt.saturating_sub(1).min(8));
    let cap = exp.min(BACKOFF_CAP);
    cap / 2 + cap.mul_f64(rand::thread_rng().gen_range(0.0..0.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..50 {
            assert!(backoff(1) >= BACKOFF_BASE / 2 && backoff(1) <= BACKOFF_BASE);
            assert!(backoff(20) <= BACKOFF_CAP);
        }
    }

    #[test]
    fn timeouts_are_retried_only_where_repeating_is_harmless() {
        let timed_out = CallError::TimedOut {
            subject: "users.get".into(),
            after: Duration::ZERO,
        };
        assert!(retryable(&timed_out, Method::Get));
        assert!(!retryable(&timed_out, Method::Post));
        let gone = CallError::NoResponders {
            subject: "users.create".into(),
        };
        assert!(retryable(&gone, Method::Post));
    }
}
