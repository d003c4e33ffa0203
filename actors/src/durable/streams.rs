//! The two streams: events, and the dead letters of every consumer.

use std::time::Duration;

use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::ErrorCode;
use courier_config::events::DEAD_LETTER_PREFIX;
use courier_config::{EventsSettings, Storage};

use super::DurableError;

/// How many times to go round update-then-create. A round ends early when another instance
/// created the stream at the same moment (the next round updates it), or when JetStream could
/// not serve the request yet ([`passing`]).
const ATTEMPTS: u32 = 6;

/// The pause before the next round after an unanswered request; doubled each time.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// Creates the events stream and the dead-letter stream, or updates them to `settings`.
///
/// Idempotent and safe when several instances start at once: the stream is updated when it
/// exists and created when not, a creation that loses the race to another instance's goes
/// round again and updates, and an unanswered request is asked again after a pause. A
/// change the server cannot make (file to memory storage, say) is an error naming the
/// stream.
pub async fn ensure_streams(
    nats: &async_nats::Client,
    settings: &EventsSettings,
) -> Result<(), DurableError> {
    let js = async_nats::jetstream::new(nats.clone());
    create_or_update(&js, events_config(settings)).await?;
    create_or_update(&js, dead_letter_config(settings)).await
}

async fn create_or_update(
    js: &async_nats::jetstream::Context,
    config: Config,
) -> Result<(), DurableError> {
    let failed = |source| DurableError::Stream {
        stream: config.name.clone(),
        source,
    };
    let (mut attempt, mut pause) = (1, FIRST_PAUSE);
    loop {
        let error = match js.update_stream(&config).await {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == CreateStreamErrorKind::NotFound => {
                match js.create_stream(config.clone()).await {
                    Ok(_) => return Ok(()),
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        let wait = match error.kind() {
            CreateStreamErrorKind::JetStream(ref e)
                if e.error_code() == ErrorCode::STREAM_NAME_EXIST =>
            {
                tracing::debug!(stream = %config.name, "Stream created meanwhile by another instance; updating it.");
                Duration::ZERO
            }
            kind if passing(&kind) => {
                tracing::debug!(stream = %config.name, ?pause, error = %error, "Stream request not served yet; asking again.");
                let wait = pause;
                pause *= 2;
                wait
            }
            _ => return Err(failed(error)),
        };
        if attempt == ATTEMPTS {
            return Err(failed(error));
        }
        attempt += 1;
        tokio::time::sleep(wait).await;
    }
}

/// Whether a failed stream request is worth asking again after a pause: on a fresh cluster,
/// JetStream answers nothing until it has a meta leader, requests that arrive while the meta
/// leader creates a replicated stream time out, a stream cannot be placed until enough peers
/// have joined, and a create racing another instance's can be refused as overlapping.
fn passing(kind: &CreateStreamErrorKind) -> bool {
    match kind {
        CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => true,
        CreateStreamErrorKind::JetStream(e) => [
            ErrorCode::CLUSTER_NOT_AVAILABLE,
            ErrorCode::CLUSTER_NO_PEERS,
            ErrorCode::CLUSTER_INCOMPLETE,
            ErrorCode::CLUSTER_NOT_LEADER,
            ErrorCode::INSUFFICIENT_RESOURCES,
            // A create that meets the same stream while another instance's creation of it
            // settles: the next round updates it. (A real overlap with another stream stays,
            // and is the error after the last round.)
            ErrorCode::STREAM_SUBJECT_OVERLAP,
        ]
        .contains(&e.error_code()),
        _ => false,
    }
}

fn storage(settings: &EventsSettings) -> StorageType {
    match settings.storage {
        Storage::File => StorageType::File,
        Storage::Memory => StorageType::Memory,
    }
}

/// The events stream: limits retention (consumers do not remove events; age and size do),
/// the oldest discarded first, publishes deduplicated by `Nats-Msg-Id` within the window.
pub(crate) fn events_config(settings: &EventsSettings) -> Config {
    Config {
        name: settings.stream.clone(),
        description: Some("Courier durable events".to_owned()),
        subjects: settings.subjects.clone(),
        storage: storage(settings),
        num_replicas: settings.replicas,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        duplicate_window: settings.duplicate_window,
        max_age: settings.max_age,
        max_bytes: settings.max_bytes,
        max_messages: -1,
        ..Default::default()
    }
}

/// The dead-letter stream: `deadletter.>`, kept as long as events are, for people to look at
/// and replay.
pub(crate) fn dead_letter_config(settings: &EventsSettings) -> Config {
    Config {
        name: settings.dead_letter_stream.clone(),
        description: Some("Courier events that could not be handled".to_owned()),
        subjects: vec![format!("{DEAD_LETTER_PREFIX}.>")],
        ..events_config(settings)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_events_stream_follows_the_settings() {
        let settings = EventsSettings {
            storage: Storage::Memory,
            duplicate_window: Duration::from_secs(10),
            replicas: 3,
            ..Default::default()
        };
        let config = events_config(&settings);
        assert_eq!(config.num_replicas, 3);
        assert_eq!(config.name, "COURIER_EVENTS");
        assert_eq!(config.subjects, ["events.>"]);
        assert_eq!(config.storage, StorageType::Memory);
        assert_eq!(config.duplicate_window, Duration::from_secs(10));
        assert_eq!(config.max_bytes, -1);
    }

    #[test]
    fn dead_letters_have_a_stream_of_their_own() {
        let config = dead_letter_config(&EventsSettings::default());
        assert_eq!(config.name, "COURIER_DEAD_LETTERS");
        assert_eq!(config.subjects, ["deadletter.>"]);
    }
}
