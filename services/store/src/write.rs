//! A write in progress: one transaction holding the change, and with it, when the write has
//! them, its idempotency key and reply and the events it announces.

use std::sync::Arc;

use courier_actors::Meta;
use serde::Serialize;
use sqlx::{Any, Transaction};
use tokio::sync::Notify;

use crate::local;
use crate::rows::{bind, FromRow, Param};
use crate::writer::{self, WriteTx};
use crate::{duplicate_or_query, now_millis, Call, StoreError};

/// One transaction: statements, then [`Write::record`] of the reply (for a write under a
/// [`WriteKey`](crate::WriteKey)), [`Write::event`]s, then [`Write::commit`]. Dropped without
/// a commit, it rolls back, key and events included.
#[derive(Debug)]
pub struct Write {
    tx: Tx,
    /// The request id and endpoint the reply is stored under, for a write claimed by key.
    key: Option<(String, String)>,
    /// The relay's wake-up, rung after a commit that wrote events.
    outbox: Arc<Notify>,
    events: usize,
    /// The database system, for trace spans.
    system: &'static str,
}

/// Where a write's statements run.
#[derive(Debug)]
pub(crate) enum Tx {
    /// A pooled sqlx connection (PostgreSQL, in-memory SQLite).
    Pool(Transaction<'static, Any>),
    /// The SQLite file's writer connection, on the calling thread.
    File(WriteTx),
}

impl Write {
    pub(crate) fn new(
        tx: Tx,
        key: Option<(String, String)>,
        outbox: Arc<Notify>,
        system: &'static str,
    ) -> Self {
        Self {
            tx,
            key,
            outbox,
            events: 0,
            system,
        }
    }

    /// Runs a statement; the number of rows it changed. A unique violation is
    /// [`StoreError::Duplicate`].
    pub async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let call = Call::start(self.system, sql);
        let done = self.execute_untraced(sql, params).await;
        call.end(&done);
        done
    }

