//! A durable subscription as it runs: its pull consumer on the server, and the loop that pulls
//! no more events than it has room to handle, hands them to the actor and settles each.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::{Batch, Config as PullConfig};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use courier_config::{EventsSettings, ServiceSettings};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use prometheus::IntGauge;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use super::dead_letter::dead_letter_subject;
use super::metrics::{ConsumerMetrics, ConsumerStats};
use super::subscription::{durable_name, HandleDelivery};
use super::{DurableError, DurableSubscription};
use crate::service::{until_stopped, Workers};

/// How long one pull request waits on the server for events. Short, so that a drain (which
/// stops pulling and finishes the pull in hand) is quick, and an idle consumer costs one
/// request a second.
const PULL_EXPIRES: Duration = Duration::from_secs(1);
/// How long to wait before pulling again after a pull failed (server away, consumer deleted).
const PULL_RETRY: Duration = Duration::from_secs(1);
/// How often `courier_consumer_pending` is read from the server.
const PENDING_REFRESH: Duration = Duration::from_secs(5);
/// How long the acks of a drained consumer may take to reach the server.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// What every consumer of one service is made with.
pub(crate) struct Setup<'a> {
    pub(crate) service: &'a str,
    /// Pull requests, deliveries and acks.
    pub(crate) intake: &'a async_nats::Client,
    /// Dead letters.
    pub(crate) main: &'a async_nats::Client,
    pub(crate) events: &'a EventsSettings,
    pub(crate) service_settings: &'a ServiceSettings,
    pub(crate) metrics: &'a ConsumerMetrics,
}

/// How one consumer handles events.
pub(super) struct Limits {
    /// Events handled at once by this instance.
    pub(super) concurrency: usize,
    /// How long one event may be handled.
    pub(super) timeout: Duration,
    /// The delivery after which a failure is final.
    pub(super) max_deliver: u64,
    /// Delay before redelivery n.
    pub(super) events: EventsSettings,
}

/// A durable consumer, created on the server, ready to run.
pub(crate) struct Consumer {
    pub(super) durable: String,
    pub(super) subject: String,
    pub(super) dead_letter_subject: String,
    pub(super) pull: PullConsumer,
    pub(super) handler: Arc<dyn HandleDelivery>,
    pub(super) dead_letters: async_nats::jetstream::Context,
    pub(super) intake: async_nats::Client,
    pub(super) limits: Limits,
    pub(super) stats: ConsumerStats,
}

