//! The transactional outbox's relay. A write stores its events in the `outbox` table in its
//! own transaction ([`crate::Write::event`]); the relay publishes committed events in order
//! of id and deletes each once the broker has acknowledged it.
//!
//! What this guarantees: an event is published if and only if its write committed (at least
//! once: a crash after the publish and before the delete publishes it again on restart, with
//! the same id, which JetStream's duplicate window drops). Several instances of a service
//! share its database and each runs a relay: they may publish the same row, which the same
//! window drops. Events of one write keep their order; across a failed publish, a later
//! event may overtake an earlier one, which is retried.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use crate::rows::{FromRow, Param, Row};
use crate::{Database, StoreError};

/// How many events one pass publishes (acknowledgements awaited together).
const BATCH: u32 = 1024;

/// How often the relay looks for events when no commit woke it: events committed by another
/// instance on the same database, or left by a failed publish.
const POLL: Duration = Duration::from_secs(1);

/// The longest wait after failed publishes before the next try.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

const PENDING: &str = "SELECT id, subject, payload, request_id, traceparent FROM outbox \
                       ORDER BY id LIMIT $1";

/// A committed event waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    /// Its UUIDv7: send it as `Nats-Msg-Id`.
    pub id: String,
    /// Where it goes.
    pub subject: String,
    /// The body, JSON.
    pub payload: String,
    /// The request id of the write that made it.
    pub request_id: Option<String>,
    /// The W3C trace context of the write that made it.
    pub traceparent: Option<String>,
}

impl FromRow for PendingEvent {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.text(0)?,
            subject: row.text(1)?,
            payload: row.text(2)?,
            request_id: row.opt_text(3)?,
            traceparent: row.opt_text(4)?,
        })
    }
}

/// Publishes a database's committed events.
#[derive(Debug, Clone)]
pub struct Relay {
    db: Database,
}

impl Relay {
    /// The relay of `db`'s outbox.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Publishes pending events with `publish` until `stop` resolves, then makes one last
    /// pass, so that what was committed before the stop leaves before the process does.
    /// `publish` is given the events of a pass and resolves once the broker acknowledged them,
    /// with the result of each event in its place.
    pub async fn run<P, F, E>(self, publish: P, stop: impl Future<Output = ()>)
    where
        P: Fn(Vec<PendingEvent>) -> F,
        F: Future<Output = Vec<Result<(), E>>>,
        E: Display,
    {
        let mut stop = std::pin::pin!(stop);
        let mut backoff = Duration::ZERO;
        loop {
            let wait = match self.pass(&publish).await {
                Ok(Pass {
                    published,
                    failed: 0,
                }) if published == BATCH as usize => continue,
                Ok(Pass { failed: 0, .. }) => {
                    backoff = Duration::ZERO;
                    POLL
                }
                Ok(Pass { failed, .. }) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
                    tracing::warn!(failed, retry_in = ?backoff, "Events not published; retrying.");
                    backoff
                }
                Err(error) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
                    tracing::warn!(%error, retry_in = ?backoff, "Cannot read the outbox; retrying.");
                    backoff
                }
            };
            tokio::select! {
                () = self.db.outbox.notified(), if backoff.is_zero() => {}
                () = tokio::time::sleep(wait) => {}
                () = &mut stop => break,
            }
        }
        match self.pass(&publish).await {
            Ok(Pass { failed: 0, .. }) => {}
            Ok(Pass { failed, .. }) => {
                tracing::warn!(
                    failed,
                    "Events left unpublished at stop; the next start sends them."
                )
            }
            Err(error) => tracing::warn!(%error, "Cannot read the outbox at stop."),
        }
    }

    /// Publishes up to `BATCH` (1024) pending events with one call of `publish`, and deletes
    /// those acknowledged.
    pub async fn pass<P, F, E>(&self, publish: &P) -> Result<Pass, StoreError>
    where
        P: Fn(Vec<PendingEvent>) -> F,
        F: Future<Output = Vec<Result<(), E>>>,
        E: Display,
    {
        let pending: Vec<PendingEvent> = self.db.all(PENDING, &[BATCH.into()]).await?;
        if pending.is_empty() {
            return Ok(Pass::default());
        }
        let ids: Vec<String> = pending.iter().map(|event| event.id.clone()).collect();
        let results = publish(pending).await;
        if results.len() != ids.len() {
            // A publisher that lost count: nothing is known to be acknowledged.
            tracing::error!(
                events = ids.len(),
                results = results.len(),
                "The publisher answered for another number of events; none deleted."
            );
            return Ok(Pass {
                published: 0,
                failed: ids.len(),
            });
        }
        let mut acked = Vec::with_capacity(ids.len());
        let mut failed = 0;
        for (id, result) in ids.iter().zip(results) {
            match result {
                Ok(()) => acked.push(Param::Text(id)),
                Err(error) => {
                    failed += 1;
                    tracing::debug!(%error, id, "Publish failed.");
                }
            }
        }
        let published = acked.len();
        if let Some(&last) = acked.last() {
            // Padded to a power of two with the last id again, so that a handful of statements
            // (1, 2, 4 .. 1024 ids) serve every pass and stay prepared.
            let size = acked.len().next_power_of_two();
            acked.resize(size, last);
            let mut delete = self.db.begin().await?;
            delete.execute(&delete_sql(size), &acked).await?;
            delete.commit().await?;
        }
        Ok(Pass { published, failed })
    }
}

/// What one pass of the relay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Events acknowledged and deleted.
    pub published: usize,
    /// Events whose publish failed, left for the next pass.
    pub failed: usize,
}

/// `DELETE ... WHERE id IN ($1, ..., $n)`.
fn delete_sql(n: usize) -> String {
    let mut sql = String::from("DELETE FROM outbox WHERE id IN (");
    for i in 1..=n {
        if i > 1 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("${i}"));
    }
    sql.push(')');
    sql
}
