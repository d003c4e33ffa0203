//! How the bridge reaches actors: [`Dispatch`], implemented by plain addresses and recipients,
//! and by [`Supervised`] pools that restart an actor whose handler panicked.
//!
//! actix does not restart an actor after a panic: the actor's task ends and every message in its
//! mailbox fails with `MailboxError::Closed` (a `SyncArbiter` worker thread dies outright). The
//! bridge answers those requests 500 at once, and `Supervised` starts a fresh actor from its
//! factory, so the next request is served.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use futures::future::BoxFuture;
use futures::FutureExt;

/// How long to wait before looking again whether an actor that failed a request is dead.
const UNWIND_RECHECK: Duration = Duration::from_millis(20);

/// Sends one message to an actor and waits for its answer.
pub trait Dispatch<M: Message>: Send + Sync + 'static {
    /// Sends `msg`; `Err(Closed)` when the actor is gone or its handler panicked.
    fn dispatch(&self, msg: M) -> BoxFuture<'static, Result<M::Result, MailboxError>>;
}

impl<M> Dispatch<M> for Recipient<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn dispatch(&self, msg: M) -> BoxFuture<'static, Result<M::Result, MailboxError>> {
        self.send(msg).boxed()
    }
}

impl<A, M> Dispatch<M> for Addr<A>
where
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn dispatch(&self, msg: M) -> BoxFuture<'static, Result<M::Result, MailboxError>> {
        self.send(msg).boxed()
    }
}

/// A pool of actors of one type, picked round-robin, each restarted from the factory after a
/// crash. Cloning shares the pool.
pub struct Supervised<A: Actor> {
    members: Arc<[Arc<Member<A>>]>,
    next: Arc<AtomicUsize>,
}

impl<A: Actor> Clone for Supervised<A> {
    fn clone(&self) -> Self {
        Self {
            members: self.members.clone(),
            next: self.next.clone(),
        }
    }
}

struct Member<A: Actor> {
    addr: RwLock<Addr<A>>,
    start: Box<dyn Fn() -> Addr<A> + Send + Sync>,
    /// Whether a `Closed` answer always means the actor died (sync actors), or only when the
    /// address is disconnected (async actors, whose spawned reply futures may panic alone).
    closed_means_dead: bool,
}

impl<A: Actor> Member<A> {
    fn new(start: Box<dyn Fn() -> Addr<A> + Send + Sync>, closed_means_dead: bool) -> Arc<Self> {
        Arc::new(Self {
            addr: RwLock::new(start()),
            start,
            closed_means_dead,
        })
    }

    fn current(&self) -> Addr<A> {
        // A poisoned lock only means another thread panicked while swapping in an address,
        // which is a plain assignment; the address inside is still a valid one.
        self.addr.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces `failed` with a fresh actor, unless another request already did.
    fn restart(&self, failed: &Addr<A>) {
        let mut addr = self.addr.write().unwrap_or_else(|e| e.into_inner());
        if *addr == *failed && (self.closed_means_dead || !failed.connected()) {
            tracing::warn!(
                actor = std::any::type_name::<A>(),
                "Restarting actor after a crash."
            );
            *addr = (self.start)();
        }
    }
}

impl<A> Supervised<A>
where
    A: Actor<Context = Context<A>> + Send,
{
    /// One actor on the current arbiter: right for actors whose handlers await I/O.
    pub fn local(factory: impl Fn() -> A + Send + Sync + 'static) -> Self {
        let factory = Arc::new(factory);
        let arbiter = Arbiter::current();
        let start = move || {
            let factory = factory.clone();
            A::start_in_arbiter(&arbiter, move |_| factory())
        };
        Self::from_members(vec![Member::new(Box::new(start), false)])
    }

    /// `size` actors, each on an arbiter thread of its own.
    pub fn on_arbiters(size: usize, factory: impl Fn() -> A + Send + Sync + 'static) -> Self {
        let factory = Arc::new(factory);
        let members = (0..size.max(1))
            .map(|_| {
                let arbiter = Arbiter::new().handle();
                let factory = factory.clone();
                let start = move || {
                    let factory = factory.clone();
                    A::start_in_arbiter(&arbiter, move |_| factory())
                };
                Member::new(Box::new(start), false)
            })
            .collect();
        Self::from_members(members)
    }
}

impl<A> Supervised<A>
where
    A: Actor<Context = SyncContext<A>>,
{
    /// `threads` sync actors for CPU-bound work: one single-thread `SyncArbiter` each, so a
    /// panic takes down one member, which is restarted alone.
    pub fn sync(threads: usize, factory: impl Fn() -> A + Send + Sync + 'static) -> Self {
        let factory = Arc::new(factory);
        let members = (0..threads.max(1))
            .map(|_| {
                let factory = factory.clone();
                let start = move || {
                    let factory = factory.clone();
                    SyncArbiter::start(1, move || factory())
                };
                Member::new(Box::new(start), true)
            })
            .collect();
        Self::from_members(members)
    }
}

impl<A: Actor> Supervised<A> {
    fn from_members(members: Vec<Arc<Member<A>>>) -> Self {
        Self {
            members: members.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many actors the pool has.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    fn pick(&self) -> Arc<Member<A>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.members.len();
        self.members[i].clone()
    }
}

impl<A, M> Dispatch<M> for Supervised<A>
where
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn dispatch(&self, msg: M) -> BoxFuture<'static, Result<M::Result, MailboxError>> {
        let member = self.pick();
        let addr = member.current();
        let reply = addr.send(msg);
        async move {
            let result = reply.await;
            if let Err(MailboxError::Closed) = result {
                if !member.closed_means_dead && addr.connected() {
                    // An actor on another arbiter thread may still be unwinding, its mailbox
                    // not yet dropped: look again shortly rather than fail the next request too.
                    tokio::time::sleep(UNWIND_RECHECK).await;
                }
                member.restart(&addr);
            }
            result
        }
        .boxed()
    }
}
