//! What keeps failures from spreading (pure, clock passed in where it matters): a retry
//! budget, a circuit breaker per service, a token bucket per client.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Retries allowed as a share of requests (Finagle's and linkerd's retry budget): every
/// request deposits `ratio` of a retry, every retry withdraws one, and the balance is capped,
/// so under overload retries add at most `ratio` to the load instead of multiplying it.
#[derive(Debug)]
pub struct RetryBudget {
    /// Thousandths of a retry.
    balance: AtomicI64,
    deposit: i64,
}

/// One retry, in the budget's unit.
const RETRY_COST: i64 = 1000;
/// The balance never exceeds this many retries, and starts there: a few retries are always
/// allowed after a quiet period.
const RETRY_BURST: i64 = 10;

impl RetryBudget {
    /// A budget of `ratio` retries per request.
    pub fn new(ratio: f64) -> Self {
        Self {
            balance: AtomicI64::new(RETRY_BURST * RETRY_COST),
            deposit: (ratio * RETRY_COST as f64).round() as i64,
        }
    }

    /// Counts a request.
    pub fn deposit(&self) {
        let cap = RETRY_BURST * RETRY_COST;
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((b + self.deposit).min(cap))
            });
    }

    /// Takes one retry if the budget has it.
    pub fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= RETRY_COST).then_some(b - RETRY_COST)
            })
            .is_ok()
    }
}

/// Consecutive failures that open a breaker.
pub const BREAKER_THRESHOLD: u32 = 5;
/// How long an open breaker refuses before letting one probe through.
pub const BREAKER_COOL_DOWN: Duration = Duration::from_secs(5);

/// The breaker's states, as `courier_gateway_breaker_state` reports them (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed = 0,
    /// Calls are refused until the cool-down ends.
    Open = 1,
    /// One probe is out; others are refused until it answers.
    HalfOpen = 2,
}

#[derive(Debug)]
struct Breaker {
    state: BreakerState,
    failures: u32,
    opened_at: Instant,
}

/// One breaker per service.
#[derive(Debug, Default)]
pub struct Breakers {
    services: Mutex<HashMap<String, Breaker>>,
}

/// What the breaker says about a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Allowed,
    /// Go ahead: you are the probe of a half-open breaker.
    Probe,
    /// Refused: answer 503 at once.
    Refused,
}

impl Breakers {
    /// Whether a call to `service` may go now.
    pub fn admit(&self, service: &str, now: Instant) -> Admission {
        let mut services = self.lock();
        let Some(b) = services.get_mut(service) else {
            return Admission::Allowed;
        };
        match b.state {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::Open if now.duration_since(b.opened_at) >= BREAKER_COOL_DOWN => {
                b.state = BreakerState::HalfOpen;
                b.opened_at = now;
                Admission::Probe
            }
            // A probe that never reported (its request was dropped) frees the way after
            // another cool-down.
            BreakerState::HalfOpen if now.duration_since(b.opened_at) >= BREAKER_COOL_DOWN => {
                b.opened_at = now;
                Admission::Probe
            }
            BreakerState::Open | BreakerState::HalfOpen => Admission::Refused,
        }
    }

    /// Records how a call to `service` ended; returns the new state when it changed.
    pub fn record(&self, service: &str, failed: bool, now: Instant) -> Option<BreakerState> {
        let mut services = self.lock();
        let b = services.entry(service.to_owned()).or_insert(Breaker {
            state: BreakerState::Closed,
            failures: 0,
            opened_at: now,
        });
        let before = b.state;
        if failed {
            b.failures += 1;
            if b.state == BreakerState::HalfOpen || b.failures >= BREAKER_THRESHOLD {
                b.state = BreakerState::Open;
                b.opened_at = now;
            }
        } else {
            b.failures = 0;
            b.state = BreakerState::Closed;
        }
        (b.state != before || (failed && before == BreakerState::HalfOpen)).then_some(b.state)
    }

