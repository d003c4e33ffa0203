//! [`ServiceThread`]: a service run by a test on a thread of its own, in a fresh actix `System`,
//! as its binary would run it: the test's runtime stays free, and a service that blocks its
//! system (a wedged actor) does not block the test.
//!
//! It knows no Courier type: the test's closure builds the service's future (which may hold
//! actix types that never leave the thread), reports what the test needs once it serves through
//! [`Started`], and stops when [`Stop`] resolves.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

/// A service running on its own thread and actix `System` until [`ServiceThread::stop`] or drop.
///
/// Both signal [`Stop`] and join the thread; a panic on the thread (an `expect` in the test's
/// closure) is raised again in the test, unless the test is already panicking.
pub struct ServiceThread<R> {
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<R>>,
    thread: Option<JoinHandle<()>>,
}

/// Hands the test what the service sends once it serves (its id, its admin address).
pub struct Started<S>(oneshot::Sender<S>);

impl<S> Started<S> {
    /// Sends `value` to the waiting [`ServiceThread::start`].
    pub fn send(self, value: S) {
        // A test that gave up waiting has already failed with its own message.
        let _ = self.0.send(value);
    }
}

/// Resolves when the test asks the service to stop (or drops its [`ServiceThread`]): the
/// service's shutdown future.
pub struct Stop(oneshot::Receiver<()>);

impl Future for Stop {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Sent or dropped: either way the test wants the service gone.
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl<R: Debug + Send + 'static> ServiceThread<R> {
    /// Runs the future `serve` builds on a new thread in a fresh actix `System`, and waits
    /// (at most `within`) for the value it sends through [`Started`]. Returns that value and the
    /// handle; the future's output comes back from [`ServiceThread::stop`].
    ///
    /// Panics if the service does not start in time, or ends (or panics: that panic is raised
    /// again) before it starts.
    pub async fn start<S, F, Fut>(within: Duration, serve: F) -> (S, Self)
    where
        S: Send + 'static,
        F: FnOnce(Started<S>, Stop) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let (started_tx, started_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("test-service".to_owned())
            .spawn(move || {
                let output = actix_rt::System::new()
                    .block_on(async move { serve(Started(started_tx), Stop(stop_rx)).await });
                let _ = done_tx.send(output);
            })
            .expect("spawn the service's thread");
        let mut service = Self {
            stop: Some(stop_tx),
            done: Some(done_rx),
            thread: Some(thread),
        };
        match tokio::time::timeout(within, started_rx).await {
            Ok(Ok(value)) => (value, service),
            Ok(Err(_)) => {
                let output = service.finish();
                panic!("the service ended before it started: {output:?}");
            }
            Err(_) => {
                // Not joined: a service that hangs in start-up would hang the test too.
                service.thread = None;
                panic!("the service did not start within {within:?}");
            }
        }
    }

    /// Signals [`Stop`], waits for the service's future to end and returns its output.
    pub async fn stop(mut self) -> R {
        drop(self.stop.take());
        let done = self.done.take().expect("only stop and drop take it");
        let output = done.await;
        self.join();
        // Invariant: the thread sends the output unless it panicked, and `join` raised that.
        output.expect("the service's thread sends its output")
    }

    /// [`ServiceThread::stop`] for a service that has already ended on its own.
    fn finish(&mut self) -> R {
        drop(self.stop.take());
        self.join();
        let mut done = self.done.take().expect("only stop and drop take it");
        // Invariant: the thread ended without panicking, so it sent the output.
        done.try_recv()
            .expect("the service's thread sends its output")
    }
}

impl<R> ServiceThread<R> {
    /// Joins the thread, raising its panic again unless this thread is already panicking.
    fn join(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if let Err(panic) = thread.join() {
            if !std::thread::panicking() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl<R> Drop for ServiceThread<R> {
    fn drop(&mut self) {
        drop(self.stop.take());
        self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_service_hands_back_its_start_value_and_its_output() {
        let (id, service) =
            ServiceThread::start(Duration::from_secs(5), |started, stop| async move {
                started.send("instance-1".to_owned());
                stop.await;
                // Inside an actix System: actix-rt's spawn works here.
                actix_rt::spawn(async { 42 }).await.expect("a task runs")
            })
            .await;
        assert_eq!(id, "instance-1");
        assert_eq!(service.stop().await, 42);
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_service_and_joins_its_thread() {
        let (stopped_tx, stopped_rx) = std::sync::mpsc::channel();
        let ((), service) =
            ServiceThread::start(Duration::from_secs(5), move |started, stop| async move {
                started.send(());
                stop.await;
                stopped_tx.send(()).expect("the test waits");
            })
            .await;
        drop(service);
        assert!(
            stopped_rx.try_recv().is_ok(),
            "stopped before drop returned"
        );
    }

    #[tokio::test]
    #[should_panic(expected = "broken on purpose")]
    async fn a_panic_before_start_is_raised_in_the_test() {
        let _: ((), ServiceThread<()>) =
            ServiceThread::start(Duration::from_secs(5), |_started, _stop| async {
                panic!("broken on purpose")
            })
            .await;
    }

    #[tokio::test]
    #[should_panic(expected = "broken at stop")]
    async fn a_panic_at_stop_is_raised_by_stop() {
        let ((), service) =
            ServiceThread::start(Duration::from_secs(5), |started, stop| async move {
                started.send(());
                stop.await;
                panic!("broken at stop")
            })
            .await;
        service.stop().await;
    }

    #[tokio::test]
    #[should_panic(expected = "ended before it started: Err(\"no config\")")]
    async fn a_service_that_ends_before_it_starts_shows_its_output() {
        let _: ((), ServiceThread<Result<(), &str>>) =
            ServiceThread::start(Duration::from_secs(5), |_started, _stop| async {
                Err("no config")
            })
            .await;
    }
}
