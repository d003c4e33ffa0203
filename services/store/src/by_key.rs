//! Reads of one row by its key, where the reads waiting at the same moment go to the
//! database together: under load, one query answers many requests.
//!
//! Each thread keeps a queue per [`ByKey`]. A read joins its thread's queue; the first read
//! into an empty queue spawns a flush, which lets every request ready on the thread take its
//! turn first (so that they join too), then reads the whole queue at once and hands each
//! waiting read its row; reads that arrived meanwhile make the next batch. At one request in
//! flight that is one read per batch, a few microseconds later than a direct read; at 64 in
//! flight a batch holds tens of keys, and what a read costs per trip (PostgreSQL's network
//! round trip, the statement's execution by the server, sqlx's machinery, SQLite's file
//! locks at the start and end of each read transaction) is paid once per batch.
//!
//! - PostgreSQL: one statement for the batch. The keys travel as one JSON array and are
//!   joined laterally with the single-key statement, so each key uses the key's index as a
//!   lone read would.
//! - A SQLite file: the single-key statement run once per key inside one read transaction, on
//!   the thread's own connection (`local.rs`).
//!
//! Every read still reaches the database, after the request arrived: a batch never answers
//! with a row older than the request (a write that committed before the read was asked for is
//! always seen). A caller that gives up (a deadline, a cancelled request) is left out of the
//! batch if it has not started.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::Row as _;
use thread_local::ThreadLocal;
use tokio::sync::oneshot;

use crate::rows::{FromRow, Row};
use crate::{local, Call, Database, StoreError};

/// The most keys one batch reads; what waits beyond it makes the next batch.
const MAX_BATCH: usize = 128;

/// Reads of a `T` by a unique key, batched per thread (see the module's docs). Cheap to
/// clone.
pub struct ByKey<T: Send> {
    inner: Arc<Inner<T>>,
}

impl<T: Send> Clone for ByKey<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Send> std::fmt::Debug for ByKey<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByKey")
            .field("one", &self.inner.one)
            .finish()
    }
}

struct Inner<T: Send> {
    db: Database,
    /// `<select> WHERE <key> = $1`.
    one: String,
    /// PostgreSQL's statement for a batch: the key, then the columns of `<select>`, for each
    /// key of the JSON array `$1` that has a row.
    many: String,
    queues: ThreadLocal<Arc<Mutex<Queue<T>>>>,
    /// Reads taken into batches, and the batches.
    reads: AtomicU64,
    batches: AtomicU64,
}

/// How many reads a [`ByKey`] has sent to the database, in how many batches: `reads /
/// batches` is how many reads shared a batch, on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Batching {
    /// Reads that went to the database (a read given up before its batch is not counted).
    pub reads: u64,
    /// Batches those reads went in.
    pub batches: u64,
}

/// One thread's reads waiting for a batch.
struct Queue<T> {
    waiting: Vec<Waiter<T>>,
    /// A flush is spawned and will take what waits.
    flushing: bool,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            waiting: Vec::new(),
            flushing: false,
        }
    }
}

struct Waiter<T> {
    key: String,
    answer: oneshot::Sender<Answer<T>>,
}

/// What one read gets.
type Answer<T> = Result<Option<T>, StoreError>;

impl<T: FromRow + Clone + Send + 'static> ByKey<T> {
    /// Reads by `key` from the rows `select` gives: `select` is `SELECT <columns> FROM
    /// <table>` with no `WHERE` (a read adds `WHERE <key> = $1`), `key` a unique column whose
    /// values are text.
    pub fn new(db: &Database, select: &str, key: &str) -> Self {
        let one = format!("{select} WHERE {key} = $1");
        let many = format!(
            "SELECT courier_key.k, q.* FROM json_array_elements_text($1::json) AS courier_key(k) \
             CROSS JOIN LATERAL ({select} WHERE {key} = courier_key.k) AS q"
        );
        Self {
            inner: Arc::new(Inner {
                db: db.clone(),
                one,
                many,
                queues: ThreadLocal::new(),
                reads: AtomicU64::new(0),
                batches: AtomicU64::new(0),
            }),
        }
    }

    /// How the reads so far were batched.
    pub fn batching(&self) -> Batching {
        Batching {
            reads: self.inner.reads.load(Ordering::Relaxed),
            batches: self.inner.batches.load(Ordering::Relaxed),
        }
    }

    /// The row whose key is `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<T>, StoreError> {
        let call = Call::start(self.inner.db.system, &self.inner.one);
        let (answer, answered) = oneshot::channel();
        let queue = self.inner.queues.get_or(Default::default);
        let spawn = {
            let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.push(Waiter {
                key: key.to_owned(),
                answer,
            });
            !std::mem::replace(&mut queue.flushing, true)
        };
        if spawn {
            // The guard is made before the spawn and moved into the task: if the spawn
            // fails, or the task is dropped before it first runs, dropping it still frees
            // the queue for the next read.
            let guard = Flushing {
                queue: queue.clone(),
                done: false,
            };
            tokio::spawn(flush(self.inner.clone(), guard));
        }
        let row = answered.await.unwrap_or(Err(StoreError::Abandoned));
        call.end(&row);
        row
    }
}

