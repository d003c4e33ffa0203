//! Publishing durable events: stored once, acknowledged by the stream.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;

use super::DurableError;
use crate::codec::EncodeError;
use crate::meta::header;
use crate::{Codec, Meta};

/// An event to store: what an outbox row holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEvent {
    /// Unique id (a UUIDv7 from [`new_event_id`]), sent as `Nats-Msg-Id`: the stream keeps one
    /// copy per id within its duplicate window, and consumers dedupe with it.
    pub id: String,
    /// The subject, within the events stream's subjects (`events.users.created`).
    pub subject: String,
    /// The encoded event.
    pub payload: Bytes,
    /// How `payload` is encoded; sent as `Content-Type`.
    pub codec: Codec,
    /// The request that caused the event, sent as `X-Request-Id`.
    pub request_id: Option<String>,
    /// The trace it belongs to, sent as `traceparent`.
    pub traceparent: Option<String>,
}

impl OutgoingEvent {
    /// `event` in JSON (any subscriber, `nats sub` included, can read it) on `subject`, with a
    /// fresh id and the request id and trace of `meta`.
    pub fn json<E: Serialize + ?Sized>(
        subject: impl Into<String>,
        event: &E,
        meta: &Meta,
    ) -> Result<Self, EncodeError> {
        Ok(Self {
            id: new_event_id(),
            subject: subject.into(),
            payload: Codec::Json.encode(event)?,
            codec: Codec::Json,
            request_id: Some(meta.request_id.clone()),
            traceparent: Some(meta.trace.to_header()),
        })
    }

    /// The same event with a given id (an outbox row's, made when the row was written).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The headers it travels with, `Nats-Msg-Id` apart.
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, self.codec.content_type());
        if let Some(id) = &self.request_id {
            headers.insert(header::REQUEST_ID, id.as_str());
        }
        if let Some(trace) = &self.traceparent {
            headers.insert(header::TRACEPARENT, trace.as_str());
        }
        headers
    }
}

/// A fresh UUIDv7 (RFC 9562): Unix milliseconds, then random bits. Ids sort by time, which
/// keeps an outbox table's index and the stream's dedupe table tidy.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// How long to wait for the stream's acknowledgement by default.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes durable events and waits for the stream to store them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Publisher {
    js: async_nats::jetstream::Context,
}

impl Publisher {
    /// A publisher on `nats` that waits up to 5 s for each acknowledgement.
    pub fn new(nats: async_nats::Client) -> Self {
        Self::with_timeout(nats, ACK_TIMEOUT)
    }

    /// A publisher that waits up to `timeout` for each acknowledgement.
    pub fn with_timeout(nats: async_nats::Client, timeout: Duration) -> Self {
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(timeout)
            .build(nats);
        Self { js }
    }

    /// Stores `event` and returns once the stream has acknowledged it. An acknowledgement of a
    /// duplicate (the same id within the duplicate window) is success: the event is stored,
    /// once. On [`DurableError::TimedOut`] or [`DurableError::NoAck`] the event may be stored
    /// or not; publishing it again with the same id is safe.
    pub async fn publish(&self, event: OutgoingEvent) -> Result<(), DurableError> {
        let publish = Publish::build()
            .payload(event.payload.clone())
            .headers(event.headers())
            .message_id(&event.id);
        let subject = event.subject;
        let failed = |e| publish_failed(&subject, e);
        let ack = self
            .js
            .send_publish(subject.clone(), publish)
            .await
            .map_err(failed)?
            .await
            .map_err(failed)?;
        if ack.duplicate {
            tracing::debug!(%subject, id = %event.id, "Event was stored before; not stored again.");
        }
        Ok(())
    }
}

fn publish_failed(
    subject: &str,
    source: async_nats::jetstream::context::PublishError,
) -> DurableError {
    let subject = subject.to_owned();
    match source.kind() {
        PublishErrorKind::StreamNotFound => DurableError::NoStream { subject },
        PublishErrorKind::TimedOut => DurableError::TimedOut { subject },
        PublishErrorKind::BrokenPipe => DurableError::NoAck { subject },
        _ => DurableError::Publish { subject, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_uuid_v7_and_sort_by_time() {
        let a = new_event_id();
        std::thread::sleep(Duration::from_millis(2));
        let b = new_event_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7", "{a}");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert!(a < b, "{a} {b}");
        assert_ne!(new_event_id(), new_event_id());
    }

    #[test]
    fn an_event_carries_its_codec_request_id_and_trace_in_headers() {
        let meta = Meta::root();
        let event = OutgoingEvent::json("events.x", &serde_json::json!({"a": 1}), &meta).unwrap();
        let headers = event.headers();
        assert_eq!(
            headers.get(header::CONTENT_TYPE).unwrap().as_str(),
            "application/json"
        );
        assert_eq!(
            headers.get(header::REQUEST_ID).unwrap().as_str(),
            meta.request_id
        );
        assert_eq!(
            headers.get(header::TRACEPARENT).unwrap().as_str(),
            meta.trace.to_header()
        );
    }
}
