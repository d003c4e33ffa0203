//! The users logic: plain async methods over the store and the hasher, each served by an
//! actor per worker thread ([`courier_actors::Methods`], bound in [`crate::endpoints`]).

use std::sync::Arc;
use std::time::SystemTime;

use courier_actors::Meta;
use serde::{Deserialize, Serialize};

use crate::domain::{self, User, UsersError};
use crate::endpoints::{
    Authenticate, CreateUser, DeleteUser, Deleted, GetUser, ListUsers, UpdateUser, UserPage,
};
use crate::fingerprint;
use crate::hasher::HasherHandle;
use crate::store::{Claim, Store, StoreError, UserChange, UserRow, UserWrites, WriteKey};

/// Subject of the event published after a user is created; the body is the [`User`].
pub const USER_CREATED: &str = "events.users.created";
/// Subject of the event published after a user is deleted; the body is [`Deleted`].
pub const USER_DELETED: &str = "events.users.deleted";

/// The endpoints whose writes are kept for retries, by subject (see [`WriteKey`]).
const CREATE: &str = "users.create";
const UPDATE: &str = "users.update";
const DELETE: &str = "users.delete";

/// Default page size of `users.list`.
pub const DEFAULT_PAGE_SIZE: u32 = 20;

/// A valid PHC string of a password nobody has, verified for unknown emails so that
/// authentication takes as long whether or not the email exists.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3xgt2Jv3ZFTGoQh0Ru9G4m8l7Xc3o8b1dO1Nr0OaW3s";

/// The service: its dependencies, shared. A clone (one per request, as
/// [`courier_actors::Methods`] hands each method its own) is one reference count.
#[derive(Clone)]
pub struct Users(Arc<Deps>);

/// What [`Users`] works with.
pub struct Deps {
    pub(crate) store: Store,
    pub(crate) hasher: HasherHandle,
    pub(crate) max_page_size: u32,
    /// Lower-cased: a user created with one of these gets role [`domain::ADMIN`].
    pub(crate) admin_emails: Arc<[String]>,
}

impl From<Deps> for Users {
    fn from(deps: Deps) -> Self {
        Self(Arc::new(deps))
    }
}

impl std::ops::Deref for Users {
    type Target = Deps;
    fn deref(&self) -> &Deps {
        &self.0
    }
}

/// The event body of `events.users.created`: the new user.
#[derive(Debug, Serialize, Deserialize)]
pub struct UserCreated(pub User);

impl Users {
    /// Validates, hashes, stores, publishes `events.users.created`. A retry under the same
    /// request id gets the first user back; another request under it, a
    /// [`UsersError::RequestIdReused`] (see [`WriteKey`]).
    pub async fn create(self, req: CreateUser, meta: Meta) -> Result<User, UsersError> {
        let name = domain::valid_name(&req.name)?;
        let email = domain::valid_email(&req.email)?;
        domain::valid_password(&req.password)?;
        let fingerprint = fingerprint::create(CREATE, meta.caller.as_ref(), &name, &email);
        let key = WriteKey::of(&meta, CREATE, &fingerprint);
        if let Some(user) = self.store.reply(key).await? {
            return Ok(user);
        }
        let password_hash = self.hasher.hash(req.password).await?;
        still_wanted(&meta)?;
        let now = now();
        let row = UserRow {
            id: uuid::Uuid::now_v7().to_string(),
            name,
            roles: self.roles_for(&email),
            email,
            password_hash,
            created_at: now.clone(),
            updated_at: now,
        };
        let mut write = match self.store.claim(key).await? {
            Claim::Fresh(write) => write,
            Claim::Done(user) => return Ok(user),
        };
        write.insert(&row).await.map_err(|e| taken(e, &row.email))?;
        let user = public(row);
        write.event(USER_CREATED, &user, &meta).await?;
        write.commit_reply(&user, &meta).await?;
        Ok(user)
    }

    /// The user with that id.
    pub async fn get(self, req: GetUser) -> Result<User, UsersError> {
        let id = domain::valid_id(&req.id)?;
        self.store.get(&id).await?.ok_or(UsersError::NotFound(id))
    }

    /// The caller's own user: [`UsersError::Unauthenticated`] without a caller, `NotFound`
    /// when its user is gone (or its subject is no user id).
    pub async fn me(self, meta: Meta) -> Result<User, UsersError> {
        let subject = meta.caller.ok_or(UsersError::Unauthenticated)?.subject;
        let id = domain::valid_id(&subject).map_err(|_| UsersError::NotFound(subject))?;
        self.get(GetUser { id }).await
    }

    /// A page of users, oldest first; `next` is the `after` of the next page.
    pub async fn list(self, req: ListUsers) -> Result<UserPage, UsersError> {
        let limit = req.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if limit == 0 || limit > self.max_page_size {
            return Err(UsersError::Invalid {
                field: "limit",
                reason: format!("must be between 1 and {}", self.max_page_size),
            });
        }
        let after = req.after.as_deref().map(domain::valid_id).transpose()?;
        // One extra row tells whether there is a next page without a count query.
        let mut rows = self.store.list(after.as_deref(), limit + 1).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = more.then(|| rows.last().map(|r| r.id.clone())).flatten();
        Ok(UserPage {
            users: rows.into_iter().map(public).collect(),
            next,
        })
    }

