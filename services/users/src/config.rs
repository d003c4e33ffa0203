//! The users service's settings: the shared groups plus its own.

use courier_config::{
    AdminSettings, ConsulSettings, DatabaseSettings, Invalid, LogSettings, NatsSettings,
    ServiceSettings, Validate,
};
use serde::{Deserialize, Serialize};

/// Everything `courier-users` reads at start (see `courier_config` for the layers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// How to reach NATS.
    pub nats: NatsSettings,
    /// In-flight limit, drain grace, queue group.
    pub service: ServiceSettings,
    /// The admin listener (`/health`, `/health/ready`, `/metrics`).
    pub admin: AdminSettings,
    /// Registration in Consul.
    pub consul: ConsulSettings,
    /// The service's own database: `sqlite://data/users.db` unless configured.
    pub database: DatabaseSettings,
    /// Log output.
    pub log: LogSettings,
    /// Password hashing and paging.
    pub users: UsersSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            nats: NatsSettings::default(),
            service: ServiceSettings::default(),
            admin: AdminSettings::default(),
            consul: ConsulSettings::default(),
            database: DatabaseSettings::sqlite_file("data/users.db"),
            log: LogSettings::default(),
            users: UsersSettings::default(),
        }
    }
}

/// The users service's own knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsersSettings {
    /// Threads that hash passwords (argon2 is CPU-bound by design).
    pub hash_workers: usize,
    /// Most users one `users.list` page returns.
    pub max_page_size: u32,
}

impl Default for UsersSettings {
    fn default() -> Self {
        Self {
            hash_workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            max_page_size: 100,
        }
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), Invalid> {
        self.nats.validate()?;
        self.service.validate()?;
        self.admin.validate()?;
        self.consul.validate()?;
        self.database.validate()?;
        self.log.validate()?;
        if !(1..=64).contains(&self.users.hash_workers) {
            return Err(Invalid::new(
                "users.hash_workers",
                self.users.hash_workers,
                "must be between 1 and 64",
            ));
        }
        if !(1..=1000).contains(&self.users.max_page_size) {
            return Err(Invalid::new(
                "users.max_page_size",
                self.users.max_page_size,
                "must be between 1 and 1000",
            ));
        }
        Ok(())
    }
}
