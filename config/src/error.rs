use std::path::PathBuf;

use crate::redact::{redact_lines, redact_url};

/// Why a value was refused: the dotted key, the value as given and the reason.
///
/// The value is shown through [`redact_url`], whatever the key: a URL with a password may land
/// in any key by mistake, and these lines end up in logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {:?}: {reason}", redact_url(.value))]
pub struct Invalid {
    /// Dotted key, such as `nats.url`.
    pub key: String,
    /// The refused value, as text, with URL credentials masked by [`Invalid::new`].
    pub value: String,
    /// Why it was refused, for a human.
    pub reason: String,
}

impl Invalid {
    /// Builds an `Invalid` from anything printable, masking credentials in the value.
    pub fn new(key: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: redact_url(&value.to_string()),
            reason: reason.into(),
        }
    }
}

/// Everything that can stop configuration from loading.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration file could not be read.
    #[error("config: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file is not valid TOML. The parser quotes the offending line, which may
    /// hold a URL with a password, so the message shows it redacted.
    #[error("config: {path} is not valid TOML: {}", redact_lines(&.source.to_string()))]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// A value has the wrong type, is unknown, or fails validation.
    #[error("config: {invalid} (from {origin})")]
    Invalid {
        /// The key, value and reason.
        invalid: Invalid,
        /// Which layer set the value: `default`, a file path, or an environment variable.
        origin: String,
    },
}

impl ConfigError {
    /// The key and reason, when the error is about one value.
    pub fn invalid(&self) -> Option<&Invalid> {
        match self {
            Self::Invalid { invalid, .. } => Some(invalid),
            _ => None,
        }
    }
}
