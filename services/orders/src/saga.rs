//! The order saga, made durable. Each order row holds its saga's next step; the runner of
//! every instance drives the unfinished ones it can lease:
//!
//! ```text
//! reserve --reserved--> charge --charged--> done (confirmed)
//!    |                    |
//!    | 409 (short)        | declined, or refused for good
//!    v                    v
//!  done (cancelled)    release --released--> done (cancelled)
//! ```
//!
//! Each step calls another service with the order id as its idempotency key, so a step run
//! twice (a crash after the call and before the row moved on, an answer lost to a time-out)
//! has its effect once. A step that gets no answer, or a 5xx, is tried again later with
//! capped exponential backoff, for as long as it takes: no order stays `pending` for good,
//! and after a crash of any service the sagas resume where their rows say. The row moves on
//! in one transaction with the event the move announces (outbox). A lease on the row keeps
//! two instances from running one saga at once; a crashed instance's lease runs out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use courier_actors::meta::TraceContext;
use courier_actors::trace::{self, Span, SpanKind};
use courier_actors::{CallError, Client, Meta};
use courier_config::{Invalid, Validate};
use courier_contracts::orders::{Order, OrderState, ORDER_CANCELLED, ORDER_CONFIRMED};
use courier_contracts::payments::{Charge, PaymentState};
use courier_contracts::products::{Item, Release, Reserve};
use courier_store::{now_millis, Database, Param, StoreError};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::metrics::{Outcome, SagaMetrics};
use crate::orders::now;
use crate::store::{self, state_column, step, OrderRow};

/// The orders service's own settings (section `orders`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersSettings {
    /// Most orders one `orders.list` page returns.
    pub max_page_size: u32,
    /// The first wait before a failed step is tried again; doubled per failure.
    #[serde(with = "humantime_serde")]
    pub retry_min: Duration,
    /// The longest wait between tries of a step.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// How long an instance holds a saga while it runs a step; past it, another may.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Sagas one instance runs at once.
    pub concurrency: u32,
    /// How often an instance counts the orders by state for `/metrics`.
    #[serde(with = "humantime_serde")]
    pub census_every: Duration,
}

impl Default for OrdersSettings {
    fn default() -> Self {
        Self {
            max_page_size: 100,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            concurrency: 32,
            census_every: Duration::from_secs(10),
        }
    }
}

impl Validate for OrdersSettings {
    fn validate(&self) -> Result<(), Invalid> {
        let bad = |key: &str, value: &dyn std::fmt::Debug, reason: &str| {
            Err(Invalid::new(key, format!("{value:?}"), reason))
        };
        if !(1..=1000).contains(&self.max_page_size) {
            return bad(
                "orders.max_page_size",
                &self.max_page_size,
                "must be between 1 and 1000",
            );
        }
        if self.retry_min.is_zero() || self.retry_max < self.retry_min {
            return bad(
                "orders.retry_max",
                &self.retry_max,
                "must be at least orders.retry_min, which must be above 0",
            );
        }
        if self.lease < Duration::from_secs(1) {
            return bad("orders.lease", &self.lease, "must be at least 1s");
        }
        if self.census_every < Duration::from_millis(100) {
            return bad(
                "orders.census_every",
                &self.census_every,
                "must be at least 100ms",
            );
        }
        if !(1..=1024).contains(&self.concurrency) {
            return bad(
                "orders.concurrency",
                &self.concurrency,
                "must be between 1 and 1024",
            );
        }
        Ok(())
    }
}

/// How often the runner looks for due sagas when nothing woke it.
const POLL: Duration = Duration::from_millis(250);

/// What a step's answer means for the saga.
enum Next {
    /// Move on to `step`, the order now `state`, with `reason` when it is cancelled.
    Advance {
        step: &'static str,
        state: OrderState,
        reason: Option<String>,
    },
    /// No answer worth acting on: try the same step again later.
    Retry(String),
}

/// Drives unfinished sagas. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    db: Database,
    client: Client,
    wake: Arc<Notify>,
    settings: OrdersSettings,
    metrics: SagaMetrics,
}

impl Runner {
    /// A runner over `db`, calling products and payments with `client`, counting its steps
    /// and the orders by state in `metrics`.
    pub fn new(
        db: Database,
        client: Client,
        settings: &OrdersSettings,
        metrics: SagaMetrics,
    ) -> Self {
        let settings = settings.clone();
        Self {
            db,
            client,
            wake: Arc::default(),
            settings,
            metrics,
        }
    }

