//! A started instance: what `$SRV` replies are made of, its load, and its drain.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::EndpointRuntime;
use crate::micro::{self, EndpointData, Identity, InfoResponse, PingResponse, StatsResponse};

/// What the `$SRV` replies are made of.
pub(crate) struct Shared {
    pub(super) name: String,
    pub(super) id: String,
    pub(super) version: String,
    pub(super) description: String,
    pub(super) metadata: BTreeMap<String, String>,
    pub(super) started: SystemTime,
    pub(super) endpoints: Vec<Arc<EndpointRuntime>>,
}

impl Shared {
    fn identity(&self, kind: &str) -> Identity {
        Identity {
            kind: kind.to_owned(),
            name: self.name.clone(),
            id: self.id.clone(),
            version: self.version.clone(),
            metadata: self.metadata.clone(),
        }
    }

    pub(crate) fn ping(&self) -> PingResponse {
        PingResponse {
            identity: self.identity(PingResponse::TYPE),
        }
    }

    pub(crate) fn info(&self) -> InfoResponse {
        InfoResponse {
            identity: self.identity(InfoResponse::TYPE),
            description: self.description.clone(),
            endpoints: self
                .endpoints
                .iter()
                .map(|e| micro::EndpointInfo {
                    name: e.name.clone(),
                    subject: e.subject.clone(),
                    queue_group: e.queue_group.clone(),
                    metadata: e.metadata.clone(),
                })
                .collect(),
        }
    }

    fn in_flight(&self) -> usize {
        self.endpoints
            .iter()
            .map(|e| e.stats.in_flight.current())
            .sum()
    }

    fn saturated(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .filter(|e| e.stats.in_flight.is_full())
            .map(|e| e.name.clone())
            .collect()
    }

    pub(crate) fn stats(&self) -> StatsResponse {
        StatsResponse {
            identity: self.identity(StatsResponse::TYPE),
            started: humantime::format_rfc3339_nanos(self.started).to_string(),
            endpoints: self
                .endpoints
                .iter()
                .map(|e| {
                    let s = e.stats.snapshot();
                    micro::EndpointStats {
                        name: e.name.clone(),
                        subject: e.subject.clone(),
                        queue_group: e.queue_group.clone(),
                        num_requests: s.num_requests,
                        num_errors: s.num_errors,
                        last_error: s.last_error,
                        processing_time: s.processing_time_ns,
                        average_processing_time: s
                            .processing_time_ns
                            .checked_div(s.handled)
                            .unwrap_or(0),
                        data: EndpointData {
                            in_flight: s.in_flight,
                            max_in_flight: s.max_in_flight,
                            rejected: s.rejected,
                        },
                    }
                })
                .collect(),
        }
    }
}

/// A started service instance. Stop it with [`Running::stop`]. Dropping it instead stops taking
/// requests and events (the loops drain what they were sent and end) without waiting for them,
/// while `$SRV` answers until the NATS connection closes.
pub struct Running {
    pub(super) shared: Arc<Shared>,
    /// Each worker's connections by worker (see [`Running::connections`]).
    pub(super) connections: Vec<super::Connections>,
    pub(super) stop: watch::Sender<bool>,
    pub(super) loops: Vec<JoinHandle<()>>,
    pub(super) srv_loop: JoinHandle<()>,
    pub(super) workers: super::workers::Workers,
}

/// How long the last flush of replies may take. With the server away, async-nats would wait
/// for a reconnect forever; a shutdown must end.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Flushes the replies written so far; `false` (logged) when they may not have reached the
/// server.
async fn flush(nats: &async_nats::Client) -> bool {
    match tokio::time::timeout(FLUSH_TIMEOUT, nats.flush()).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "Replies could not be flushed to NATS.");
            false
        }
        Err(_) => {
            tracing::warn!(timeout = ?FLUSH_TIMEOUT, state = %nats.connection_state(), "Replies could not be flushed to NATS in time.");
            false
        }
    }
}

/// Closes a further worker's own pair: drains both and waits, within the flush time-out, for
/// their connection tasks to end (logged when they did not).
async fn close(pair: &super::Connections) {
    let closed = async {
        for nats in [&pair.intake, &pair.main] {
            if nats.drain().await.is_ok() {
                // A flush fails once the connection's task has ended.
                while nats.flush().await.is_ok() {}
            }
        }
    };
    if tokio::time::timeout(FLUSH_TIMEOUT, closed).await.is_err() {
        tracing::warn!(timeout = ?FLUSH_TIMEOUT, "A worker's NATS connections did not close in time.");
    }
}

