use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};
use toml::{Table, Value};

use crate::redact::redact_value_in;
use crate::{ConfigError, Invalid, Validate};

/// Ecosystem variables and the dotted key each one sets, when the settings have that key.
const ALIASES: &[(&str, &str)] = &[
    ("NATS_URL", "nats.url"),
    ("DATABASE_URL", "database.url"),
    ("CONSUL_HTTP_ADDR", "consul.addr"),
    ("CONSUL_HTTP_TOKEN", "consul.token"),
];

/// Prefix of the variables that set any key: `COURIER_SECTION__KEY`.
const PREFIX: &str = "COURIER_";

/// Loads a settings struct from defaults, files and environment variables.
#[derive(Debug, Clone, Default)]
pub struct Loader {
    dir: Option<PathBuf>,
    environment: String,
    env: BTreeMap<String, String>,
}

impl Loader {
    /// A loader that reads its folder and environment name from `vars` (`COURIER_CONFIG_DIR`,
    /// `COURIER_ENVIRONMENT`) and takes every other override from `vars` too.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let env: BTreeMap<String, String> = vars.into_iter().collect();
        Self {
            dir: env
                .get("COURIER_CONFIG_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            environment: env
                .get("COURIER_ENVIRONMENT")
                .cloned()
                .unwrap_or_else(|| "local".to_owned()),
            env,
        }
    }

    /// Loads `T`: defaults, then files, then variables; then `T::validate`.
    pub fn load<T>(&self) -> Result<T, ConfigError>
    where
        T: Serialize + DeserializeOwned + Default + Validate,
    {
        let mut merged = Layers::new(&T::default());
        if let Some(dir) = &self.dir {
            merged.file(&dir.join("base.toml"), true)?;
            merged.file(&dir.join(format!("{}.toml", self.environment)), false)?;
        }
        for (var, key) in ALIASES {
            if let Some(value) = self.env.get(*var) {
                if merged.has_section_of(key) {
                    merged.var(var, key, value)?;
                }
            }
        }
        // A variable whose section this process does not have belongs to another Courier
        // process sharing the environment (`COURIER_GATEWAY__BIND` beside a service): left
        // alone, as the ecosystem aliases are. An unknown key in a known section is an error.
        for (var, value) in &self.env {
            if let Some(key) = key_of_var(var).filter(|key| merged.has_section_of(key)) {
                merged.var(var, &key, value)?;
            }
        }
        let settings: T = merged.deserialize()?;
        settings.validate().map_err(|invalid| {
            let origin = merged.origin_of(&invalid.key);
            ConfigError::Invalid { invalid, origin }
        })?;
        Ok(settings)
    }
}

/// `COURIER_NATS__URL` -> `nats.url`; variables without a section separator are not keys.
fn key_of_var(var: &str) -> Option<String> {
    let rest = var.strip_prefix(PREFIX)?;
    rest.contains("__").then(|| {
        rest.split("__")
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join(".")
    })
}

/// The table being built, with the layer that set each key.
struct Layers {
    table: Table,
    origins: BTreeMap<String, String>,
}

impl Layers {
    fn new<T: Serialize>(defaults: &T) -> Self {
        // Invariant: settings structs are plain serde structs of strings, numbers, durations
        // and options, which always serialize to a TOML table.
        let table = Table::try_from(defaults).expect("settings defaults serialize to a table");
        Self {
            table,
            origins: BTreeMap::new(),
        }
    }

    fn file(&mut self, path: &Path, required: bool) -> Result<(), ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let layer: Table = text.parse().map_err(|source| ConfigError::Syntax {
            path: path.to_owned(),
            source,
        })?;
        let origin = path.display().to_string();
        merge(&mut self.table, layer, "", &origin, &mut self.origins);
        Ok(())
    }

    fn var(&mut self, var: &str, key: &str, raw: &str) -> Result<(), ConfigError> {
        let origin = format!("env {var}");
        let current = lookup(&self.table, key);
        let value = typed_like(current, raw).map_err(|reason| ConfigError::Invalid {
            invalid: Invalid::new(key, raw, reason),
            origin: origin.clone(),
        })?;
        let (parents, leaf) = match key.rsplit_once('.') {
            Some((parents, leaf)) => (Some(parents), leaf),
            None => (None, key),
        };
        let mut table = &mut self.table;
        for part in parents.into_iter().flat_map(|p| p.split('.')) {
            let entry = table
                .entry(part.to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            table = match entry {
                Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Invalid {
                        invalid: Invalid::new(key, raw, format!("`{part}` is not a section")),
                        origin,
                    })
                }
            };
        }
        table.insert(leaf.to_owned(), value);
        self.origins.insert(key.to_owned(), origin);
        Ok(())
    }

    fn has_section_of(&self, key: &str) -> bool {
        let section = key.split('.').next().unwrap_or(key);
        self.table.contains_key(section)
    }

    fn origin_of(&self, key: &str) -> String {
        self.origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| "default".to_owned())
    }

    fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(Value::Table(self.table.clone())).map_err(|e| {
            let key = e.path().to_string();
            let value = lookup(&self.table, &key).map(render).unwrap_or_default();
            // serde's message may quote the value (`unknown variant ...`): mask it there too.
            let reason = redact_value_in(&e.inner().to_string(), &value);
            ConfigError::Invalid {
                invalid: Invalid::new(&key, value, reason),
                origin: self.origin_of(&key),
            }
        })
    }
}

/// Merges `layer` into `base`, recording the origin of every leaf it sets.
fn merge(
    base: &mut Table,
    layer: Table,
    prefix: &str,
    origin: &str,
    origins: &mut BTreeMap<String, String>,
) {
    for (name, value) in layer {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match (base.get_mut(&name), value) {
            (Some(Value::Table(inner)), Value::Table(layer)) => {
                merge(inner, layer, &key, origin, origins)
            }
            (_, value) => {
                origins.insert(key, origin.to_owned());
                base.insert(name, value);
            }
        }
    }
}

fn lookup<'a>(table: &'a Table, key: &str) -> Option<&'a Value> {
    let mut parts = key.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses an environment value as the type the key already has (a string when unknown).
fn typed_like(current: Option<&Value>, raw: &str) -> Result<Value, String> {
    match current {
        Some(Value::Integer(_)) => raw
            .trim()
            .parse()
            .map(Value::Integer)
            .map_err(|_| "expected a whole number".into()),
        Some(Value::Float(_)) => raw
            .trim()
            .parse()
            .map(Value::Float)
            .map_err(|_| "expected a number".into()),
        Some(Value::Boolean(_)) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" => Ok(Value::Boolean(false)),
            _ => Err("expected true or false".into()),
        },
        Some(Value::Array(_)) => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
        Some(Value::Table(_)) => Err("is a section, not a value".into()),
        _ => Ok(Value::String(raw.to_owned())),
    }
}

#[cfg(test)]
mod tests;
