//! SQLite writes on the calling thread, committed in groups.
//!
//! A SQLite file has one writing connection per process ([`Writer`]), taken in turns on an
//! async lock: a write waiting for its turn parks its task instead of spinning in SQLite's
//! busy handler (as does one waiting for another process's write lock: `begin_immediate`),
//! and a write's statements run on the calling thread, each a few microseconds,
//! with no hand-off to a connection thread (sqlx's SQLite driver sends every statement to
//! one and wakes the caller with the result).
//!
//! **Group commit.** The cost of a small write is its commit (writing the WAL frames, taking
//! and dropping SQLite's locks), not its statements. So each write runs inside a savepoint of
//! a transaction that the writes queued behind it share: a write that ends while others wait
//! for their turn releases its savepoint and hands the open transaction on. A write that
//! ends with nobody waiting leads the group: it lets the tasks that are ready to run take
//! their turns first (one yield to the scheduler), then queues once more and commits what
//! the group holds by then; the [`GROUP`]th member commits at once. Every member's `commit`
//! returns only after the group's commit, with its outcome. A member that rolls back undoes
//! its own savepoint only. A lone write costs one extra yield.
//!
//! A write holds every other write of the process (and, grouped, their commits) while it is
//! open: do slow work (hashing, calls to other services) before starting one, as the services
//! do. Were a member's commit to wait too long for the write it handed the transaction to
//! (which awaits something while open), it keeps its place and gets the outcome when that
//! write ends; should nobody be left to end the group (a waiting write was cancelled before
//! its turn), the waiting members commit it themselves ([`ABANDONED_GROUP`]).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_config::SqliteSynchronous;
use rusqlite::{Connection, OpenFlags, Statement};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use crate::local;
use crate::rows::Param;
use crate::StoreError;

/// How long a write waits for its turn (behind the writes before it in this process, or for
/// SQLite's lock when another process writes the same file) before failing.
const WRITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest pause between tries for SQLite's write lock while another process holds it.
const MAX_BUSY_PAUSE: Duration = Duration::from_millis(20);

/// How long a statement of a write that holds the write lock waits on a lock SQLite needs
/// for itself (recovering the WAL index) before failing; as for reads.
const STATEMENT_BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// The most writes one commit holds.
const GROUP: usize = 64;

/// How often a member waiting for its group's commit checks that the group still has
/// someone to end it.
const ABANDONED_GROUP: Duration = Duration::from_millis(5);

/// The one connection that writes a SQLite file, shared by every thread of the process.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    session: Arc<Mutex<Session>>,
    /// Writes waiting for their turn: while there are some, an ending write leaves the
    /// commit to them.
    waiting: Arc<AtomicUsize>,
}

/// The connection, and the transaction its writes share.
#[derive(Debug)]
struct Session {
    connection: Connection,
    group: Option<Group>,
    /// Numbers the groups, so a member can tell whether its own is still open.
    next_group: u64,
}

/// An open transaction and the writes it holds, each waiting for the commit.
#[derive(Debug)]
struct Group {
    id: u64,
    members: Vec<oneshot::Sender<Result<(), String>>>,
    /// A member has promised to commit the group once the writes now ready have joined it.
    led: bool,
}

