//! `courier-config`: typed, layered, validated configuration for every Courier process.
//!
//! A process describes its settings as one `serde` struct (built from the pieces in
//! [`settings`]) and loads it with a [`Loader`]. Layers, later ones win:
//!
//! 1. the struct's `Default`;
//! 2. `base.toml`, then `<environment>.toml`, from the folder named by `COURIER_CONFIG_DIR`
//!    (`COURIER_ENVIRONMENT` picks the environment, `local` by default);
//! 3. the ecosystem's own variables where the struct has the key (`NATS_URL`, `DATABASE_URL`,
//!    `CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`);
//! 4. `COURIER_<SECTION>__<KEY>` variables (`COURIER_NATS__URL`, `COURIER_SERVICE__MAX_IN_FLIGHT`);
//!    one whose section the process does not have is another process's and left alone.
//!
//! Nothing is read behind the caller's back: the loader is given the environment as a map, so
//! tests pass their own. Unknown keys and bad values are a [`ConfigError`] whose one-line
//! `Display` names the key, the value, where the value came from and why it was refused;
//! binaries print it and exit with [`EXIT_CONFIG`]. Values in these messages go through
//! [`redact_url`], which processes that log a URL should use too.
//!
//! This crate depends on no other Courier crate and on no NATS client, actix or HTTP crate: it
//! knows NATS only as URLs ([`NatsCredentials`] reads the credentials they carry).

mod credentials;
mod error;
pub mod events;
mod loader;
mod redact;
pub mod settings;

pub use credentials::NatsCredentials;
pub use error::{ConfigError, Invalid};
pub use events::{EventsSettings, Storage};
pub use loader::Loader;
pub use redact::redact_url;
pub use settings::{
    AdminSettings, ConsulSettings, DatabaseSettings, LogFormat, LogSettings, NatsSettings, Secret,
    ServiceSettings, SqliteSynchronous,
};

/// The exit code for a configuration error (`EX_CONFIG` in sysexits.h is 78; `EX_USAGE` 64 is
/// what operators of our deployments grep for, so we use that).
pub const EXIT_CONFIG: i32 = 64;

/// Checks that a loaded settings value makes sense before anything binds.
pub trait Validate {
    /// Returns the first problem found, naming the key in dotted form (`nats.url`).
    fn validate(&self) -> Result<(), Invalid>;
}
