//! Waiting for a condition with a deadline, instead of a bare sleep: [`eventually`] in async
//! tests, [`poll_blocking`] in sync code (a child process's exit, a server's start-up).

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] asks again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The blocking twin of [`eventually`]: calls `check` every `every` until it returns `Some`,
/// and gives `None` once `within` has passed (the last call is after the deadline).
///
/// It returns instead of panicking because its callers have more to do first: kill the child
/// that did not exit and quote its log, or retry a server's start on other ports.
pub fn poll_blocking<T>(
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_blocking_returns_the_first_value_it_is_given() {
        let mut calls = 0;
        let found = poll_blocking(Duration::from_secs(5), Duration::from_millis(1), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(found, Some(3));
    }

    #[test]
    fn poll_blocking_gives_up_after_its_deadline() {
        let started = Instant::now();
        let found: Option<()> =
            poll_blocking(Duration::from_millis(50), Duration::from_millis(5), || None);
        assert_eq!(found, None);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
