//! JWT bearer tokens: issued at login, verified on every bearer route.
//!
//! One algorithm per gateway, fixed by its settings: HS256 with a shared secret, or RS256 /
//! ES256 with a PEM key pair (the kind of key decides which). A token must name exactly that
//! algorithm, so `alg: none` and algorithm confusion (an HS256 token "signed" with the RSA
//! public key) fail like any bad signature. Tokens and keys never reach a log or an error text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthSettings;

/// How far a token's `exp` may lie in the past and still pass: clocks of the issuer and this
/// host may differ a little.
const LEEWAY: Duration = Duration::from_secs(5);
/// Most verified tokens remembered. A client sends the same token with every request, and
/// checking a signature and parsing claims was 8% of the gateway's CPU per request; past the
/// limit the memory is cleared (and refills with the tokens in use).
const VERIFIED_CACHE: usize = 10_000;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The user's roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// Issuer, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Why a request's token was refused. Every variant is a 401; the text is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization: Bearer` header.
    #[error("this route needs a bearer token")]
    Missing,
    /// Past its `exp`.
    #[error("the token has expired")]
    Expired,
    /// Malformed, wrong algorithm, bad signature, wrong issuer or audience.
    #[error("the token is not valid")]
    Invalid,
}

/// Why the auth settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The configured path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file holds no RSA or P-256 key in PEM.
    #[error("{path} is not an RSA or EC P-256 key in PEM ({reason})")]
    Key {
        /// The configured path.
        path: String,
        /// What the parser said (never the key).
        reason: String,
    },
}

/// Issues and verifies tokens with the configured key.
pub struct Tokens {
    algorithm: Algorithm,
    verify: DecodingKey,
    sign: Option<EncodingKey>,
    validation: Validation,
    ttl: Duration,
    issuer: Option<String>,
    audience: Option<String>,
    /// Tokens that passed every check, with their claims: only an exact match is a hit, and
    /// the expiry is checked again on every use.
    verified: std::sync::Mutex<std::collections::HashMap<String, Claims>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("algorithm", &self.algorithm)
            .field("can_issue", &self.sign.is_some())
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens as configured; `None` when neither a secret nor a public key is set.
    pub fn from_settings(settings: &AuthSettings) -> Result<Option<Self>, AuthConfigError> {
        let secret = settings.jwt_secret.expose();
        let (algorithm, verify, sign) = if !secret.is_empty() {
            let bytes = secret.as_bytes();
            let sign = EncodingKey::from_secret(bytes);
            (
                Algorithm::HS256,
                DecodingKey::from_secret(bytes),
                Some(sign),
            )
        } else if !settings.jwt_public_key.is_empty() {
            let (algorithm, verify) = public_key(&settings.jwt_public_key)?;
            let sign = match settings.jwt_private_key.as_str() {
                "" => None,
                path => Some(private_key(path, algorithm)?),
            };
            (algorithm, verify, sign)
        } else {
            return Ok(None);
        };
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let (issuer, audience) = (non_empty(&settings.issuer), non_empty(&settings.audience));
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY.as_secs();
        // A claim that is configured must be present too: the library checks only the claims
        // it is told are required, and skips a missing `iss` or `aud` otherwise.
        let mut required = vec!["exp", "sub"];
        required.extend(issuer.as_ref().map(|_| "iss"));
        required.extend(audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        if let Some(iss) = &issuer {
            validation.set_issuer(&[iss]);
        }
        match &audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Some(Self {
            algorithm,
            verify,
            sign,
            validation,
            ttl: settings.token_ttl,
            issuer,
            audience,
            verified: Default::default(),
        }))
    }

    /// Whether this gateway can issue tokens (it has the secret or the private key).
    pub fn can_issue(&self) -> bool {
        self.sign.is_some()
    }

    /// How long an issued token lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A signed token for `sub`; `None` when this gateway only verifies.
    pub fn issue(&self, sub: &str, email: Option<&str>, roles: &[String]) -> Option<String> {
        let key = self.sign.as_ref()?;
        let now = unix_now();
        let claims = Claims {
            sub: sub.to_owned(),
            email: email.map(str::to_owned),
            roles: roles.to_vec(),
            iat: now,
            exp: now + self.ttl.as_secs(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        match jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key) {
            Ok(token) => Some(token),
            Err(error) => {
                // Only a key the library cannot use fails here, and keys are checked at start.
                tracing::error!(kind = ?error.kind(), "Could not sign a token.");
                None
            }
        }
    }

    /// The claims of a valid token.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(claims) = verified.get(token) {
            if claims.exp + LEEWAY.as_secs() > unix_now() {
                return Ok(claims.clone());
            }
            verified.remove(token);
            return Err(TokenError::Expired);
        }
        drop(verified);
        match jsonwebtoken::decode::<Claims>(token, &self.verify, &self.validation) {
            Ok(data) => {
                let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
                if verified.len() >= VERIFIED_CACHE {
                    verified.clear();
                }
                verified.insert(token.to_owned(), data.claims.clone());
                Ok(data.claims)
            }
            Err(e) if *e.kind() == ErrorKind::ExpiredSignature => Err(TokenError::Expired),
            Err(e) => {
                tracing::debug!(kind = ?e.kind(), "Token refused.");
                Err(TokenError::Invalid)
            }
        }
    }

    /// The token of an `Authorization` header value: `Bearer <token>`, scheme in any case.
    pub fn bearer(header: Option<&str>) -> Result<&str, TokenError> {
        let value = header.ok_or(TokenError::Missing)?.trim();
        let (scheme, token) = value.split_once(' ').ok_or(TokenError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(TokenError::Missing);
        }
        Ok(token.trim())
    }
}

fn read(path: &str) -> Result<Vec<u8>, AuthConfigError> {
    std::fs::read(path).map_err(|source| AuthConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// An RSA public key means RS256, an EC one ES256.
fn public_key(path: &str) -> Result<(Algorithm, DecodingKey), AuthConfigError> {
    let pem = read(path)?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((Algorithm::RS256, key));
    }
    DecodingKey::from_ec_pem(&pem)
        .map(|key| (Algorithm::ES256, key))
        .map_err(|e| AuthConfigError::Key {
            path: path.to_owned(),
            reason: format!("{:?}", e.kind()),
        })
}

fn private_key(path: &str, algorithm: Algorithm) -> Result<EncodingKey, AuthConfigError> {
    let pem = read(path)?;
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        _ => EncodingKey::from_ec_pem(&pem),
    };
    key.map_err(|e| AuthConfigError::Key {
        path: path.to_owned(),
        reason: format!(
            "{:?} (the private key must match the public key's kind)",
            e.kind()
        ),
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests;