    /// What starts the runner at once (after an order is taken).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs due sagas, a batch at a time, until `stop` resolves; the step in hand finishes.
    pub async fn run(self, mut stop: Pin<Box<dyn Future<Output = ()>>>) {
        loop {
            let due: Result<Vec<String>, _> = self
                .db
                .all(
                    store::DUE,
                    &[
                        now_millis().into(),
                        i64::from(self.settings.concurrency).into(),
                    ],
                )
                .await;
            match due {
                Ok(due) if !due.is_empty() => {
                    futures::future::join_all(due.iter().map(|id| self.drive(id))).await;
                    if (&mut stop).now_or_never().is_some() {
                        return;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "Cannot read due sagas."),
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                () = &mut stop => return,
            }
        }
    }

    /// Runs saga `id`'s next step if this instance gets its lease.
    async fn drive(&self, id: &str) {
        if let Err(error) = self.try_drive(id).await {
            tracing::warn!(%error, order = id, "Saga step not recorded; it runs again later.");
        }
    }

    async fn try_drive(&self, id: &str) -> Result<(), StoreError> {
        let now = now_millis();
        let until = now + i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX);
        let mut lease = self.db.begin().await?;
        let leased = lease
            .execute(store::LEASE, &[id.into(), until.into(), now.into()])
            .await?;
        lease.commit().await?;
        let Some(row) = self.db.one::<OrderRow>(&store::get(), &[id.into()]).await? else {
            return Ok(());
        };
        if leased == 0 {
            return Ok(());
        }
        let meta = self.meta(&row, &row.step);
        // The step's log lines carry the order's request and trace ids.
        trace::within(&meta, self.step(&row, &meta)).await
    }

