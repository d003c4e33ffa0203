//! The saga's metrics: its steps as they run, and a census of the orders by state.
//!
//! Steps are counted and timed where they run (each instance its own). The census is the
//! database's: every instance counts the rows by state every `orders.census_every`, so `max by (state)` over instances is the truth, and
//! `courier_saga_oldest_pending_seconds` shows a saga stuck in `pending` whichever instance
//! should be running it.

use std::time::{Duration, SystemTime};

use courier_store::{Database, FromRow, Row, StoreError};
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::store::{self, step};

/// Metric name: saga steps run, by step and outcome (`advanced`, `retried`).
pub const STEPS: &str = "courier_saga_steps_total";
/// Metric name: how long a step's call to another service took, by step.
pub const STEP_DURATION: &str = "courier_saga_step_duration_seconds";
/// Metric name: orders by state (`pending`, `confirmed`, `cancelled`), from the database.
pub const SAGAS: &str = "courier_sagas";
/// Metric name: age of the oldest order still `pending` (0 when none is).
pub const OLDEST_PENDING: &str = "courier_saga_oldest_pending_seconds";

/// The one saga this service runs, as its `saga` label.
const SAGA: &str = "order";
/// The steps that call another service.
const STEPS_RUN: [&str; 3] = [step::RESERVE, step::CHARGE, step::RELEASE];
/// Every state a census reports, 0 when no order is in it.
const STATES: [&str; 3] = ["pending", "confirmed", "cancelled"];

/// Step-time buckets, 1 ms to 30 s: a step is one call, retried by the saga, not in it.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// How a step ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// The saga moved on (to the next step, or done).
    Advanced,
    /// No usable answer: the step runs again later.
    Retried,
}

/// The saga's metrics. Cheap to clone.
#[derive(Clone)]
pub struct SagaMetrics {
    steps: IntCounterVec,
    step_duration: HistogramVec,
    sagas: IntGaugeVec,
    oldest_pending: GaugeVec,
}

impl SagaMetrics {
    /// Registers the metrics in `registry`, every step, outcome and state at 0 so that each
    /// series exists from the start.
    pub fn register(registry: &Registry, service: &str) -> prometheus::Result<Self> {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("service", service);
        let steps = IntCounterVec::new(
            opts(STEPS, "Saga steps run, by outcome."),
            &["saga", "step", "outcome"],
        )?;
        let step_duration = HistogramVec::new(
            HistogramOpts::new(STEP_DURATION, "Time a saga step's call took.")
                .const_label("service", service)
                .buckets(BUCKETS.to_vec()),
            &["saga", "step"],
        )?;
        let sagas = IntGaugeVec::new(opts(SAGAS, "Orders by state."), &["saga", "state"])?;
        let oldest_pending = GaugeVec::new(
            opts(OLDEST_PENDING, "Age of the oldest pending order."),
            &["saga"],
        )?;
        for step in STEPS_RUN {
            for outcome in ["advanced", "retried"] {
                steps.with_label_values(&[SAGA, step, outcome]);
            }
            step_duration.with_label_values(&[SAGA, step]);
        }
        for state in STATES {
            sagas.with_label_values(&[SAGA, state]);
        }
        oldest_pending.with_label_values(&[SAGA]);
        registry.register(Box::new(steps.clone()))?;
        registry.register(Box::new(step_duration.clone()))?;
        registry.register(Box::new(sagas.clone()))?;
        registry.register(Box::new(oldest_pending.clone()))?;
        Ok(Self {
            steps,
            step_duration,
            sagas,
            oldest_pending,
        })
    }

    /// One run of `step` that took `took` and ended as `outcome`.
    pub fn step(&self, step: &str, took: Duration, outcome: Outcome) {
        let outcome = match outcome {
            Outcome::Advanced => "advanced",
            Outcome::Retried => "retried",
        };
        self.steps.with_label_values(&[SAGA, step, outcome]).inc();
        self.step_duration
            .with_label_values(&[SAGA, step])
            .observe(took.as_secs_f64());
    }

    /// Counts the orders in `db` by state and sets the census gauges.
    pub async fn census(&self, db: &Database) -> Result<(), StoreError> {
        let rows: Vec<StateCount> = db.all(store::CENSUS, &[]).await?;
        let mut oldest = None;
        for state in STATES {
            let row = rows.iter().find(|r| r.state == state);
            self.sagas
                .with_label_values(&[SAGA, state])
                .set(row.map_or(0, |r| r.count));
            if state == "pending" {
                oldest = row.and_then(|r| r.oldest.as_deref());
            }
        }
        let age = oldest
            .and_then(|at| humantime::parse_rfc3339_weak(at).ok())
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .map_or(0.0, |age| age.as_secs_f64());
        self.oldest_pending.with_label_values(&[SAGA]).set(age);
        Ok(())
    }
}

/// Counts the orders in `db` by state every `every` until `stop` resolves: a task of its own,
/// so a slow count never holds up the saga.
pub async fn census(
    metrics: SagaMetrics,
    db: Database,
    every: Duration,
    stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
) {
    let mut stop = stop;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = &mut stop => return,
        }
        if let Err(error) = metrics.census(&db).await {
            tracing::warn!(%error, "Cannot count the orders by state.");
        }
    }
}

/// A row of [`store::CENSUS`].
struct StateCount {
    state: String,
    count: i64,
    oldest: Option<String>,
}

impl FromRow for StateCount {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self {
            state: row.text(0)?,
            count: row.int(1)?,
            oldest: row.opt_text(2)?,
        })
    }
}
