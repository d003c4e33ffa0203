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

/// How to reach NATS. `Debug` masks credentials in the URL.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    /// Server URL(s), comma separated: `nats://127.0.0.1:4222`, with credentials
    /// `nats://user:password@host:4222` (see [`NatsSettings::credentials`]). Env: `NATS_URL`.
    pub url: String,
    /// How long to wait for the first connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Default timeout of requests this process sends to other services.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Where replies to this process's requests arrive: `<prefix>.<id>...`. The gateway uses
    /// its own (`_GATEWAY_INBOX`), so NATS permissions can keep it from reading the replies
    /// other clients get under `_INBOX`.
    pub inbox_prefix: String,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            inbox_prefix: "_INBOX".to_owned(),
        }
    }
}

impl fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSettings")
            .field("url", &crate::redact_url(&self.url))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("inbox_prefix", &self.inbox_prefix)
            .finish()
    }
}

impl Validate for NatsSettings {
    fn validate(&self) -> Result<(), Invalid> {
        for server in self.url.split(',').map(str::trim) {
            check_url("nats.url", server, &["nats", "tls", "ws", "wss"])?;
        }
        crate::credentials::check_one_set("nats.url", &self.url)?;
        positive("nats.connect_timeout", self.connect_timeout)?;
        positive("nats.request_timeout", self.request_timeout)?;
        let plain_tokens = self
            .inbox_prefix
            .split('.')
            .all(|t| !t.is_empty() && !t.contains(['*', '>']) && !t.contains(char::is_whitespace));
        if !plain_tokens {
            return Err(Invalid::new(
                "nats.inbox_prefix",
                &self.inbox_prefix,
                "must be a plain subject, such as _INBOX",
            ));
        }
        Ok(())
    }
}

/// Highest in-flight limit: far above what one instance serves, and within what a semaphore
/// counts.
pub const MAX_IN_FLIGHT: usize = 1_000_000;

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
    /// How long a handler may work on a request or event that brings no deadline of its own
    /// (or a later one): past it the caller gets 504 and the work is cancelled.
    #[serde(with = "humantime_serde")]
    pub handler_timeout: Duration,
    /// Events received but not yet handled, per subscription; past it new events are dropped,
    /// counted and logged (core NATS events are at most once).
    pub event_buffer: usize,
    /// Threads that take and handle requests, each with its own subscriptions; 0 means one per
    /// core.
    pub workers: usize,
}

impl ServiceSettings {
    /// How many workers to run: `workers`, or one per core when it is 0.
    pub fn workers(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// More workers than this is a typo, not a machine.
const MAX_WORKERS: usize = 1024;

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            drain_grace: Duration::from_secs(10),
            queue_group: "q".to_owned(),
            handler_timeout: Duration::from_secs(30),
            event_buffer: 1024,
            workers: 0,
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
        if self.max_in_flight > MAX_IN_FLIGHT {
            return Err(Invalid::new(
                "service.max_in_flight",
                self.max_in_flight,
                format!("must be at most {MAX_IN_FLIGHT}"),
            ));
        }
        positive("service.drain_grace", self.drain_grace)?;
        positive("service.handler_timeout", self.handler_timeout)?;
        if self.workers > MAX_WORKERS {
            return Err(Invalid::new(
                "service.workers",
                self.workers,
                format!("must be at most {MAX_WORKERS} (0 means one per core)"),
            ));
        }
        if self.event_buffer == 0 || self.event_buffer > MAX_IN_FLIGHT {
            return Err(Invalid::new(
                "service.event_buffer",
                self.event_buffer,
                format!("must be between 1 and {MAX_IN_FLIGHT}"),
            ));
        }
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
    /// How a SQLite file syncs commits to disk. Env: `COURIER_DATABASE__SQLITE_SYNCHRONOUS`.
    pub sqlite_synchronous: SqliteSynchronous,
}

/// SQLite's `synchronous` setting for a service's file (which is always in WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// The WAL is synced at checkpoints, not at every commit: a commit survives the process
    /// crashing or being killed, and a power loss or an OS crash may roll back the last
    /// commits (never corrupting the file). SQLite's advice for WAL mode, and what keeps a
    /// commit in microseconds.
    #[default]
    Normal,
    /// Every commit waits for the disk: it survives a power loss too, at the price of an
    /// `fsync` (about a millisecond here) per commit.
    Full,
}

