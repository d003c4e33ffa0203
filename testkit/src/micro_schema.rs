//! Validation of `$SRV` replies against the official NATS micro v1 schemas.
//!
//! The schemas are read from `$COURIER_MICRO_SCHEMAS`, else `<workspace>/../shared/schemas/micro-v1/`
//! (never copied into the project). Where neither exists, as in a user's clone, the check falls
//! back to our own reading of the required fields and their patterns, unless
//! `COURIER_REQUIRE_MICRO_SCHEMAS` is set (CI sets it), when a missing folder fails the test.

use std::path::PathBuf;

use serde_json::Value;

/// Which reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `$SRV.PING`.
    Ping,
    /// `$SRV.INFO`.
    Info,
    /// `$SRV.STATS`.
    Stats,
}

impl Kind {
    fn file(self) -> &'static str {
        match self {
            Self::Ping => "ping_response.json",
            Self::Info => "info_response.json",
            Self::Stats => "stats_response.json",
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Self::Ping => "io.nats.micro.v1.ping_response",
            Self::Info => "io.nats.micro.v1.info_response",
            Self::Stats => "io.nats.micro.v1.stats_response",
        }
    }
}

/// The schema folder, when there is one.
pub fn schema_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("COURIER_MICRO_SCHEMAS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("../shared/schemas/micro-v1"));
    dir.join("ping_response.json").is_file().then_some(dir)
}

/// Panics, listing every violation, unless `reply` is a valid `kind` reply.
pub fn assert_valid(kind: Kind, reply: &Value) {
    let errors = match schema_dir() {
        Some(dir) => against_schema(&dir.join(kind.file()), reply),
        None => {
            assert!(
                std::env::var_os("COURIER_REQUIRE_MICRO_SCHEMAS").is_none(),
                "COURIER_REQUIRE_MICRO_SCHEMAS is set but no schema folder was found \
                 (../shared/schemas/micro-v1 or $COURIER_MICRO_SCHEMAS)"
            );
            eprintln!("note: no micro-v1 schema folder; checking required fields only");
            fallback(kind, reply)
        }
    };
    assert!(
        errors.is_empty(),
        "{kind:?} reply fails the micro-v1 schema: {errors:#?}\nreply: {reply:#}"
    );
}

fn against_schema(path: &std::path::Path, reply: &Value) -> Vec<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let schema: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("compile {}: {e}", path.display()));
    validator
        .iter_errors(reply)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect()
}

/// Our own reading of the schemas' required fields.
fn fallback(kind: Kind, reply: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let mut need = |field: &str, ok: bool| {
        if !ok {
            errors.push(format!("{field} missing or malformed"));
        }
    };
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    need(
        "type",
        s(reply, "type").as_deref() == Some(kind.type_name()),
    );
    need("name", s(reply, "name").is_some_and(|n| name_ok(&n)));
    need("id", s(reply, "id").is_some_and(|i| !i.is_empty()));
    need(
        "version",
        s(reply, "version").is_some_and(|v| v.split('.').count() >= 3),
    );
    need(
        "metadata",
        reply.get("metadata").is_none_or(|m| {
            m.is_null()
                || m.as_object()
                    .is_some_and(|o| o.values().all(Value::is_string))
        }),
    );
    match kind {
        Kind::Ping => {}
        Kind::Info => {
            need("description", s(reply, "description").is_some());
            let endpoints = reply
                .get("endpoints")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for e in &endpoints {
                need(
                    "endpoints[].name",
                    s(e, "name").is_some_and(|n| name_ok(&n)),
                );
                need(
                    "endpoints[].subject",
                    s(e, "subject").is_some_and(|n| !n.is_empty()),
                );
            }
        }
        Kind::Stats => {
            need(
                "started",
                s(reply, "started").is_some_and(|t| t.contains('T')),
            );
            let endpoints = reply.get("endpoints").and_then(Value::as_array);
            need("endpoints", endpoints.is_some());
            for e in endpoints.into_iter().flatten() {
                need(
                    "endpoints[].name",
                    s(e, "name").is_some_and(|n| name_ok(&n)),
                );
                need("endpoints[].subject", s(e, "subject").is_some());
                need("endpoints[].last_error", s(e, "last_error").is_some());
                for n in [
                    "num_requests",
                    "num_errors",
                    "processing_time",
                    "average_processing_time",
                ] {
                    need(n, e.get(n).is_some_and(|v| v.as_i64().is_some()));
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good_stats() -> Value {
        json!({
            "type": "io.nats.micro.v1.stats_response", "name": "users", "id": "abc", "version": "0.1.0",
            "metadata": {}, "started": "2026-11-25T17:00:00.000000000Z",
            "endpoints": [{"name": "get", "subject": "users.get", "num_requests": 1, "num_errors": 0,
                           "last_error": "", "processing_time": 5, "average_processing_time": 5}]
        })
    }

    #[test]
    fn a_good_reply_passes_both_checks() {
        assert!(fallback(Kind::Stats, &good_stats()).is_empty());
        if let Some(dir) = schema_dir() {
            assert!(against_schema(&dir.join(Kind::Stats.file()), &good_stats()).is_empty());
        }
    }

    #[test]
    fn a_bad_reply_fails_both_checks() {
        let mut bad = good_stats();
        bad["endpoints"][0]
            .as_object_mut()
            .unwrap()
            .remove("last_error");
        bad["started"] = json!("yesterday");
        assert!(!fallback(Kind::Stats, &bad).is_empty());
        if let Some(dir) = schema_dir() {
            let errors = against_schema(&dir.join(Kind::Stats.file()), &bad);
            assert!(errors.len() >= 2, "{errors:?}");
        }
    }
}
