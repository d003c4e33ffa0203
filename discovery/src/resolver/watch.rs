//! The watch task: blocking queries in a loop, following Consul's rules for them
//! (<https://developer.hashicorp.com/consul/api-docs/features/blocking>): reset the index when
//! it goes backwards, never block on an index below 1, rate-limit the loop, back off on errors.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Shared;
use crate::error::chain;
use crate::{Consul, DiscoveryError};

/// The least time between the starts of two queries, so a result that changes all the time (or
/// an agent that answers blocking queries at once) cannot make the loop spin.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The first pause after a failed query; it doubles on each failure in a row.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The longest pause between retries while Consul is unreachable.
const BACKOFF_CAP: Duration = Duration::from_secs(3);

/// Watches until told to stop or until every [`super::Resolver`] handle is gone.
pub(super) async fn run(
    consul: Consul,
    shared: Arc<Shared>,
    wait: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut state = State::default();
    loop {
        let started = Instant::now();
        let answer = tokio::select! {
            answer = consul.healthy(&shared.service, state.index, wait) => answer,
            () = stopped(&mut stop) => break,
        };
        let pause = match answer {
            Ok((index, instances)) => {
                state.answered(&shared.service, index);
                shared.apply(instances);
                MIN_INTERVAL.saturating_sub(started.elapsed())
            }
            Err(error) => state.failed(&shared.service, &error),
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stopped(&mut stop) => break,
        }
    }
    debug!(service = %shared.service, "Consul watch stopped.");
}

/// Resolves when `stop` turns true or its sender (the last handle) is dropped.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // Either outcome means stop: `Ok` is an explicit stop, `Err` the last handle dropped.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// What the loop remembers between queries.
#[derive(Debug, Default)]
struct State {
    /// The index to block on; `None` asks at once (the first query, or after a reset).
    index: Option<u64>,
    /// Failures in a row.
    failures: u32,
    /// When the current outage began, so it is logged once, and its end once.
    outage_since: Option<Instant>,
}

impl State {
    fn answered(&mut self, service: &str, index: u64) {
        if let Some(since) = self.outage_since.take() {
            let down_for = since.elapsed();
            info!(%service, ?down_for, "Consul reachable again; watch resumed.");
        }
        self.failures = 0;
        self.index = next_index(self.index, index);
    }

    /// Records a failure; returns how long to wait before the next try.
    fn failed(&mut self, service: &str, error: &DiscoveryError) -> Duration {
        let error = chain(error);
        self.failures = self.failures.saturating_add(1);
        if self.outage_since.is_none() {
            warn!(%service, %error, "Consul unreachable; serving cached instances.");
            self.outage_since = Some(Instant::now());
        } else {
            debug!(%service, %error, failures = self.failures, "Consul still unreachable.");
        }
        // The agent may come back with a fresh Raft store whose indexes are lower than ours;
        // blocking on our old index would then hang for a whole wait. Ask afresh instead.
        self.index = None;
        backoff(self.failures)
    }
}

/// The index for the next query, given the previous one and the one Consul just returned.
fn next_index(previous: Option<u64>, returned: u64) -> Option<u64> {
    match previous {
        // Went backwards (a snapshot restore, a new agent): start again with a plain query.
        Some(previous) if returned < previous => None,
        // An index of 0 would answer at once, turning the loop hot: Consul says use 1.
        _ => Some(returned.max(1)),
    }
}

/// The pause after the `failures`-th failure in a row: doubling from [`BACKOFF_BASE`] up to
/// [`BACKOFF_CAP`], with jitter into its upper half so watchers do not retry in lockstep.
fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let full = BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_CAP);
    rand::thread_rng().gen_range(full / 2..=full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_answer_sets_the_index() {
        assert_eq!(next_index(None, 42), Some(42));
    }

    #[test]
    fn an_index_that_goes_backwards_is_reset() {
        assert_eq!(next_index(Some(42), 7), None);
        assert_eq!(next_index(Some(42), 42), Some(42));
    }

    #[test]
    fn an_index_of_zero_is_never_used() {
        assert_eq!(next_index(None, 0), Some(1));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert!(backoff(1) <= BACKOFF_BASE && backoff(1) >= BACKOFF_BASE / 2);
        assert!(backoff(2) <= BACKOFF_BASE * 2 && backoff(2) >= BACKOFF_BASE);
        for failures in [10, 100, u32::MAX] {
            let pause = backoff(failures);
            assert!(
                pause <= BACKOFF_CAP && pause >= BACKOFF_CAP / 2,
                "{pause:?}"
            );
        }
    }
}