impl DatabaseSettings {
    /// An embedded SQLite file, the default of every service.
    pub fn sqlite_file(path: &str) -> Self {
        Self {
            url: Secret::new(format!("sqlite://{path}")),
            max_connections: 5,
            sqlite_synchronous: SqliteSynchronous::default(),
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
            // `Invalid::new` masks the password the URL may hold.
            return Err(Invalid::new(
                "database.url",
                url,
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

/// How to reach the Consul agent, and how this process registers with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsulSettings {
    /// The local agent's HTTP API: `http://127.0.0.1:8500`. Env: `CONSUL_HTTP_ADDR` (a bare
    /// `host:port` means `http://host:port`, as the consul CLI reads it).
    pub addr: String,
    /// ACL token sent as `X-Consul-Token`; empty for none. Env: `CONSUL_HTTP_TOKEN`.
    pub token: Secret,
    /// Time-out of one call to the agent (a blocking query adds its wait to this).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Whether to register at all; `false` serves over NATS only.
    pub register: bool,
    /// How often Consul runs the HTTP check of `/health/ready`.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// TTL of the check the actor system keeps passing.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How long an instance may stay critical before Consul removes it.
    #[serde(with = "humantime_serde")]
    pub deregister_critical_after: Duration,
    /// The address Consul and callers should use for this instance's admin listener.
    pub advertise_address: String,
    /// On SIGTERM, how long to keep serving after deregistering, before draining: time for
    /// callers watching Consul to stop picking this instance.
    #[serde(with = "humantime_serde")]
    pub leave_delay: Duration,
}

impl Default for ConsulSettings {
    fn default() -> Self {
        Self {
            addr: "http://127.0.0.1:8500".to_owned(),
            token: Secret::default(),
            timeout: Duration::from_secs(5),
            register: true,
            check_interval: Duration::from_secs(2),
            ttl: Duration::from_secs(6),
            deregister_critical_after: Duration::from_secs(60),
            advertise_address: "127.0.0.1".to_owned(),
            leave_delay: Duration::from_secs(1),
        }
    }
}

impl ConsulSettings {
    /// The agent's base URL, with `http://` added to a bare `host:port`.
    pub fn base_url(&self) -> String {
        if self.addr.contains("://") {
            self.addr.clone()
        } else {
            format!("http://{}", self.addr)
        }
    }
}

impl Validate for ConsulSettings {
    fn validate(&self) -> Result<(), Invalid> {
        // Plain HTTP to the local agent, as Consul deployments run it; the client has no TLS.
        check_url("consul.addr", &self.base_url(), &["http"])?;
        positive("consul.timeout", self.timeout)?;
        positive("consul.check_interval", self.check_interval)?;
        if self.ttl < self.check_interval {
            return Err(Invalid::new(
                "consul.ttl",
                humantime_serde::re::humantime::format_duration(self.ttl),
                "must be at least consul.check_interval",
            ));
        }
        if self.deregister_critical_after < Duration::from_secs(60) {
            // Consul's reaper runs every 30 s and ignores shorter values, so promising less lies.
            return Err(Invalid::new(
                "consul.deregister_critical_after",
                humantime_serde::re::humantime::format_duration(self.deregister_critical_after),
                "must be at least 1m (Consul's minimum)",
            ));
        }
        if self.advertise_address.trim().is_empty() {
            return Err(Invalid::new(
                "consul.advertise_address",
                "",
                "must not be empty",
            ));
        }
        Ok(())
    }
}

/// The admin HTTP listener every process runs: `/health`, `/health/ready`, `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Address to bind; port 0 picks a free one (tests, several instances on one machine).
    pub bind: String,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:0".to_owned(),
        }
    }
}

impl Validate for AdminSettings {
    fn validate(&self) -> Result<(), Invalid> {
        self.bind
            .parse::<std::net::SocketAddr>()
            .map(|_| ())
            .map_err(|_| {
                Invalid::new(
                    "admin.bind",
                    &self.bind,
                    "must be ip:port, such as 127.0.0.1:9090",
                )
            })
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
