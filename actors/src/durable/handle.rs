//! One delivery, from the message to its settlement: decode, hand to the actor under a time
//! limit, then ack, nak with backoff, or dead-letter and terminate.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::{AckKind, Message};
use async_nats::HeaderMap;
use futures::future::BoxFuture;
use futures::FutureExt;

use super::consumer::Consumer;
use super::dead_letter::{self, Circumstances, Reason};
use super::subscription::Outcome;
use crate::meta::name;
use crate::service::CancelOnDrop;
use crate::trace::{self, Span, SpanKind};
use crate::{Codec, Meta};

/// Where a delivery stands, from its ack subject and headers.
struct Delivered {
    /// The event's id: its `Nats-Msg-Id`, or `<stream>:<sequence>`.
    id: String,
    /// 1 for the first delivery.
    count: u64,
    /// Its sequence in the stream.
    sequence: u64,
}

/// What to tell the server about a delivery.
enum Verdict {
    Ack,
    /// Deliver again after the backoff.
    Nak(String),
    DeadLetter(Reason, String),
}

impl Consumer {
    /// Handles and settles one delivery. Dropped before it ends (a drain past its grace), it
    /// cancels the handler's work and settles nothing: the event is delivered again.
    pub(super) async fn process(&self, msg: Message) {
        let Some(delivered) = delivered(&msg) else {
            tracing::warn!(consumer = %self.durable, subject = %msg.subject, "Not a JetStream delivery; ignored.");
            return;
        };
        self.stats.delivered.inc();
        if delivered.count > 1 {
            self.stats.redelivered.inc();
        }
        let verdict = self.verdict(&msg, &delivered).await;
        self.settle(msg, &delivered, verdict).await;
    }

    async fn verdict(&self, msg: &Message, delivered: &Delivered) -> Verdict {
        let headers = msg.headers.as_ref();
        let content_type = headers
            .and_then(|h| h.get(name::content_type()))
            .map(|v| v.as_str());
        let codec = match Codec::from_content_type(content_type) {
            Ok(codec) => codec,
            Err(problem) => return Verdict::DeadLetter(Reason::DecodeError, problem),
        };
        let mut meta = Meta::from_headers(headers).unwrap_or_else(|_| Meta::root());
        // An event is handled on the consumer's time, not its publisher's.
        meta.deadline = None;
        let id = delivered.id.clone();
        let work = match self
            .handler
            .handle(codec, &msg.payload, meta.clone(), id, delivered.count)
        {
            Ok(work) => work,
            Err(e) => {
                return Verdict::DeadLetter(Reason::DecodeError, format!("invalid event: {e}"))
            }
        };
        let started = Instant::now();
        let outcome = within(self.limits.timeout, &meta, work).await;
        if trace::enabled() {
            let error = match &outcome {
                Outcome::Handled => None,
                Outcome::Reject(why) | Outcome::Retry(why) => Some(why.clone()),
            };
            trace::record(
                Span::of_hop(
                    msg.subject.to_string(),
                    SpanKind::Consumer,
                    &meta,
                    started.elapsed(),
                )
                .with("courier.consumer", self.durable.clone())
                .with("courier.event_id", delivered.id.clone())
                .failed(error),
            );
        }
        match outcome {
            Outcome::Handled => Verdict::Ack,
            Outcome::Reject(why) => Verdict::DeadLetter(Reason::Rejected, why),
            Outcome::Retry(why) if delivered.count >= self.limits.max_deliver => {
                Verdict::DeadLetter(Reason::MaxDeliver, why)
            }
            Outcome::Retry(why) => Verdict::Nak(why),
        }
    }

