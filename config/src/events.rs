//! Durable events: the JetStream streams that keep them and how consumers take them.
//!
//! Core NATS events are at most once; durable ones are stored in a stream (deduplicated by
//! `Nats-Msg-Id` within a window) and delivered to durable consumers until acknowledged,
//! a bounded number of times, after which they go to a dead-letter stream.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Invalid, Validate};

/// First token of every dead-letter subject: `deadletter.<service>.<consumer>`. The events
/// stream may not take these subjects, so the two streams never overlap.
pub const DEAD_LETTER_PREFIX: &str = "deadletter";

/// Where durable events are stored and how they are delivered (section `events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSettings {
    /// Name of the JetStream stream that stores the events.
    pub stream: String,
    /// Subjects the events stream takes (wildcards allowed).
    pub subjects: Vec<String>,
    /// `file` (survives a server restart) or `memory`.
    pub storage: Storage,
    /// Copies of each stream kept by a JetStream cluster (1 to 5; 3 survives one server
    /// lost). A single server takes only 1.
    pub replicas: usize,
    /// How long the stream remembers a `Nats-Msg-Id`: a publish retried within it is stored
    /// once. At most `max_age`.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// How long an event is kept, handled or not; `0s` keeps events until `max_bytes`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Most bytes the events stream keeps (the oldest go first); -1 for no limit.
    pub max_bytes: i64,
    /// Name of the stream that keeps dead letters, on subjects `deadletter.>`.
    pub dead_letter_stream: String,
    /// Deliveries of one event before it goes to the dead letters.
    pub max_deliver: u32,
    /// How long the server waits for an acknowledgement before it delivers an event again.
    /// A handler's time limit is capped at it.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Events delivered and not yet acknowledged per consumer, over all instances: past it the
    /// server delivers no more (backpressure).
    pub max_ack_pending: u32,
    /// Delay before redelivery n (the n-th entry) of an event whose handler asked to retry;
    /// the last entry serves for later ones, an empty list redelivers at once.
    #[serde(with = "durations")]
    pub backoff: Vec<Duration>,
}

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk: events survive a server restart.
    File,
    /// In memory: faster, lost when the server stops.
    Memory,
}

impl Default for EventsSettings {
    fn default() -> Self {
        Self {
            stream: "COURIER_EVENTS".to_owned(),
            subjects: vec!["events.>".to_owned()],
            storage: Storage::File,
            replicas: 1,
            duplicate_window: Duration::from_secs(2 * 60),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: -1,
            dead_letter_stream: "COURIER_DEAD_LETTERS".to_owned(),
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 256,
            backoff: [1, 5, 30].map(Duration::from_secs).to_vec(),
        }
    }
}

impl EventsSettings {
    /// The delay before the redelivery that follows delivery `delivered` (1 for the first);
    /// `None` to redeliver at once.
    pub fn backoff_after(&self, delivered: u64) -> Option<Duration> {
        let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(usize::MAX);
        self.backoff.get(index).or(self.backoff.last()).copied()
    }
}

/// Most deliveries or pending acknowledgements we accept: beyond it is a typo.
const MAX_COUNT: u32 = 1_000_000;

impl Validate for EventsSettings {
    fn validate(&self) -> Result<(), Invalid> {
        stream_name("events.stream", &self.stream)?;
        stream_name("events.dead_letter_stream", &self.dead_letter_stream)?;
        if self.stream == self.dead_letter_stream {
            return Err(Invalid::new(
                "events.dead_letter_stream",
                &self.dead_letter_stream,
                "must differ from events.stream",
            ));
        }
        self.validate_subjects()?;
        self.validate_limits()?;
        if !(1..=MAX_COUNT).contains(&self.max_deliver) {
            return Err(Invalid::new(
                "events.max_deliver",
                self.max_deliver,
                format!("must be between 1 and {MAX_COUNT}"),
            ));
        }
        if !(1..=MAX_COUNT).contains(&self.max_ack_pending) {
            return Err(Invalid::new(
                "events.max_ack_pending",
                self.max_ack_pending,
                format!("must be between 1 and {MAX_COUNT}"),
            ));
        }
        if self.ack_wait < Duration::from_millis(100) {
            return Err(Invalid::new(
                "events.ack_wait",
                humantime_serde::re::humantime::format_duration(self.ack_wait),
                "must be at least 100ms",
            ));
        }
        Ok(())
    }
}

