//! Endpoint and subscription definitions, and the type erasure that lets one bridge serve any
//! request type: decode, dispatch to the actor, encode.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use actix::MailboxError;
use bytes::Bytes;
use futures::future::{self, BoxFuture};
use futures::FutureExt;
use serde::de::DeserializeOwned;

use crate::route::Route;
use crate::supervise::Dispatch;
use crate::{Call, Codec, Event, Meta, Request, ServiceError};

/// Which queue group an endpoint or subscription joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueueGroup {
    /// The service's default (`service.queue_group`, `q` unless configured).
    Default,
    /// A named group.
    Named(String),
    /// None: every instance gets every message.
    None,
}

impl QueueGroup {
    pub(crate) fn resolve(&self, default: &str) -> Option<String> {
        match self {
            Self::Default => Some(default.to_owned()),
            Self::Named(name) => Some(name.clone()),
            Self::None => None,
        }
    }
}

/// A request-reply endpoint: a subject bound to an actor (or pool) that handles `Request<M>`.
pub struct Endpoint {
    pub(crate) name: String,
    pub(crate) subject: String,
    pub(crate) queue_group: QueueGroup,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) max_in_flight: Option<usize>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) route: Option<Route>,
    pub(crate) handler: Arc<dyn Handle>,
}

impl Endpoint {
    /// Binds `subject` to `target`. `name` is what `nats micro info` shows (`[A-Za-z0-9_-]+`).
    pub fn new<M: Call>(
        name: impl Into<String>,
        subject: impl Into<String>,
        target: impl Dispatch<Request<M>>,
    ) -> Self {
        Self {
            name: name.into(),
            subject: subject.into(),
            queue_group: QueueGroup::Default,
            metadata: BTreeMap::new(),
            max_in_flight: None,
            timeout: None,
            route: None,
            handler: Arc::new(Typed {
                target,
                request: PhantomData::<fn() -> M>,
            }),
        }
    }

    /// Joins the named queue group instead of the service's default.
    pub fn queue_group(mut self, group: impl Into<String>) -> Self {
        self.queue_group = QueueGroup::Named(group.into());
        self
    }

    /// Joins no queue group: every instance answers every request (the first answer wins).
    pub fn no_queue_group(mut self) -> Self {
        self.queue_group = QueueGroup::None;
        self
    }

    /// Overrides the service's in-flight limit for this endpoint.
    pub fn max_in_flight(mut self, limit: usize) -> Self {
        self.max_in_flight = Some(limit);
        self
    }

    /// Overrides the service's handler time limit (`service.handler_timeout`) for this
    /// endpoint: a request still running after it is answered 504 and cancelled. A caller's
    /// sooner deadline still wins.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Serves the endpoint over HTTP through the gateway too, at `route`. The route travels in
    /// the endpoint's `$SRV.INFO` metadata ([`crate::route`]).
    pub fn route(mut self, route: Route) -> Self {
        self.route = Some(route);
        self
    }

    /// Adds endpoint metadata, shown by `$SRV.INFO`.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// Decodes a payload, runs the handler, encodes its reply.
pub(crate) trait Handle: Send + Sync {
    fn handle(
        &self,
        codec: Codec,
        payload: Bytes,
        meta: Meta,
    ) -> BoxFuture<'static, Result<Bytes, ServiceError>>;
}

struct Typed<M, D> {
    target: D,
    request: PhantomData<fn() -> M>,
}

impl<M: Call, D: Dispatch<Request<M>>> Handle for Typed<M, D> {
    fn handle(
        &self,
        codec: Codec,
        payload: Bytes,
        meta: Meta,
    ) -> BoxFuture<'static, Result<Bytes, ServiceError>> {
        let body: M = match codec.decode(&payload) {
            Ok(body) => body,
            Err(e) => return future::ready(Err(invalid_payload(e))).boxed(),
        };
        let reply = self.target.dispatch(Request { body, meta });
        async move {
            match reply.await {
                Ok(Ok(reply)) => codec.encode(&reply).map_err(|e| {
                    tracing::error!(error = %e, "Reply could not be encoded.");
                    ServiceError::internal("the reply could not be encoded")
                }),
                Ok(Err(e)) => Err(e.into()),
                Err(e) => Err(crashed(e)),
            }
        }
        .boxed()
    }
}

fn invalid_payload(e: crate::codec::DecodeError) -> ServiceError {
    let error = ServiceError::bad_request(format!("invalid request body: {e}"));
    match e.path.as_str() {
        "" | "." => error,
        field => error.with_details(serde_json::json!({ "field": field })),
    }
}

fn crashed(e: MailboxError) -> ServiceError {
    match e {
        MailboxError::Closed => {
            ServiceError::internal("the handler crashed; the actor has been restarted")
        }
        MailboxError::Timeout => ServiceError::timeout("the actor did not answer in time"),
    }
}

/// A pub/sub subscription: a subject (wildcards allowed) bound to an actor handling `Event<E>`.
pub struct Subscription {
    pub(crate) subject: String,
    pub(crate) queue_group: QueueGroup,
    pub(crate) timeout: Option<Duration>,
    pub(crate) buffer: Option<usize>,
    pub(crate) handler: Arc<dyn HandleEvent>,
}

impl Subscription {
    /// Binds `subject` to `target`; every instance gets every event unless a queue group is set.
    pub fn new<E>(subject: impl Into<String>, target: impl Dispatch<Event<E>>) -> Self
    where
        E: DeserializeOwned + Send + 'static,
    {
        Self {
            subject: subject.into(),
            queue_group: QueueGroup::None,
            timeout: None,
            buffer: None,
            handler: Arc::new(TypedEvent {
                target,
                event: PhantomData::<fn() -> E>,
            }),
        }
    }

    /// Shares the events among the instances in `group`: each event goes to one of them.
    pub fn queue_group(mut self, group: impl Into<String>) -> Self {
        self.queue_group = QueueGroup::Named(group.into());
        self
    }

    /// Overrides the service's handler time limit for this subscription's events.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Overrides how many received events may wait for a handler (`service.event_buffer`).
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = Some(events);
        self
    }
}

/// How handling an event ended, for the `courier_events_total` outcome label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventOutcome {
    Ok,
    DecodeError,
    Crashed,
    /// Cancelled at the subscription's time limit.
    TimedOut,
    /// Not handled: the subscription's buffer was full.
    Dropped,
}

impl EventOutcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::DecodeError => "decode_error",
            Self::Crashed => "crashed",
            Self::TimedOut => "timed_out",
            Self::Dropped => "dropped",
        }
    }
}

pub(crate) trait HandleEvent: Send + Sync {
    fn handle(&self, codec: Codec, payload: Bytes, meta: Meta) -> BoxFuture<'static, EventOutcome>;
}

struct TypedEvent<E, D> {
    target: D,
    event: PhantomData<fn() -> E>,
}

impl<E, D> HandleEvent for TypedEvent<E, D>
where
    E: DeserializeOwned + Send + 'static,
    D: Dispatch<Event<E>>,
{
    fn handle(&self, codec: Codec, payload: Bytes, meta: Meta) -> BoxFuture<'static, EventOutcome> {
        let body: E = match codec.decode(&payload) {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(%error, request_id = %meta.request_id, "Event could not be decoded.");
                return future::ready(EventOutcome::DecodeError).boxed();
            }
        };
        let done = self.target.dispatch(Event { body, meta });
        async move {
            match done.await {
                Ok(()) => EventOutcome::Ok,
                Err(_) => EventOutcome::Crashed,
            }
        }
        .boxed()
    }
}
