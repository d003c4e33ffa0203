//! The settings every service reads, declared once: [`service_settings!`](crate::service_settings)
//! writes a service's `Settings` struct with the shared groups and the service's own.

use courier_config::{
    AdminSettings, ConsulSettings, DatabaseSettings, EventsSettings, LogSettings, NatsSettings,
    ServiceSettings,
};

/// The shared groups of a service's settings, as [`crate::Kit`] and [`crate::main`] read them.
pub trait Common {
    /// How to reach NATS.
    fn nats(&self) -> &NatsSettings;
    /// In-flight limit, drain grace, queue group, workers.
    fn service(&self) -> &ServiceSettings;
    /// The admin listener (`/health`, `/health/ready`, `/metrics`).
    fn admin(&self) -> &AdminSettings;
    /// Registration in Consul.
    fn consul(&self) -> &ConsulSettings;
    /// The service's own database.
    fn database(&self) -> &DatabaseSettings;
    /// Durable events: streams and consumers.
    fn events(&self) -> &EventsSettings;
    /// Log output.
    fn log(&self) -> &LogSettings;
    /// How to reach NATS, to change (tests point a service at their own server).
    fn nats_mut(&mut self) -> &mut NatsSettings;
    /// The database, to change.
    fn database_mut(&mut self) -> &mut DatabaseSettings;
    /// Consul registration, to change.
    fn consul_mut(&mut self) -> &mut ConsulSettings;
}

/// Declares a service's `Settings`: the shared groups (`nats`, `service`, `admin`, `consul`,
/// `database` with the given default SQLite file, `events`, `log`) and the service's own
/// sections, each a type with `Default`, serde and [`courier_config::Validate`]. The struct
/// loads with [`courier_config::Loader`] (unknown keys refused), validates every group, and
/// implements [`Common`].
///
/// ```ignore
/// courier_runtime::service_settings! {
///     /// Everything `courier-products` reads at start.
///     pub struct Settings {
///         database: "data/products.db",
///         /// Paging.
///         products: ProductsSettings,
///     }
/// }
/// ```
#[macro_export]
macro_rules! service_settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            database: $file:literal,
            $( $(#[$field_meta:meta])* $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            /// How to reach NATS.
            pub nats: courier_config::NatsSettings,
            /// In-flight limit, drain grace, queue group, workers.
            pub service: courier_config::ServiceSettings,
            /// The admin listener (`/health`, `/health/ready`, `/metrics`).
            pub admin: courier_config::AdminSettings,
            /// Registration in Consul.
            pub consul: courier_config::ConsulSettings,
            #[doc = concat!("The service's own database: `sqlite://", $file, "` unless configured.")]
            pub database: courier_config::DatabaseSettings,
            /// Durable events: streams and consumers.
            pub events: courier_config::EventsSettings,
            /// Log output.
            pub log: courier_config::LogSettings,
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    nats: Default::default(),
                    service: Default::default(),
                    admin: Default::default(),
                    consul: Default::default(),
                    database: courier_config::DatabaseSettings::sqlite_file($file),
                    events: Default::default(),
                    log: Default::default(),
                    $( $field: Default::default(), )*
                }
            }
        }

        impl courier_config::Validate for $name {
            fn validate(&self) -> Result<(), courier_config::Invalid> {
                self.nats.validate()?;
                self.service.validate()?;
                self.admin.validate()?;
                self.consul.validate()?;
                self.database.validate()?;
                self.events.validate()?;
                self.log.validate()?;
                $( courier_config::Validate::validate(&self.$field)?; )*
                Ok(())
            }
        }

        impl $crate::Common for $name {
            fn nats(&self) -> &courier_config::NatsSettings { &self.nats }
            fn service(&self) -> &courier_config::ServiceSettings { &self.service }
            fn admin(&self) -> &courier_config::AdminSettings { &self.admin }
            fn consul(&self) -> &courier_config::ConsulSettings { &self.consul }
            fn database(&self) -> &courier_config::DatabaseSettings { &self.database }
            fn events(&self) -> &courier_config::EventsSettings { &self.events }
            fn log(&self) -> &courier_config::LogSettings { &self.log }
            fn nats_mut(&mut self) -> &mut courier_config::NatsSettings { &mut self.nats }
            fn database_mut(&mut self) -> &mut courier_config::DatabaseSettings { &mut self.database }
            fn consul_mut(&mut self) -> &mut courier_config::ConsulSettings { &mut self.consul }
        }
    };
}
