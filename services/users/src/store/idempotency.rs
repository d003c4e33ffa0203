//! Idempotency keys: each write's reply, stored under the caller's request id and the
//! endpoint with the request's [`Fingerprint`], in the write's own transaction. A later
//! request under the same key gets that reply if its fingerprint is the stored one (a retry),
//! and [`StoreError::KeyReused`] if not (the request id was reused for another request).

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use sqlx::{Any, Row, Transaction};

use super::{duplicate_or_query, local, millis, sql, unix_millis, Store, StoreError, Write};
use crate::fingerprint::Fingerprint;

/// How long the reply of a write is kept for retries under the same request id. Far longer
/// than any caller retries, short enough that the table stays small.
pub const KEEP_REPLIES: Duration = Duration::from_secs(24 * 60 * 60);

/// How often an instance deletes replies older than [`KEEP_REPLIES`]: once a minute is one
/// indexed delete per minute, not one per write.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What makes two writes the same write: the caller's request id (`X-Request-Id`, which a
/// retry repeats) and the endpoint name the write; the fingerprint says what it asked (body
/// and caller). A request under a used request id and endpoint gets the first reply only if
/// it asks the same; a caller that sends several writes must give each its own request id.
#[derive(Debug, Clone, Copy)]
pub struct WriteKey<'a> {
    /// The caller's request id.
    pub request_id: &'a str,
    /// The endpoint's subject.
    pub endpoint: &'a str,
    /// What the request asks, stored with the key and compared on every replay.
    pub fingerprint: &'a Fingerprint,
}

/// The outcome of [`Store::claim`].
#[derive(Debug)]
pub enum Claim<R> {
    /// No write under this key has committed: do it in this transaction.
    Fresh(Write),
    /// One has, for the same request: its reply.
    Done(R),
}

impl Store {
    /// The reply of the write done under `key`, if one committed; [`StoreError::KeyReused`]
    /// if it was done for a different request. A key stored before fingerprints existed
    /// (fingerprint `NULL`) matches any request, as every key did then: such keys are gone a
    /// day after the upgrade ([`KEEP_REPLIES`]), and refusing them instead would fail honest
    /// retries across the upgrade (and during a rolling one, those of older instances' writes).
    pub async fn reply<R: DeserializeOwned>(
        &self,
        key: WriteKey<'_>,
    ) -> Result<Option<R>, StoreError> {
        let stored = match &self.file {
            Some(file) => local::reply(file, key)?,
            None => {
                let row = sqlx::query(sql::REPLY)
                    .bind(key.request_id)
                    .bind(key.endpoint)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|row| Ok::<_, sqlx::Error>((row.try_get(0)?, row.try_get(1)?)))
                    .transpose()?
            }
        };
        let Some((json, fingerprint)) = stored else {
            return Ok(None);
        };
        if fingerprint.is_some_and(|f: String| f != key.fingerprint.as_str()) {
            return Err(StoreError::KeyReused);
        }
        serde_json::from_str(&json)
            .map(Some)
            .map_err(StoreError::Reply)
    }

    /// Starts the write under `key`: a transaction whose first statement inserts the key, so
    /// that a concurrent duplicate waits on the key until this one commits (then finds its
    /// reply, or [`StoreError::KeyReused`]) or rolls back (then does the work itself).
    /// Dropping the [`Write`] rolls back.
    pub async fn claim<R: DeserializeOwned>(
        &self,
        key: WriteKey<'_>,
    ) -> Result<Claim<R>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (request_id, endpoint, fingerprint, reply, created_at) \
             VALUES ($1, $2, $3, '', $4)",
        )
        .bind(key.request_id)
        .bind(key.endpoint)
        .bind(key.fingerprint.as_str())
        .bind(unix_millis(SystemTime::now()))
        .execute(&mut *tx)
        .await;
        match inserted.map_err(duplicate_or_query) {
            Ok(_) => {}
            Err(StoreError::Duplicate) => {
                tx.rollback().await?;
                // A key is only ever committed with its reply, and kept for a day: it is there.
                let done = self.reply(key).await?;
                return done
                    .map(Claim::Done)
                    .ok_or(StoreError::Query(sqlx::Error::RowNotFound));
            }
            Err(e) => return Err(e),
        }
        self.prune_if_due(&mut tx).await?;
        Ok(Claim::Fresh(Write {
            tx,
            request_id: key.request_id.to_owned(),
            endpoint: key.endpoint.to_owned(),
        }))
    }

    /// Deletes replies older than [`KEEP_REPLIES`], at most once per [`PRUNE_EVERY`] per
    /// instance, inside a write's transaction so that it costs no commit of its own.
    async fn prune_if_due(&self, tx: &mut Transaction<'static, Any>) -> Result<(), StoreError> {
        let now = unix_millis(SystemTime::now());
        let last = self.last_prune.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= millis(PRUNE_EVERY);
        // Only the write that moves the mark prunes, however many see it due at once.
        if !due
            || self
                .last_prune
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(now - millis(KEEP_REPLIES))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
