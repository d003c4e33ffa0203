//! Password hashing on sync actors: argon2id is CPU-bound by design, so it runs on threads of
//! its own, never on the threads that serve requests.

use actix::prelude::*;
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString,
};
use argon2::Argon2;
use courier_actors::{Dispatch, Supervised};

use crate::domain::UsersError;

/// Hash a password into a PHC string.
#[derive(Message)]
#[rtype(result = "Result<String, String>")]
pub struct Hash(pub String);

/// Check a password against a PHC string.
#[derive(Message)]
#[rtype(result = "Result<bool, String>")]
pub struct Verify {
    /// The stored PHC string.
    pub hash: String,
    /// The password given.
    pub password: String,
}

/// The sync actor that does the work.
pub struct Hasher;

/// The niceness of hashing threads (0 is normal, 19 the lowest). Hashing is slow by design
/// and saturates its threads under a burst of sign-ups; at normal priority it would take the
/// cores from the workers that serve reads, whose answers take microseconds. Lowered, it gets
/// whatever the workers leave, which is nearly everything while reads are few.
const HASHING_NICENESS: i32 = 10;

impl Actor for Hasher {
    type Context = SyncContext<Self>;

    fn started(&mut self, _: &mut SyncContext<Self>) {
        // A thread id is a process id for setpriority on Linux: this lowers this thread only.
        let thread = rustix::thread::gettid();
        if let Err(error) = rustix::process::setpriority_process(Some(thread), HASHING_NICENESS) {
            tracing::warn!(%error, "Could not lower the hashing thread's priority.");
        }
    }
}

impl Handler<Hash> for Hasher {
    type Result = Result<String, String>;
    fn handle(&mut self, msg: Hash, _: &mut SyncContext<Self>) -> Self::Result {
        hash(&msg.0)
    }
}

impl Handler<Verify> for Hasher {
    type Result = Result<bool, String>;
    fn handle(&mut self, msg: Verify, _: &mut SyncContext<Self>) -> Self::Result {
        verify(&msg.hash, &msg.password)
    }
}

/// Argon2id with a random salt, default parameters (19 MiB, 2 passes).
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify(hash: &str, password: &str) -> Result<bool, String> {
    let parsed = PasswordHash::new(hash).map_err(|e| e.to_string())?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// What the users logic holds: async hashing on the sync pool, one `Result` per call.
#[derive(Clone)]
pub struct HasherHandle {
    pool: Supervised<Hasher>,
}

impl HasherHandle {
    /// Starts `workers` hashing threads.
    pub fn start(workers: usize) -> Self {
        Self {
            pool: Supervised::sync(workers, || Hasher),
        }
    }

    /// Hashes `password`.
    pub async fn hash(&self, password: String) -> Result<String, UsersError> {
        flatten(self.pool.dispatch(Hash(password)).await)
    }

    /// Checks `password` against `hash`.
    pub async fn verify(&self, hash: String, password: String) -> Result<bool, UsersError> {
        flatten(self.pool.dispatch(Verify { hash, password }).await)
    }
}

fn flatten<T>(result: Result<Result<T, String>, MailboxError>) -> Result<T, UsersError> {
    match result {
        Ok(inner) => inner.map_err(UsersError::Hashing),
        Err(e) => Err(UsersError::Hashing(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&h, "correct horse").unwrap());
        assert!(!verify(&h, "wrong horse").unwrap());
    }

    #[test]
    fn the_same_password_hashes_differently_each_time() {
        assert_ne!(
            hash("same password").unwrap(),
            hash("same password").unwrap()
        );
    }

    #[actix_rt::test]
    async fn hashing_threads_run_at_a_lower_priority() {
        let hasher = HasherHandle::start(1);
        // The first hash has started the thread; its priority is read back from /proc.
        hasher.hash("warm".into()).await.unwrap();
        let niceness: Vec<i64> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
            .filter_map(|stat| {
                let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                fields.get(16)?.parse().ok()
            })
            .collect();
        assert!(
            niceness.contains(&i64::from(HASHING_NICENESS)),
            "a thread at niceness {HASHING_NICENESS}: {niceness:?}"
        );
    }

    #[actix_rt::test]
    async fn the_handle_hashes_on_the_sync_pool() {
        let hasher = HasherHandle::start(2);
        let h = hasher.hash("through the pool".into()).await.unwrap();
        assert!(hasher.verify(h, "through the pool".into()).await.unwrap());
    }
}
