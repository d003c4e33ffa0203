//! Durable events on JetStream: at least once, where core NATS events are at most once.
//!
//! - [`ensure_streams`] creates (or updates) the events stream and the dead-letter stream;
//!   every instance may call it at start, at the same time.
//! - [`Publisher::publish`] stores an [`OutgoingEvent`] and waits for the stream's ack. Its `id`
//!   travels as `Nats-Msg-Id`: the stream stores a retried publish once within its duplicate
//!   window, so an outbox relay may publish the same row again after a crash.
//! - A [`DurableSubscription`], declared on the service builder like a [`crate::Subscription`],
//!   binds a durable pull consumer to an actor that handles [`Delivery<E>`] and answers
//!   `Ok(())` (ack), [`EventError::Retry`] (redelivery after the configured backoff) or
//!   [`EventError::Reject`] (dead letter at once). An event that still fails on its last
//!   delivery, or cannot be decoded, goes to `deadletter.<service>.<durable name>` with headers
//!   naming why, and the consumer carries on.
//!
//! **Handlers must be idempotent.** An event may arrive more than once: a crash after the work
//! and before the ack, an ack lost on the way, a handler slower than `events.ack_wait`.
//! [`Delivery::id`] is the same on every delivery of one event (its `Nats-Msg-Id`): keep the ids
//! you handled in the same transaction as the effect and skip the ones you have seen.
//!
//! Domain actors see [`Delivery<E>`] and [`EventError`], never a NATS type.

mod consumer;
mod dead_letter;
mod delivery;
mod handle;
mod metrics;
mod publish;
mod streams;
mod subscription;

pub(crate) use consumer::{start_all, Setup};
pub use dead_letter::header as dead_letter_header;
pub use dead_letter::{dead_letter_subject, Reason};
pub use delivery::{Delivery, EventError};
pub use metrics::metric_names;
pub(crate) use metrics::ConsumerMetrics;
pub use publish::{new_event_id, OutgoingEvent, Publisher};
pub use streams::ensure_streams;
pub(crate) use subscription::check;
pub use subscription::DurableSubscription;

/// What can fail on the durable path.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// No stream takes the subject (NATS "no responders" on a JetStream publish).
    #[error("no stream takes {subject}")]
    NoStream {
        /// The subject published to.
        subject: String,
    },
    /// The stream did not acknowledge the publish in time; it may or may not be stored, and
    /// publishing again with the same id is safe.
    #[error("no acknowledgement for the event on {subject} in time")]
    TimedOut {
        /// The subject published to.
        subject: String,
    },
    /// The connection lost the acknowledgement (closed, or reconnecting).
    #[error("the acknowledgement for the event on {subject} was lost")]
    NoAck {
        /// The subject published to.
        subject: String,
    },
    /// The publish failed otherwise (too large, refused by the server).
    #[error("cannot publish the event on {subject}: {source}")]
    Publish {
        /// The subject published to.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
    /// A stream could not be created or updated.
    #[error("cannot create or update stream {stream}: {source}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// The client's error.
        #[source]
        source: async_nats::jetstream::context::CreateStreamError,
    },
    /// A durable consumer could not be created or updated.
    #[error("cannot create durable consumer {durable} on {stream}: {source}")]
    Consumer {
        /// The consumer's durable name.
        durable: String,
        /// The stream.
        stream: String,
        /// The client's error.
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
}
