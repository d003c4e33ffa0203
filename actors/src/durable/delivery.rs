//! What an actor bound to a durable subscription receives, and what it answers.

use std::future::Future;

use crate::{Cancelled, Meta};

/// A durable event as an actor receives it. Answer `Ok(())` once its effect is done (the event
/// is acknowledged and never delivered again), or an [`EventError`].
///
/// The same event may arrive again (see [the module](crate::durable)): handle it idempotently,
/// keyed by [`Delivery::id`].
#[derive(Debug)]
pub struct Delivery<E> {
    /// The decoded event.
    pub body: E,
    /// Request id and trace context of the work that published it (no deadline: an event is
    /// handled on the consumer's own time).
    pub meta: Meta,
    /// The event's id (its `Nats-Msg-Id`), the same on every delivery: the key to dedupe with.
    /// An event published without one gets `<stream>:<sequence>`, also stable.
    pub id: String,
    /// Which delivery this is: 1 the first time, more after retries and lost acks.
    pub delivered: u64,
}

/// Why a handler did not finish an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// It may work later (a dependency is down, a lock timed out): the event is delivered again
    /// after the configured backoff, and goes to the dead letters when it fails on its last
    /// delivery.
    #[error("retry: {0}")]
    Retry(String),
    /// It will never work (the event is invalid for this consumer): it goes to the dead
    /// letters at once.
    #[error("rejected: {0}")]
    Reject(String),
}

impl From<Cancelled> for EventError {
    /// Work stopped at the subscription's time limit is tried again later.
    fn from(cancelled: Cancelled) -> Self {
        Self::Retry(cancelled.to_string())
    }
}

impl<E: 'static> actix::Message for Delivery<E> {
    type Result = Result<(), EventError>;
}

impl<E: 'static> Delivery<E> {
    /// The future of an async handler: runs `work` until it ends or the subscription's time
    /// limit passes, when it is dropped where it stands (an open transaction rolls back) and
    /// the event counts as a retry:
    ///
    /// ```ignore
    /// fn handle(&mut self, ev: Delivery<UserCreated>, _: &mut Context<Self>) -> Self::Result {
    ///     let mailer = self.mailer.clone();
    ///     ev.serve(move |body, meta| async move { mailer.welcome(body, meta).await })
    /// }
    /// ```
    pub fn serve<F, Fut>(self, work: F) -> actix::ResponseFuture<Result<(), EventError>>
    where
        F: FnOnce(E, Meta) -> Fut,
        Fut: Future<Output = Result<(), EventError>> + 'static,
    {
        let watch = crate::message::Watch::of(&self.meta);
        let work = work(self.body, self.meta);
        Box::pin(async move {
            crate::message::until_cancelled(watch, work)
                .await
                .unwrap_or_else(|c| Err(c.into()))
        })
    }
}
