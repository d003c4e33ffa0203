//! The gateway's settings: the shared groups plus its own (`gateway`, `auth`).

use std::time::Duration;

use courier_config::{ConsulSettings, Invalid, LogSettings, NatsSettings, Secret, Validate};
use serde::{Deserialize, Serialize};

/// Everything `courier-gateway` reads at start (see `courier_config` for the layers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// How to reach NATS.
    pub nats: NatsSettings,
    /// Where Consul is; the gateway registers itself there too.
    pub consul: ConsulSettings,
    /// The HTTP listener, limits and resilience.
    pub gateway: GatewaySettings,
    /// Tokens.
    pub auth: AuthSettings,
    /// Log output.
    pub log: LogSettings,
}

/// The gateway's own reply inbox: `ops/nats/authorization.conf` lets the gateway user
/// subscribe there and nowhere else.
pub const GATEWAY_INBOX: &str = "_GATEWAY_INBOX";

impl Default for Settings {
    fn default() -> Self {
        Self {
            nats: NatsSettings {
                inbox_prefix: GATEWAY_INBOX.to_owned(),
                ..NatsSettings::default()
            },
            consul: ConsulSettings::default(),
            gateway: GatewaySettings::default(),
            auth: AuthSettings::default(),
            log: LogSettings::default(),
        }
    }
}

/// How instances are picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategySetting {
    /// The less busy of two drawn at random.
    #[default]
    LeastInFlight,
    /// Each in turn.
    RoundRobin,
    /// At random.
    Random,
}

/// The HTTP side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// Address to listen on. Env: `COURIER_GATEWAY__BIND`.
    pub bind: String,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// How long a request may take end to end unless the client asks for less
    /// (`X-Request-Timeout`): past it, 504.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest request body, in bytes: past it, 413.
    pub max_body: usize,
    /// Requests in flight through the gateway before new ones get 503 at once.
    pub max_in_flight: usize,
    /// Requests per second per client address, with a burst of as many; 0 = no limit.
    /// Env: `COURIER_GATEWAY__RATE_LIMIT`.
    pub rate_limit: u32,
    /// Origins allowed by CORS (`https://app.example.com`); empty = no CORS headers.
    pub cors_origins: Vec<String>,
    /// How an instance is picked.
    pub strategy: StrategySetting,
    /// Retries (on another instance) as a share of requests: retries never exceed this
    /// fraction of the requests seen, plus a few, so they cannot multiply an overload.
    pub retry_budget: f64,
    /// How long one try of an idempotent request (GET, PUT, DELETE...) may wait when another
    /// instance could still be tried: a request lost with an instance or a NATS server is
    /// then sent again elsewhere within the client's deadline. `0s` (the default) gives each
    /// try the whole deadline.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// Routes of the gateway's own, beside those the services declare (`[[gateway.routes]]`
    /// in a settings file): for subjects whose responders are not in Consul. They win a
    /// conflict with a learned route.
    pub routes: Vec<StaticRoute>,
}

/// A route from the settings: its requests go to `subject` itself, where NATS's queue group
/// picks a responder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    /// Method and path template: `GET /legacy/{id}`.
    pub route: String,
    /// Where requests go: `legacy.get`.
    pub subject: String,
    /// `public` (the default), `bearer`, `bearer admin,ops` or `login`, as services declare.
    #[serde(default = "public")]
    pub auth: String,
    /// The status of a success; 200 unless set.
    #[serde(default = "ok")]
    pub status: u16,
}

fn public() -> String {
    "public".to_owned()
}

fn ok() -> u16 {
    200
}

impl StaticRoute {
    /// The route it declares, checked as a service's would be.
    pub fn to_route(&self) -> Result<courier_actors::Route, courier_actors::route::RouteError> {
        use courier_actors::route::{AUTH_KEY, ROUTE_KEY, STATUS_KEY};
        let metadata = [
            (ROUTE_KEY.to_owned(), self.route.clone()),
            (AUTH_KEY.to_owned(), self.auth.clone()),
            (STATUS_KEY.to_owned(), self.status.to_string()),
        ];
        let declared = courier_actors::Route::from_metadata(&metadata.into_iter().collect());
        // Invariant: the metadata above has a route key, so there is a declaration to read.
        declared.expect("a route key is present")
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_owned(),
            workers: 0,
            timeout: Duration::from_secs(10),
            max_body: 1024 * 1024,
            max_in_flight: 10_000,
            rate_limit: 0,
            cors_origins: Vec::new(),
            strategy: StrategySetting::default(),
            retry_budget: 0.2,
            attempt_timeout: Duration::ZERO,
            routes: Vec::new(),
        }
    }
}

/// JWT bearer tokens: an HS256 secret, or an RS256/ES256 key pair (PEM files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// HS256 shared secret, at least 32 bytes. Env: `COURIER_AUTH__JWT_SECRET`.
    pub jwt_secret: Secret,
    /// Path of a PEM public key (RSA or EC P-256) that verifies RS256/ES256 tokens.
    /// Env: `COURIER_AUTH__JWT_PUBLIC_KEY`.
    pub jwt_public_key: String,
    /// Path of the matching PEM private key, for issuing tokens at login; without it this
    /// gateway verifies tokens issued elsewhere and answers login with 503.
    pub jwt_private_key: String,
    /// How long an issued token is valid. Env: `COURIER_AUTH__TOKEN_TTL`.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// `iss` to issue and require; empty = none.
    pub issuer: String,
    /// `aud` to issue and require; empty = none.
    pub audience: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: Secret::default(),
            jwt_public_key: String::new(),
            jwt_private_key: String::new(),
            token_ttl: Duration::from_secs(3600),
            issuer: String::new(),
            audience: String::new(),
        }
    }
}

/// Shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key as long as the hash (256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

impl Validate for Settings {
    fn validate(&self) -> Result<(), Invalid> {
        self.nats.validate()?;
        self.consul.validate()?;
        self.log.validate()?;
        self.gateway.validate()?;
        self.auth.validate()
    }
}

impl Validate for GatewaySettings {
    fn validate(&self) -> Result<(), Invalid> {
        if self.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(Invalid::new(
                "gateway.bind",
                &self.bind,
                "must be ip:port, such as 127.0.0.1:8080",
            ));
        }
        if self.timeout.is_zero() {
            return Err(Invalid::new(
                "gateway.timeout",
                "0s",
                "must be longer than zero",
            ));
        }
        if self.max_body == 0 || self.max_in_flight == 0 {
            return Err(Invalid::new(
                "gateway.max_body / gateway.max_in_flight",
                0,
                "must be at least 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.retry_budget) {
            return Err(Invalid::new(
                "gateway.retry_budget",
                self.retry_budget,
                "must be between 0 and 1",
            ));
        }
        for route in &self.routes {
            if let Err(e) = route.to_route() {
                return Err(Invalid::new("gateway.routes", &route.route, e.problem));
            }
            let plain = |t: &str| !t.is_empty() && !t.contains(['*', '>', ' ']);
            if !route.subject.split('.').all(plain) {
                return Err(Invalid::new(
                    "gateway.routes",
                    &route.subject,
                    "a subject is plain tokens separated by dots",
                ));
            }
        }
        if let Some(bad) = self.cors_origins.iter().find(|o| !valid_origin(o)) {
            return Err(Invalid::new(
                "gateway.cors_origins",
                bad,
                "an origin is scheme://host[:port], or *",
            ));
        }
        Ok(())
    }
}

fn valid_origin(origin: &str) -> bool {
    origin == "*"
        || (origin.starts_with("http://") || origin.starts_with("https://"))
            && !origin.trim_end_matches('/').ends_with(':')
            && origin.matches('/').count() == 2
}

impl Validate for AuthSettings {
    fn validate(&self) -> Result<(), Invalid> {
        let secret = self.jwt_secret.expose();
        if !secret.is_empty() && secret.len() < MIN_SECRET_BYTES {
            return Err(Invalid::new(
                "auth.jwt_secret",
                "***",
                format!("must be at least {MIN_SECRET_BYTES} bytes"),
            ));
        }
        if !secret.is_empty() && !self.jwt_public_key.is_empty() {
            return Err(Invalid::new(
                "auth.jwt_public_key",
                &self.jwt_public_key,
                "set either auth.jwt_secret or a key pair, not both",
            ));
        }
        if !self.jwt_private_key.is_empty() && self.jwt_public_key.is_empty() {
            return Err(Invalid::new(
                "auth.jwt_private_key",
                &self.jwt_private_key,
                "needs auth.jwt_public_key beside it",
            ));
        }
        if self.token_ttl < Duration::from_secs(1) {
            return Err(Invalid::new("auth.token_ttl", "0s", "must be at least 1s"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_config::Loader;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, courier_config::ConfigError> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Loader::from_env(vars).load()
    }

    #[test]
    fn the_contract_variables_are_read() {
        let settings = load(&[
            ("COURIER_GATEWAY__BIND", "0.0.0.0:9000"),
            ("COURIER_GATEWAY__RATE_LIMIT", "50"),
            ("COURIER_AUTH__JWT_SECRET", &"s".repeat(32)),
            ("COURIER_AUTH__TOKEN_TTL", "15m"),
            (
                "COURIER_GATEWAY__CORS_ORIGINS",
                "http://a.test,https://b.test:8443",
            ),
        ])
        .unwrap();
        assert_eq!(settings.gateway.bind, "0.0.0.0:9000");
        assert_eq!(settings.gateway.rate_limit, 50);
        assert_eq!(settings.auth.token_ttl, Duration::from_secs(900));
        assert_eq!(settings.gateway.cors_origins.len(), 2);
    }

    #[test]
    fn a_short_secret_is_refused_without_showing_it() {
        let err = load(&[("COURIER_AUTH__JWT_SECRET", "hunter2")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("auth.jwt_secret"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (var, value, key) in [
            ("COURIER_GATEWAY__BIND", "localhost", "gateway.bind"),
            (
                "COURIER_GATEWAY__RETRY_BUDGET",
                "2.0",
                "gateway.retry_budget",
            ),
            (
                "COURIER_GATEWAY__CORS_ORIGINS",
                "a.test",
                "gateway.cors_origins",
            ),
            (
                "COURIER_AUTH__JWT_PRIVATE_KEY",
                "/k.pem",
                "auth.jwt_private_key",
            ),
        ] {
            let err = load(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
