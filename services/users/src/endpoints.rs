//! The users service on the wire: request and reply types, and which subject serves which.
//!
//! | subject              | request                              | reply        |
//! |----------------------|--------------------------------------|--------------|
//! | `users.create`       | `{"name","email","password"}`        | [`User`]     |
//! | `users.get`          | `{"id"}`                             | [`User`]     |
//! | `users.list`         | `{"limit"?, "after"?}`               | [`UserPage`] |
//! | `users.update`       | `{"id", "name"?, "email"?, "password"?}` | [`User`] |
//! | `users.delete`       | `{"id"}`                             | [`Deleted`]  |
//! | `users.authenticate` | `{"email","password"}`               | [`User`] or 401 |
//!
//! Events: `events.users.created` ([`User`]), `events.users.deleted` ([`Deleted`]).

use courier_actors::{Call, Endpoint, Service, ServiceBuilder, Supervised};
use serde::{Deserialize, Serialize};

use crate::actor::UsersActor;
use crate::domain::{User, UsersError};

/// `users.create`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Display name, 1 to 100 characters.
    pub name: String,
    /// Email address, unique (case-insensitive).
    pub email: String,
    /// 8 to 128 characters; stored as an argon2id hash only.
    pub password: String,
}

/// `users.get`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GetUser {
    /// The user's id.
    pub id: String,
}

/// `users.list`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListUsers {
    /// Page size, 20 unless given.
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(default)]
    pub after: Option<String>,
}

/// A page of users.
#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct UserPage {
    /// Oldest first.
    pub users: Vec<User>,
    /// Pass as `after` for the next page; `null` on the last one.
    pub next: Option<String>,
}

/// `users.update`: the fields given change.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// The user's id.
    pub id: String,
    /// A new display name.
    #[serde(default)]
    pub name: Option<String>,
    /// A new email address.
    #[serde(default)]
    pub email: Option<String>,
    /// A new password.
    #[serde(default)]
    pub password: Option<String>,
}

/// `users.delete`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteUser {
    /// The user's id.
    pub id: String,
}

/// The reply of `users.delete` and the body of `events.users.deleted`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Deleted {
    /// The id that was deleted.
    pub id: String,
}

/// `users.authenticate`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Authenticate {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
}

impl Call for CreateUser {
    type Reply = User;
    type Error = UsersError;
}
impl Call for GetUser {
    type Reply = User;
    type Error = UsersError;
}
impl Call for ListUsers {
    type Reply = UserPage;
    type Error = UsersError;
}
impl Call for UpdateUser {
    type Reply = User;
    type Error = UsersError;
}
impl Call for DeleteUser {
    type Reply = Deleted;
    type Error = UsersError;
}
impl Call for Authenticate {
    type Reply = User;
    type Error = UsersError;
}

/// The service definition: every endpoint bound to the users actor.
pub fn service(actor: Supervised<UsersActor>) -> ServiceBuilder {
    Service::builder("users", env!("CARGO_PKG_VERSION"))
        .description("User accounts: create, read, update, delete, authenticate")
        .endpoint(Endpoint::new::<CreateUser>(
            "create",
            "users.create",
            actor.clone(),
        ))
        .endpoint(Endpoint::new::<GetUser>("get", "users.get", actor.clone()))
        .endpoint(Endpoint::new::<ListUsers>(
            "list",
            "users.list",
            actor.clone(),
        ))
        .endpoint(Endpoint::new::<UpdateUser>(
            "update",
            "users.update",
            actor.clone(),
        ))
        .endpoint(Endpoint::new::<DeleteUser>(
            "delete",
            "users.delete",
            actor.clone(),
        ))
        .endpoint(Endpoint::new::<Authenticate>(
            "authenticate",
            "users.authenticate",
            actor,
        ))
}