    /// Runs the step `row` is at, under `meta`, and records where it left the saga.
    async fn step(&self, row: &OrderRow, meta: &Meta) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let next = match row.step.as_str() {
            step::RESERVE => self.reserve(&row.order, meta).await,
            step::CHARGE => self.charge(&row.order, meta).await,
            step::RELEASE => self.release(&row.order, meta).await,
            _ => return Ok(()),
        };
        let (outcome, retried) = match &next {
            Next::Advance { .. } => (Outcome::Advanced, None),
            Next::Retry(why) => (Outcome::Retried, trace::enabled().then(|| why.clone())),
        };
        self.metrics.step(&row.step, started.elapsed(), outcome);
        let recorded = match next {
            Next::Advance {
                step,
                state,
                reason,
            } => self.advance(row, step, state, reason, meta).await,
            Next::Retry(why) => self.retry(row, &why).await,
        };
        // The step's span covers its call and the transaction that records where it left
        // the saga (whose database spans are its children).
        if trace::enabled() {
            let error = match &recorded {
                Err(e) => Some(format!("not recorded: {e}")),
                Ok(()) => retried,
            };
            trace::record(
                Span::of_hop(
                    format!("saga order {}", row.step),
                    SpanKind::Internal,
                    meta,
                    started.elapsed(),
                )
                .with("courier.order_id", row.order.id.clone())
                .failed(error),
            );
        }
        recorded
    }

    async fn reserve(&self, order: &Order, meta: &Meta) -> Next {
        let items = order.lines.iter().map(|l| Item {
            product_id: l.product_id.clone(),
            quantity: l.quantity,
        });
        let reserve = Reserve {
            order_id: order.id.clone(),
            items: items.collect(),
        };
        match self.client.send(&reserve, meta).await {
            Ok(_) => advance(step::CHARGE, OrderState::Pending, None),
            Err(e) => match refused(&e) {
                Some(why) => advance(
                    step::DONE,
                    OrderState::Cancelled,
                    Some(format!("out of stock: {why}")),
                ),
                None => Next::Retry(e.to_string()),
            },
        }
    }

    async fn charge(&self, order: &Order, meta: &Meta) -> Next {
        let charge = Charge {
            order_id: order.id.clone(),
            user_id: order.user_id.clone(),
            amount: order.total,
            currency: order.currency.clone(),
        };
        match self.client.send(&charge, meta).await {
            Ok(payment) => match payment.state {
                PaymentState::Charged => advance(step::DONE, OrderState::Confirmed, None),
                PaymentState::Declined => {
                    let why = payment.reason.unwrap_or_else(|| "no reason given".into());
                    advance(
                        step::RELEASE,
                        OrderState::Pending,
                        Some(format!("payment declined: {why}")),
                    )
                }
                PaymentState::Refunded => advance(
                    step::RELEASE,
                    OrderState::Pending,
                    Some("payment refunded".into()),
                ),
            },
            Err(e) => match refused(&e) {
                Some(why) => advance(
                    step::RELEASE,
                    OrderState::Pending,
                    Some(format!("payment refused: {why}")),
                ),
                None => Next::Retry(e.to_string()),
            },
        }
    }

    async fn release(&self, order: &Order, meta: &Meta) -> Next {
        let release = Release {
            order_id: order.id.clone(),
        };
        match self.client.send(&release, meta).await {
            Ok(_) => advance(step::DONE, OrderState::Cancelled, None),
            Err(e) => Next::Retry(e.to_string()),
        }
    }

    /// Moves the saga on, with the event of a finished order (in the trace of the step that
    /// finished it, `meta`), in one transaction.
    async fn advance(
        &self,
        row: &OrderRow,
        next: &str,
        state: OrderState,
        reason: Option<String>,
        meta: &Meta,
    ) -> Result<(), StoreError> {
        let order = &row.order;
        let mut write = self.db.begin().await?;
        let updated_at = now();
        let params: [Param<'_>; 7] = [
            order.id.as_str().into(),
            next.into(),
            state_column(state).into(),
            reason.as_deref().into(),
            now_millis().into(),
            updated_at.as_str().into(),
            row.step.as_str().into(),
        ];
        let Some(moved) = write.one::<OrderRow>(&store::advance(), &params).await? else {
            // Another instance moved it first (its lease ran out under us): theirs stands.
            return write.rollback().await;
        };
        let event = match state {
            OrderState::Confirmed => Some(ORDER_CONFIRMED),
            OrderState::Cancelled => Some(ORDER_CANCELLED),
            OrderState::Pending => None,
        };
        if let Some(subject) = event {
            write.event(subject, &moved.order, meta).await?;
            tracing::info!(
                order = order.id,
                state = state_column(state),
                reason = moved.order.reason,
                "Order finished."
            );
        }
        write.commit().await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Puts the step off by the backoff of its failures so far.
    async fn retry(&self, row: &OrderRow, why: &str) -> Result<(), StoreError> {
        let wait = backoff(&self.settings, row.attempts);
        tracing::info!(
            order = row.order.id,
            step = row.step,
            attempts = row.attempts + 1,
            ?wait,
            why,
            "Saga step will be tried again."
        );
        let at = now_millis() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        let mut write = self.db.begin().await?;
        write
            .execute(
                store::RETRY,
                &[
                    row.order.id.as_str().into(),
                    at.into(),
                    row.step.as_str().into(),
                ],
            )
            .await?;
        write.commit().await
    }

    /// The meta of a step's call: its own request id, for logs, in the trace of the request
    /// that took the order (a new trace for orders taken before traces were kept).
    fn meta(&self, row: &OrderRow, step: &str) -> Meta {
        let mut meta = Meta::root();
        meta.request_id = format!("{}:{step}", row.order.id);
        if let Some(parent) = row.traceparent.as_deref().and_then(TraceContext::parse) {
            meta.follow(parent);
        }
        meta
    }
}

fn advance(step: &'static str, state: OrderState, reason: Option<String>) -> Next {
    Next::Advance {
        step,
        state,
        reason,
    }
}

/// A refusal for good (a 4xx other than a time-out or rate limit): what it said; `None` for
/// failures worth another try.
fn refused(e: &CallError) -> Option<String> {
    match e {
        CallError::Service { error, .. }
            if (400..500).contains(&error.code) && !matches!(error.code, 408 | 429) =>
        {
            Some(error.message.clone())
        }
        _ => None,
    }
}

/// `retry_min * 2^attempts`, at most `retry_max`, with up to a quarter off at random so that
/// sagas failing together do not retry together.
fn backoff(settings: &OrdersSettings, attempts: i64) -> Duration {
    let doubled = settings
        .retry_min
        .saturating_mul(1 << attempts.clamp(0, 20));
    let capped = doubled.min(settings.retry_max);
    capped.mul_f64(1.0 - rand::random::<f64>() * 0.25)
}
