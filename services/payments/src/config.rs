//! The payments service's settings: the shared groups plus its own section, `payments`.

use std::time::Duration;

use courier_config::{Invalid, Validate};
use serde::{Deserialize, Serialize};

courier_runtime::service_settings! {
    /// Everything `courier-payments` reads at start (see `courier_config` for the layers).
    pub struct Settings {
        database: "data/payments.db",
        /// The decline rule and the simulated provider.
        payments: PaymentsSettings,
    }
}

/// Longest [`PaymentsSettings::latency`]: more would outlast any caller's time-out.
pub const MAX_LATENCY: Duration = Duration::from_secs(60);

/// The payments service's own knobs (`[payments]`, `COURIER_PAYMENTS__*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsSettings {
    /// Most a user may have charged at once, net of refunds, in minor units (100000 unless
    /// set): a charge that would take the user's net total above it is declined.
    pub user_limit: i64,
    /// The simulated provider's think time, added before each charge decides (humantime,
    /// `250ms`; 0s unless set). Taken before the transaction, so it holds no lock.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Failure injection: the first this many charge attempts of each order id answer 503
    /// `provider unavailable` and write nothing (0 unless set), so that a caller's retries
    /// can be tested. Counted in memory, per instance: a restart, or another instance,
    /// counts from zero again. That is enough for a test knob; keep it 0 in production.
    pub fail_first_attempts: u32,
}

impl Default for PaymentsSettings {
    fn default() -> Self {
        Self {
            user_limit: 100_000,
            latency: Duration::ZERO,
            fail_first_attempts: 0,
        }
    }
}

impl Validate for PaymentsSettings {
    fn validate(&self) -> Result<(), Invalid> {
        if self.user_limit < 1 {
            return Err(Invalid::new(
                "payments.user_limit",
                self.user_limit,
                "must be 1 or more (minor units)",
            ));
        }
        if self.latency > MAX_LATENCY {
            let latency = humantime_serde::re::humantime::format_duration(self.latency);
            return Err(Invalid::new(
                "payments.latency",
                latency,
                "must be at most 60s",
            ));
        }
        if self.fail_first_attempts > 100 {
            return Err(Invalid::new(
                "payments.fail_first_attempts",
                self.fail_first_attempts,
                "must be at most 100 (a test knob)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_config::Loader;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Loader::from_env(vars).load().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_a_fast_reliable_provider_and_a_limit_of_100000() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.payments, PaymentsSettings::default());
        assert_eq!(settings.payments.user_limit, 100_000);
        assert_eq!(settings.database.url.expose(), "sqlite://data/payments.db");
    }

    #[test]
    fn the_knobs_come_from_the_environment() {
        let settings = load(&[
            ("COURIER_PAYMENTS__LATENCY", "250ms"),
            ("COURIER_PAYMENTS__FAIL_FIRST_ATTEMPTS", "2"),
            ("COURIER_PAYMENTS__USER_LIMIT", "500"),
        ])
        .unwrap();
        let expected = PaymentsSettings {
            user_limit: 500,
            latency: Duration::from_millis(250),
            fail_first_attempts: 2,
        };
        assert_eq!(settings.payments, expected);
    }

    #[test]
    fn bad_knobs_are_refused_by_name() {
        for (key, value, name) in [
            ("COURIER_PAYMENTS__USER_LIMIT", "0", "payments.user_limit"),
            ("COURIER_PAYMENTS__LATENCY", "2m", "payments.latency"),
            ("COURIER_PAYMENTS__LATENCY", "soon", "latency"),
            (
                "COURIER_PAYMENTS__FAIL_FIRST_ATTEMPTS",
                "101",
                "payments.fail_first_attempts",
            ),
        ] {
            let err = load(&[(key, value)]).unwrap_err();
            assert!(err.contains(name), "{key}={value}: {err}");
        }
    }
}
