//! Publishing durable events: stored once, acknowledged by the stream.

use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::DurableError;
use crate::codec::EncodeError;
use crate::meta::{name, TraceContext};
use crate::trace::{self, Span, SpanKind};
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

    /// The meta of its publish as a hop of the trace it carries; `None` without one.
    fn next_hop(&self) -> Option<Meta> {
        let parent = TraceContext::parse(self.traceparent.as_deref()?)?;
        let mut hop = Meta::root();
        if let Some(id) = &self.request_id {
            hop.request_id.clone_from(id);
        }
        hop.follow(parent);
        Some(hop)
    }

    /// What a publish whose acknowledgement was lost (or never asked for) ends in.
    fn no_ack(&self) -> DurableError {
        DurableError::NoAck {
            subject: self.subject.clone(),
        }
    }

    /// The headers it travels with, `Nats-Msg-Id` apart.
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name::content_type(), self.codec.content_type());
        if let Some(id) = &self.request_id {
            headers.insert(name::request_id(), id.as_str());
        }
        if let Some(trace) = &self.traceparent {
            headers.insert(name::traceparent(), trace.as_str());
        }
        headers
    }
}

/// A fresh UUIDv7 (RFC 9562): Unix milliseconds, then random bits. Ids sort by time, which
/// keeps an outbox table's index and the stream's dedupe table tidy.
pub fn new_event_id() -> String {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::now_v7()
        .hyphenated()
        .encode_lower(&mut text)
        .to_owned()
}

/// How long to wait for the stream's acknowledgement by default.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes durable events and waits for the stream to store them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Publisher {
    nats: async_nats::Client,
    timeout: Duration,
}

impl Publisher {
    /// A publisher on `nats` that waits up to 5 s for the acknowledgements of a publish.
    pub fn new(nats: async_nats::Client) -> Self {
        Self::with_timeout(nats, ACK_TIMEOUT)
    }

    /// A publisher that waits up to `timeout` for the acknowledgements of a publish.
    pub fn with_timeout(nats: async_nats::Client, timeout: Duration) -> Self {
        Self { nats, timeout }
    }

    /// Stores `event` and returns once the stream has acknowledged it. An acknowledgement of a
    /// duplicate (the same id within the duplicate window) is success: the event is stored,
    /// once. On [`DurableError::TimedOut`] or [`DurableError::NoAck`] the event may be stored
    /// or not; publishing it again with the same id is safe.
    pub async fn publish(&self, event: OutgoingEvent) -> Result<(), DurableError> {
        let mut results = self.publish_all(std::slice::from_ref(&event)).await;
        results.pop().unwrap_or_else(|| Err(event.no_ack()))
    }

    /// Stores `events` together: every publish is sent, then the acknowledgements are awaited
    /// together, on one subscription, for at most the publisher's timeout in all. What the
    /// outbox relay does with a pass: cheaper per event than a JetStream request each (an
    /// inbox, a timer, a channel each). The result of each event is in its place, with the
    /// meaning [`Publisher::publish`] gives it.
    pub async fn publish_all(&self, events: &[OutgoingEvent]) -> Vec<Result<(), DurableError>> {
        let client = &self.nats;
        let inbox = client.new_inbox();
        let mut acks = match client.subscribe(format!("{inbox}.*")).await {
            Ok(acks) => acks,
            Err(_) => return events.iter().map(|e| Err(e.no_ack())).collect(),
        };
        let mut results: Vec<Option<Result<(), DurableError>>> =
            events.iter().map(|_| None).collect();
        let started = std::time::Instant::now();
        // With spans exported, each publish is a hop (producer) of its event's trace.
        let hops: Vec<Option<Meta>> = if trace::enabled() {
            events.iter().map(OutgoingEvent::next_hop).collect()
        } else {
            Vec::new()
        };
        let mut awaited = 0;
        for (i, event) in events.iter().enumerate() {
            let mut headers = event.headers();
            headers.insert(name::message_id(), event.id.as_str());
            if let Some(Some(hop)) = hops.get(i) {
                headers.insert(name::traceparent(), hop.trace.to_header().as_str());
            }
            let sent = client
                .publish_with_reply_and_headers(
                    event.subject.clone(),
                    format!("{inbox}.{i}"),
                    headers,
                    event.payload.clone(),
                )
                .await;
            match sent {
                Ok(()) => awaited += 1,
                Err(error) => results[i] = Some(Err(not_sent(event, error))),
            }
        }
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        while awaited > 0 {
            let ack = tokio::select! {
                ack = acks.next() => ack,
                () = &mut deadline => break,
            };
            let Some(ack) = ack else { break };
            // `<inbox>.<place>`; anything else, or a place answered already, is ignored.
            let place = ack.subject.rsplit('.').next().and_then(|i| i.parse().ok());
            if let Some(i) = place.filter(|&i: &usize| results.get(i).is_some_and(Option::is_none))
            {
                results[i] = Some(acknowledged(&events[i], &ack));
                awaited -= 1;
            }
        }
        let results: Vec<Result<(), DurableError>> = results
            .into_iter()
            .zip(events)
            .map(|(result, event)| {
                result.unwrap_or_else(|| {
                    Err(DurableError::TimedOut {
                        subject: event.subject.clone(),
                    })
                })
            })
            .collect();
        let took = started.elapsed();
        for ((hop, event), result) in hops.iter().zip(events).zip(&results) {
            if let Some(hop) = hop {
                let error = result.as_ref().err().map(ToString::to_string);
                trace::record(
                    Span::of_hop(event.subject.clone(), SpanKind::Producer, hop, took)
                        .with("courier.event_id", event.id.clone())
                        .failed(error),
                );
            }
        }
        results
    }
}

/// What the stream's answer to the publish of `event` says: stored (a duplicate is stored
/// too, once), no stream for the subject, or refused.
fn acknowledged(event: &OutgoingEvent, ack: &async_nats::Message) -> Result<(), DurableError> {
    use async_nats::jetstream::publish::PublishAck;
    use async_nats::jetstream::response::Response;
    let subject = &event.subject;
    if ack.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
        return Err(DurableError::NoStream {
            subject: subject.clone(),
        });
    }
    let refused = |source| DurableError::Publish {
        subject: subject.clone(),
        source,
    };
    match serde_json::from_slice::<Response<PublishAck>>(&ack.payload) {
        Ok(Response::Ok(stored)) => {
            if stored.duplicate {
                tracing::debug!(%subject, id = %event.id, "Event was stored before; not stored again.");
            }
            Ok(())
        }
        Ok(Response::Err { error }) => Err(refused(PublishError::with_source(
            PublishErrorKind::Other,
            error,
        ))),
        Err(e) => Err(refused(PublishError::with_source(
            PublishErrorKind::Other,
            e,
        ))),
    }
}

/// Why a publish did not leave: too large (or an invalid subject) for good, or the
/// connection is closing, when the acknowledgement is as good as lost.
fn not_sent(event: &OutgoingEvent, error: async_nats::client::PublishError) -> DurableError {
    use async_nats::client::PublishErrorKind as Kind;
    let kind = match error.kind() {
        Kind::MaxPayloadExceeded => PublishErrorKind::MaxPayloadExceeded,
        Kind::InvalidSubject => PublishErrorKind::Other,
        Kind::Send => return event.no_ack(),
    };
    DurableError::Publish {
        subject: event.subject.clone(),
        source: PublishError::with_source(kind, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::header;

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
