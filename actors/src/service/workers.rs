//! The threads an instance's endpoint loops run on: the thread that started the service
//! (worker 0, which also runs `$SRV` and the event subscriptions) and one actix arbiter per
//! further worker. Each worker has its own subscription of every endpoint in the endpoint's
//! queue group, so the server spreads requests over them, and handles what it receives on its
//! own thread: with actors made per thread ([`crate::Supervised::per_thread`]) a request
//! never changes threads between the subscription and the reply. With connections of its own
//! ([`crate::Connections::per_worker`], opened by a task on the worker), not even the
//! connection's reads and writes leave it.

use std::future::Future;

use actix::Arbiter;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The worker threads; stopped by [`Workers::stop`].
pub(crate) struct Workers {
    arbiters: Vec<Arbiter>,
}

impl Workers {
    /// `count` workers (at least one): this thread and `count - 1` new arbiters.
    pub(super) fn start(count: usize) -> Self {
        Self {
            arbiters: (1..count.max(1)).map(|_| Arbiter::new()).collect(),
        }
    }

    /// How many workers there are.
    pub(crate) fn count(&self) -> usize {
        self.arbiters.len() + 1
    }

    /// Runs `task` on worker `index`; its handle can be awaited and aborted from any thread.
    pub(crate) async fn spawn<F>(&self, index: usize, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let Some(arbiter) = index.checked_sub(1).and_then(|i| self.arbiters.get(i)) else {
            return tokio::spawn(task);
        };
        let (handle, spawned) = oneshot::channel();
        arbiter.spawn(async move {
            let _ = handle.send(tokio::spawn(task));
        });
        // Invariant: the arbiter runs until `stop`, which comes after every spawn.
        spawned.await.expect("a worker arbiter runs until stopped")
    }

    /// Returns once every further worker has run what was woken on it before the call (a
    /// task spawned now runs after them).
    pub(super) async fn settle(&self) {
        for index in 1..self.count() {
            // An empty task cannot fail: that it ran is all that is awaited.
            let _ = self.spawn(index, async {}).await.await;
        }
    }

    /// Stops the arbiters once their loops have ended (or been aborted).
    pub(super) fn stop(&self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

impl Drop for Workers {
    /// A service dropped without [`crate::Running::stop`] leaves no threads behind: the
    /// workers' loops end with their arbiters, cutting short what they still run.
    fn drop(&mut self) {
        self.stop();
    }
}