/// Reads a running instance's load; cheap to clone, valid after the instance stops.
#[derive(Clone)]
pub struct Monitor(Arc<Shared>);

impl Monitor {
    /// Requests in flight over all endpoints.
    pub fn in_flight(&self) -> usize {
        self.0.in_flight()
    }

    /// Names of the endpoints at their in-flight limit, which refuse new requests now.
    pub fn saturated(&self) -> Vec<String> {
        self.0.saturated()
    }

    /// The `$SRV.STATS` reply.
    pub fn stats(&self) -> StatsResponse {
        self.0.stats()
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Whether everything taken in (requests and events) was finished within the grace period.
    pub complete: bool,
    /// Requests still in flight when the grace period ran out (0 after a complete drain;
    /// events being handled are not counted here, only in `complete`).
    pub abandoned: usize,
    /// How long the drain took.
    pub took: Duration,
}

impl Running {
    /// The service name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// This instance's id, as `$SRV` replies show it.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The version.
    pub fn version(&self) -> &str {
        &self.shared.version
    }

    /// The `$SRV.INFO` reply, for callers in the same process (admin listener, registration).
    pub fn info(&self) -> InfoResponse {
        self.shared.info()
    }

    /// The `$SRV.STATS` reply.
    pub fn stats(&self) -> StatsResponse {
        self.shared.stats()
    }

    /// Requests in flight over all endpoints.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// The connections each worker serves its endpoints over, by worker: worker 0's are the
    /// ones the instance was started with. Only those when the further workers share them
    /// (without [`super::Connections::per_worker`]).
    pub fn connections(&self) -> &[super::Connections] {
        &self.connections
    }

    /// A handle that reads this instance's load while it runs (for readiness checks).
    pub fn monitor(&self) -> Monitor {
        Monitor(self.shared.clone())
    }

    /// Drains: stops taking new requests (unsubscribes, keeping what the server already sent),
    /// lets the requests in flight finish within `grace`, then stops answering `$SRV` and
    /// flushes the replies to the server. Requests past `grace` are counted, not waited for.
    /// Every step is bounded: it ends within `grace` plus a short flush time-out, even with
    /// the server away, and says in the report whether anything may have been lost.
    pub async fn stop(self, grace: Duration) -> DrainReport {
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + grace;
        tracing::info!(service = %self.shared.name, in_flight = self.in_flight(), ?grace, "Draining.");
        // Receivers live as long as the loops; a send error only means they already ended.
        let _ = self.stop.send(true);
        let idle = futures::future::join_all(
            self.shared
                .endpoints
                .iter()
                .map(|e| e.stats.in_flight.idle()),
        );
        let mut loops = self.loops;
        let finished = tokio::time::timeout_at(deadline, async {
            futures::future::join_all(loops.iter_mut()).await;
            idle.await;
        })
        .await
        .is_ok();
        let abandoned = if finished { 0 } else { self.shared.in_flight() };
        if !finished {
            // Past the grace period nothing more is answered: stop the loops (and the
            // requests and events they still run, which are cancelled) before the flush.
            loops.iter().for_each(JoinHandle::abort);
        }
        self.srv_loop.abort();
        let replies = self.connections.iter().map(|worker| flush(&worker.main));
        let flushed = futures::future::join_all(replies)
            .await
            .into_iter()
            .all(|flushed| flushed);
        // The instance's own connections stay open for whoever opened them; a further
        // worker's own close here, before its thread (where their I/O runs) stops. Their
        // replies are flushed above, so how the close goes is logged, not reported.
        futures::future::join_all(self.connections[1..].iter().map(close)).await;
        // Their connection events (`closed`) are handled on their threads too.
        self.workers.settle().await;
        self.workers.stop();
        let report = DrainReport {
            complete: finished && flushed,
            abandoned,
            took: started.elapsed(),
        };
        if !finished {
            tracing::warn!(service = %self.shared.name, abandoned, "Grace period over with requests in flight.");
        } else if flushed {
            tracing::info!(service = %self.shared.name, took = ?report.took, "Drained.");
        }
        report
    }
}
