//! The time limits of the requests one endpoint loop is running, kept with one timer.
//!
//! A timer per request (`tokio::time::timeout`) took the runtime's timer-wheel lock as each
//! request started and again as it ended; and whenever the wheel had gone empty (every request
//! of a burst answered, which at c=64 is most wake-ups) the next request's timer also woke the
//! runtime's I/O driver, a `write(2)` to its eventfd: one for about every fifth request on the
//! bench's trivial endpoint at c=64 (`perf stat -e syscalls:sys_enter_write`).
//!
//! Here the loop holds each request's deadline beside its cancellation, and one timer set for
//! the soonest. Requests taken in later have later deadlines (the same limit from a later
//! start), so the timer is set again only when it fires, or when a caller's deadline is sooner
//! than every one held; a request that ends just gives its place back.

use std::pin::Pin;

use slab::Slab;
// Tokio's clock, the timer's own: the two agree even when tokio's clock is paused in a test.
use tokio::time::{Instant, Sleep};

use crate::meta::Cancellation;

/// The deadlines of the requests in flight on one endpoint loop.
pub(super) struct Deadlines {
    held: Slab<Held>,
    timer: Pin<Box<Sleep>>,
    /// When `timer` is set to fire; `None` when it is not set.
    armed: Option<Instant>,
}

/// One request's deadline.
struct Held {
    /// `None` once it has passed and the request was cancelled.
    until: Option<Instant>,
    cancellation: Cancellation,
}

/// Where a request's deadline is held, to give back when the request has ended.
#[derive(Debug)]
pub(super) struct Place(usize);

impl Deadlines {
    /// Needs a runtime with its clock on (every service runs in one).
    pub(super) fn new() -> Self {
        Self {
            held: Slab::new(),
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: None,
        }
    }

    /// Cancels `cancellation` once `until` has passed, unless given back first.
    pub(super) fn hold(&mut self, until: Instant, cancellation: Cancellation) -> Place {
        let place = self.held.insert(Held {
            until: Some(until),
            cancellation,
        });
        if self.armed.is_none_or(|armed| until < armed) {
            self.arm(until);
        }
        Place(place)
    }

    /// Gives back the place of a request that has ended.
    pub(super) fn release(&mut self, place: Place) {
        self.held.remove(place.0);
    }

    /// Whether a deadline is held and the timer is set for it: [`Deadlines::fired`] is to be
    /// awaited only then (a timer left set for requests since ended would keep a draining
    /// loop waiting).
    pub(super) fn waiting(&self) -> bool {
        self.armed.is_some() && !self.held.is_empty()
    }

    /// Resolves when the timer fires; then call [`Deadlines::expire`].
    pub(super) async fn fired(&mut self) {
        self.timer.as_mut().await;
    }

    /// Cancels every request whose deadline has passed, and sets the timer for the soonest
    /// deadline left.
    pub(super) fn expire(&mut self) {
        let now = Instant::now();
        let mut soonest: Option<Instant> = None;
        for (_, held) in &mut self.held {
            match held.until {
                Some(until) if until <= now => {
                    held.until = None;
                    held.cancellation.cancel();
                }
                Some(until) => soonest = Some(soonest.map_or(until, |s| s.min(until))),
                None => {}
            }
        }
        self.armed = None;
        if let Some(soonest) = soonest {
            self.arm(soonest);
        }
    }

    fn arm(&mut self, at: Instant) {
        self.timer.as_mut().reset(at);
        self.armed = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn cancels_what_has_passed_and_only_that() {
        let mut deadlines = Deadlines::new();
        let now = Instant::now();
        let (soon, later) = (Cancellation::default(), Cancellation::default());
        let _later = deadlines.hold(now + Duration::from_secs(60), later.clone());
        let _soon = deadlines.hold(now + Duration::from_millis(20), soon.clone());
        assert!(deadlines.waiting());
        tokio::time::timeout(Duration::from_secs(5), deadlines.fired())
            .await
            .expect("the timer fires at the soonest deadline held");
        deadlines.expire();
        assert!(soon.is_cancelled());
        assert!(!later.is_cancelled());
        assert!(now.elapsed() >= Duration::from_millis(20));
        assert_eq!(deadlines.armed, Some(now + Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn a_later_request_keeps_the_timer_and_a_sooner_one_resets_it() {
        let mut deadlines = Deadlines::new();
        let now = Instant::now();
        let first = deadlines.hold(now + Duration::from_secs(30), Cancellation::default());
        deadlines.hold(now + Duration::from_secs(31), Cancellation::default());
        assert_eq!(deadlines.armed, Some(now + Duration::from_secs(30)));
        deadlines.hold(now + Duration::from_secs(1), Cancellation::default());
        assert_eq!(deadlines.armed, Some(now + Duration::from_secs(1)));
        deadlines.release(first);
        assert_eq!(deadlines.held.len(), 2);
    }

    #[tokio::test]
    async fn nothing_held_is_nothing_to_wait_for() {
        let mut deadlines = Deadlines::new();
        assert!(!deadlines.waiting());
        let place = deadlines.hold(Instant::now(), Cancellation::default());
        assert!(deadlines.waiting());
        deadlines.release(place);
        assert!(
            !deadlines.waiting(),
            "a draining loop must not wait for its timer"
        );
    }

    #[tokio::test]
    async fn a_cancelled_request_keeps_its_place_until_given_back() {
        let mut deadlines = Deadlines::new();
        let cancellation = Cancellation::default();
        let place = deadlines.hold(Instant::now(), cancellation.clone());
        deadlines.fired().await;
        deadlines.expire();
        assert!(cancellation.is_cancelled());
        // Its place is not reused while the request still runs: giving it back later must
        // not free another request's.
        let other = deadlines.hold(
            Instant::now() + Duration::from_secs(60),
            Cancellation::default(),
        );
        assert_ne!(other.0, place.0);
        deadlines.release(place);
        assert_eq!(deadlines.held.len(), 1);
        assert!(deadlines.waiting());
    }
}
