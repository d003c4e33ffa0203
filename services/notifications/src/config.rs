//! The notifications service's own settings (section `notifications`).

use std::time::Duration;

use courier_config::{Invalid, Secret, Validate};
use serde::{Deserialize, Serialize};

/// Section `notifications`:
///
/// ```toml
/// [notifications]
/// smtp_url = "smtp://127.0.0.1:2525"   # unset: notifications are stored, not mailed
/// from = "Courier <no-reply@courier.example>"
/// smtp_timeout = "10s"
/// max_page_size = 100
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsSettings {
    /// The SMTP server that mails notifications: `smtp://[user:password@]host[:port]` (plain,
    /// for a relay on the same host or network), `smtp://host:587?tls=required` (STARTTLS)
    /// or `smtps://host:465` (TLS), with public CA roots. Unset: stored only, never mailed.
    pub smtp_url: Option<Secret>,
    /// The sender of every mail.
    pub from: String,
    /// How long one mail may take (connect, dialogue); it stays under the handler's time
    /// limit (`service.handler_timeout`, at most nine tenths of `events.ack_wait`).
    #[serde(with = "humantime_serde")]
    pub smtp_timeout: Duration,
    /// Most notifications one `notifications.list` page returns.
    pub max_page_size: u32,
}

impl Default for NotificationsSettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: "Courier <no-reply@courier.example>".to_owned(),
            smtp_timeout: Duration::from_secs(10),
            max_page_size: 100,
        }
    }
}

impl Validate for NotificationsSettings {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(url) = &self.smtp_url {
            if let Err(e) = crate::mailer::transport(url.expose(), self.smtp_timeout) {
                // `Invalid` hides the URL's credentials.
                return Err(Invalid::new(
                    "notifications.smtp_url",
                    url.expose(),
                    e.to_string(),
                ));
            }
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            let reason = "must be a mailbox: `Name <address>` or `address`";
            return Err(Invalid::new("notifications.from", &self.from, reason));
        }
        if self.smtp_timeout.is_zero() {
            return Err(Invalid::new(
                "notifications.smtp_timeout",
                "0s",
                "must be above 0",
            ));
        }
        if !(1..=1000).contains(&self.max_page_size) {
            let reason = "must be between 1 and 1000";
            return Err(Invalid::new(
                "notifications.max_page_size",
                self.max_page_size,
                reason,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(change: impl FnOnce(&mut NotificationsSettings)) -> Result<(), Invalid> {
        let mut settings = NotificationsSettings::default();
        change(&mut settings);
        settings.validate()
    }

    #[test]
    fn the_defaults_are_valid_and_mail_nothing() {
        assert!(with(|_| {}).is_ok());
        assert_eq!(NotificationsSettings::default().smtp_url, None);
    }

    #[test]
    fn smtp_urls_are_taken_and_others_refused_without_showing_their_password() {
        let url = |u: &'static str| {
            move |s: &mut NotificationsSettings| {
                s.smtp_url = Some(Secret::new(u));
            }
        };
        assert!(with(url("smtp://127.0.0.1:2525")).is_ok());
        assert!(with(url("smtp://mailer:pw@mail.internal")).is_ok());
        assert!(with(url("smtps://mailer:pw@mail.example")).is_ok());
        let refused = with(url("http://mailer:s3cret@mail.example")).unwrap_err();
        assert!(!refused.to_string().contains("s3cret"), "{refused}");
        assert!(with(url("not a url")).is_err());
    }

    #[test]
    fn the_sender_must_be_a_mailbox() {
        assert!(with(|s| s.from = "no-reply@courier.example".into()).is_ok());
        assert!(with(|s| s.from = "Courier".into()).is_err());
    }
}
