//! The users service's settings: the shared groups plus its own.

use courier_config::{Invalid, Validate};
use serde::{Deserialize, Serialize};

use crate::domain;

courier_runtime::service_settings! {
    /// Everything `courier-users` reads at start (see `courier_config` for the layers).
    pub struct Settings {
        database: "data/users.db",
        /// Password hashing and paging.
        users: UsersSettings,
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
    /// Emails whose users get role `admin` when they are created (compared lower-cased);
    /// everyone else gets no roles. Empty by default. In TOML a list
    /// (`admin_emails = ["ada@example.com"]`); from the environment comma-separated
    /// (`COURIER_USERS__ADMIN_EMAILS=ada@example.com,grace@example.com`). Only creation
    /// grants the role: emails are not verified, so create these accounts before the public
    /// `POST /users` route is open, or whoever registers an address first gets the role.
    pub admin_emails: Vec<String>,
}

impl Default for UsersSettings {
    fn default() -> Self {
        Self {
            hash_workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            max_page_size: 100,
            admin_emails: Vec::new(),
        }
    }
}

impl UsersSettings {
    /// [`Self::admin_emails`] as users' emails are stored: trimmed and lower-cased.
    pub fn normalized_admin_emails(&self) -> Vec<String> {
        let normal = |email: &String| domain::valid_email(email).ok();
        self.admin_emails.iter().filter_map(normal).collect()
    }
}

impl Validate for UsersSettings {
    fn validate(&self) -> Result<(), Invalid> {
        if !(1..=64).contains(&self.hash_workers) {
            return Err(Invalid::new(
                "users.hash_workers",
                self.hash_workers,
                "must be between 1 and 64",
            ));
        }
        if !(1..=1000).contains(&self.max_page_size) {
            return Err(Invalid::new(
                "users.max_page_size",
                self.max_page_size,
                "must be between 1 and 1000",
            ));
        }
        for email in &self.admin_emails {
            if domain::valid_email(email).is_err() {
                return Err(Invalid::new(
                    "users.admin_emails",
                    email,
                    "is not an email address (local@domain.tld)",
                ));
            }
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
    fn admin_emails_come_from_the_environment_comma_separated() {
        let settings = load(&[(
            "COURIER_USERS__ADMIN_EMAILS",
            "ada@example.com, Grace@Example.COM",
        )])
        .unwrap();
        assert_eq!(
            settings.users.normalized_admin_emails(),
            ["ada@example.com", "grace@example.com"]
        );
        assert!(load(&[])
            .unwrap()
            .users
            .normalized_admin_emails()
            .is_empty());
    }

    #[test]
    fn an_admin_email_that_is_no_email_is_refused_by_name() {
        let err = load(&[("COURIER_USERS__ADMIN_EMAILS", "ada@example.com,ops")]).unwrap_err();
        assert!(
            err.contains("users.admin_emails") && err.contains("ops"),
            "{err}"
        );
    }
}
