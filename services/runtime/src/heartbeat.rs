//! The heartbeat actor: registers the instance in Consul (retrying with backoff while Consul is
//! away), keeps its TTL check passing, and deregisters it on the way out.
//!
//! It runs on the service's actor system, so its TTL updates stop when that system is wedged:
//! Consul then turns the instance critical even though the admin listener (on a thread of its
//! own) still answers the HTTP check.

use std::time::{Duration, Instant};

use actix::prelude::*;
use courier_discovery::{CheckStatus, Consul, DiscoveryError, Registration};
use prometheus::IntGauge;

/// First wait after a failed registration; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between registration attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// Liveness probe: answered when the actor system runs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ping;

/// Stop keeping the registration and deregister now.
#[derive(Message)]
#[rtype(result = "Result<(), DiscoveryError>")]
pub struct Leave;

/// Where the registration stands.
enum Standing {
    /// Not registered; try again at `next`.
    Unregistered { next: Instant, backoff: Duration },
    /// Registered; the TTL check is kept passing.
    Registered,
    /// Deregistered on the way out; nothing more to do.
    Left,
}

/// Keeps one instance registered.
pub struct Heartbeat {
    consul: Consul,
    registration: Registration,
    ttl_check: String,
    tick: Duration,
    standing: Standing,
    /// A call to Consul is under way; ticks skip until it ends.
    busy: bool,
    /// Consul was found unreachable and that was logged; log again only after it is back.
    outage_logged: bool,
    /// `courier_consul_registered`: 1 exactly while `standing` is `Registered`.
    registered: IntGauge,
}

impl Heartbeat {
    /// A heartbeat for `registration`, updating `ttl_check` every `tick` and showing the
    /// standing in `registered`; with `register` false it only answers liveness probes.
    pub fn new(
        consul: Consul,
        registration: Registration,
        ttl_check: String,
        tick: Duration,
        register: bool,
        registered: IntGauge,
    ) -> Self {
        let standing = if register {
            Standing::Unregistered {
                next: Instant::now(),
                backoff: FIRST_BACKOFF,
            }
        } else {
            Standing::Left
        };
        Self {
            consul,
            registration,
            ttl_check,
            tick,
            standing,
            busy: false,
            outage_logged: false,
            registered,
        }
    }

    fn stand(&mut self, standing: Standing) {
        self.registered
            .set(i64::from(matches!(standing, Standing::Registered)));
        self.standing = standing;
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let consul = self.consul.clone();
        match self.standing {
            Standing::Left => {}
            Standing::Unregistered { next, .. } if Instant::now() < next => {}
            Standing::Unregistered { .. } => {
                self.busy = true;
                let (registration, check) = (self.registration.clone(), self.ttl_check.clone());
                let call = async move {
                    consul.register(&registration).await?;
                    consul
                        .update_ttl(&check, CheckStatus::Passing, "actor system running")
                        .await
                };
                ctx.spawn(
                    actix::fut::wrap_future(call)
                        .map(|result, act: &mut Self, ctx| act.registered(result, ctx)),
                );
            }
            Standing::Registered => {
                self.busy = true;
                let check = self.ttl_check.clone();
                let call = async move {
                    consul
                        .update_ttl(&check, CheckStatus::Passing, "actor system running")
                        .await
                };
                ctx.spawn(
                    actix::fut::wrap_future(call)
                        .map(|result, act: &mut Self, _| act.updated(result)),
                );
            }
        }
    }

    fn registered(&mut self, result: Result<(), DiscoveryError>, ctx: &mut Context<Self>) {
        self.busy = false;
        if matches!(self.standing, Standing::Left) {
            // The instance left while this registration was on its way, and it may have
            // landed after the deregistration: take it back out.
            if result.is_ok() {
                let (consul, id) = (self.consul.clone(), self.registration.id.clone());
                ctx.spawn(actix::fut::wrap_future(async move {
                    if let Err(error) = consul.deregister(&id).await {
                        tracing::warn!(%error, "Could not deregister a late registration.");
                    }
                }));
            }
            return;
        }
        match result {
            Ok(()) => {
                tracing::info!(service = %self.registration.name, id = %self.registration.id, "Registered in Consul.");
                self.outage_logged = false;
                self.stand(Standing::Registered);
            }
            Err(error) => {
                let backoff = match self.standing {
                    Standing::Unregistered { backoff, .. } => backoff,
                    _ => FIRST_BACKOFF,
                };
                if !self.outage_logged {
                    tracing::warn!(%error, "Consul registration failed; serving over NATS only and retrying.");
                    self.outage_logged = true;
                }
                self.stand(Standing::Unregistered {
                    next: Instant::now() + backoff,
                    backoff: (backoff * 2).min(MAX_BACKOFF),
                });
            }
        }
    }

    fn updated(&mut self, result: Result<(), DiscoveryError>) {
        self.busy = false;
        if !matches!(self.standing, Standing::Registered) {
            return;
        }
        match result {
            Ok(()) => {
                if self.outage_logged {
                    tracing::info!("Consul reachable again.");
                    self.outage_logged = false;
                }
            }
            // Consul is away: keep trying the same check; it may come back with our state.
            Err(error @ (DiscoveryError::Unreachable { .. } | DiscoveryError::TimedOut { .. })) => {
                if !self.outage_logged {
                    tracing::warn!(%error, "Consul unreachable; serving over NATS only.");
                    self.outage_logged = true;
                }
            }
            // Consul answered but no longer knows the check (restarted without our state, or
            // reaped us): register again.
            Err(error) => {
                tracing::warn!(%error, "TTL update refused; registering again.");
                self.stand(Standing::Unregistered {
                    next: Instant::now(),
                    backoff: FIRST_BACKOFF,
                });
            }
        }
    }
}

impl Actor for Heartbeat {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.beat(ctx);
        ctx.run_interval(self.tick, |act, ctx| act.beat(ctx));
    }
}

impl Handler<Ping> for Heartbeat {
    type Result = ();
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}

impl Handler<Leave> for Heartbeat {
    type Result = ResponseFuture<Result<(), DiscoveryError>>;
    fn handle(&mut self, _: Leave, _: &mut Context<Self>) -> Self::Result {
        self.registered.set(0);
        if matches!(
            std::mem::replace(&mut self.standing, Standing::Left),
            Standing::Left
        ) {
            return Box::pin(async { Ok(()) });
        }
        let (consul, id) = (self.consul.clone(), self.registration.id.clone());
        Box::pin(async move { consul.deregister(&id).await })
    }
}
