//! Idempotency keys: each write's reply, stored under the caller's request id and the
//! endpoint with the request's [`Fingerprint`], in the write's own transaction. A later
//! request under the same key gets that reply if its fingerprint is the stored one (a retry),
//! and [`StoreError::KeyReused`] if not (the request id was reused for another request).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::rows::{FromRow, Row};
use crate::{millis, now_millis, Database, Fingerprint, StoreError, Write};

/// How long the reply of a write is kept for retries under the same request id. Far longer
/// than any caller retries, short enough that the table stays small.
pub const KEEP_REPLIES: Duration = Duration::from_secs(24 * 60 * 60);

/// How long an event id is remembered as handled: longer than the event stream keeps
/// events, so no redelivery outlives its record.
const KEEP_HANDLED: Duration = Duration::from_secs(8 * 24 * 60 * 60);

/// How often an instance deletes replies and handled events past their keep time: once a
/// minute is two indexed deletes per minute, not one per write.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

const REPLY: &str =
    "SELECT reply, fingerprint FROM idempotency_keys WHERE request_id = $1 AND endpoint = $2";

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

impl<'a> WriteKey<'a> {
    /// The key of a write to `endpoint` under the request id of `meta`.
    pub fn of(
        meta: &'a courier_actors::Meta,
        endpoint: &'a str,
        fingerprint: &'a Fingerprint,
    ) -> Self {
        Self {
            request_id: &meta.request_id,
            endpoint,
            fingerprint,
        }
    }
}

/// The outcome of [`Database::claim`].
#[derive(Debug)]
pub enum Claim<R> {
    /// No write under this key has committed: do it in this transaction.
    Fresh(Write),
    /// One has, for the same request: its reply.
    Done(R),
}

/// A stored reply and the fingerprint of its request.
struct Stored(String, Option<String>);

impl FromRow for Stored {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self(row.text(0)?, row.opt_text(1)?))
    }
}

impl Database {
    /// The reply of the write done under `key`, if one committed; [`StoreError::KeyReused`]
    /// if it was done for a different request. A key stored without a fingerprint (by the
    /// users service before fingerprints existed) matches any request: such keys are gone a
    /// day after the upgrade ([`KEEP_REPLIES`]).
    pub async fn reply<R: DeserializeOwned>(
        &self,
        key: WriteKey<'_>,
    ) -> Result<Option<R>, StoreError> {
        let params = [key.request_id.into(), key.endpoint.into()];
        let Some(Stored(json, fingerprint)) = self.one(REPLY, &params).await? else {
            return Ok(None);
        };
        if fingerprint.is_some_and(|f| f != key.fingerprint.as_str()) {
            return Err(StoreError::KeyReused);
        }
        serde_json::from_str(&json)
            .map(Some)
            .map_err(StoreError::Json)
    }

    /// Starts the write under `key`: a transaction whose first statement inserts the key, so
    /// that a concurrent duplicate waits on the key until this one commits (then finds its
    /// reply, or [`StoreError::KeyReused`]) or rolls back (then does the work itself).
    /// Dropping the [`Write`] rolls back.
    pub async fn claim<R: DeserializeOwned>(
        &self,
        key: WriteKey<'_>,
    ) -> Result<Claim<R>, StoreError> {
        let key_columns = Some((key.request_id.to_owned(), key.endpoint.to_owned()));
        let mut write = self.begin_keyed(key_columns).await?;
        let inserted = write
            .execute(
                "INSERT INTO idempotency_keys (request_id, endpoint, fingerprint, reply, created_at) \
                 VALUES ($1, $2, $3, '', $4)",
                &[
                    key.request_id.into(),
                    key.endpoint.into(),
                    key.fingerprint.as_str().into(),
                    now_millis().into(),
                ],
            )
            .await;
        match inserted {
            Ok(_) => {}
            Err(StoreError::Duplicate) => {
                write.rollback().await?;
                // A key is only ever committed with its reply, and kept for a day: it is there.
                let done = self.reply(key).await?;
                return done
                    .map(Claim::Done)
                    .ok_or(StoreError::Query(sqlx::Error::RowNotFound));
            }
            Err(e) => return Err(e),
        }
        self.prune_if_due(&mut write).await?;
        Ok(Claim::Fresh(write))
    }

    /// [`Database::claim`] of the write `meta`'s caller asks of `endpoint` under its request
    /// id, its request's checked `fields` fingerprinted in the form `version` names (see
    /// [`Fingerprint::of`]).
    pub async fn claim_request<R: DeserializeOwned>(
        &self,
        meta: &courier_actors::Meta,
        version: &str,
        endpoint: &str,
        fields: serde_json::Value,
    ) -> Result<Claim<R>, StoreError> {
        let fingerprint = Fingerprint::of(version, endpoint, meta.caller.as_ref(), fields);
        self.claim(WriteKey::of(meta, endpoint, &fingerprint)).await
    }

    /// Deletes replies older than [`KEEP_REPLIES`] and handled events older than
    /// [`KEEP_HANDLED`], at most once per [`PRUNE_EVERY`] per instance, inside a write's
    /// transaction so that it costs no commit of its own.
    pub(crate) async fn prune_if_due(&self, write: &mut Write) -> Result<(), StoreError> {
        let now = now_millis();
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
        let replies = (now - millis(KEEP_REPLIES)).into();
        write
            .execute(
                "DELETE FROM idempotency_keys WHERE created_at < $1",
                &[replies],
            )
            .await?;
        let handled = (now - millis(KEEP_HANDLED)).into();
        write
            .execute(
                "DELETE FROM handled_events WHERE handled_at < $1",
                &[handled],
            )
            .await?;
        Ok(())
    }
}
