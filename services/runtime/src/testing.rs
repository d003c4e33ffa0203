//! A service under test in one call (feature `testing`): its own nats-server (JetStream on),
//! its own database, the service on a thread of its own as its binary runs it, and a client.

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use courier_actors::{Client, Meta};
use courier_store::testing::TestDatabase;
use courier_testkit::{ServiceThread, Stop, TestNats};

use crate::{Common, Started};

/// How long a service under test may take to start.
const START: Duration = Duration::from_secs(20);

/// A running service with its own NATS server and database. Dropping it stops the service
/// (drained while its NATS server still runs), then the server; the database goes with
/// [`TestService::remove`] (PostgreSQL) or on drop (SQLite).
pub struct TestService<R: Debug + Send + 'static> {
    /// Dropped first, so the service drains while its NATS server still runs.
    service: Option<ServiceThread<R>>,
    /// The service's own NATS server, unless it joined another's ([`TestService::join`]).
    pub nats: Option<TestNats>,
    /// A plain connection to it.
    pub raw: async_nats::Client,
    /// Typed calls (MessagePack, 10 s time-out).
    pub client: Client,
    /// The instance's `$SRV` id.
    pub id: String,
    /// Its admin listener (`/health`, `/health/ready`, `/metrics`).
    pub admin: SocketAddr,
    /// The service's database.
    pub db: Option<TestDatabase>,
}

impl<R: Debug + Send + 'static> TestService<R> {
    /// Starts a nats-server, then `run` with default settings pointed at it and at `db`, not
    /// registering in Consul, changed last by `configure`; waits until it serves.
    pub async fn start<S, F, Fut>(db: TestDatabase, configure: impl FnOnce(&mut S), run: F) -> Self
    where
        S: Common + Default + Send + 'static,
        F: FnOnce(S, Box<dyn FnOnce(&Started<'_>)>, Stop) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let nats = TestNats::start();
        let mut service = Self::join(&nats.url(), db, configure, run).await;
        service.nats = Some(nats);
        service
    }

    /// [`TestService::start`] on a NATS server that is already running (several services of
    /// one test on one server).
    pub async fn join<S, F, Fut>(
        nats_url: &str,
        db: TestDatabase,
        configure: impl FnOnce(&mut S),
        run: F,
    ) -> Self
    where
        S: Common + Default + Send + 'static,
        F: FnOnce(S, Box<dyn FnOnce(&Started<'_>)>, Stop) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let mut settings = S::default();
        settings.nats_mut().url = nats_url.to_owned();
        *settings.database_mut() = db.settings.clone();
        settings.consul_mut().register = false;
        configure(&mut settings);
        let ((id, admin), service) = ServiceThread::start(START, move |started, stop| {
            let on_start = Box::new(move |instance: &Started<'_>| {
                started.send((instance.running.id().to_owned(), instance.admin))
            });
            run(settings, on_start, stop)
        })
        .await;
        let raw = async_nats::connect(nats_url)
            .await
            .expect("connect to the test's NATS server");
        Self {
            service: Some(service),
            client: Client::new(raw.clone(), Duration::from_secs(10)),
            raw,
            nats: None,
            id,
            admin,
            db: Some(db),
        }
    }

    /// Sends a typed request as a call from inside the system would.
    pub async fn send<M: courier_actors::Subject>(
        &self,
        body: &M,
    ) -> Result<M::Reply, courier_actors::CallError>
    where
        M::Reply: serde::de::DeserializeOwned,
    {
        self.client.send(body, &Meta::root()).await
    }

    /// Stops the service (drain) and returns what its run returned.
    pub async fn stop(mut self) -> R {
        let service = self.service.take().expect("running");
        service.stop().await
    }

    /// Stops the service and drops its database (PostgreSQL needs this call).
    pub async fn remove(mut self) {
        if let Some(service) = self.service.take() {
            service.stop().await;
        }
        if let Some(db) = self.db.take() {
            db.remove().await;
        }
    }
}

impl<R: Debug + Send + 'static> Drop for TestService<R> {
    fn drop(&mut self) {
        drop(self.service.take());
    }
}
