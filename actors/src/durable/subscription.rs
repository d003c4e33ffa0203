//! A durable subscription's definition, and the type erasure that lets one consumer loop serve
//! any event type: decode, dispatch to the actor, read its answer.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;

use super::{Delivery, EventError};
use crate::codec::DecodeError;
use crate::supervise::Dispatch;
use crate::{Codec, Meta};

/// A durable subscription: a subject of the events stream bound to an actor that handles
/// [`Delivery<E>`], through a durable pull consumer named after the service and `name`.
///
/// ```ignore
/// Service::builder("users", "1.0.0")
///     .durable(DurableSubscription::new::<UserCreated>("welcome", "events.users.created", mailer))
/// ```
pub struct DurableSubscription {
    pub(crate) name: String,
    pub(crate) subject: String,
    pub(crate) timeout: Option<Duration>,
    pub(crate) concurrency: Option<usize>,
    pub(crate) handler: Arc<dyn HandleDelivery>,
}

impl DurableSubscription {
    /// Binds `subject` (wildcards allowed, within `events.subjects`) to `target`. `name`
    /// (`[A-Za-z0-9_-]+`) names the consumer: instances of one service share it, so each event
    /// is handled by one of them; another service's subscription has its own and sees every
    /// event too. Renaming it starts a new consumer from the start of the stream.
    pub fn new<E>(
        name: impl Into<String>,
        subject: impl Into<String>,
        target: impl Dispatch<Delivery<E>>,
    ) -> Self
    where
        E: DeserializeOwned + Send + 'static,
    {
        Self {
            name: name.into(),
            subject: subject.into(),
            timeout: None,
            concurrency: None,
            handler: Arc::new(Typed {
                target,
                event: PhantomData::<fn() -> E>,
            }),
        }
    }

    /// Overrides the service's handler time limit for these events (it is capped at
    /// `events.ack_wait`, past which the server would deliver the event again anyway).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// How many events this instance handles at once (by default the service's
    /// `max_in_flight`, at most `events.max_ack_pending`).
    pub fn concurrency(mut self, events: usize) -> Self {
        self.concurrency = Some(events);
        self
    }

    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The subject it consumes.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

/// The durable consumer name of subscription `name` of `service`: `<service>_<name>`. Both are
/// `[A-Za-z0-9_-]+`, which consumer names allow (no dots, wildcards or spaces).
pub fn durable_name(service: &str, name: &str) -> String {
    format!("{service}_{name}")
}

/// How handling one delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done: acknowledge.
    Handled,
    /// Failed for now (a retry asked for, a time-out, a crash): deliver again later.
    Retry(String),
    /// Failed for good: dead letter.
    Reject(String),
}

/// Decodes a payload and dispatches it to the actor.
pub(crate) trait HandleDelivery: Send + Sync {
    /// The handler's work, or why the payload is not an event of this subscription's type.
    fn handle(
        &self,
        codec: Codec,
        payload: &[u8],
        meta: Meta,
        id: String,
        delivered: u64,
    ) -> Result<BoxFuture<'static, Outcome>, DecodeError>;
}

struct Typed<E, D> {
    target: D,
    event: PhantomData<fn() -> E>,
}

impl<E, D> HandleDelivery for Typed<E, D>
where
    E: DeserializeOwned + Send + 'static,
    D: Dispatch<Delivery<E>>,
{
    fn handle(
        &self,
        codec: Codec,
        payload: &[u8],
        meta: Meta,
        id: String,
        delivered: u64,
    ) -> Result<BoxFuture<'static, Outcome>, DecodeError> {
        let body: E = codec.decode(payload)?;
        let done = self.target.dispatch(Delivery {
            body,
            meta,
            id,
            delivered,
        });
        Ok(async move {
            match done.await {
                Ok(Ok(())) => Outcome::Handled,
                Ok(Err(EventError::Retry(why))) => Outcome::Retry(why),
                Ok(Err(EventError::Reject(why))) => Outcome::Reject(why),
                Err(mailbox) => Outcome::Retry(format!("the handler crashed ({mailbox})")),
            }
        }
        .boxed())
    }
}

/// Checks a service's durable subscriptions and events settings: valid, distinct names (they
/// name consumers), subjects, limits. The message names the culprit.
pub(crate) fn check(
    subscriptions: &[DurableSubscription],
    events: &courier_config::EventsSettings,
) -> Result<(), String> {
    use courier_config::Validate;
    events
        .validate()
        .map_err(|e| format!("events settings: {e}"))?;
    let mut names = std::collections::HashSet::new();
    for sub in subscriptions {
        if !crate::micro::valid_name(&sub.name) {
            return Err(format!(
                "durable subscription name {:?} must be letters, digits, _ or -",
                sub.name
            ));
        }
        if !names.insert(sub.name.as_str()) {
            return Err(format!(
                "durable subscription name {:?} is used twice",
                sub.name
            ));
        }
        if !crate::service::valid_subject(&sub.subject, true) {
            return Err(format!(
                "durable subscription subject {:?} is not a NATS subject",
                sub.subject
            ));
        }
        if sub.concurrency == Some(0) || sub.timeout == Some(Duration::ZERO) {
            return Err(format!(
                "durable subscription {:?} has a concurrency or time limit of 0",
                sub.name
            ));
        }
    }
    Ok(())
}
