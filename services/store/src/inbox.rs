//! Handled events: an event handler claims the event's id in the transaction that holds its
//! effect, so that a redelivered event (the broker delivers at least once) changes nothing
//! twice.

use crate::{duplicate_or_query, now_millis, Database, StoreError, Write};

impl Database {
    /// Starts the handling of event `event_id` by `consumer` (the durable consumer's name):
    /// `None` when that consumer has already handled it (committed), otherwise a [`Write`]
    /// that holds the claim; do the effect in it and commit. A concurrent delivery of the
    /// same event waits on the claim until this one commits (then gets `None`) or rolls back
    /// (then handles it itself).
    pub async fn claim_event(
        &self,
        consumer: &str,
        event_id: &str,
    ) -> Result<Option<Write>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO handled_events (consumer, event_id, handled_at) VALUES ($1, $2, $3)",
        )
        .bind(consumer)
        .bind(event_id)
        .bind(now_millis())
        .execute(&mut *tx)
        .await;
        match inserted.map_err(duplicate_or_query) {
            Ok(_) => {}
            Err(StoreError::Duplicate) => {
                tx.rollback().await?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let mut write = Write::new(tx, None, self.outbox.clone());
        self.prune_if_due(&mut write).await?;
        Ok(Some(write))
    }
}