    async fn execute_untraced(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<u64, StoreError> {
        match &mut self.tx {
            Tx::Pool(tx) => {
                let done = bind(sql, params)
                    .execute(&mut **tx)
                    .await
                    .map_err(duplicate_or_query)?;
                Ok(done.rows_affected())
            }
            Tx::File(tx) => tx
                .run(sql, params, |statement| Ok(statement.raw_execute()? as u64))
                .map_err(file_error),
        }
    }

    /// The first row of a query (`SELECT`, or a statement with `RETURNING`), if any. A unique
    /// violation is [`StoreError::Duplicate`].
    pub async fn one<T: FromRow>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<T>, StoreError> {
        let call = Call::start(self.system, sql);
        let row = self.one_untraced(sql, params).await;
        call.end(&row);
        row
    }

    async fn one_untraced<T: FromRow>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<T>, StoreError> {
        match &mut self.tx {
            Tx::Pool(tx) => {
                let row = bind(sql, params)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(duplicate_or_query)?;
                row.as_ref().map(|row| T::from_row(row)).transpose()
            }
            Tx::File(tx) => tx
                .run(sql, params, |statement| {
                    let mut rows = statement.raw_query();
                    let value = local::first_row(&mut rows)?;
                    // A statement with `RETURNING` does its work as it is stepped: finish it.
                    while rows.next()?.is_some() {}
                    Ok(value)
                })
                .map_err(file_error),
        }
    }

    /// Every row of a query.
    pub async fn all<T: FromRow>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<T>, StoreError> {
        let call = Call::start(self.system, sql);
        let all = self.all_untraced(sql, params).await;
        call.end(&all);
        all
    }

    async fn all_untraced<T: FromRow>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<T>, StoreError> {
        match &mut self.tx {
            Tx::Pool(tx) => {
                let rows = bind(sql, params).fetch_all(&mut **tx).await?;
                rows.iter().map(|row| T::from_row(row)).collect()
            }
            Tx::File(tx) => tx.run(sql, params, local::all_rows).map_err(file_error),
        }
    }

    /// Stores `reply` as what every retry under this write's key gets. Does nothing for a
    /// write started without a key ([`crate::Database::begin`]).
    pub async fn record<R: Serialize>(&mut self, reply: &R) -> Result<(), StoreError> {
        let Some((request_id, endpoint)) = &self.key else {
            return Ok(());
        };
        let json = serde_json::to_string(reply).map_err(StoreError::Json)?;
        let (request_id, endpoint) = (request_id.clone(), endpoint.clone());
        self.execute(
            "UPDATE idempotency_keys SET reply = $1 WHERE request_id = $2 AND endpoint = $3",
            &[
                json.as_str().into(),
                (&request_id).into(),
                (&endpoint).into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Announces `body` on `subject` once this write commits (the transactional outbox): the
    /// relay publishes it, as JSON, with the request id and trace context of `meta`. Returns
    /// the event's id (a UUIDv7, its `Nats-Msg-Id`).
    pub async fn event<E: Serialize + ?Sized>(
        &mut self,
        subject: &str,
        body: &E,
        meta: &Meta,
    ) -> Result<String, StoreError> {
        let id = courier_actors::durable::new_event_id();
        let payload = serde_json::to_string(body).map_err(StoreError::Json)?;
        let traceparent = meta.trace.to_header();
        self.execute(
            "INSERT INTO outbox (id, subject, payload, request_id, traceparent, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                (&id).into(),
                subject.into(),
                payload.as_str().into(),
                (&meta.request_id).into(),
                traceparent.as_str().into(),
                now_millis().into(),
            ],
        )
        .await?;
        self.events += 1;
        Ok(id)
    }

    /// Records `reply` and commits, unless `meta`'s deadline has passed: then the caller has
    /// been answered 504 (or soon will be), and a 504 must mean that nothing happened, so
    /// everything rolls back and the result is [`StoreError::DeadlinePassed`]. Checked last,
    /// after any wait on a database lock, because that is where the time goes. (What remains
    /// between this check and the commit is covered by the stored reply: a retry gets it.)
    pub async fn commit_reply<R: Serialize>(
        mut self,
        reply: &R,
        meta: &Meta,
    ) -> Result<(), StoreError> {
        self.record(reply).await?;
        if meta.remaining().is_some_and(|left| left.is_zero()) {
            self.rollback().await?;
            return Err(StoreError::DeadlinePassed);
        }
        self.commit().await
    }

    /// Makes the changes, key, reply and events included, durable; then wakes the relay.
    pub async fn commit(self) -> Result<(), StoreError> {
        let call = Call::start(self.system, "COMMIT");
        let done = match self.tx {
            Tx::Pool(tx) => tx.commit().await.map_err(StoreError::from),
            Tx::File(tx) => tx.commit().await,
        };
        call.end(&done);
        done?;
        if self.events > 0 {
            self.outbox.notify_one();
        }
        Ok(())
    }

    /// Undoes the changes, key and events included, now rather than when the connection is
    /// next used. On a SQLite file it returns once the writes committed in a group before this
    /// one are durable, so that what this write saw of them (a duplicate key) can be read
    /// back.
    pub async fn rollback(self) -> Result<(), StoreError> {
        let call = Call::start(self.system, "ROLLBACK");
        let done = match self.tx {
            Tx::Pool(tx) => tx.rollback().await.map_err(StoreError::from),
            Tx::File(tx) => tx.rollback().await,
        };
        call.end(&done);
        done
    }
}

/// A failed statement of a SQLite write: [`StoreError::Duplicate`] for a unique violation, as
/// [`duplicate_or_query`] for sqlx.
fn file_error(error: StoreError) -> StoreError {
    match error {
        StoreError::Sqlite(e) if writer::is_unique_violation(&e) => StoreError::Duplicate,
        other => other,
    }
}
