//! Mail by SMTP (lettre on tokio): one mail per stored notification, counted by
//! outcome in `courier_notifications_mails_total`.

use std::time::Duration;

use courier_contracts::notifications::Notification;
use lettre::message::Mailbox;
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use prometheus::{IntCounterVec, Opts, Registry};

use crate::config::NotificationsSettings;

/// Mails counted by outcome: `sent` (the SMTP server accepted it), `failed` (it refused, or
/// could not be reached), `no_address` (the user's address could not be had).
pub const MAILS_TOTAL: &str = "courier_notifications_mails_total";

/// Every outcome of [`MAILS_TOTAL`].
pub const OUTCOMES: [&str; 3] = ["sent", "failed", "no_address"];

/// Why a mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The recipient's address is not one.
    #[error("invalid recipient address: {0}")]
    Address(#[source] lettre::address::AddressError),
    /// The message could not be built.
    #[error("cannot build the mail: {0}")]
    Build(#[source] lettre::error::Error),
    /// The SMTP server refused the mail or could not be reached.
    #[error("SMTP: {0}")]
    Smtp(#[source] lettre::transport::smtp::Error),
}

/// How mails are counted.
#[derive(Clone, Debug)]
pub struct MailCounter(IntCounterVec);

impl MailCounter {
    /// The counter, registered in `registry` (a process registers it once), every outcome at
    /// 0: a system that mails nothing (no `notifications.smtp_url`) shows it too.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let opts = Opts::new(MAILS_TOTAL, "Notification mails, by outcome.");
        let counter = IntCounterVec::new(opts, &["outcome"])?;
        for outcome in OUTCOMES {
            counter.with_label_values(&[outcome]);
        }
        registry.register(Box::new(counter.clone()))?;
        Ok(Self(counter))
    }

    /// Counts one mail that ended as `outcome` (`sent`, `failed`, `no_address`).
    pub fn count(&self, outcome: &'static str) {
        self.0.with_label_values(&[outcome]).inc();
    }
}

/// Sends notifications by mail. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// The transport `url` names (`smtp://host:port`), each mail within `timeout`; no connection
/// is made until the first mail.
pub fn transport(
    url: &str,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
    let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?;
    Ok(builder.timeout(Some(timeout)).build())
}

impl Mailer {
    /// The mailer the settings configure; `None` without `notifications.smtp_url`. The
    /// settings were validated, so a URL or sender that does not parse is an error here.
    pub fn new(settings: &NotificationsSettings) -> anyhow::Result<Option<Self>> {
        let Some(url) = &settings.smtp_url else {
            return Ok(None);
        };
        let transport = transport(url.expose(), settings.smtp_timeout)?;
        let from = settings.from.parse()?;
        Ok(Some(Self { transport, from }))
    }

    /// Mails `notification` to `to`; `Ok` once the SMTP server has accepted it.
    pub async fn send(&self, to: &str, notification: &Notification) -> Result<(), MailError> {
        let to: Mailbox = to
            .parse::<lettre::Address>()
            .map_err(MailError::Address)?
            .into();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(notification.subject_line.as_str())
            .body(notification.body.clone())
            .map_err(MailError::Build)?;
        self.transport
            .send(message)
            .await
            .map_err(MailError::Smtp)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_a_series_before_the_first_mail() {
        let registry = Registry::new();
        let mails = MailCounter::register(&registry).unwrap();
        mails.count("sent");
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        for (outcome, count) in [("sent", 1), ("failed", 0), ("no_address", 0)] {
            let line = format!(r#"{MAILS_TOTAL}{{outcome="{outcome}"}} {count}"#);
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