    /// The state of `service`'s breaker.
    pub fn state(&self, service: &str) -> BreakerState {
        self.lock()
            .get(service)
            .map_or(BreakerState::Closed, |b| b.state)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Breaker>> {
        self.services.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Consecutive failures (time-outs, 5xx) that eject an instance from picking.
pub const OUTLIER_THRESHOLD: u32 = 3;
/// How long an ejected instance is left out (Consul usually drops a dead one sooner).
pub const EJECTION: Duration = Duration::from_secs(10);

/// Outlier detection: instances that are gone ("no responders": nobody listens on their own
/// subject) or keep failing are left out of picking for [`EJECTION`], so one dead instance
/// costs one retry, not one per request until Consul notices.
#[derive(Debug, Default)]
pub struct Outliers {
    instances: Mutex<HashMap<String, Outlier>>,
}

#[derive(Debug, Default)]
struct Outlier {
    failures: u32,
    ejected_until: Option<Instant>,
}

/// How a call to one instance ended, for [`Outliers::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It answered (an error of the caller's making counts as an answer).
    Answered,
    /// It timed out or failed with a 5xx.
    Failed,
    /// Nobody listens on its subject: it is gone.
    Gone,
}

impl Outliers {
    /// Whether `id` is left out of picking now.
    pub fn is_ejected(&self, id: &str, now: Instant) -> bool {
        let instances = self.lock();
        instances
            .get(id)
            .and_then(|o| o.ejected_until)
            .is_some_and(|until| now < until)
    }

    /// Records a call's outcome; `true` when it ejected the instance.
    pub fn record(&self, id: &str, outcome: Outcome, now: Instant) -> bool {
        let mut instances = self.lock();
        if outcome == Outcome::Answered {
            instances.remove(id);
            return false;
        }
        let outlier = instances.entry(id.to_owned()).or_default();
        outlier.failures += 1;
        let eject = outcome == Outcome::Gone || outlier.failures >= OUTLIER_THRESHOLD;
        let already = outlier.ejected_until.is_some_and(|until| now < until);
        if eject {
            outlier.ejected_until = Some(now + EJECTION);
        }
        if instances.len() > MAX_CLIENTS {
            instances.retain(|_, o| o.ejected_until.is_some_and(|until| now < until));
        }
        eject && !already
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Outlier>> {
        self.instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Most clients remembered; past it, the idle ones are forgotten.
const MAX_CLIENTS: usize = 100_000;

/// A token bucket per client address: `rate` a second, bursts of `rate`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    clients: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` requests a second per client, with a burst of as many.
    pub fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            clients: Mutex::default(),
        }
    }

    /// `Ok` to serve, or how long the client should wait.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if clients.len() >= MAX_CLIENTS {
            let rate = self.rate;
            clients.retain(|_, (_, at)| now.duration_since(*at).as_secs_f64() * rate < rate);
        }
        let (tokens, at) = clients.entry(client).or_insert((self.rate, now));
        let refill = now.duration_since(*at).as_secs_f64() * self.rate;
        *tokens = (*tokens + refill).min(self.rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_budget_allows_a_share_of_requests_after_its_burst() {
        let budget = RetryBudget::new(0.2);
        let burst = (0..100).take_while(|_| budget.withdraw()).count();
        assert_eq!(burst, RETRY_BURST as usize);
        for _ in 0..40 {
            budget.deposit();
        }
        let allowed = (0..100).take_while(|_| budget.withdraw()).count();
        assert_eq!(allowed, 8, "20% of 40 requests");
        for _ in 0..1000 {
            budget.deposit();
        }
        let allowed = (0..100).take_while(|_| budget.withdraw()).count();
        assert_eq!(allowed, RETRY_BURST as usize, "the balance is capped");
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_probes_after_the_cool_down() {
        let breakers = Breakers::default();
        let t0 = Instant::now();
        for _ in 0..BREAKER_THRESHOLD - 1 {
            assert_eq!(breakers.record("users", true, t0), None);
        }
        assert_eq!(breakers.admit("users", t0), Admission::Allowed);
        assert_eq!(breakers.record("users", true, t0), Some(BreakerState::Open));
        assert_eq!(breakers.admit("users", t0), Admission::Refused);
        let later = t0 + BREAKER_COOL_DOWN;
        assert_eq!(breakers.admit("users", later), Admission::Probe);
        assert_eq!(breakers.admit("users", later), Admission::Refused);
        assert_eq!(
            breakers.record("users", true, later),
            Some(BreakerState::Open)
        );
        let again = later + BREAKER_COOL_DOWN;
        assert_eq!(breakers.admit("users", again), Admission::Probe);
        assert_eq!(
            breakers.record("users", false, again),
            Some(BreakerState::Closed)
        );
        assert_eq!(breakers.admit("users", again), Admission::Allowed);
        assert_eq!(breakers.admit("orders", t0), Admission::Allowed);
    }

    #[test]
    fn a_success_resets_the_count_of_failures() {
        let breakers = Breakers::default();
        let now = Instant::now();
        for _ in 0..10 {
            breakers.record("users", true, now);
            breakers.record("users", false, now);
        }
        assert_eq!(breakers.state("users"), BreakerState::Closed);
    }

    #[test]
    fn a_gone_instance_is_ejected_at_once_and_a_failing_one_after_a_few_failures() {
        let outliers = Outliers::default();
        let t0 = Instant::now();
        assert!(outliers.record("a", Outcome::Gone, t0));
        assert!(outliers.is_ejected("a", t0));
        assert!(!outliers.is_ejected("a", t0 + EJECTION));
        for _ in 0..OUTLIER_THRESHOLD - 1 {
            assert!(!outliers.record("b", Outcome::Failed, t0));
        }
        assert!(!outliers.is_ejected("b", t0));
        assert!(outliers.record("b", Outcome::Failed, t0));
        assert!(outliers.is_ejected("b", t0));
        outliers.record("b", Outcome::Answered, t0);
        assert!(!outliers.is_ejected("b", t0));
    }

    #[test]
    fn the_rate_limiter_allows_a_burst_then_the_rate_per_client() {
        let limiter = RateLimiter::new(5);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| limiter.check(a, t0).is_ok()).count(), 5);
        let wait = limiter.check(a, t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        assert!(limiter.check(b, t0).is_ok());
        let later = t0 + Duration::from_millis(400);
        assert_eq!(
            (0..10).filter(|_| limiter.check(a, later).is_ok()).count(),
            2
        );
    }
}
