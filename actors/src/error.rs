//! Errors: the one that travels on the wire ([`ServiceError`]), the one a caller gets
//! ([`CallError`]), and the one starting or stopping a service can fail with ([`Error`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    /// Flushing replies to the server failed while stopping.
    #[error("cannot flush replies to NATS: {0}")]
    Flush(#[source] async_nats::client::FlushError),
}