/// Ensures the streams, then creates each durable consumer and starts its loop, spread over
/// the workers: a consumer's handlers run on the thread that pulls its events.
pub(crate) async fn start_all(
    subscriptions: Vec<DurableSubscription>,
    setup: &Setup<'_>,
    workers: &Workers,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, DurableError> {
    if subscriptions.is_empty() {
        return Ok(Vec::new());
    }
    super::ensure_streams(setup.main, setup.events).await?;
    let mut loops = Vec::with_capacity(subscriptions.len());
    for (i, sub) in subscriptions.into_iter().enumerate() {
        let consumer = Consumer::create(sub, setup).await?;
        let run = consumer.run(stop.clone());
        loops.push(workers.spawn(i % workers.count(), run).await);
    }
    Ok(loops)
}

/// The durable pull consumer of `sub`: explicit acks, redelivered after `ack_wait`, at most
/// `max_deliver` times, at most `max_ack_pending` unacknowledged over all instances.
fn pull_config(durable: &str, sub: &DurableSubscription, events: &EventsSettings) -> PullConfig {
    PullConfig {
        durable_name: Some(durable.to_owned()),
        description: Some(format!("handles {}", sub.subject)),
        filter_subject: sub.subject.clone(),
        // A new subscription catches up on what the stream keeps; handlers are idempotent.
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: events.ack_wait,
        max_deliver: i64::from(events.max_deliver),
        max_ack_pending: i64::from(events.max_ack_pending),
        ..Default::default()
    }
}

impl Limits {
    fn new(sub: &DurableSubscription, events: &EventsSettings, service: &ServiceSettings) -> Self {
        let max_ack_pending = usize::try_from(events.max_ack_pending).unwrap_or(usize::MAX);
        Self {
            concurrency: sub
                .concurrency
                .unwrap_or_else(|| service.max_in_flight.min(max_ack_pending)),
            // Past ack_wait the server delivers the event again, whatever we do: stop a tenth
            // before, so that the nak reaches it first.
            timeout: sub
                .timeout
                .unwrap_or(service.handler_timeout)
                .min(events.ack_wait - events.ack_wait / 10),
            max_deliver: u64::from(events.max_deliver),
            events: events.clone(),
        }
    }
}

impl Consumer {
    /// Creates (or updates) the durable pull consumer of `sub` on the events stream.
    async fn create(sub: DurableSubscription, setup: &Setup<'_>) -> Result<Self, DurableError> {
        let durable = durable_name(setup.service, &sub.name);
        let events = setup.events;
        let js = async_nats::jetstream::new(setup.intake.clone());
        let pull = js
            .create_consumer_on_stream(pull_config(&durable, &sub, events), &events.stream)
            .await
            .map_err(|source| DurableError::Consumer {
                durable: durable.clone(),
                stream: events.stream.clone(),
                source,
            })?;
        Ok(Self {
            limits: Limits::new(&sub, events, setup.service_settings),
            dead_letter_subject: dead_letter_subject(setup.service, &durable),
            stats: setup.metrics.consumer(&durable, &sub.subject),
            dead_letters: async_nats::jetstream::new(setup.main.clone()),
            intake: setup.intake.clone(),
            subject: sub.subject,
            handler: sub.handler,
            durable,
            pull,
        })
    }

    /// Pulls and handles events until `stop`, then finishes the pull in hand and the events
    /// being handled, settles them and flushes the acks. Dropped (a drain past its grace), it
    /// acknowledges nothing more: what it was handling is delivered again after `ack_wait`.
    pub(crate) async fn run(self, stop: watch::Receiver<bool>) {
        tracing::info!(consumer = %self.durable, subject = %self.subject, "Durable consumer started.");
        let pending = refresh_pending(self.pull.clone(), self.stats.pending.clone());
        tokio::select! {
            () = self.take(stop) => {}
            () = pending => {}
        }
        match tokio::time::timeout(FLUSH_TIMEOUT, self.intake.flush()).await {
            Ok(Ok(())) => {
                tracing::info!(consumer = %self.durable, "Durable consumer stopped.");
            }
            _ => {
                tracing::warn!(consumer = %self.durable, "Acks could not be flushed; those events will be delivered again.")
            }
        }
    }

    /// The loop: a pull request for as many events as there is room for, one at a time.
    async fn take(&self, stop: watch::Receiver<bool>) {
        let mut running = FuturesUnordered::new();
        let mut batch: Option<Batch> = None;
        let mut pause: Option<Pin<Box<Sleep>>> = None;
        let mut draining = false;
        let stopped = until_stopped(stop);
        tokio::pin!(stopped);
        loop {
            let room = self.limits.concurrency.saturating_sub(running.len());
            if batch.is_none() && pause.is_none() && !draining && room > 0 {
                match self.pull(room).await {
                    Ok(pulled) => batch = Some(pulled),
                    Err(error) => {
                        tracing::warn!(%error, consumer = %self.durable, "Could not pull events; trying again.");
                        pause = Some(Box::pin(tokio::time::sleep(PULL_RETRY)));
                    }
                }
            }
            tokio::select! {
                msg = next(&mut batch), if batch.is_some() => match msg {
                    Some(Ok(msg)) => running.push(self.process(msg)),
                    Some(Err(error)) => {
                        // The server ended the pull (consumer deleted, limits): pull again later.
                        tracing::debug!(%error, consumer = %self.durable, "Pull ended with an error.");
                        batch = None;
                        pause = Some(Box::pin(tokio::time::sleep(PULL_RETRY)));
                    }
                    None => batch = None,
                },
                Some(()) = running.next(), if !running.is_empty() => {}
                () = wait(&mut pause), if pause.is_some() && !draining => pause = None,
                () = &mut stopped, if !draining => draining = true,
                else => break,
            }
        }
    }

    async fn pull(&self, room: usize) -> Result<Batch, async_nats::Error> {
        Ok(self
            .pull
            .batch()
            .max_messages(room)
            .expires(PULL_EXPIRES)
            .messages()
            .await?)
    }
}

/// The next event of the pull in hand; only polled while there is one.
async fn next(
    batch: &mut Option<Batch>,
) -> Option<Result<async_nats::jetstream::Message, async_nats::Error>> {
    match batch {
        Some(batch) => batch.next().await,
        None => None,
    }
}

/// Ends when the pause does; only polled while there is one.
async fn wait(pause: &mut Option<Pin<Box<Sleep>>>) {
    if let Some(sleep) = pause {
        sleep.await;
    }
}

/// Keeps `courier_consumer_pending` up to date, until dropped.
async fn refresh_pending(pull: PullConsumer, gauge: IntGauge) {
    let mut tick = tokio::time::interval(PENDING_REFRESH);
    loop {
        tick.tick().await;
        match pull.get_info().await {
            Ok(info) => gauge.set(i64::try_from(info.num_pending).unwrap_or(i64::MAX)),
            Err(error) => tracing::debug!(%error, "Could not read the consumer's pending count."),
        }
    }
}
