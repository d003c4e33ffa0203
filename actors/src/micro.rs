//! The NATS micro protocol (`$SRV`): subjects and reply bodies, as `nats micro` expects them.
//! Pure: the bridge in [`crate::service`] does the I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The three verbs every service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Liveness and identity.
    Ping,
    /// Description and endpoints.
    Info,
    /// Counters per endpoint.
    Stats,
}

impl Verb {
    /// All verbs.
    pub const ALL: [Verb; 3] = [Verb::Ping, Verb::Info, Verb::Stats];

    fn token(self) -> &'static str {
        match self {
            Self::Ping => "PING",
            Self::Info => "INFO",
            Self::Stats => "STATS",
        }
    }

    /// The verb named by a `$SRV.<VERB>[.name[.id]]` subject.
    pub fn of_subject(subject: &str) -> Option<Self> {
        let mut tokens = subject.split('.');
        (tokens.next()? == "$SRV").then_some(())?;
        Self::ALL
            .into_iter()
            .find(|v| Some(v.token()) == tokens.clone().next())
    }

    /// The bare, by-name and by-instance subjects: `$SRV.PING`, `$SRV.PING.users`,
    /// `$SRV.PING.users.<id>`.
    pub fn subjects(self, name: &str, id: &str) -> [String; 3] {
        let verb = self.token();
        [
            format!("$SRV.{verb}"),
            format!("$SRV.{verb}.{name}"),
            format!("$SRV.{verb}.{name}.{id}"),
        ]
    }
}

/// What every `$SRV` reply starts with: its type, and the instance's name, id, version and
/// metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The schema's type string, such as [`PingResponse::TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The service name.
    pub name: String,
    /// This instance's id.
    pub id: String,
    /// Semver version.
    pub version: String,
    /// Service metadata.
    pub metadata: BTreeMap<String, String>,
}

/// `io.nats.micro.v1.ping_response`: the identity alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingResponse {
    /// Type, name, id, version, metadata.
    #[serde(flatten)]
    pub identity: Identity,
}

impl PingResponse {
    /// The schema's type string.
    pub const TYPE: &'static str = "io.nats.micro.v1.ping_response";
}

/// `io.nats.micro.v1.info_response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InfoResponse {
    /// Type, name, id, version, metadata.
    #[serde(flatten)]
    pub identity: Identity,
    /// What the service does.
    pub description: String,
    /// Its endpoints.
    pub endpoints: Vec<EndpointInfo>,
}

impl InfoResponse {
    /// The schema's type string.
    pub const TYPE: &'static str = "io.nats.micro.v1.info_response";
}

/// One endpoint in `$SRV.INFO`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// Endpoint name (`[A-Za-z0-9_-]+`).
    pub name: String,
    /// The subject it serves.
    pub subject: String,
    /// Its queue group; absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_group: Option<String>,
    /// Endpoint metadata.
    pub metadata: BTreeMap<String, String>,
}

/// `io.nats.micro.v1.stats_response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsResponse {
    /// Type, name, id, version, metadata.
    #[serde(flatten)]
    pub identity: Identity,
    /// Start time, RFC 3339 UTC.
    pub started: String,
    /// Counters per endpoint.
    pub endpoints: Vec<EndpointStats>,
}

impl StatsResponse {
    /// The schema's type string.
    pub const TYPE: &'static str = "io.nats.micro.v1.stats_response";
}

/// One endpoint in `$SRV.STATS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// Endpoint name.
    pub name: String,
    /// The subject it serves.
    pub subject: String,
    /// Its queue group; absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_group: Option<String>,
    /// Requests received.
    pub num_requests: u64,
    /// Requests answered with an error.
    pub num_errors: u64,
    /// `"<code> <message>"` of the last error, empty when none.
    pub last_error: String,
    /// Nanoseconds in the handler, in total.
    pub processing_time: u64,
    /// `processing_time` over the requests that reached a handler (refusals at the in-flight
    /// limit take no handler time and would drag the average down exactly under overload).
    pub average_processing_time: u64,
    /// Courier's own: in-flight count, limit and refusals.
    pub data: EndpointData,
}

/// The `data` of an endpoint in `$SRV.STATS`: the backpressure picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointData {
    /// Requests being handled now.
    pub in_flight: usize,
    /// The limit past which requests are refused with 503.
    pub max_in_flight: usize,
    /// Requests refused so far.
    pub rejected: u64,
}

/// Whether `name` is a valid service or endpoint name for the micro schemas.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `version` is semver 2.0 (`MAJOR.MINOR.PATCH[-pre][+build]`), as the schemas demand.
pub fn valid_version(version: &str) -> bool {
    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numeric = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    };
    let ident =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| numeric(p))
        && pre.is_none_or(|p| {
            p.split('.')
                .all(|id| ident(id) && (!id.bytes().all(|b| b.is_ascii_digit()) || numeric(id)))
        })
        && build.is_none_or(|b| b.split('.').all(ident))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_come_in_three_forms() {
        assert_eq!(
            Verb::Stats.subjects("users", "ABC"),
            ["$SRV.STATS", "$SRV.STATS.users", "$SRV.STATS.users.ABC"]
        );
    }

    #[test]
    fn the_verb_is_read_from_any_form() {
        assert_eq!(Verb::of_subject("$SRV.PING"), Some(Verb::Ping));
        assert_eq!(Verb::of_subject("$SRV.INFO.users.x"), Some(Verb::Info));
        assert_eq!(Verb::of_subject("users.get"), None);
    }

    #[test]
    fn versions_follow_semver() {
        for ok in ["0.1.0", "1.2.3-alpha.1", "1.0.0+build.5", "10.20.30-rc.1+x"] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in ["1.2", "01.2.3", "1.2.3-", "v1.2.3", "1.2.3-01", ""] {
            assert!(!valid_version(bad), "{bad}");
        }
    }

    #[test]
    fn names_are_word_characters_and_dashes() {
        assert!(valid_name("users-v2_x"));
        assert!(!valid_name("users.get"));
        assert!(!valid_name(""));
    }
}
