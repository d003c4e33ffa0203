//! Credentials carried in `nats.url`: `nats://user:password@host:4222`, or
//! `nats://token@host:4222` as the NATS tools read a user without a password.
//!
//! async-nats 0.51 parses them but never sends them (nats-io/nats.rs#1623: CONNECT goes out
//! with `"user":null`), so the process that connects takes them from here and passes them in
//! its `ConnectOptions` (`user_and_password`, `token`).

use crate::settings::{NatsSettings, Secret};
use crate::Invalid;

/// How to authenticate to NATS, from the server URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsCredentials {
    /// `nats://user:password@host`.
    UserPassword {
        /// The user, percent-decoded.
        user: String,
        /// The password, percent-decoded.
        password: Secret,
    },
    /// `nats://token@host`: a user without a password is a token.
    Token(Secret),
}

impl NatsSettings {
    /// The credentials in `nats.url`, if any. One set serves every server of the list (a NATS
    /// client has one), and validation refuses a list whose URLs carry different ones.
    pub fn credentials(&self) -> Option<NatsCredentials> {
        self.url.split(',').find_map(credentials_of)
    }
}

/// Refuses server URLs that carry different credentials: the client would silently use the
/// first set for every server.
pub(crate) fn check_one_set(key: &str, urls: &str) -> Result<(), Invalid> {
    let mut sets = urls.split(',').filter_map(credentials_of);
    let first = sets.next();
    if sets.any(|other| Some(other) != first) {
        return Err(Invalid::new(
            key,
            urls,
            "servers carry different credentials; a client has one set for all",
        ));
    }
    Ok(())
}

/// The credentials of one server URL; none when it does not parse or has no user.
fn credentials_of(server: &str) -> Option<NatsCredentials> {
    let url = url::Url::parse(server.trim()).ok()?;
    if url.username().is_empty() {
        return None;
    }
    let user = percent_decode(url.username());
    Some(match url.password() {
        Some(password) => NatsCredentials::UserPassword {
            user,
            password: Secret::new(percent_decode(password)),
        },
        None => NatsCredentials::Token(Secret::new(user)),
    })
}

/// Decodes `%XX` escapes (`url` keeps them in the user and password); anything else,
/// a malformed escape included, stays as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> NatsSettings {
        NatsSettings {
            url: url.to_owned(),
            ..NatsSettings::default()
        }
    }

    #[test]
    fn user_and_password_come_from_the_url_percent_decoded() {
        assert_eq!(
            settings("nats://service:p%40ss%2Fw0rd@127.0.0.1:4222").credentials(),
            Some(NatsCredentials::UserPassword {
                user: "service".to_owned(),
                password: Secret::new("p@ss/w0rd"),
            })
        );
    }

    #[test]
    fn a_user_without_a_password_is_a_token() {
        assert_eq!(
            settings("nats://s3cret@127.0.0.1:4222").credentials(),
            Some(NatsCredentials::Token(Secret::new("s3cret")))
        );
    }

    #[test]
    fn a_url_without_credentials_has_none() {
        assert_eq!(settings("nats://127.0.0.1:4222").credentials(), None);
    }

    #[test]
    fn the_first_server_with_credentials_gives_them() {
        let s = settings("nats://n1:4222, nats://svc:pw@n2:4222");
        assert_eq!(
            s.credentials(),
            Some(NatsCredentials::UserPassword {
                user: "svc".to_owned(),
                password: Secret::new("pw"),
            })
        );
    }

    #[test]
    fn servers_with_different_credentials_are_refused_without_showing_them() {
        let err = check_one_set("nats.url", "nats://a:pw1@n1,nats://a:pw2@n2").unwrap_err();
        assert_eq!(err.key, "nats.url");
        assert!(!err.to_string().contains("pw"), "{err}");
        assert!(check_one_set("nats.url", "nats://a:pw@n1,nats://n2,nats://a:pw@n3").is_ok());
    }

    #[test]
    fn a_malformed_escape_stays_as_written() {
        assert_eq!(percent_decode("100%zz%4"), "100%zz%4");
    }
}
