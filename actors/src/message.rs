//! What domain actors receive: typed requests and events with their [`Meta`], no NATS types.

use serde::{de::DeserializeOwned, Serialize};

use crate::{Meta, ServiceError};

/// A request type served by an endpoint: decoded from the payload, answered with `Reply` or
/// `Error`. The `Error` to [`ServiceError`] conversion is the one place a service maps its
/// domain errors to the wire.
pub trait Call: DeserializeOwned + Send + 'static {
    /// The success reply, encoded in the request's codec.
    type Reply: Serialize + Send + 'static;
    /// The domain error.
    type Error: Into<ServiceError> + Send + 'static;
}

/// A request as an actor receives it.
#[derive(Debug)]
pub struct Request<M> {
    /// The decoded request.
    pub body: M,
    /// Request id, trace context and deadline: pass it to outgoing calls and events.
    pub meta: Meta,
}

impl<M: Call> actix::Message for Request<M> {
    type Result = Result<M::Reply, M::Error>;
}

/// An event as an actor receives it.
#[derive(Debug)]
pub struct Event<E> {
    /// The decoded event.
    pub body: E,
    /// Request id and trace context of the work that published it.
    pub meta: Meta,
}

impl<E: 'static> actix::Message for Event<E> {
    type Result = ();
}
