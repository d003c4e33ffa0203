//! How the bridge reaches actors: [`Dispatch`], implemented by plain addresses and recipients,
//! and by [`Supervised`] pools that restart an actor whose handler panicked.
//!
//! actix does not restart an actor after a panic: the actor's task ends and every message in its
//! mailbox fails with `MailboxError::Closed` (a `SyncArbiter` worker thread dies outright). The
//! bridge answers those requests 500 at once, and `Supervised` starts a fresh actor from its
//! factory, so the next request is served.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
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

/// A pool of actors of one type, each restarted from the factory after a crash: a fixed set
/// picked round-robin, or one per thread that sends to it. Cloning shares the pool.
pub struct Supervised<A: Actor> {
    members: Members<A>,
    next: Arc<AtomicUsize>,
}

enum Members<A: Actor> {
    Fixed(Arc<[Arc<Member<A>>]>),
    /// One member on each thread that dispatches, made there on first use; `pool` tells this
    /// pool's members apart from other pools' in the thread's registry.
    PerThread {
        pool: usize,
        start: Arc<dyn Fn() -> Addr<A> + Send + Sync>,
    },
}

impl<A: Actor> Clone for Supervised<A> {
    fn clone(&self) -> Self {
        let members = match &self.members {
            Members::Fixed(members) => Members::Fixed(members.clone()),
            Members::PerThread { pool, start } => Members::PerThread {
                pool: *pool,
                start: start.clone(),
            },
        };
        Self {
            members,
            next: self.next.clone(),
        }
    }
}

/// Numbers per-thread pools.
static NEXT_POOL: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's members of per-thread pools, by pool number (each an `Arc<Member<A>>`).
    static PER_THREAD: RefCell<HashMap<usize, Box<dyn Any>>> = RefCell::new(HashMap::new());
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
            A::start_in_arbiter(&arbiter, move |ctx| unbounded(ctx, factory()))
        };
        Self::from_members(vec![Member::new(Box::new(start), false)])
    }

    /// One actor on each thread that sends to the pool, started on that thread's arbiter the
    /// first time: with a service's workers ([`courier_config::ServiceSettings::workers`]) each
    /// request is handled on the thread that took it, never handed to another. For actors
    /// whose state is per instance or shared through their fields (an `Arc`, a pool), not for
    /// state that must live in one actor. Dispatch only from threads with an actix arbiter
    /// (the bridge's workers are).
    pub fn per_thread(factory: impl Fn() -> A + Send + Sync + 'static) -> Self {
        let factory = Arc::new(factory);
        let start = move || {
            let factory = factory.clone();
            A::start_in_arbiter(&Arbiter::current(), move |ctx| unbounded(ctx, factory()))
        };
        Self {
            members: Members::PerThread {
                pool: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
                start: Arc::new(start),
            },
            next: Arc::default(),
        }
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
                    A::start_in_arbiter(&arbiter, move |ctx| unbounded(ctx, factory()))
                };
                Member::new(Box::new(start), false)
            })
            .collect();
        Self::from_members(members)
    }
}

/// Lifts the mailbox's bound (16 messages by default): past it actix parks each further send
/// (a lock and a wake-up more per message). What the bridge sends is bounded by the
/// endpoint's in-flight limit; an actor that other actors send to without such a bound can
/// set its own in `started`.
fn unbounded<A: Actor<Context = Context<A>>>(ctx: &mut Context<A>, actor: A) -> A {
    ctx.set_mailbox_capacity(0);
    actor
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
            members: Members::Fixed(members.into()),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many actors the pool has (for a per-thread pool, on the threads that used it so
    /// far cannot be counted from here: `None`).
    pub fn size(&self) -> Option<usize> {
        match &self.members {
            Members::Fixed(members) => Some(members.len()),
            Members::PerThread { .. } => None,
        }
    }

    fn pick(&self) -> Arc<Member<A>> {
        match &self.members {
            Members::Fixed(members) => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % members.len();
                members[i].clone()
            }
            Members::PerThread { pool, start } => PER_THREAD.with(|registry| {
                let mut registry = registry.borrow_mut();
                let member = registry.entry(*pool).or_insert_with(|| {
                    let start = start.clone();
                    Box::new(Member::new(Box::new(move || start()), false))
                });
                // Invariant: entries under this pool's number are only ever made just above.
                member
                    .downcast_ref::<Arc<Member<A>>>()
                    .expect("a per-thread member of this pool's actor type")
                    .clone()
            }),
        }
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