/// Reads what waits in the guard's queue, batch after batch, until nothing does.
async fn flush<T: FromRow + Clone + Send + 'static>(inner: Arc<Inner<T>>, mut guard: Flushing<T>) {
    loop {
        // Requests ready on this thread run first, and those that read join this batch (and
        // the thread is never held by one flush: a SQLite batch has no await of its own).
        tokio::task::yield_now().await;
        let batch: Vec<Waiter<T>> = {
            let mut queue = guard.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.retain(|waiter| !waiter.answer.is_closed());
            if queue.waiting.is_empty() {
                queue.flushing = false;
                guard.done = true;
                return;
            }
            let n = queue.waiting.len().min(MAX_BATCH);
            queue.waiting.drain(..n).collect()
        };
        inner.reads.fetch_add(batch.len() as u64, Ordering::Relaxed);
        inner.batches.fetch_add(1, Ordering::Relaxed);
        let keys: Vec<&str> = batch.iter().map(|w| w.key.as_str()).collect();
        match inner.read(&keys).await {
            Ok(rows) => {
                for (waiter, row) in batch.into_iter().zip(rows) {
                    let _ = waiter.answer.send(row);
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                for waiter in batch {
                    let _ = waiter.answer.send(Err(StoreError::Batch(error.clone())));
                }
            }
        }
    }
}

/// The queue's flush, spawned: dropped before it finished (a panic, a runtime shutting down,
/// a spawn that failed), it answers the reads still waiting [`StoreError::Abandoned`] (their
/// senders dropped) and lets the next read spawn a new flush.
struct Flushing<T> {
    queue: Arc<Mutex<Queue<T>>>,
    done: bool,
}

impl<T> Drop for Flushing<T> {
    fn drop(&mut self) {
        if !self.done {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.clear();
            queue.flushing = false;
        }
    }
}

impl<T: FromRow + Clone + Send> Inner<T> {
    /// The row of each key, in the keys' order; each key's own failure (a row that does not
    /// map) stays its own, and a failure of the whole trip is the batch's.
    async fn read(&self, keys: &[&str]) -> Result<Vec<Answer<T>>, StoreError> {
        let db = &self.db;
        if let Some(file) = &db.file {
            return local::by_keys(file, &self.one, keys);
        }
        if keys.len() == 1 || db.system != "postgresql" {
            let mut rows = Vec::with_capacity(keys.len());
            for key in keys {
                rows.push(db.one(&self.one, &[(*key).into()]).await);
            }
            return Ok(rows);
        }
        let keys_json = serde_json::to_string(keys).map_err(StoreError::Json)?;
        let found = sqlx::query(&self.many)
            .bind(keys_json)
            .fetch_all(db.pool())
            .await?;
        let mut by_key = HashMap::with_capacity(found.len());
        for row in &found {
            let mapped = T::from_row(&AfterKey(row)).map_err(Arc::new);
            by_key.insert(row.try_get::<String, _>(0)?, mapped);
        }
        Ok(keys
            .iter()
            .map(|key| match by_key.get(*key) {
                None => Ok(None),
                Some(Ok(row)) => Ok(Some(row.clone())),
                Some(Err(e)) => Err(StoreError::Batch(e.clone())),
            })
            .collect())
    }
}

/// A row of the batch statement seen without its first column (the key), as `T` expects.
struct AfterKey<'a>(&'a dyn Row);

impl Row for AfterKey<'_> {
    fn text(&self, index: usize) -> Result<String, StoreError> {
        self.0.text(index + 1)
    }
    fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        self.0.opt_text(index + 1)
    }
    fn int(&self, index: usize) -> Result<i64, StoreError> {
        self.0.int(index + 1)
    }
}