    async fn settle(&self, msg: Message, delivered: &Delivered, verdict: Verdict) {
        let consumer = self.durable.as_str();
        match verdict {
            Verdict::Ack => match msg.ack().await {
                Ok(()) => self.stats.acked.inc(),
                Err(error) => {
                    tracing::warn!(%error, consumer, id = %delivered.id, "Could not ack; the event will be delivered again.");
                }
            },
            Verdict::Nak(why) => {
                tracing::debug!(consumer, id = %delivered.id, delivered = delivered.count, %why, "Event to be retried.");
                self.nak(&msg, delivered).await;
            }
            Verdict::DeadLetter(reason, why) => {
                self.dead_letter(msg, delivered, reason, &why).await;
            }
        }
    }

    async fn nak(&self, msg: &Message, delivered: &Delivered) {
        let delay = self.limits.events.backoff_after(delivered.count);
        match msg.ack_with(AckKind::Nak(delay)).await {
            Ok(()) => self.stats.nacked.inc(),
            Err(error) => {
                tracing::warn!(%error, consumer = %self.durable, id = %delivered.id, "Could not nak; the event will be delivered again after ack_wait.");
            }
        }
    }

    /// Publishes the event to this consumer's dead-letter subject, then terminates it. If the
    /// dead letter cannot be stored the event is nak'ed instead, never dropped silently.
    async fn dead_letter(&self, msg: Message, delivered: &Delivered, reason: Reason, why: &str) {
        let circumstances = Circumstances {
            reason,
            error: why,
            consumer: &self.durable,
            subject: msg.subject.as_str(),
            sequence: delivered.sequence,
            delivered: delivered.count,
            event_id: &delivered.id,
        };
        let publish = Publish::build()
            .payload(msg.payload.clone())
            .headers(dead_letter::headers(msg.headers.as_ref(), &circumstances))
            .message_id(format!("{}:{}", self.durable, delivered.id));
        let stored = match self
            .dead_letters
            .send_publish(self.dead_letter_subject.clone(), publish)
            .await
        {
            Ok(ack) => ack.await.map(|_| ()),
            Err(e) => Err(e),
        };
        let consumer = self.durable.as_str();
        if let Err(error) = stored {
            tracing::error!(%error, consumer, id = %delivered.id, sequence = delivered.sequence, "Dead letter could not be stored; nak'ed instead (on its last delivery the event stays in the stream only).");
            self.nak(&msg, delivered).await;
            return;
        }
        if let Err(error) = msg.ack_with(AckKind::Term).await {
            tracing::warn!(%error, consumer, id = %delivered.id, "Could not terminate a dead-lettered event; it may be delivered again.");
        }
        self.stats.dead_lettered.inc();
        tracing::warn!(consumer, id = %delivered.id, reason = reason.label(), delivered = delivered.count, error = %why, "Event sent to the dead letters.");
    }
}

/// The delivery's id, count and sequence, from its ack subject and `Nats-Msg-Id`.
fn delivered(msg: &Message) -> Option<Delivered> {
    let info = msg.info().ok()?;
    let id = msg
        .headers
        .as_ref()
        .and_then(message_id)
        .unwrap_or_else(|| format!("{}:{}", info.stream, info.stream_sequence));
    Some(Delivered {
        id,
        count: u64::try_from(info.delivered).unwrap_or(1),
        sequence: info.stream_sequence,
    })
}

fn message_id(headers: &HeaderMap) -> Option<String> {
    let id = headers.get(name::message_id())?.as_str().trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// Runs the handler's work under `limit`. Past it the work is cancelled (cooperative work
/// ends at once) and waited for, so the concurrency bounds work, not waiting; a panic or a
/// time-out is a retry.
async fn within(limit: Duration, meta: &Meta, work: BoxFuture<'static, Outcome>) -> Outcome {
    let guard = CancelOnDrop::new(meta);
    let mut work = AssertUnwindSafe(work).catch_unwind();
    let outcome = match tokio::time::timeout(limit, &mut work).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_panic)) => Outcome::Retry("the handler panicked".to_owned()),
        Err(_) => {
            meta.cancel();
            let _ = work.await;
            Outcome::Retry(format!("not handled within {limit:?}"))
        }
    };
    guard.disarm();
    outcome
}
