//! Dead letters: events a consumer gave up on, kept with why, for people to read and replay.

use async_nats::HeaderMap;
use courier_config::events::DEAD_LETTER_PREFIX;

use crate::error::truncate;

/// Headers a dead letter carries besides the original's.
pub mod header {
    /// Why it was given up: see [`super::Reason::label`].
    pub const REASON: &str = "Courier-Dead-Letter-Reason";
    /// The last error, one line.
    pub const ERROR: &str = "Courier-Dead-Letter-Error";
    /// The durable consumer that gave up.
    pub const CONSUMER: &str = "Courier-Dead-Letter-Consumer";
    /// The subject the event was published on.
    pub const ORIGINAL_SUBJECT: &str = "Courier-Original-Subject";
    /// The event's sequence in its stream.
    pub const ORIGINAL_SEQUENCE: &str = "Courier-Original-Sequence";
    /// How many times it was delivered.
    pub const DELIVERED: &str = "Courier-Delivered";
    /// The event's id ([`crate::durable::Delivery::id`]); the dead letter's own `Nats-Msg-Id`
    /// is `<consumer>:<id>`, so two consumers giving up the same event both keep theirs.
    pub const EVENT_ID: &str = "Courier-Event-Id";
}

/// Why an event went to the dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its handler still asked to retry (or timed out, or crashed) on its last delivery.
    MaxDeliver,
    /// Its handler rejected it.
    Rejected,
    /// Its payload is not an event of the subscription's type, or its `Content-Type` unknown.
    DecodeError,
}

impl Reason {
    /// The `Courier-Dead-Letter-Reason` value.
    pub fn label(self) -> &'static str {
        match self {
            Self::MaxDeliver => "max_deliver",
            Self::Rejected => "rejected",
            Self::DecodeError => "decode_error",
        }
    }
}

/// `deadletter.<service>.<durable name>`: one subject per consumer, so a consumer's dead
/// letters can be read (and replayed) apart.
pub fn dead_letter_subject(service: &str, durable: &str) -> String {
    format!("{DEAD_LETTER_PREFIX}.{service}.{durable}")
}

/// What the dead letter says about the event it carries.
pub(crate) struct Circumstances<'a> {
    pub(crate) reason: Reason,
    pub(crate) error: &'a str,
    pub(crate) consumer: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) sequence: u64,
    pub(crate) delivered: u64,
    pub(crate) event_id: &'a str,
}

/// The longest error kept in a header.
const ERROR_HEADER_BYTES: usize = 256;

/// The original's headers, but for JetStream's own (`Nats-*`: its id, expectations), with the
/// circumstances added.
pub(crate) fn headers(original: Option<&HeaderMap>, c: &Circumstances<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, values) in original.into_iter().flat_map(HeaderMap::iter) {
        if name.to_string().to_ascii_lowercase().starts_with("nats-") {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    let one_line: String = truncate(c.error, ERROR_HEADER_BYTES)
        .chars()
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .collect();
    headers.insert(header::REASON, c.reason.label());
    headers.insert(header::ERROR, one_line);
    headers.insert(header::CONSUMER, c.consumer);
    headers.insert(header::ORIGINAL_SUBJECT, c.subject);
    headers.insert(header::ORIGINAL_SEQUENCE, c.sequence.to_string());
    headers.insert(header::DELIVERED, c.delivered.to_string());
    headers.insert(header::EVENT_ID, c.event_id);
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::header as meta;

    #[test]
    fn a_dead_letter_keeps_the_original_headers_but_jetstreams_and_says_why() {
        let mut original = HeaderMap::new();
        original.insert(meta::REQUEST_ID, "r1");
        original.insert(meta::CONTENT_TYPE, "application/json");
        original.insert("Nats-Msg-Id", "e1");
        let c = Circumstances {
            reason: Reason::Rejected,
            error: "bad\nevent",
            consumer: "users_welcome",
            subject: "events.users.created",
            sequence: 7,
            delivered: 2,
            event_id: "e1",
        };
        let h = headers(Some(&original), &c);
        assert_eq!(h.get(meta::REQUEST_ID).unwrap().as_str(), "r1");
        assert!(h.get("Nats-Msg-Id").is_none());
        assert_eq!(h.get(header::REASON).unwrap().as_str(), "rejected");
        assert_eq!(h.get(header::ERROR).unwrap().as_str(), "bad event");
        assert_eq!(h.get(header::DELIVERED).unwrap().as_str(), "2");
        assert_eq!(
            h.get(header::ORIGINAL_SUBJECT).unwrap().as_str(),
            "events.users.created"
        );
    }

    #[test]
    fn each_consumer_has_its_dead_letter_subject() {
        assert_eq!(
            dead_letter_subject("users", "users_welcome"),
            "deadletter.users.users_welcome"
        );
    }
}
