//! Durable consumers' counters, in the service's Prometheus registry. Labels: the consumer's
//! durable name and its (declared, bounded) filter subject.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Metric names, one place each.
pub mod metric_names {
    /// Deliveries received (redeliveries included).
    pub const DELIVERED: &str = "courier_consumer_delivered_total";
    /// Events handled and acknowledged.
    pub const ACKED: &str = "courier_consumer_acked_total";
    /// Deliveries after the first of an event.
    pub const REDELIVERED: &str = "courier_consumer_redelivered_total";
    /// Events given up and published to the dead letters.
    pub const DEAD_LETTERED: &str = "courier_consumer_dead_lettered_total";
    /// Deliveries answered with a negative acknowledgement, for a later retry.
    pub const NACKED: &str = "courier_consumer_nacked_total";
    /// Events in the stream the consumer has not been delivered yet (from consumer info,
    /// refreshed every few seconds).
    pub const PENDING: &str = "courier_consumer_pending";
}

/// The consumer counters of one service.
#[derive(Clone)]
pub(crate) struct ConsumerMetrics {
    delivered: IntCounterVec,
    acked: IntCounterVec,
    redelivered: IntCounterVec,
    dead_lettered: IntCounterVec,
    nacked: IntCounterVec,
    pending: IntGaugeVec,
}

impl ConsumerMetrics {
    pub(crate) fn register(registry: &Registry, service: &str) -> Result<Self, prometheus::Error> {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("service", service);
        let labels = &["consumer", "subject"];
        let counter = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
            let counter = IntCounterVec::new(opts(name, help), labels)?;
            registry.register(Box::new(counter.clone()))?;
            Ok(counter)
        };
        let metrics = Self {
            delivered: counter(metric_names::DELIVERED, "Deliveries received.")?,
            acked: counter(metric_names::ACKED, "Events handled and acknowledged.")?,
            redelivered: counter(metric_names::REDELIVERED, "Deliveries after the first.")?,
            dead_lettered: counter(metric_names::DEAD_LETTERED, "Events sent to dead letters.")?,
            nacked: counter(metric_names::NACKED, "Deliveries to be retried later.")?,
            pending: IntGaugeVec::new(
                opts(metric_names::PENDING, "Events not yet delivered."),
                labels,
            )?,
        };
        registry.register(Box::new(metrics.pending.clone()))?;
        Ok(metrics)
    }

    /// The counters of one consumer.
    pub(crate) fn consumer(&self, durable: &str, subject: &str) -> ConsumerStats {
        let labels = &[durable, subject];
        ConsumerStats {
            delivered: self.delivered.with_label_values(labels),
            acked: self.acked.with_label_values(labels),
            redelivered: self.redelivered.with_label_values(labels),
            dead_lettered: self.dead_lettered.with_label_values(labels),
            nacked: self.nacked.with_label_values(labels),
            pending: self.pending.with_label_values(labels),
        }
    }
}

/// One consumer's counters.
#[derive(Clone)]
pub(crate) struct ConsumerStats {
    pub(crate) delivered: IntCounter,
    pub(crate) acked: IntCounter,
    pub(crate) redelivered: IntCounter,
    pub(crate) dead_lettered: IntCounter,
    pub(crate) nacked: IntCounter,
    pub(crate) pending: IntGauge,
}