    /// Changes the given fields, and only those, so that concurrent updates of other fields
    /// are kept; at least one is required. A retry under the same request id gets the first
    /// reply back (and another request under it, by another caller too, a 422).
    pub async fn update(self, req: UpdateUser, meta: Meta) -> Result<User, UsersError> {
        let mut change = valid_change(&req)?;
        let caller = meta.caller.as_ref();
        domain::may_change(caller, &change.id)?;
        let fingerprint = fingerprint::update(UPDATE, caller, &change, req.password.is_some());
        let key = WriteKey::of(&meta, UPDATE, &fingerprint);
        if let Some(user) = self.store.reply(key).await? {
            return Ok(user);
        }
        if let Some(password) = req.password {
            change.password_hash = Some(self.hash_for(&change.id, password).await?);
        }
        still_wanted(&meta)?;
        change.updated_at = now();
        let mut write = match self.store.claim(key).await? {
            Claim::Fresh(write) => write,
            Claim::Done(user) => return Ok(user),
        };
        let user = match write.update(&change).await {
            Ok(Some(row)) => public(row),
            Ok(None) => return Err(UsersError::NotFound(change.id)),
            Err(e) => return Err(taken(e, change.email.as_deref().unwrap_or_default())),
        };
        write.commit_reply(&user, &meta).await?;
        Ok(user)
    }

    /// Hashes a new password for the user `id`, after checking the user exists: argon2id
    /// takes tens of ms of a hashing thread, not to be spent on a 404.
    async fn hash_for(&self, id: &str, password: String) -> Result<String, UsersError> {
        if self.store.get(id).await?.is_none() {
            return Err(UsersError::NotFound(id.to_owned()));
        }
        self.hasher.hash(password).await
    }

    /// Deletes the user; publishes `events.users.deleted`. A retry under the same request id
    /// gets the first reply back, not a 404.
    pub async fn delete(self, req: DeleteUser, meta: Meta) -> Result<Deleted, UsersError> {
        let id = domain::valid_id(&req.id)?;
        domain::may_change(meta.caller.as_ref(), &id)?;
        let fingerprint = fingerprint::delete(DELETE, meta.caller.as_ref(), &id);
        let key = WriteKey::of(&meta, DELETE, &fingerprint);
        let mut write = match self.store.claim(key).await? {
            Claim::Fresh(write) => write,
            Claim::Done(deleted) => return Ok(deleted),
        };
        if !write.delete(&id).await? {
            return Err(UsersError::NotFound(id));
        }
        let deleted = Deleted { id };
        write.event(USER_DELETED, &deleted, &meta).await?;
        write.commit_reply(&deleted, &meta).await?;
        Ok(deleted)
    }

    /// The user whose email and password match; [`UsersError::BadCredentials`] otherwise.
    pub async fn authenticate(self, req: Authenticate) -> Result<User, UsersError> {
        // A malformed email cannot match anyone: same answer as a wrong one.
        let email = domain::valid_email(&req.email).unwrap_or_default();
        let row = self.store.by_email(&email).await?;
        let hash = row
            .as_ref()
            .map_or(DUMMY_HASH, |r| &r.password_hash)
            .to_owned();
        let matches = self.hasher.verify(hash, req.password).await?;
        match row {
            Some(row) if matches => Ok(public(row)),
            _ => Err(UsersError::BadCredentials),
        }
    }

    /// The roles a new user with this (lower-cased) email starts with.
    fn roles_for(&self, email: &str) -> Vec<String> {
        let admin = self.admin_emails.iter().any(|e| e == email);
        admin
            .then(|| domain::ADMIN.to_owned())
            .into_iter()
            .collect()
    }
}

/// The checked fields of an update, password not yet hashed; at least one must be given.
fn valid_change(req: &UpdateUser) -> Result<UserChange, UsersError> {
    let id = domain::valid_id(&req.id)?;
    if req.name.is_none() && req.email.is_none() && req.password.is_none() {
        return Err(UsersError::Invalid {
            field: "request",
            reason: "give at least one of name, email, password".into(),
        });
    }
    if let Some(password) = &req.password {
        domain::valid_password(password)?;
    }
    Ok(UserChange {
        id,
        name: req.name.as_deref().map(domain::valid_name).transpose()?,
        email: req.email.as_deref().map(domain::valid_email).transpose()?,
        password_hash: None,
        updated_at: now(),
    })
}

/// A reply the caller no longer waits for must not be preceded by a change it does not know
/// of: past the deadline (504 at the bridge), stop before writing. The bridge frees the
/// request's in-flight slot at the deadline; this keeps the work behind it from going on.
fn still_wanted(meta: &Meta) -> Result<(), UsersError> {
    match meta.remaining() {
        Some(left) if left.is_zero() => Err(UsersError::DeadlinePassed),
        _ => Ok(()),
    }
}

fn public(row: UserRow) -> User {
    User {
        id: row.id,
        name: row.name,
        email: row.email,
        roles: row.roles,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn taken(e: StoreError, email: &str) -> UsersError {
    match e {
        StoreError::Duplicate => UsersError::EmailTaken(email.to_owned()),
        other => UsersError::from(other),
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_dummy_hash_is_a_valid_phc_string() {
        assert!(crate::hasher::verify(super::DUMMY_HASH, "anything").is_ok());
    }
}
