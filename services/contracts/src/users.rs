//! The users service: accounts. The table of subjects, routes and rules is in the users
//! crate's `endpoints` module; these are its request and reply types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fields::number_or_numeric_string;

/// A user, as every endpoint returns it: never with the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct User {
    /// UUIDv7: sorts by creation time.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Lower-cased email address, unique.
    pub email: String,
    /// What the user may do beyond their own account: `admin` for an email in
    /// `users.admin_emails` when the user was created, else none. Always present on the wire
    /// (`[]` when none); read as none from replies stored before roles existed.
    #[serde(default)]
    #[schemars(description = "Roles beyond the user's own account: `admin`, or none.")]
    pub roles: Vec<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

/// `users.create`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
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
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetUser {
    /// The user's id.
    pub id: String,
}

/// `users.list`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListUsers {
    /// Page size, 20 unless given: a number, or a string of one (as an HTTP query arrives).
    #[serde(default, deserialize_with = "number_or_numeric_string")]
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    #[serde(default)]
    pub after: Option<String>,
}

/// A page of users.
#[derive(Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
pub struct UserPage {
    /// Oldest first.
    pub users: Vec<User>,
    /// Pass as `after` for the next page; `null` on the last one.
    pub next: Option<String>,
}

/// `users.update`: the fields given change.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
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
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteUser {
    /// The user's id.
    pub id: String,
}

/// The reply of `users.delete` and the body of `events.users.deleted`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, JsonSchema)]
pub struct Deleted {
    /// The id that was deleted.
    pub id: String,
}

/// `users.authenticate`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Authenticate {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// `users.me`: no fields; the user is the caller's (`Meta::caller`).
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Me {}

crate::contract! {
    CreateUser => User, "users.create";
    GetUser => User, "users.get";
    ListUsers => UserPage, "users.list";
    UpdateUser => User, "users.update";
    DeleteUser => Deleted, "users.delete";
    Authenticate => User, "users.authenticate";
    Me => User, "users.me";
}