impl Writer {
    /// Opens `file` for writing with `synchronous` as its durability.
    pub(crate) fn open(file: &Path, synchronous: SqliteSynchronous) -> rusqlite::Result<Self> {
        let connection = local::open(file, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        // The rare locks SQLite needs for itself once a write holds the write lock (WAL
        // recovery). The write lock itself is waited for by `begin_immediate`, off the thread.
        connection.busy_timeout(STATEMENT_BUSY_TIMEOUT)?;
        let synchronous = match synchronous {
            SqliteSynchronous::Normal => "NORMAL",
            SqliteSynchronous::Full => "FULL",
        };
        connection.pragma_update(None, "synchronous", synchronous)?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        Ok(Self {
            session: Arc::new(Mutex::new(Session {
                connection,
                group: None,
                next_group: 0,
            })),
            waiting: Arc::default(),
        })
    }

    /// Waits for the turn to write (at most [`WRITE_BUSY_TIMEOUT`]) and starts the write: a
    /// savepoint in the group's transaction, which is begun (holding SQLite's write lock from
    /// its first statement) if none is open.
    pub(crate) async fn begin(&self) -> Result<WriteTx, StoreError> {
        let deadline = Instant::now() + WRITE_BUSY_TIMEOUT;
        let mut session = {
            let _waiting = Waiting::count(&self.waiting);
            tokio::time::timeout_at(deadline.into(), self.session.clone().lock_owned())
                .await
                .map_err(|_| StoreError::Busy)?
        };
        if session.group.is_none() {
            begin_immediate(&mut session, deadline).await?;
            let id = session.next_group;
            session.next_group += 1;
            session.group = Some(Group {
                id,
                members: Vec::new(),
                led: false,
            });
        }
        if let Err(error) = control(&session.connection, "SAVEPOINT write") {
            end_turn(session, &self.waiting, false);
            return Err(error.into());
        }
        Ok(WriteTx {
            session: Some(session),
            waiting: self.waiting.clone(),
            writer: self.session.clone(),
        })
    }
}

/// Counts a write waiting for its turn, until it has it or gives up.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One write: a savepoint on the [`Writer`]'s connection, rolled back when dropped unfinished.
#[derive(Debug)]
pub(crate) struct WriteTx {
    /// The turn; `None` once it has been handed on.
    session: Option<OwnedMutexGuard<Session>>,
    waiting: Arc<AtomicUsize>,
    writer: Arc<Mutex<Session>>,
}

impl WriteTx {
    /// Runs `f` on the cached statement for `sql` with `params` bound.
    pub(crate) fn run<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        f: impl FnOnce(&mut Statement<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // Invariant: only `commit` and `rollback` end the turn, and they consume the write.
        let session = self.session.as_ref().expect("a write in its turn");
        local::run(&session.connection, sql, params, f)
    }

    /// Keeps the write's changes in the group, and returns once the group has committed.
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        let mut session = self.session.take().expect("a write in its turn");
        if let Err(error) = control(&session.connection, "RELEASE write") {
            drop(self.undo(session));
            return Err(error.into());
        }
        let (done, outcome) = oneshot::channel();
        let Some(group) = session.group.as_mut() else {
            // Invariant: the group stays open while a member holds the turn (only a commit
            // or a failure seen by `undo` closes it); an error rather than a panic if not.
            return Err(StoreError::Commit(
                "SQLite rolled the transaction back".to_owned(),
            ));
        };
        group.members.push(done);
        let id = group.id;
        let lead = end_turn(session, &self.waiting, true);
        // The write holds nothing now: only its group's outcome is awaited.
        let (writer, waiting) = (self.writer.clone(), self.waiting.clone());
        drop(self);
        if lead {
            // Let the writes that are ready now (woken by the last commit, say) take their
            // turns, then commit them all: on a task of its own, so that the group is
            // committed even if this caller stops waiting for it.
            let writer = writer.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                let mut session = {
                    let _waiting = Waiting::count(&waiting);
                    writer.lock_owned().await
                };
                if session.group.as_ref().is_some_and(|g| g.id == id) {
                    commit_group(&mut session);
                }
            });
        }
        wait(writer, id, outcome).await
    }

    /// Undoes the write's changes (the group's other writes stay), and returns once the
    /// writes grouped before it have committed: what this write saw of them (a duplicate
    /// key, say, which the caller may now read back on another connection) is then durable
    /// and visible to every reader, or the failure of their commit is returned.
    pub(crate) async fn rollback(mut self) -> Result<(), StoreError> {
        let mut session = self.session.take().expect("a write in its turn");
        let watch = session
            .group
            .as_mut()
            .filter(|group| !group.members.is_empty())
            .map(|group| {
                let (done, outcome) = oneshot::channel();
                group.members.push(done);
                (group.id, outcome)
            });
        self.undo(session)?;
        let Some((id, outcome)) = watch else {
            return Ok(());
        };
        let writer = self.writer.clone();
        drop(self);
        wait(writer, id, outcome).await
    }

    fn undo(&self, mut session: OwnedMutexGuard<Session>) -> Result<(), StoreError> {
        let undone = session
            .connection
            .execute_batch("ROLLBACK TO write; RELEASE write");
        if undone.is_err() || session.connection.is_autocommit() {
            // The whole transaction is gone (SQLite ends it on some failures), or this
            // write's changes could not be taken out of it: either way the group's other
            // members lose their work too, and are told so.
            if !session.connection.is_autocommit() {
                let _ = session.connection.execute_batch("ROLLBACK");
            }
            fail_group(&mut session, "SQLite rolled the transaction back");
        }
        end_turn(session, &self.waiting, false);
        Ok(undone?)
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if let Err(error) = self.undo(session) {
                tracing::warn!(%error, "Rolling back an abandoned SQLite write failed.");
            }
        }
    }
}

