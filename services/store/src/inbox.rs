//! Handled events: an event handler claims the event's id in the transaction that holds its
//! effect, so that a redelivered event (the broker delivers at least once) changes nothing
//! twice.

use crate::{now_millis, Database, StoreError, Write};

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
        let mut write = self.begin().await?;
        let inserted = write
            .execute(
                "INSERT INTO handled_events (consumer, event_id, handled_at) VALUES ($1, $2, $3)",
                &[consumer.into(), event_id.into(), now_millis().into()],
            )
            .await;
        match inserted {
            Ok(_) => {}
            Err(StoreError::Duplicate) => {
                write.rollback().await?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        self.prune_if_due(&mut write).await?;
        Ok(Some(write))
    }
}
