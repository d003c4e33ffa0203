//! What domain actors receive: typed requests and events with their [`Meta`], no NATS types.

use std::future::Future;

use serde::{de::DeserializeOwned, Serialize};

use crate::meta::Cancellation;
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

/// The bridge gave up on the request (its deadline or the endpoint's time limit passed, or a
/// drain ran out of grace) and has answered 504: the work was stopped before it finished.
/// A request type that knows the subject it is served on: the service binds it there
/// ([`crate::Methods::serve`]) and callers send it there ([`crate::Client::send`]), so the
/// subject is written once, beside the type (in a contracts crate both can use).
pub trait Subject: Call + Serialize {
    /// The endpoint's subject (`products.get`).
    const SUBJECT: &'static str;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request ran out of time and its work was stopped")]
pub struct Cancelled;

impl From<Cancelled> for ServiceError {
    fn from(cancelled: Cancelled) -> Self {
        ServiceError::timeout(cancelled.to_string())
    }
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

impl<M: Call> Request<M> {
    /// The reply future of an async handler: runs `work` until it ends or the bridge gives up
    /// on the request, whichever comes first. Giving up drops the work where it stands, so an
    /// open transaction rolls back and nothing is written after the caller was told 504:
    ///
    /// ```ignore
    /// fn handle(&mut self, req: Request<CreateUser>, _: &mut Context<Self>) -> Self::Result {
    ///     let users = self.0.clone();
    ///     req.serve(|body, meta| users.create(body, meta))
    /// }
    /// ```
    ///
    /// A handler that returns a plain future instead is not stopped, but its in-flight slot
    /// stays taken until it ends.
    pub fn serve<F, Fut>(self, work: F) -> actix::ResponseFuture<Result<M::Reply, M::Error>>
    where
        F: FnOnce(M, Meta) -> Fut,
        Fut: Future<Output = Result<M::Reply, M::Error>> + 'static,
        M::Error: From<Cancelled>,
    {
        let watch = Watch::of(&self.meta);
        // Boxed where it is made: each layer around it (the cancellation, the log ids, this
        // reply) would otherwise move the whole future once more when first polled.
        let work = Box::pin(work(self.body, self.meta));
        Box::pin(async move {
            until_cancelled(watch, work)
                .await
                .unwrap_or_else(|c| Err(c.into()))
        })
    }
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

impl<E: 'static> Event<E> {
    /// The future of an async event handler: runs `work` until it ends or the subscription's
    /// time limit passes, when it is dropped where it stands (see [`Request::serve`]).
    pub fn serve<F, Fut>(self, work: F) -> actix::ResponseFuture<()>
    where
        F: FnOnce(E, Meta) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let watch = Watch::of(&self.meta);
        // Boxed where it is made, as in [`Request::serve`].
        let work = Box::pin(work(self.body, self.meta));
        Box::pin(async move {
            let _ = until_cancelled(watch, work).await;
        })
    }
}

/// What [`until_cancelled`] needs of a request's [`Meta`], taken before the `Meta` moves into
/// the handler's work (cheaper than a clone of it).
pub(crate) struct Watch {
    cancellation: Cancellation,
    hop: Option<crate::trace::Hop>,
}

impl Watch {
    pub(crate) fn of(meta: &Meta) -> Self {
        Self {
            cancellation: meta.cancellation(),
            hop: crate::trace::Hop::of(meta),
        }
    }
}

/// `work`'s output, or [`Cancelled`] once the request is cancelled (checked first, so work
/// cancelled while queued in the mailbox never starts).
/// The work runs [`crate::trace::within`] its hop: its log lines carry the request's ids, and
/// its database calls are spans of that hop.
pub(crate) async fn until_cancelled<T>(
    watch: Watch,
    work: impl Future<Output = T>,
) -> Result<T, Cancelled> {
    let Watch { cancellation, hop } = watch;
    let work = crate::trace::Hop::within(hop, work);
    tokio::select! {
        biased;
        () = cancellation.cancelled() => Err(Cancelled),
        out = work => Ok(out),
    }
}