/// The outcome of group `id`, committing it here if its last member left nobody to.
async fn wait(
    writer: Arc<Mutex<Session>>,
    id: u64,
    mut outcome: oneshot::Receiver<Result<(), String>>,
) -> Result<(), StoreError> {
    loop {
        tokio::select! {
            result = &mut outcome => {
                return match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(StoreError::Commit(error)),
                    // Invariant: a group sends every member its outcome before it goes.
                    Err(_) => Err(StoreError::Commit("the group commit was lost".to_owned())),
                };
            }
            () = tokio::time::sleep(ABANDONED_GROUP) => {
                if let Ok(mut session) = writer.clone().try_lock_owned() {
                    if session.group.as_ref().is_some_and(|g| g.id == id) {
                        commit_group(&mut session);
                    }
                }
            }
        }
    }
}

/// Ends a turn. With room left in the group, the open transaction is handed to the next
/// write when one waits or a member already leads the group to its commit; with nobody
/// waiting, a member that can wait for the commit (`may_lead`) takes the lead, and the
/// answer is `true`. Otherwise the group commits now.
fn end_turn(mut session: OwnedMutexGuard<Session>, waiting: &AtomicUsize, may_lead: bool) -> bool {
    let Some(group) = session.group.as_mut() else {
        return false;
    };
    if group.members.len() < GROUP {
        if waiting.load(Ordering::SeqCst) > 0 || group.led {
            return false;
        }
        if may_lead {
            group.led = true;
            return true;
        }
    }
    commit_group(&mut session);
    false
}

/// Runs a statement of the write protocol (begin, savepoint, release, commit), prepared once
/// per connection: `execute_batch` parses it again on every call, and every write runs two.
fn control(connection: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.execute([]).map(drop)
}

/// Begins the group's transaction, taking SQLite's write lock. While another process holds
/// it (a second instance writing the same file), the task sleeps between tries until
/// `deadline`, rather than the thread in SQLite's busy handler: that would stop every other
/// request on the thread, `$SRV` and the signal handler with them.
/// (`&mut Session`, not `&Connection`: a connection may move between threads but not be
/// shared, and this future waits.)
async fn begin_immediate(session: &mut Session, deadline: Instant) -> Result<(), StoreError> {
    let tries = NoBusyWait::on(&mut session.connection)?;
    let mut pause = Duration::from_millis(1);
    loop {
        match control(tries.0, "BEGIN IMMEDIATE") {
            Err(error) if is_busy(&error) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(StoreError::Busy);
                }
                // The last pause ends at the deadline, for one last try there.
                tokio::time::sleep(pause.min(left)).await;
                pause = (pause * 2).min(MAX_BUSY_PAUSE);
            }
            begun => return begun.map_err(StoreError::from),
        }
    }
}

/// The writer's connection with SQLite's busy wait off, until dropped: the statements of a
/// write get [`STATEMENT_BUSY_TIMEOUT`] back however `begin_immediate` ends (its future
/// dropped in a pause included).
struct NoBusyWait<'a>(&'a mut Connection);

impl<'a> NoBusyWait<'a> {
    fn on(connection: &'a mut Connection) -> rusqlite::Result<Self> {
        connection.busy_timeout(Duration::ZERO)?;
        Ok(Self(connection))
    }
}

impl Drop for NoBusyWait<'_> {
    fn drop(&mut self) {
        // Setting a busy timeout fails only on a closed handle, which this one is not.
        if let Err(error) = self.0.busy_timeout(STATEMENT_BUSY_TIMEOUT) {
            tracing::error!(%error, "Could not restore the SQLite writer's busy timeout.");
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}

/// Commits the open transaction and tells each member how it went.
fn commit_group(session: &mut Session) {
    let Some(group) = session.group.take() else {
        return;
    };
    let outcome = match control(&session.connection, "COMMIT") {
        Ok(()) => Ok(()),
        Err(error) => {
            if !session.connection.is_autocommit() {
                let _ = session.connection.execute_batch("ROLLBACK");
            }
            Err(error.to_string())
        }
    };
    for member in group.members {
        let _ = member.send(outcome.clone());
    }
}

/// Tells the group's members that their transaction was rolled back.
fn fail_group(session: &mut Session, why: &str) {
    if let Some(group) = session.group.take() {
        for member in group.members {
            let _ = member.send(Err(why.to_owned()));
        }
    }
}

/// Whether a SQLite failure is a unique or primary key violation.
pub(crate) fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error().map(|e| e.extended_code),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}
