//! Users as the rest of the system sees them, input rules, and the one mapping from domain
//! errors to the wire.

use courier_actors::error::quote;
use courier_actors::meta::header;
use courier_actors::{Caller, Cancelled, ServiceError};

use serde_json::json;

use crate::store::StoreError;

pub use courier_contracts::users::User;

/// The role that may change any account and list users.
pub const ADMIN: &str = "admin";

/// Longest display name, in characters.
pub const MAX_NAME: usize = 100;
/// Longest email address (RFC 5321 path limit).
pub const MAX_EMAIL: usize = 254;
/// Password length bounds, in characters.
pub const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=128;

/// Everything that can go wrong in the users domain.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// A field breaks a rule.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule it breaks.
        reason: String,
    },
    /// No user has that id.
    #[error("no user with id {0}")]
    NotFound(String),
    /// Another user has that email.
    #[error("a user with email {0} already exists")]
    EmailTaken(String),
    /// Unknown email or wrong password (never said which).
    #[error("invalid email or password")]
    BadCredentials,
    /// The endpoint is about the signed-in user, and the request names none.
    #[error("this endpoint needs an authenticated caller")]
    Unauthenticated,
    /// A signed-in caller, not an admin, asked to change another user's account.
    #[error("you may only change your own account")]
    Forbidden,
    /// The caller's deadline passed before the work could be committed; nothing was changed.
    #[error("the request's deadline passed before it was committed")]
    DeadlinePassed,
    /// The request id (`X-Request-Id`) already names a write of this endpoint that asked
    /// something else (another body or caller); nothing was done. A retry repeats the request
    /// id and the request; a new request needs a new request id.
    #[error("this request id was already used for a different request")]
    RequestIdReused,
    /// The database failed.
    #[error(transparent)]
    Store(StoreError),
    /// The password hasher failed or crashed.
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

impl From<UsersError> for ServiceError {
    fn from(e: UsersError) -> Self {
        match &e {
            UsersError::Invalid { field, .. } => {
                ServiceError::bad_request(e.to_string()).with_details(json!({ "field": field }))
            }
            UsersError::NotFound(id) => {
                ServiceError::not_found(e.to_string()).with_details(json!({ "id": id }))
            }
            UsersError::EmailTaken(_) => {
                ServiceError::conflict(e.to_string()).with_details(json!({ "field": "email" }))
            }
            UsersError::BadCredentials | UsersError::Unauthenticated => {
                ServiceError::unauthorized(e.to_string())
            }
            UsersError::Forbidden => ServiceError::new(403, e.to_string()),
            UsersError::DeadlinePassed => ServiceError::timeout(e.to_string()),
            UsersError::RequestIdReused => ServiceError::unprocessable(e.to_string())
                .with_details(json!({ "header": header::REQUEST_ID })),
            UsersError::Store(_) | UsersError::Hashing(_) => {
                // Internals stay in the log, once, here at the edge.
                tracing::error!(error = %e, "Users request failed.");
                ServiceError::internal("the users service failed; see its log")
            }
        }
    }
}

impl From<Cancelled> for UsersError {
    fn from(_: Cancelled) -> Self {
        UsersError::DeadlinePassed
    }
}

impl From<StoreError> for UsersError {
    /// A request id reused for another request is the caller's mistake; the rest, the store's.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::KeyReused => UsersError::RequestIdReused,
            StoreError::DeadlinePassed => UsersError::DeadlinePassed,
            other => UsersError::Store(other),
        }
    }
}

