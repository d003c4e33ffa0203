use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;
use crate::{DatabaseSettings, NatsSettings, Secret, ServiceSettings};

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    nats: NatsSettings,
    service: ServiceSettings,
    database: DatabaseSettings,
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), Invalid> {
        self.nats.validate()?;
        self.service.validate()?;
        self.database.validate()
    }
}

fn env(pairs: &[(&str, &str)]) -> Loader {
    Loader::from_env(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

/// A fresh folder holding `files`, unique per test name.
fn dir_with(test: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("courier-config-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

#[test]
fn defaults_load_when_nothing_is_set() {
    let s: Settings = env(&[]).load().unwrap();
    assert_eq!(s.nats.url, "nats://127.0.0.1:4222");
    assert_eq!(s.service.max_in_flight, 256);
}

#[test]
fn ecosystem_variables_set_their_keys() {
    let s: Settings = env(&[("NATS_URL", "nats://10.0.0.1:4333")]).load().unwrap();
    assert_eq!(s.nats.url, "nats://10.0.0.1:4333");
}

#[test]
fn courier_variables_win_over_ecosystem_ones_and_are_typed() {
    let s: Settings = env(&[
        ("NATS_URL", "nats://a:1"),
        ("COURIER_NATS__URL", "nats://b:2"),
        ("COURIER_SERVICE__MAX_IN_FLIGHT", "12"),
        ("COURIER_SERVICE__DRAIN_GRACE", "1500ms"),
    ])
    .load()
    .unwrap();
    assert_eq!(s.nats.url, "nats://b:2");
    assert_eq!(s.service.max_in_flight, 12);
    assert_eq!(s.service.drain_grace, Duration::from_millis(1500));
}

#[test]
fn aliases_for_sections_the_settings_lack_are_ignored() {
    let s: Settings = env(&[("CONSUL_HTTP_ADDR", "127.0.0.1:8500")])
        .load()
        .unwrap();
    assert_eq!(s.nats.url, "nats://127.0.0.1:4222");
}

#[test]
fn files_layer_base_then_environment() {
    let dir = dir_with(
        "layers",
        &[
            (
                "base.toml",
                "[nats]\nurl = \"nats://base:1\"\n[service]\nmax_in_flight = 3\n",
            ),
            ("production.toml", "[nats]\nurl = \"nats://prod:1\"\n"),
        ],
    );
    let dir = dir.to_str().unwrap();
    let s: Settings = env(&[
        ("COURIER_CONFIG_DIR", dir),
        ("COURIER_ENVIRONMENT", "production"),
    ])
    .load()
    .unwrap();
    assert_eq!(s.nats.url, "nats://prod:1");
    assert_eq!(s.service.max_in_flight, 3);
}

#[test]
fn a_bad_number_names_the_key_value_and_variable() {
    let err = env(&[("COURIER_SERVICE__MAX_IN_FLIGHT", "lots")])
        .load::<Settings>()
        .unwrap_err();
    let invalid = err.invalid().unwrap();
    assert_eq!(invalid.key, "service.max_in_flight");
    assert_eq!(invalid.value, "lots");
    assert!(
        err.to_string()
            .contains("env COURIER_SERVICE__MAX_IN_FLIGHT"),
        "{err}"
    );
}

#[test]
fn validation_failure_names_the_key_and_origin() {
    let err = env(&[("COURIER_SERVICE__MAX_IN_FLIGHT", "0")])
        .load::<Settings>()
        .unwrap_err();
    assert_eq!(err.invalid().unwrap().key, "service.max_in_flight");
    assert_eq!(
        err.to_string(),
        "config: service.max_in_flight = \"0\": must be at least 1 \
         (from env COURIER_SERVICE__MAX_IN_FLIGHT)"
    );
}

#[test]
fn an_absurd_in_flight_limit_is_refused() {
    let err = env(&[("COURIER_SERVICE__MAX_IN_FLIGHT", "99999999999")])
        .load::<Settings>()
        .unwrap_err();
    assert_eq!(err.invalid().unwrap().key, "service.max_in_flight");
}

#[test]
fn consul_over_https_is_refused_since_the_client_speaks_http() {
    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct WithConsul {
        consul: crate::ConsulSettings,
    }
    impl Validate for WithConsul {
        fn validate(&self) -> Result<(), Invalid> {
            self.consul.validate()
        }
    }
    let err = env(&[("CONSUL_HTTP_ADDR", "https://consul:8501")])
        .load::<WithConsul>()
        .unwrap_err();
    assert_eq!(err.invalid().unwrap().key, "consul.addr");
    let ok: WithConsul = env(&[("CONSUL_HTTP_ADDR", "10.0.0.5:8500")])
        .load()
        .unwrap();
    assert_eq!(ok.consul.base_url(), "http://10.0.0.5:8500");
}

#[test]
fn a_bad_duration_names_the_key() {
    let err = env(&[("COURIER_SERVICE__DRAIN_GRACE", "soon")])
        .load::<Settings>()
        .unwrap_err();
    assert_eq!(err.invalid().unwrap().key, "service.drain_grace");
    assert_eq!(err.invalid().unwrap().value, "soon");
}

#[test]
fn a_bad_url_is_refused() {
    let err = env(&[("NATS_URL", "http://x:1")])
        .load::<Settings>()
        .unwrap_err();
    assert_eq!(err.invalid().unwrap().key, "nats.url");
}

#[test]
fn unknown_keys_in_files_are_refused_with_their_path() {
    let dir = dir_with(
        "unknown",
        &[("base.toml", "[nats]\nurll = \"nats://x:1\"\n")],
    );
    let err = env(&[("COURIER_CONFIG_DIR", dir.to_str().unwrap())])
        .load::<Settings>()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unknown field `urll`"), "{text}");
}

#[test]
fn unknown_courier_variables_are_refused() {
    let err = env(&[("COURIER_NATS__URLL", "nats://x:1")])
        .load::<Settings>()
        .unwrap_err();
    assert!(err.to_string().contains("urll"), "{err}");
}

#[test]
fn a_variable_for_another_process_s_section_is_left_alone() {
    // One environment for every process (a shell, a compose file): the gateway's settings
    // must not stop a service, whose settings have no `gateway` section.
    let settings = env(&[
        ("COURIER_GATEWAY__BIND", "127.0.0.1:8089"),
        ("COURIER_AUTH__JWT_SECRET", "s"),
    ])
    .load::<Settings>()
    .unwrap();
    assert_eq!(settings, Settings::default());
}

#[test]
fn a_missing_base_file_is_an_error_naming_it() {
    let err = env(&[("COURIER_CONFIG_DIR", "/nonexistent/courier")])
        .load::<Settings>()
        .unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/courier/base.toml"));
}

#[test]
fn database_url_errors_never_echo_credentials() {
    let err = env(&[("DATABASE_URL", "mysql://root:hunter2@db/x")])
        .load::<Settings>()
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn secrets_do_not_show_in_debug() {
    let s = DatabaseSettings {
        url: Secret::new("postgres://u:pw@h/db"),
        max_connections: 1,
        sqlite_synchronous: Default::default(),
    };
    assert!(!format!("{s:?}").contains("pw@"));
}

#[test]
fn nats_url_errors_mask_user_and_password() {
    let err = env(&[("NATS_URL", "nats://n1:4222,http://svc:hunter2@n2:4222")])
        .load::<Settings>()
        .unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("hunter2") && !text.contains("svc"), "{text}");
    assert!(text.contains("http://***:***@n2:4222"), "{text}");
    assert_eq!(err.invalid().unwrap().value, "http://***:***@n2:4222");
}

#[test]
fn database_url_errors_show_the_url_masked() {
    let err = env(&[("DATABASE_URL", "mysql://root:hunter2@db/x")])
        .load::<Settings>()
        .unwrap_err();
    assert_eq!(err.invalid().unwrap().value, "mysql://***:***@db/x");
}

#[test]
fn a_url_set_where_a_number_belongs_is_masked() {
    let err = env(&[("COURIER_SERVICE__MAX_IN_FLIGHT", "nats://svc:hunter2@h")])
        .load::<Settings>()
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn serde_messages_that_quote_a_url_are_masked() {
    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct WithLog {
        log: crate::LogSettings,
    }
    impl Validate for WithLog {
        fn validate(&self) -> Result<(), Invalid> {
            self.log.validate()
        }
    }
    let err = env(&[("COURIER_LOG__FORMAT", "nats://svc:hunter2@h")])
        .load::<WithLog>()
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.invalid().unwrap().key, "log.format");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("unknown variant"), "{text}");
}

#[test]
fn toml_syntax_errors_mask_the_line_they_quote() {
    let dir = dir_with(
        "syntax",
        &[("base.toml", "[nats]\nurl = \"nats://svc:hunter2@h:4222\n")],
    );
    let err = env(&[("COURIER_CONFIG_DIR", dir.to_str().unwrap())])
        .load::<Settings>()
        .unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    let text = err.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn nats_settings_debug_masks_the_url() {
    let s: Settings = env(&[("NATS_URL", "nats://svc:hunter2@h:4222")])
        .load()
        .unwrap();
    let shown = format!("{:?}", s.nats);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("nats://***:***@h:4222"), "{shown}");
}

#[test]
fn credentials_in_the_nats_url_are_read_back_for_the_connection() {
    let s: Settings = env(&[("NATS_URL", "nats://service:hunter2@h:4222")])
        .load()
        .unwrap();
    assert_eq!(
        s.nats.credentials(),
        Some(crate::NatsCredentials::UserPassword {
            user: "service".to_owned(),
            password: Secret::new("hunter2"),
        })
    );
}

#[test]
fn workers_default_to_one_per_core_and_refuse_absurd_counts() {
    let s: Settings = env(&[]).load().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(s.service.workers, 0);
    assert_eq!(s.service.workers(), cores);
    let s: Settings = env(&[("COURIER_SERVICE__WORKERS", "3")]).load().unwrap();
    assert_eq!(s.service.workers(), 3);
    let err = env(&[("COURIER_SERVICE__WORKERS", "100000")])
        .load::<Settings>()
        .unwrap_err();
    assert_eq!(err.invalid().unwrap().key, "service.workers");
}

#[test]
fn the_handler_time_limit_and_event_buffer_are_validated() {
    for (var, value, key) in [
        (
            "COURIER_SERVICE__HANDLER_TIMEOUT",
            "0s",
            "service.handler_timeout",
        ),
        ("COURIER_SERVICE__EVENT_BUFFER", "0", "service.event_buffer"),
    ] {
        let err = env(&[(var, value)]).load::<Settings>().unwrap_err();
        assert_eq!(err.invalid().unwrap().key, key, "{err}");
    }
}
