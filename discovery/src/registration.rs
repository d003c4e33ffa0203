//! [`Registration`] and [`Check`]: what `PUT /v1/agent/service/register` takes, serialized to
//! Consul's JSON exactly (`ID`, `Name`, `Checks: [{CheckID, HTTP, Interval: "2s", ..}]`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// One service instance as the local agent should know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registration {
    /// Unique on the agent: the instance id (its `$SRV` id, a NUID).
    #[serde(rename = "ID")]
    pub id: String,
    /// The service name callers resolve: `users`.
    #[serde(rename = "Name")]
    pub name: String,
    /// The address callers should use.
    #[serde(rename = "Address")]
    pub address: String,
    /// The port callers should use.
    #[serde(rename = "Port")]
    pub port: u16,
    /// Free-form tags.
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
    /// Free-form key/value metadata (a version, the NATS subject prefix).
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    /// Health checks; the instance is healthy while all of them pass.
    #[serde(rename = "Checks")]
    pub checks: Vec<Check>,
}

/// A health check attached to a [`Registration`]. A new check starts `critical` (Consul's
/// default) until it first passes: an HTTP check after its first run, a TTL check at its
/// first [`crate::Consul::update_ttl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Consul GETs `url` every `interval`; 2xx passes, 429 warns, anything else is critical.
    Http {
        /// Unique on the agent, such as `<instance id>:ready`.
        id: String,
        /// Shown in the UI.
        name: String,
        /// What Consul fetches: `http://10.0.0.5:9090/health/ready`.
        url: String,
        /// How often (Consul's minimum is 1 s).
        interval: Duration,
        /// How long one fetch may take.
        timeout: Duration,
        /// How long this check may stay critical before Consul deregisters the instance
        /// (minimum 1 min); `None` never deregisters for this check.
        deregister_critical_after: Option<Duration>,
    },
    /// The process itself reports within every `ttl`, or the check turns critical.
    Ttl {
        /// Unique on the agent, such as `<instance id>:actors`; what `update_ttl` names.
        id: String,
        /// Shown in the UI.
        name: String,
        /// How long a report holds.
        ttl: Duration,
        /// How long this check may stay critical before Consul deregisters the instance
        /// (minimum 1 min); `None` never deregisters for this check.
        deregister_critical_after: Option<Duration>,
    },
}

impl Check {
    /// The check's id.
    pub fn id(&self) -> &str {
        match self {
            Self::Http { id, .. } | Self::Ttl { id, .. } => id,
        }
    }
}

impl Serialize for Check {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Http {
                id,
                name,
                url,
                interval,
                timeout,
                deregister_critical_after,
            } => {
                let mut map = serializer.serialize_map(Some(6))?;
                map.serialize_entry("CheckID", id)?;
                map.serialize_entry("Name", name)?;
                map.serialize_entry("HTTP", url)?;
                map.serialize_entry("Interval", &go_duration(*interval))?;
                map.serialize_entry("Timeout", &go_duration(*timeout))?;
                if let Some(after) = deregister_critical_after {
                    map.serialize_entry("DeregisterCriticalServiceAfter", &go_duration(*after))?;
                }
                map.end()
            }
            Self::Ttl {
                id,
                name,
                ttl,
                deregister_critical_after,
            } => {
                let mut map = serializer.serialize_map(Some(4))?;
                map.serialize_entry("CheckID", id)?;
                map.serialize_entry("Name", name)?;
                map.serialize_entry("TTL", &go_duration(*ttl))?;
                if let Some(after) = deregister_critical_after {
                    map.serialize_entry("DeregisterCriticalServiceAfter", &go_duration(*after))?;
                }
                map.end()
            }
        }
    }
}

/// A duration as Go's `time.ParseDuration` reads it: whole seconds as `"2s"`, anything else
/// in whole milliseconds (`"1500ms"`), rounded up so a time-out is never shorter than asked.
pub fn go_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        return format!("{}s", duration.as_secs());
    }
    let millis = duration.as_nanos().div_ceil(1_000_000);
    format!("{millis}ms")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registration() -> Registration {
        Registration {
            id: "users-1".into(),
            name: "users".into(),
            address: "10.0.0.5".into(),
            port: 9090,
            tags: vec!["v1".into()],
            meta: BTreeMap::from([("version".into(), "0.1.0".into())]),
            checks: vec![
                Check::Http {
                    id: "users-1:ready".into(),
                    name: "ready".into(),
                    url: "http://10.0.0.5:9090/health/ready".into(),
                    interval: Duration::from_secs(2),
                    timeout: Duration::from_millis(1500),
                    deregister_critical_after: Some(Duration::from_secs(60)),
                },
                Check::Ttl {
                    id: "users-1:ttl".into(),
                    name: "actors".into(),
                    ttl: Duration::from_secs(6),
                    deregister_critical_after: Some(Duration::from_secs(90)),
                },
            ],
        }
    }

    #[test]
    fn a_registration_serializes_to_consuls_json_exactly() {
        let value = serde_json::to_value(registration()).expect("a registration serializes");
        let expected = json!({
            "ID": "users-1", "Name": "users", "Address": "10.0.0.5", "Port": 9090,
            "Tags": ["v1"], "Meta": {"version": "0.1.0"},
            "Checks": [
                {"CheckID": "users-1:ready", "Name": "ready",
                 "HTTP": "http://10.0.0.5:9090/health/ready", "Interval": "2s",
                 "Timeout": "1500ms", "DeregisterCriticalServiceAfter": "60s"},
                {"CheckID": "users-1:ttl", "Name": "actors", "TTL": "6s",
                 "DeregisterCriticalServiceAfter": "90s"}
            ]
        });
        assert_eq!(value, expected);
    }

    #[test]
    fn durations_are_whole_seconds_or_whole_milliseconds() {
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_secs(600)), "600s");
    }

    #[test]
    fn sub_millisecond_durations_round_up() {
        assert_eq!(go_duration(Duration::from_micros(1)), "1ms");
        assert_eq!(go_duration(Duration::from_micros(2_000_001)), "2001ms");
    }

    #[test]
    fn a_check_names_its_id() {
        let registration = registration();
        let ids: Vec<&str> = registration.checks.iter().map(Check::id).collect();
        assert_eq!(ids, ["users-1:ready", "users-1:ttl"]);
    }
}
