//! Calls to other services and events out, with the caller's [`Meta`] carried in headers.

use std::time::Duration;

use async_nats::client::RequestErrorKind;
use serde::{de::DeserializeOwned, Serialize};

use crate::meta::name;
use crate::trace::{Open, Span, SpanKind};
use crate::{CallError, Codec, Meta, ServiceError};

/// A typed request-reply and publish helper over one NATS connection. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    nats: async_nats::Client,
    codec: Codec,
    timeout: Duration,
}

impl Client {
    /// A client that sends MessagePack (compact; Courier services answer in kind) and waits
    /// `timeout` for replies unless the request's deadline is sooner.
    pub fn new(nats: async_nats::Client, timeout: Duration) -> Self {
        Self {
            nats,
            codec: Codec::MsgPack,
            timeout,
        }
    }

    /// The same client with another payload format.
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The same client with another default time-out.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `body` to `subject` and decodes the reply. The deadline is the sooner of the
    /// caller's and now + the time-out; it travels in `Courier-Deadline`, so the callee does not
    /// work for a caller that has given up.
    pub async fn call<Req, Resp>(
        &self,
        subject: &str,
        body: &Req,
        meta: &Meta,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        // The call is a hop of its own: the callee's span is a child of this one.
        let meta = meta.next_hop().with_timeout(self.timeout);
        // Named by the endpoint, whichever instance was asked; recorded even when the caller
        // gives up midway (the callee's span names this one as its parent).
        let span = Open::new(|| {
            Span::of_hop(
                crate::service::shared_subject(subject).to_owned(),
                SpanKind::Client,
                &meta,
                std::time::Duration::ZERO,
            )
            .with("messaging.destination.name", subject)
        });
        let result = self.exchange(subject, body, &meta).await;
        if let Some(span) = span {
            span.finish(result.as_ref().err().map(ToString::to_string));
        }
        result
    }

    /// One request and its reply, under `meta`.
    async fn exchange<Req, Resp>(
        &self,
        subject: &str,
        body: &Req,
        meta: &Meta,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let wait = meta.remaining().unwrap_or(self.timeout);
        if wait.is_zero() {
            // The caller has given up already: sending would only make the callee answer 504.
            return Err(CallError::TimedOut {
                subject: subject.to_owned(),
                after: Duration::ZERO,
            });
        }
        let payload = self
            .codec
            .encode(body)
            .map_err(|source| CallError::Encode {
                subject: subject.to_owned(),
                source,
            })?;
        let mut headers = meta.outgoing_headers();
        headers.insert(name::content_type(), self.codec.content_type());
        let request = async_nats::Request::new()
            .payload(payload)
            .headers(headers)
            .timeout(Some(wait));
        let reply = self
            .nats
            .send_request(subject.to_owned(), request)
            .await
            .map_err(|e| request_failed(subject, wait, e))?;
        self.read_reply(subject, &reply)
    }

    /// Sends `body` to the subject its type names and decodes the typed reply: a call to
    /// another service through its contract, as [`Client::call`] does it.
    pub async fn send<M: crate::message::Subject>(
        &self,
        body: &M,
        meta: &Meta,
    ) -> Result<M::Reply, CallError>
    where
        M::Reply: DeserializeOwned,
    {
        self.call(M::SUBJECT, body, meta).await
    }

    /// The reply's value, or the error its headers carry.
    fn read_reply<Resp: DeserializeOwned>(
        &self,
        subject: &str,
        reply: &async_nats::Message,
    ) -> Result<Resp, CallError> {
        let content_type = reply
            .headers
            .as_ref()
            .and_then(|h| h.get(name::content_type()));
        let codec =
            Codec::from_content_type(content_type.map(|v| v.as_str())).unwrap_or(self.codec);
        if let Some(error) = wire_error(reply, codec) {
            return Err(CallError::Service {
                subject: subject.to_owned(),
                error,
            });
        }
        codec
            .decode(&reply.payload)
            .map_err(|source| CallError::Decode {
                subject: subject.to_owned(),
                source,
            })
    }

    /// Publishes an event in JSON (so any subscriber, `nats sub` included, can read it), with
    /// the request id and trace context of `meta`.
    pub async fn publish<E: Serialize + ?Sized>(
        &self,
        subject: &str,
        event: &E,
        meta: &Meta,
    ) -> Result<(), CallError> {
        let payload = Codec::Json
            .encode(event)
            .map_err(|source| CallError::Encode {
                subject: subject.to_owned(),
                source,
            })?;
        // An event has no deadline: whoever handles it does so on their own time.
        let mut untimed = meta.clone();
        untimed.deadline = None;
        let mut headers = untimed.outgoing_headers();
        headers.insert(name::content_type(), Codec::Json.content_type());
        self.nats
            .publish_with_headers(subject.to_owned(), headers, payload)
            .await
            .map_err(|e| CallError::Transport {
                subject: subject.to_owned(),
                source: Box::new(e),
            })
    }
}

/// No responders is 503, silence 504, anything else the transport's failure.
fn request_failed(subject: &str, wait: Duration, e: async_nats::RequestError) -> CallError {
    let subject = subject.to_owned();
    match e.kind() {
        RequestErrorKind::NoResponders => CallError::NoResponders { subject },
        RequestErrorKind::TimedOut => CallError::TimedOut {
            subject,
            after: wait,
        },
        _ => CallError::Transport {
            subject,
            source: Box::new(e),
        },
    }
}

/// The error a reply carries in its NATS micro headers, with the body's details when readable.
fn wire_error(reply: &async_nats::Message, codec: Codec) -> Option<ServiceError> {
    let headers = reply.headers.as_ref()?;
    let code = headers
        .get(name::service_error_code())?
        .as_str()
        .trim()
        .parse()
        .unwrap_or(500);
    let message = headers
        .get(name::service_error())
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    Some(
        codec
            .decode::<ServiceError>(&reply.payload)
            .unwrap_or(ServiceError {
                code,
                message,
                details: None,
            }),
    )
}
