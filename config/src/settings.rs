//! The setting groups that Courier processes share. A process composes its own struct from them:
//!
//! ```
//! use courier_config::{NatsSettings, ServiceSettings, LogSettings, Validate, Invalid};
//!
//! #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
//! #[serde(deny_unknown_fields, default)]
//! struct Settings {
//!     nats: NatsSettings,
//!     service: ServiceSettings,
//!     log: LogSettings,
//! }
//!
//! impl Validate for Settings {
//!     fn validate(&self) -> Result<(), Invalid> {
//!         self.nats.validate()?;
//!         self.service.validate()?;
//!         self.log.validate()
//!     }
//! }
//! ```

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Invalid, Validate};

/// A string that never shows in `Debug` or logs (passwords, tokens, URLs with credentials).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How to reach NATS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    /// Server URL(s), comma separated: `nats://127.0.0.1:4222`. Env: `NATS_URL`.
    pub url: String,
    /// How long to wait for the first connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Default timeout of requests this process sends to other services.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl Validate for NatsSettings {
    fn validate(&self) -> Result<(), Invalid> {
        for server in self.url.split(',').map(str::trim) {
            check_url("nats.url", server, &["nats", "tls", "ws", "wss"])?;
        }
        positive("nats.connect_timeout", self.connect_timeout)?;
        positive("nats.request_timeout", self.request_timeout)
    }
}

/// How a service instance takes requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSettings {
    /// Requests in flight per endpoint before new ones are answered 503 at once.
    pub max_in_flight: usize,
    /// On SIGTERM, how long requests in flight may take to finish.
    #[serde(with = "humantime_serde")]
    pub drain_grace: Duration,
    /// The queue group of endpoints that do not name their own.
    pub queue_group: String,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            drain_grace: Duration::from_secs(10),
            queue_group: "q".to_owned(),
        }
    }
}

impl Validate for ServiceSettings {
    fn validate(&self) -> Result<(), Invalid> {
        if self.max_in_flight == 0 {
            return Err(Invalid::new(
                "service.max_in_flight",
                0,
                "must be at least 1",
            ));
        }
        positive("service.drain_grace", self.drain_grace)?;
        if self.queue_group.is_empty()
            || self
                .queue_group
                .contains(|c: char| c.is_whitespace() || c == '.' || c == '*' || c == '>')
        {
            return Err(Invalid::new(
                "service.queue_group",
                &self.queue_group,
                "must be one non-empty token without spaces, dots or wildcards",
            ));
        }
        Ok(())
    }
}

/// A service's own database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` (created when missing) or `postgres://user@host/db`.
    /// Env: `DATABASE_URL`.
    pub url: Secret,
    /// Most connections in the pool.
    pub max_connections: u32,
}

impl DatabaseSettings {
    /// An embedded SQLite file, the default of every service.
    pub fn sqlite_file(path: &str) -> Self {
        Self {
            url: Secret::new(format!("sqlite://{path}")),
            max_connections: 5,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self::sqlite_file("data/courier.db")
    }
}

impl Validate for DatabaseSettings {
    fn validate(&self) -> Result<(), Invalid> {
        let url = self.url.expose();
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            // Never echo the URL: it may hold a password.
            return Err(Invalid::new(
                "database.url",
                format!("{scheme}://…"),
                "must start with sqlite:// or postgres://",
            ));
        }
        if self.max_connections == 0 {
            return Err(Invalid::new(
                "database.max_connections",
                0,
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A `tracing` filter: `info`, `courier_actors=debug,info`. `RUST_LOG` wins when set.
    pub level: String,
    /// `pretty` for people, `json` for machines.
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Pretty,
        }
    }
}

impl Validate for LogSettings {
    fn validate(&self) -> Result<(), Invalid> {
        if self.level.trim().is_empty() {
            return Err(Invalid::new("log.level", &self.level, "must not be empty"));
        }
        Ok(())
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object a line.
    Json,
}

fn check_url(key: &str, value: &str, schemes: &[&str]) -> Result<(), Invalid> {
    let parsed = url::Url::parse(value)
        .map_err(|e| Invalid::new(key, value, format!("is not a URL ({e})")))?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(Invalid::new(
            key,
            value,
            format!("scheme must be one of {}", schemes.join(", ")),
        ));
    }
    if parsed.host_str().unwrap_or_default().is_empty() {
        return Err(Invalid::new(key, value, "has no host"));
    }
    Ok(())
}

fn positive(key: &str, value: Duration) -> Result<(), Invalid> {
    if value.is_zero() {
        return Err(Invalid::new(key, "0s", "must be longer than zero"));
    }
    Ok(())
}
