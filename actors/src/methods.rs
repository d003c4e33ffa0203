//! A service's logic as plain async methods, served by actors: [`Methods`] keeps one actor per
//! worker thread holding the service's state, and binds each endpoint or durable subscription
//! to a function of that state. A service then writes no actor or handler of its own:
//!
//! ```ignore
//! let methods = Methods::per_thread(products);
//! Service::builder("products", VERSION)
//!     .endpoint(methods.endpoint("get", "products.get", Products::get))
//!     .durable(methods.durable("reserve", "events.orders.created", Products::on_order))
//! ```
//!
//! Each call runs under [`Request::serve`] / [`Delivery::serve`]: dropped where it stands when
//! the bridge gives up on it (deadline, time limit), so an open transaction rolls back. A
//! method that panics is answered 500 and its actor restarted (see [`Supervised`]).

use std::future::Future;
use std::marker::PhantomData;

use actix::prelude::*;
use futures::future::BoxFuture;
use futures::TryFutureExt;

use crate::durable::{Delivery, DurableSubscription, EventError};
use crate::{Call, Cancelled, Dispatch, Endpoint, Meta, Request, Subject, Supervised};

/// The state of a service's methods, one clone per worker thread, each in its own actor.
/// Cheap to clone (clones share the actors).
pub struct Methods<S: Clone + Send + 'static> {
    actors: Supervised<Holder<S>>,
}

impl<S: Clone + Send + 'static> Clone for Methods<S> {
    fn clone(&self) -> Self {
        Self {
            actors: self.actors.clone(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Methods<S> {
    /// One actor per thread that sends to it, each with a clone of `state`: a request is
    /// served on the worker thread that took it in, with no hand-off.
    pub fn per_thread(state: S) -> Self {
        Self {
            actors: Supervised::per_thread(move || Holder(Box::new(state.clone()))),
        }
    }

    /// An endpoint named `name` on `subject`, served by `method` (`Users::create`, or a
    /// closure `|state, body, meta| ...`), whose error is the request's or turns into it.
    pub fn endpoint<M, F, Fut, E>(&self, name: &str, subject: &str, method: F) -> Endpoint
    where
        M: Call,
        M::Error: From<Cancelled>,
        F: Fn(S, M, Meta) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Reply, E>> + 'static,
        E: Into<M::Error> + 'static,
    {
        // A combinator, not an `async` block: the work is not moved again when first polled.
        let method = move |state, body, meta| method(state, body, meta).map_err(Into::into);
        let target = Bound {
            actors: self.actors.clone(),
            method: std::sync::Arc::new(method),
            message: PhantomData,
        };
        Endpoint::new::<M>(name, subject, target)
    }

    /// [`Methods::endpoint`] on the subject the request type names ([`Subject`]).
    pub fn serve<M, F, Fut, E>(&self, name: &str, method: F) -> Endpoint
    where
        M: Subject,
        M::Error: From<Cancelled>,
        F: Fn(S, M, Meta) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Reply, E>> + 'static,
        E: Into<M::Error> + 'static,
    {
        self.endpoint(name, M::SUBJECT, method)
    }

    /// A durable subscription named `name` to `subject`, handled by `method`, which gets the
    /// event's id (the key to handle it once by) with its body.
    pub fn durable<E, F, Fut>(&self, name: &str, subject: &str, method: F) -> DurableSubscription
    where
        E: serde::de::DeserializeOwned + Send + 'static,
        F: Fn(S, E, String, Meta) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), EventError>> + 'static,
    {
        let method = move |state, delivery: Delivery<E>| {
            let id = delivery.id.clone();
            let call = |body, meta| method(state, body, id, meta);
            delivery.serve(call)
        };
        let target = BoundEvent {
            actors: self.actors.clone(),
            method: std::sync::Arc::new(method),
            event: PhantomData,
        };
        DurableSubscription::new::<E>(name, subject, target)
    }
}

/// The actor: a clone of the state (boxed: an actor must be `Unpin`, a state need not be).
struct Holder<S>(Box<S>);

impl<S: 'static> Actor for Holder<S> {
    type Context = Context<Self>;
}

/// Work to run on the state, and what it answers.
struct Run<S, R>(Box<dyn FnOnce(S) -> ResponseFuture<R> + Send>);

impl<S: 'static, R: 'static> Message for Run<S, R> {
    type Result = R;
}

impl<S: Clone + 'static, R: 'static> Handler<Run<S, R>> for Holder<S> {
    type Result = ResponseFuture<R>;
    fn handle(&mut self, run: Run<S, R>, _: &mut Context<Self>) -> Self::Result {
        (run.0)(S::clone(&self.0))
    }
}

/// An endpoint's target: the actors and the method.
struct Bound<S: Clone + Send + 'static, M, F> {
    actors: Supervised<Holder<S>>,
    method: std::sync::Arc<F>,
    message: PhantomData<fn() -> M>,
}

impl<S, M, F, Fut> Dispatch<Request<M>> for Bound<S, M, F>
where
    S: Clone + Send + 'static,
    M: Call,
    M::Error: From<Cancelled>,
    F: Fn(S, M, Meta) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<M::Reply, M::Error>> + 'static,
{
    fn dispatch(
        &self,
        req: Request<M>,
    ) -> BoxFuture<'static, Result<Result<M::Reply, M::Error>, MailboxError>> {
        let method = self.method.clone();
        let run = Run(Box::new(move |state: S| {
            req.serve(move |body, meta| method(state, body, meta))
        }));
        self.actors.dispatch(run)
    }
}

/// A durable subscription's target: the actors and the method.
struct BoundEvent<S: Clone + Send + 'static, E, F> {
    actors: Supervised<Holder<S>>,
    method: std::sync::Arc<F>,
    event: PhantomData<fn() -> E>,
}

impl<S, E, F> Dispatch<Delivery<E>> for BoundEvent<S, E, F>
where
    S: Clone + Send + 'static,
    E: Send + 'static,
    F: Fn(S, Delivery<E>) -> ResponseFuture<Result<(), EventError>> + Send + Sync + 'static,
{
    fn dispatch(
        &self,
        delivery: Delivery<E>,
    ) -> BoxFuture<'static, Result<Result<(), EventError>, MailboxError>> {
        let method = self.method.clone();
        let run = Run(Box::new(move |state: S| method(state, delivery)));
        self.actors.dispatch(run)
    }
}
