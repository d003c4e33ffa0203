//! [`DiscoveryError`]: every way a call to the Consul agent can fail.

use std::time::Duration;

/// A failed call to the Consul agent. `what` names the call (`"register service users-1"`), so
/// a log line says what was being done without a backtrace.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// No connection to the agent (refused, reset, closed mid-answer): it is down or `addr` is
    /// wrong.
    #[error("Consul at {addr} is unreachable")]
    Unreachable {
        /// The agent's base URL.
        addr: String,
        /// What the HTTP client saw.
        #[source]
        source: reqwest::Error,
    },
    /// The agent accepted the connection but did not answer within the time-out.
    #[error("{what}: Consul did not answer within {after:?}")]
    TimedOut {
        /// The call.
        what: String,
        /// The time-out that passed (a blocking query's includes its wait).
        after: Duration,
    },
    /// 403: the ACL token is missing, unknown, or lacks a permission.
    #[error("{what}: denied by Consul ACLs ({reason}); check CONSUL_HTTP_TOKEN")]
    Forbidden {
        /// The call.
        what: String,
        /// Consul's own words: `Permission denied: Missing service:write on users`, `ACL not
        /// found`.
        reason: String,
    },
    /// Any other answer outside 2xx, a 5xx from the agent included.
    #[error("{what}: Consul answered {code}: {body}")]
    Status {
        /// The call.
        what: String,
        /// The HTTP status code.
        code: u16,
        /// The body, which Consul fills with a plain-text reason.
        body: String,
    },
    /// A 2xx answer whose body or `X-Consul-Index` header is not what the API documents.
    #[error("{what}: could not decode Consul's answer")]
    Decode {
        /// The call.
        what: String,
        /// The JSON or header error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The settings cannot make a client: a malformed address or a token that is not a valid
    /// header value.
    #[error("invalid Consul settings: {0}")]
    InvalidConfig(String),
}

impl DiscoveryError {
    /// Whether retrying later may help: the agent is down, slow, or answered 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::TimedOut { .. } => true,
            Self::Status { code, .. } => *code >= 500,
            Self::Forbidden { .. } | Self::Decode { .. } | Self::InvalidConfig(_) => false,
        }
    }
}

/// `error: cause: cause`, for a log field: `Display` of an error alone hides its sources
/// ("Consul at .. is unreachable" without the "connection refused").
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