impl EventsSettings {
    fn validate_subjects(&self) -> Result<(), Invalid> {
        if self.subjects.is_empty() {
            return Err(Invalid::new(
                "events.subjects",
                "[]",
                "must name at least one subject",
            ));
        }
        for subject in &self.subjects {
            let tokens: Vec<&str> = subject.split('.').collect();
            let last = tokens.len() - 1;
            let valid = tokens.iter().enumerate().all(|(i, t)| {
                !t.is_empty()
                    && !t.contains(char::is_whitespace)
                    && (*t == "*" || (*t == ">" && i == last) || !t.contains(['*', '>']))
            });
            if !valid {
                return Err(Invalid::new(
                    "events.subjects",
                    subject,
                    "is not a NATS subject",
                ));
            }
            if matches!(tokens[0], DEAD_LETTER_PREFIX | "*" | ">") || subject.starts_with('$') {
                return Err(Invalid::new(
                    "events.subjects",
                    subject,
                    format!("must not take {DEAD_LETTER_PREFIX}.> or $ subjects"),
                ));
            }
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), Invalid> {
        let show = humantime_serde::re::humantime::format_duration;
        if !(1..=5).contains(&self.replicas) {
            return Err(Invalid::new(
                "events.replicas",
                self.replicas,
                "must be 1 to 5 (the most JetStream keeps)",
            ));
        }
        if self.duplicate_window.is_zero() {
            return Err(Invalid::new(
                "events.duplicate_window",
                "0s",
                "must be longer than zero",
            ));
        }
        if !self.max_age.is_zero() && self.duplicate_window > self.max_age {
            return Err(Invalid::new(
                "events.duplicate_window",
                show(self.duplicate_window),
                "must be at most events.max_age",
            ));
        }
        if self.max_bytes == 0 || self.max_bytes < -1 {
            return Err(Invalid::new(
                "events.max_bytes",
                self.max_bytes,
                "must be positive, or -1 for no limit",
            ));
        }
        Ok(())
    }
}

/// A JetStream stream name: one token of letters, digits, `-` or `_` (the server also refuses
/// dots, wildcards and path separators, since names become file names and subject tokens).
fn stream_name(key: &str, name: &str) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            key,
            name,
            "must be letters, digits, - or _ (a stream name)",
        ))
    }
}

/// A list of human-readable durations (`["1s", "5s"]`).
mod durations {
    use std::time::Duration;

    use humantime_serde::Serde;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<Serde<Duration>> = value.iter().copied().map(Serde::from).collect();
        list.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let list = Vec::<Serde<Duration>>::deserialize(d)?;
        Ok(list.into_iter().map(Serde::into_inner).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        events: EventsSettings,
    }

    fn parse(toml_text: &str) -> EventsSettings {
        toml::from_str::<Settings>(toml_text).unwrap().events
    }

    #[test]
    fn the_defaults_are_valid_and_keep_a_week_of_events_on_disk() {
        let s = EventsSettings::default();
        s.validate().unwrap();
        assert_eq!(s.storage, Storage::File);
        assert_eq!(s.max_age, Duration::from_secs(604_800));
        assert_eq!(s.subjects, ["events.>"]);
        assert_eq!(s.replicas, 1);
    }

    #[test]
    fn durations_and_the_backoff_list_read_as_humantime() {
        let s = parse(
            "[events]\nstorage = \"memory\"\nack_wait = \"2s\"\nbackoff = [\"100ms\", \"1m\"]\n",
        );
        assert_eq!(s.storage, Storage::Memory);
        assert_eq!(s.ack_wait, Duration::from_secs(2));
        assert_eq!(
            s.backoff,
            [Duration::from_millis(100), Duration::from_secs(60)]
        );
        let back: Settings = toml::from_str(&toml::to_string(&Settings { events: s }).unwrap())
            .expect("the settings round-trip");
        assert_eq!(back.events.backoff[1], Duration::from_secs(60));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Settings>("[events]\nretries = 3\n").is_err());
    }

    #[test]
    fn the_last_backoff_serves_for_later_redeliveries() {
        let s = EventsSettings::default();
        assert_eq!(s.backoff_after(1), Some(Duration::from_secs(1)));
        assert_eq!(s.backoff_after(3), Some(Duration::from_secs(30)));
        assert_eq!(s.backoff_after(9), Some(Duration::from_secs(30)));
        let none = EventsSettings {
            backoff: Vec::new(),
            ..s
        };
        assert_eq!(none.backoff_after(2), None);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: [(&str, EventsSettings); 8] = [
            (
                "events.replicas",
                EventsSettings {
                    replicas: 0,
                    ..Default::default()
                },
            ),
            (
                "events.replicas",
                EventsSettings {
                    replicas: 6,
                    ..Default::default()
                },
            ),
            (
                "events.stream",
                EventsSettings {
                    stream: "my.events".into(),
                    ..Default::default()
                },
            ),
            (
                "events.subjects",
                EventsSettings {
                    subjects: vec!["deadletter.>".into()],
                    ..Default::default()
                },
            ),
            (
                "events.subjects",
                EventsSettings {
                    subjects: vec!["events.>.x".into()],
                    ..Default::default()
                },
            ),
            (
                "events.duplicate_window",
                EventsSettings {
                    duplicate_window: Duration::from_secs(3600),
                    max_age: Duration::from_secs(60),
                    ..Default::default()
                },
            ),
            (
                "events.max_deliver",
                EventsSettings {
                    max_deliver: 0,
                    ..Default::default()
                },
            ),
            (
                "events.max_bytes",
                EventsSettings {
                    max_bytes: 0,
                    ..Default::default()
                },
            ),
        ];
        for (key, settings) in cases {
            assert_eq!(settings.validate().unwrap_err().key, key, "{settings:?}");
        }
    }
}
