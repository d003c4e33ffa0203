//! Event subscriptions: each loop always reads its subscription, keeps a bounded number of
//! events waiting, and hands them to the actor a limited number at a time under a time limit.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use async_nats::{Message, Subscriber};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use super::bridge::reply_codec;
use super::endpoint::{EventOutcome, HandleEvent, Subscription};
use super::until_stopped;
use crate::stats::Metrics;
use crate::Meta;

/// How a subscription's events are taken in.
pub(super) struct EventLimits {
    /// Events handled at once.
    pub(super) concurrency: usize,
    /// Events received and waiting for a handler; past it, new ones are dropped.
    pub(super) buffer: usize,
    /// How long one event may be handled before it is cancelled.
    pub(super) timeout: Duration,
}

/// Delivers events to their actor, at most `limits.concurrency` at a time, keeping at most
/// `limits.buffer` waiting: the subscription is always read, so the client's own (large)
/// channel never fills, and what does not fit here is dropped, counted and logged. On stop,
/// drains the subscription and finishes the events it holds.
pub(super) async fn serve_events(
    subscription: Subscription,
    sub: Subscriber,
    limits: EventLimits,
    metrics: Metrics,
    stop: watch::Receiver<bool>,
) {
    let mut sub = sub;
    let subject = subscription.subject.as_str();
    let count = |outcome: EventOutcome| {
        metrics
            .events
            .with_label_values(&[subject, outcome.label()])
            .inc()
    };
    let mut waiting = VecDeque::new();
    let mut running = FuturesUnordered::new();
    let (mut draining, mut ended, mut dropped) = (false, false, 0u64);
    let stopped = until_stopped(stop);
    tokio::pin!(stopped);
    loop {
        while running.len() < limits.concurrency {
            let Some(msg) = waiting.pop_front() else {
                break;
            };
            running.push(handle_event(&*subscription.handler, msg, limits.timeout));
        }
        tokio::select! {
            msg = sub.next(), if !ended => match msg {
                Some(_) if waiting.len() >= limits.buffer => {
                    count(EventOutcome::Dropped);
                    if dropped == 0 {
                        tracing::warn!(%subject, buffer = limits.buffer, "Events arrive faster than they are handled; dropping.");
                    }
                    dropped += 1;
                }
                Some(msg) => {
                    if dropped > 0 {
                        tracing::warn!(%subject, dropped, "Event buffer has room again.");
                        dropped = 0;
                    }
                    waiting.push_back(msg);
                }
                None => ended = true,
            },
            Some(outcome) = running.next(), if !running.is_empty() => count(outcome),
            () = &mut stopped, if !draining => {
                draining = true;
                if let Err(error) = sub.drain().await {
                    tracing::warn!(%error, %subject, "Could not drain the subscription.");
                    ended = true;
                }
            }
            else => break,
        }
    }
}

/// Handles one event under its time limit; when time runs out the work is cancelled, and the
/// returned future still waits for it to end, so `concurrency` bounds work, not waiting.
async fn handle_event(handler: &dyn HandleEvent, msg: Message, limit: Duration) -> EventOutcome {
    let meta = Meta::from_headers(msg.headers.as_ref()).unwrap_or_else(|_| Meta::root());
    let cancel = meta.cancellation();
    let mut work =
        AssertUnwindSafe(handler.handle(reply_codec(&msg), msg.payload, meta)).catch_unwind();
    match tokio::time::timeout(limit, &mut work).await {
        Ok(outcome) => outcome.unwrap_or(EventOutcome::Crashed),
        Err(_) => {
            cancel.cancel();
            let _ = work.await;
            EventOutcome::TimedOut
        }
    }
}
