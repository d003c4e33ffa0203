//! Errors: the one that travels on the wire ([`ServiceError`]), the one a caller gets
//! ([`CallError`]), and the one starting or stopping a service can fail with ([`Error`]).

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How many characters of a caller's input an error message quotes.
const QUOTE_CHARS: usize = 64;
/// The longest error message put on the wire, in bytes. Messages may quote input, and input
/// may be as large as the server's max payload: unbounded, an error reply would not fit.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// The largest `details` put on the wire, as JSON bytes; larger details are replaced by a note.
pub const MAX_DETAILS_BYTES: usize = 4096;

/// Quotes a caller's input in a message: all of it when short, else its first characters and
/// its length, so an error never echoes a payload back.
pub fn quote(input: &str) -> String {
    match input.char_indices().nth(QUOTE_CHARS) {
        None => format!("{input:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &input[..cut], input.len()),
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), with its length when cut.
pub(crate) fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    // Room for the marker; the cut lands on a character boundary.
    let mut cut = max.saturating_sub(24);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &text[..cut], text.len()))
}

/// A failed request as every hop sees it: an HTTP-like code, a message for people and optional
/// structured details. On NATS it is the `Nats-Service-Error(-Code)` headers plus this struct as
/// the body, in the request's codec; the gateway maps `code` to the HTTP status unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{code} {message}")]
pub struct ServiceError {
    /// 400, 401, 404, 409, 422, 429, 500, 503, 504, …
    pub code: u16,
    /// What went wrong, safe to show to the caller.
    pub message: String,
    /// Structured context such as `{"field": "email"}`; `null` when there is none.
    #[serde(default)]
    pub details: Option<serde_json::Value>,
}

impl ServiceError {
    /// An error with a code and message.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400: the request is malformed or invalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    /// 401: the caller could not be authenticated.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, message)
    }
    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    /// 409: conflicts with existing state (a duplicate, say).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }
    /// 422: well-formed but cannot be processed.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, message)
    }
    /// 429: the caller sends too much.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(429, message)
    }
    /// 500: our fault. The message must not leak internals; log them instead.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
    /// 503: not now (overloaded, draining, nobody listening).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, message)
    }
    /// 504: out of time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, message)
    }

    /// The same error cut to what the wire carries: the message to [`MAX_MESSAGE_BYTES`], the
    /// details to [`MAX_DETAILS_BYTES`] of JSON (else a note of their size).
    pub fn bounded(mut self) -> Self {
        if let Cow::Owned(cut) = truncate(&self.message, MAX_MESSAGE_BYTES) {
            self.message = cut;
        }
        let size = self
            .details
            .as_ref()
            .map_or(0, |d| serde_json::to_vec(d).map_or(usize::MAX, |v| v.len()));
        if size > MAX_DETAILS_BYTES {
            self.details = Some(serde_json::json!({
                "omitted": format!("{size} bytes of details, over the {MAX_DETAILS_BYTES}-byte limit")
            }));
        }
        self
    }

    /// Whether the failure is the server's (5xx), which is logged, not the caller's.
    pub fn is_server_error(&self) -> bool {
        self.code >= 500
    }
}

/// What a call to another service can end in, other than its reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nobody subscribes to the subject (NATS "no responders").
    #[error("no service answers on {subject}")]
    NoResponders {
        /// The subject called.
        subject: String,
    },
    /// Nobody answered in time.
    #[error("{subject} did not answer within {after:?}")]
    TimedOut {
        /// The subject called.
        subject: String,
        /// How long we waited.
        after: Duration,
    },
    /// The service answered with an error.
    #[error("{subject} answered {error}")]
    Service {
        /// The subject called.
        subject: String,
        /// The error it sent, as it sent it.
        error: ServiceError,
    },
    /// The request could not be encoded.
    #[error("cannot encode the request to {subject}: {source}")]
    Encode {
        /// The subject called.
        subject: String,
        /// The encoder's error.
        #[source]
        source: crate::codec::EncodeError,
    },
    /// The reply could not be decoded as the expected type.
    #[error("cannot decode the reply from {subject}: {source}")]
    Decode {
        /// The subject called.
        subject: String,
        /// The decoder's error.
        #[source]
        source: crate::codec::DecodeError,
    },
    /// The NATS connection failed us.
    #[error("NATS error calling {subject}: {source}")]
    Transport {
        /// The subject called.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
}

impl CallError {
    /// The HTTP-like code of this failure: 503 for no responders, 504 for a time-out, the
    /// service's own code for its errors, 502 for a reply we cannot read, 500 otherwise.
    pub fn code(&self) -> u16 {
        match self {
            Self::NoResponders { .. } => 503,
            Self::TimedOut { .. } => 504,
            Self::Service { error, .. } => error.code,
            Self::Decode { .. } => 502,
            Self::Encode { .. } | Self::Transport { .. } => 500,
        }
    }
}

impl From<CallError> for ServiceError {
    /// Passes a downstream failure up one hop: the service's own error unchanged (typed errors
    /// survive every hop), transport failures as their code with a message naming the subject.
    fn from(err: CallError) -> Self {
        match err {
            CallError::Service { error, .. } => error,
            other => ServiceError::new(other.code(), other.to_string()),
        }
    }
}

/// Starting or stopping a service failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service definition is not valid (a bad name, version, subject or duplicate).
    #[error("invalid service definition: {0}")]
    Definition(String),
    /// Subscribing to a subject failed.
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// A further worker could not open its NATS connections ([`crate::Connections::per_worker`]).
    #[error("worker {worker} cannot connect to NATS: {source}")]
    Connect {
        /// The worker's index (1 and up).
        worker: usize,
        /// The client's error.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The server did not confirm the new subscriptions at start.
    #[error("NATS did not confirm the subscriptions within {waited:?}")]
    RoundTrip {
        /// How long we waited.
        waited: Duration,
    },
    /// The streams or a durable consumer of the service could not be set up.
    #[error(transparent)]
    Durable(#[from] crate::durable::DurableError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_quoted_whole_and_long_input_by_prefix_and_length() {
        assert_eq!(quote("abc"), "\"abc\"");
        let long = "é".repeat(1000);
        let quoted = quote(&long);
        assert!(quoted.ends_with("… (2000 bytes)"), "{quoted}");
        assert!(quoted.len() < 200, "{}", quoted.len());
    }

    #[test]
    fn a_bounded_error_fits_the_wire_limits() {
        let huge = "a".repeat(600_000);
        let error = ServiceError::bad_request(format!("bad id {huge}"))
            .with_details(serde_json::json!({ "id": huge }))
            .bounded();
        assert!(
            error.message.len() <= MAX_MESSAGE_BYTES,
            "{}",
            error.message.len()
        );
        assert!(
            error.message.ends_with("(600007 bytes)"),
            "{}",
            &error.message[1000..]
        );
        let details = serde_json::to_vec(&error.details).unwrap();
        assert!(details.len() <= MAX_DETAILS_BYTES, "{}", details.len());
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        let text = "ü".repeat(100);
        let cut = truncate(&text, 51);
        assert!(cut.len() <= 51, "{cut}");
        assert!(cut.starts_with('ü'));
    }
}