/// Whether `caller` may change the account `id` (already a valid id): a caller inside the
/// system (no end user named) may, and so may the user themself or an [`ADMIN`].
pub fn may_change(caller: Option<&Caller>, id: &str) -> Result<(), UsersError> {
    match caller {
        None => Ok(()),
        Some(caller) if caller.has_role(ADMIN) => Ok(()),
        Some(caller) if valid_id(&caller.subject).is_ok_and(|own| own == id) => Ok(()),
        Some(_) => Err(UsersError::Forbidden),
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> UsersError {
    UsersError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Trims a display name and checks it is not empty or too long.
pub fn valid_name(name: &str) -> Result<String, UsersError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(invalid(
            "name",
            format!("must be at most {MAX_NAME} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name", "must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// Lower-cases an email address and checks its shape: `local@domain.tld`, no spaces.
pub fn valid_email(email: &str) -> Result<String, UsersError> {
    let email = email.trim().to_lowercase();
    let bad = || invalid("email", format!("{email:?} is not an email address"));
    if email.len() > MAX_EMAIL {
        return Err(invalid(
            "email",
            format!("must be at most {MAX_EMAIL} characters"),
        ));
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let shape_ok = !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    shape_ok.then_some(email.clone()).ok_or_else(bad)
}

/// Checks a password's length.
pub fn valid_password(password: &str) -> Result<(), UsersError> {
    let len = password.chars().count();
    if !PASSWORD_LEN.contains(&len) {
        return Err(invalid(
            "password",
            format!(
                "must be {} to {} characters",
                PASSWORD_LEN.start(),
                PASSWORD_LEN.end()
            ),
        ));
    }
    Ok(())
}

/// Checks that an id is a UUID, so a typo is a 400, not a 404.
pub fn valid_id(id: &str) -> Result<String, UsersError> {
    uuid::Uuid::parse_str(id.trim())
        .map(|u| {
            // Written into a buffer: `to_string` would go through the formatting machinery.
            let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
            u.hyphenated().encode_lower(&mut text).to_owned()
        })
        .map_err(|_| invalid("id", format!("{} is not a user id (a UUID)", quote(id))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_bad_id_is_quoted_by_prefix_and_length() {
        let err = valid_id(&"a".repeat(600_000)).unwrap_err().to_string();
        assert!(err.len() < 200, "{}", err.len());
        assert!(err.contains("600000 bytes"), "{err}");
    }

    #[test]
    fn names_are_trimmed_and_must_not_be_empty() {
        assert_eq!(valid_name("  Ada ").unwrap(), "Ada");
        assert!(matches!(
            valid_name("   "),
            Err(UsersError::Invalid { field: "name", .. })
        ));
        assert!(valid_name(&"x".repeat(MAX_NAME + 1)).is_err());
    }

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(valid_email(" Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@@example.com",
            "ada@.com",
            "ada@example..com",
        ] {
            assert!(valid_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_have_bounds() {
        assert!(valid_password("short").is_err());
        assert!(valid_password("long enough").is_ok());
        assert!(valid_password(&"p".repeat(129)).is_err());
    }

    #[test]
    fn ids_must_be_uuids() {
        assert!(valid_id("nope").is_err());
        assert!(valid_id("0191d7a2-7b6c-7cc3-9e3c-3e0f5a1b2c3d").is_ok());
    }

    #[test]
    fn each_error_has_its_wire_code() {
        let code = |e: UsersError| ServiceError::from(e).code;
        assert_eq!(code(invalid("email", "x")), 400);
        assert_eq!(code(UsersError::NotFound("x".into())), 404);
        assert_eq!(code(UsersError::EmailTaken("x".into())), 409);
        assert_eq!(code(UsersError::BadCredentials), 401);
        assert_eq!(code(UsersError::Unauthenticated), 401);
        assert_eq!(code(UsersError::Forbidden), 403);
        assert_eq!(code(UsersError::from(StoreError::KeyReused)), 422);
        assert_eq!(code(UsersError::Hashing("boom".into())), 500);
    }

    #[test]
    fn only_oneself_an_admin_or_the_system_may_change_an_account() {
        let id = "0191d7a2-7b6c-7cc3-9e3c-3e0f5a1b2c3d";
        let caller = |subject: &str, roles: &[&str]| Caller {
            subject: subject.to_owned(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        assert!(may_change(None, id).is_ok());
        assert!(may_change(Some(&caller(id, &[])), id).is_ok());
        assert!(may_change(Some(&caller(&id.to_uppercase(), &[])), id).is_ok());
        let other = "0191d7a2-7b6c-7cc3-9e3c-3e0f5a1b2c3e";
        assert!(may_change(Some(&caller(other, &[ADMIN])), id).is_ok());
        for roles in [&[][..], &["ops"], &["Admin"]] {
            assert!(matches!(
                may_change(Some(&caller(other, roles)), id),
                Err(UsersError::Forbidden)
            ));
        }
    }

    #[test]
    fn internal_errors_do_not_leak_into_the_message() {
        let e = ServiceError::from(UsersError::Hashing("secret detail".into()));
        assert!(!e.message.contains("secret"));
    }
}
