//! What a write asked for, as a digest stored beside its reply, so that a request id reused
//! for a different request is refused instead of answered with someone else's reply.
//!
//! A write's reply is kept under its request id and endpoint (see [`crate::WriteKey`]), and
//! the gateway passes a client's `X-Request-Id` on: without the fingerprint, anyone who
//! reused (or guessed) a request id would get the stored reply of the first request. A
//! request under a used key gets the stored reply only if its fingerprint is the stored one
//! (a retry); otherwise it is refused, as Stripe does with an `Idempotency-Key` reused with
//! other parameters.
//!
//! # What goes in
//! A version tag naming the service and the meaning of the form (change it when the fields
//! change meaning), the endpoint, the caller's subject (`None` for a call from inside the
//! system) and the request's checked fields, in a fixed order, as the write uses them (names
//! trimmed, emails lower-cased, ids as hyphenated UUIDs): two bodies that differ only in
//! spelling are the same request, because they would do the same thing. The caller's roles
//! are left out: a token renewed between two tries may carry other roles, and the subject
//! alone says whose request it is. Never put a secret in (a password): a fast hash over it
//! and fields held in clear would be a cheap offline guess for whoever reads the table; put
//! whether one was given.
//!
//! # The digest
//! SHA-384, as lower-case hex (96 characters). sqlx computes it for its migration checksums
//! (`Migration::new`), which it stores in databases and compares across versions, and this
//! crate already depends on sqlx; the known-answer test below fails should that ever change.

use std::borrow::Cow;
use std::fmt::Write as _;

use courier_actors::Caller;
use serde_json::{json, Value};
use sqlx::migrate::{Migration, MigrationType};

/// The digest of one write request: equal for the same request, different otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The digest of `fields` (a JSON array of `[name, value]` pairs, in a fixed order) asked
    /// of `endpoint` by `caller`, in the form `version` names.
    pub fn of(version: &str, endpoint: &str, caller: Option<&Caller>, fields: Value) -> Self {
        let subject = caller.map(|c| c.subject.as_str());
        // One JSON array, whose text serde_json writes the same way every time (arrays keep
        // their order; no maps, whose order could vary).
        let canonical = json!([version, endpoint, subject, fields]).to_string();
        Self(hex(&sha384(canonical)))
    }

    /// As stored: lower-case hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SHA-384 of `text`, from sqlx's migration checksum (see the module's doc).
fn sha384(text: String) -> Vec<u8> {
    let migration = Migration::new(
        0,
        Cow::Borrowed(""),
        MigrationType::Simple,
        Cow::Owned(text),
        false,
    );
    migration.checksum.into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        // Invariant: writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_sha_384() {
        // FIPS 180-2, appendix D.1: SHA-384("abc").
        assert_eq!(
            hex(&sha384("abc".into())),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
             8086072ba1e7cc2358baeca134c825a7"
        );
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let of = |a: &str, b: &str| Fingerprint::of("t/1", "e", None, json!([["a", a], ["b", b]]));
        assert_ne!(of("x\",\"y", "z"), of("x", "y\",\"z"));
        assert_eq!(of("x", "y"), of("x", "y"));
        assert_eq!(of("x", "y").as_str().len(), 96);
    }

    #[test]
    fn the_version_the_endpoint_and_the_caller_make_another_request() {
        let ada = Caller {
            subject: "ada".into(),
            roles: vec![],
        };
        let base = Fingerprint::of("t/1", "e", None, json!([]));
        for other in [
            Fingerprint::of("t/2", "e", None, json!([])),
            Fingerprint::of("t/1", "f", None, json!([])),
            Fingerprint::of("t/1", "e", Some(&ada), json!([])),
        ] {
            assert_ne!(base, other);
        }
    }
}
