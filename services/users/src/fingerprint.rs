//! What a write asked for, as a digest stored beside its reply, so that a request id reused
//! for a different request is refused instead of answered with someone else's reply.
//!
//! A write's reply is kept under its request id and endpoint (see [`crate::store::WriteKey`]),
//! and the gateway passes a client's `X-Request-Id` on: without the fingerprint, anyone who
//! reused (or guessed) a request id got the stored reply of the first request, another
//! person's user included. Now a request under a used key gets the stored reply only if its
//! fingerprint is the stored one (a retry); otherwise it is refused (422), as Stripe does with
//! an `Idempotency-Key` reused with other parameters.
//!
//! # What goes in
//! A version tag, the endpoint, the caller's subject (`None` for a call from inside the
//! system) and the request's checked fields, in a fixed order, as the write uses them (name
//! trimmed, email lower-cased, id as a hyphenated UUID): two bodies that differ only in
//! spelling (key order, spaces, an email's case) are the same request, because they would do
//! the same thing. The caller's roles are left out: a token renewed between two tries may
//! carry other roles, and the subject alone says whose request it is.
//!
//! A password is never in it, not even hashed: only whether one was given. A fast hash over a
//! password and fields the same database holds in clear (email, name) would be a cheap
//! offline guess for whoever reads the table, far cheaper than the argon2id hash beside it. A
//! keyed hash (HMAC with a secret per database) would avoid that, at the cost of a secret to
//! create, keep and rotate; not worth it here, because a request that differs from the first
//! only in its password gets the first one's reply, which holds no secret (the user, as
//! written) and whose other fields it sent itself. The cost, accepted: a retry with another
//! password replays, and the first password stands.
//!
//!
//! The digest and its canonical form are `courier_store::Fingerprint`'s.

use courier_actors::Caller;
use courier_store::Fingerprint;
use serde_json::json;

use crate::store::UserChange;

/// Changes with the meaning of the canonical form, so that an old fingerprint never equals a
/// new one by chance.
const VERSION: &str = "courier-users/request/1";

/// `users.create` of a checked name and email (a password is always given).
pub fn create(endpoint: &str, caller: Option<&Caller>, name: &str, email: &str) -> Fingerprint {
    let fields = json!([["name", name], ["email", email], ["password", true]]);
    Fingerprint::of(VERSION, endpoint, caller, fields)
}

/// `users.update` of checked fields; `password` says whether a new one was given.
pub fn update(
    endpoint: &str,
    caller: Option<&Caller>,
    change: &UserChange,
    password: bool,
) -> Fingerprint {
    let fields = json!([
        ["id", change.id],
        ["name", change.name],
        ["email", change.email],
        ["password", password]
    ]);
    Fingerprint::of(VERSION, endpoint, caller, fields)
}

/// `users.delete` of a checked id.
pub fn delete(endpoint: &str, caller: Option<&Caller>, id: &str) -> Fingerprint {
    Fingerprint::of(VERSION, endpoint, caller, json!([["id", id]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(subject: &str, roles: &[&str]) -> Caller {
        Caller {
            subject: subject.to_owned(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn change_at(name: Option<&str>, updated_at: &str) -> UserChange {
        UserChange {
            id: "0191d7a2-7b6c-7cc3-9e3c-3e0f5a1b2c3d".into(),
            name: name.map(str::to_owned),
            email: None,
            password_hash: None,
            updated_at: updated_at.into(),
        }
    }

    fn change(name: Option<&str>) -> UserChange {
        change_at(name, "now")
    }

    #[test]
    fn the_same_request_has_the_same_fingerprint() {
        let ada = caller("ada", &["admin"]);
        let a = create("users.create", Some(&ada), "Ada", "ada@example.com");
        let b = create("users.create", Some(&ada), "Ada", "ada@example.com");
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 96);
        let renewed = caller("ada", &[]);
        let c = create("users.create", Some(&renewed), "Ada", "ada@example.com");
        assert_eq!(a, c, "roles are not part of it");
        let changed = change_at(Some("Ada"), "later");
        assert_eq!(
            update("users.update", None, &change(Some("Ada")), false),
            update("users.update", None, &changed, false),
            "nor is the time of the change"
        );
    }

    #[test]
    fn a_field_the_caller_or_the_endpoint_makes_another_request() {
        let create_by = |caller, name, email| create("users.create", caller, name, email);
        let ada = caller("ada", &[]);
        let bob = caller("bob", &[]);
        let base = create_by(None, "Ada", "ada@example.com");
        for other in [
            create_by(None, "Eve", "ada@example.com"),
            create_by(None, "Ada", "eve@example.com"),
            create_by(Some(&ada), "Ada", "ada@example.com"),
            create("users.other", None, "Ada", "ada@example.com"),
        ] {
            assert_ne!(base, other);
        }
        let update_by = |caller, change: &UserChange, password| {
            update("users.update", caller, change, password)
        };
        let rename = change(Some("Ada"));
        assert_ne!(
            update_by(Some(&ada), &rename, false),
            update_by(Some(&bob), &rename, false)
        );
        assert_ne!(
            update_by(None, &rename, false),
            update_by(None, &rename, true)
        );
        assert_ne!(
            update_by(None, &rename, false),
            update_by(None, &change(None), false)
        );
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let a = create("users.create", None, "Ada\",\"x", "ada@example.com");
        let b = create("users.create", None, "Ada", "x\",\"ada@example.com");
        assert_ne!(a, b);
    }
}
