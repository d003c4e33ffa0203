//! The bridge: the only code that reads NATS messages and writes replies. Everything it calls
//! (codec, meta, handlers, stats) is plain Rust.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use async_nats::{HeaderMap, Message, Subject, Subscriber};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::{watch, Semaphore};

use super::endpoint::{EventOutcome, Subscription};
use super::{EndpointRuntime, Shared};
use crate::meta::{header, HeaderError};
use crate::micro::Verb;
use crate::stats::{Metrics, Slot};
use crate::{Codec, Error, Meta, ServiceError};

/// How long a caller refused at the in-flight limit should wait before trying again.
const RETRY_AFTER_MS: &str = "100";

pub(super) async fn subscribe(
    nats: &async_nats::Client,
    subject: &str,
    group: Option<&str>,
) -> Result<Subscriber, Error> {
    let result = match group {
        Some(group) => {
            nats.queue_subscribe(subject.to_owned(), group.to_owned())
                .await
        }
        None => nats.subscribe(subject.to_owned()).await,
    };
    result.map_err(|source| Error::Subscribe {
        subject: subject.to_owned(),
        source,
    })
}

/// Takes requests until told to stop, then drains the subscription: what the server already
/// sent is still handled, and the loop ends when the stream has ended and every request it
/// admitted has been answered.
///
/// Admitted requests run as futures inside this task rather than as spawned tasks: replies made
/// in one wake-up reach the connection together, which batches writes (see the benchmark).
pub(super) async fn serve_endpoint(
    ep: Arc<EndpointRuntime>,
    subs: Vec<Subscriber>,
    nats: async_nats::Client,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let (ep, nats) = (&*ep, &nats);
    let mut subs = futures::stream::select_all(subs);
    let mut running = FuturesUnordered::new();
    let (mut draining, mut ended) = (false, false);
    loop {
        tokio::select! {
            msg = subs.next(), if !ended => match msg {
                Some(msg) => {
                    if let Some(request) = accept(ep, nats, &metrics, msg).await {
                        running.push(request);
                    }
                }
                None => ended = true,
            },
            Some(()) = running.next(), if !running.is_empty() => {}
            _ = stop.changed(), if !draining => {
                draining = true;
                for sub in subs.iter_mut() {
                    // On failure keep reading: what was delivered is still answered, the stream
                    // ends with the connection, and the drain's grace period bounds the wait.
                    if let Err(error) = sub.drain().await {
                        tracing::warn!(%error, subject = %ep.subject, "Could not drain the subscription.");
                    }
                }
            }
            else => break,
        }
    }
}

/// Admits a request (returning the future that handles it) or refuses it at once.
async fn accept<'a>(
    ep: &'a EndpointRuntime,
    nats: &'a async_nats::Client,
    metrics: &Metrics,
    msg: Message,
) -> Option<impl Future<Output = ()> + 'a> {
    let Some(reply) = msg.reply.clone() else {
        metrics.no_reply.inc();
        tracing::warn!(subject = %msg.subject, "Request has no reply subject.");
        return None;
    };
    ep.stats.received();
    match ep.stats.in_flight.try_enter() {
        Some(slot) => Some(handle(ep, nats, msg, reply, slot)),
        None => {
            ep.stats.rejected();
            let error = ServiceError::unavailable(format!(
                "{} is at its limit of requests in flight; retry later",
                ep.name
            ));
            ep.stats.failed(error.code, &error.message);
            let (codec, request_id) = (reply_codec(&msg), request_id(&msg));
            let mut headers = error_headers(codec, &request_id, &error);
            headers.insert(header::RETRY_AFTER_MS, RETRY_AFTER_MS);
            publish(nats, reply, headers, encode_error(codec, &error)).await;
            None
        }
    }
}

/// Handles one admitted request; `_slot` frees its in-flight place when this ends, however.
async fn handle(
    ep: &EndpointRuntime,
    nats: &async_nats::Client,
    msg: Message,
    reply: Subject,
    _slot: Slot,
) {
    let started = Instant::now();
    // Parsed once: the handler needs it or a 400, the reply falls back to JSON.
    let requested = Codec::from_content_type(content_type(&msg));
    let codec = requested.clone().unwrap_or_default();
    let meta = Meta::from_headers(msg.headers.as_ref());
    // The id the handler sees is the id the reply echoes, even when it was made up here.
    let request_id = match &meta {
        Ok(meta) => meta.request_id.clone(),
        Err(_) => request_id(&msg),
    };
    let result = AssertUnwindSafe(run(ep, &msg, requested, meta))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(ServiceError::internal("the request crashed its handler")));
    ep.stats.handled(started.elapsed());
    let (headers, payload) = match result {
        Ok(payload) => {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, codec.content_type());
            headers.insert(header::REQUEST_ID, request_id.as_str());
            (headers, payload)
        }
        Err(error) => {
            ep.stats.failed(error.code, &error.message);
            // A 500 is our bug and worth an error line; 503 and 504 are load and deadlines,
            // counted in the metrics and visible in $SRV.STATS.
            if error.code == 500 {
                tracing::error!(endpoint = %ep.name, %request_id, code = error.code, message = %error.message, "Request failed.");
            } else {
                tracing::debug!(endpoint = %ep.name, %request_id, code = error.code, message = %error.message, "Request refused.");
            }
            (
                error_headers(codec, &request_id, &error),
                encode_error(codec, &error),
            )
        }
    };
    publish(nats, reply, headers, payload).await;
}

/// Codec, headers, deadline, handler: the reply payload or the error to send.
async fn run(
    ep: &EndpointRuntime,
    msg: &Message,
    codec: Result<Codec, String>,
    meta: Result<Meta, HeaderError>,
) -> Result<Bytes, ServiceError> {
    let codec = codec.map_err(ServiceError::bad_request)?;
    let meta = meta.map_err(|e| ServiceError::bad_request(e.to_string()))?;
    let remaining = meta.remaining();
    if remaining.is_some_and(|r| r.is_zero()) {
        return Err(ServiceError::timeout(
            "the request's deadline passed before it was handled",
        ));
    }
    let handled = ep.handler.handle(codec, msg.payload.clone(), meta);
    match remaining {
        Some(left) => tokio::time::timeout(left, handled)
            .await
            .unwrap_or_else(|_| {
                Err(ServiceError::timeout(
                    "the request's deadline passed while it was handled",
                ))
            }),
        None => handled.await,
    }
}

fn content_type(msg: &Message) -> Option<&str> {
    msg.headers
        .as_ref()?
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_str())
}

/// The codec of the reply: the request's, or JSON when the request's is unknown.
fn reply_codec(msg: &Message) -> Codec {
    Codec::from_content_type(content_type(msg)).unwrap_or_default()
}

fn request_id(msg: &Message) -> String {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(header::REQUEST_ID))
        .map(|v| v.as_str().trim().to_owned())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| nuid::next().to_string())
}

fn error_headers(codec: Codec, request_id: &str, error: &ServiceError) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, codec.content_type());
    headers.insert(header::REQUEST_ID, request_id);
    // Header values are one line; the body keeps the message as it was.
    let one_line: String = error
        .message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    headers.insert(header::SERVICE_ERROR, one_line.as_str());
    headers.insert(header::SERVICE_ERROR_CODE, error.code.to_string().as_str());
    headers
}

fn encode_error(codec: Codec, error: &ServiceError) -> Bytes {
    // Invariant: a ServiceError is a u16, a string and a JSON value, which both codecs encode.
    codec.encode(error).expect("a ServiceError always encodes")
}

async fn publish(nats: &async_nats::Client, reply: Subject, headers: HeaderMap, payload: Bytes) {
    if let Err(error) = nats.publish_with_headers(reply, headers, payload).await {
        tracing::warn!(%error, "Reply could not be sent.");
    }
}

/// Delivers events to their actor, at most `limit` at a time; on stop, drains the
/// subscription and waits for the events being handled.
pub(super) async fn serve_events(
    subscription: Subscription,
    mut sub: Subscriber,
    limit: usize,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limit));
    let subject = subscription.subject;
    let mut draining = false;
    loop {
        let msg = tokio::select! {
            msg = sub.next() => match msg {
                Some(msg) => msg,
                None => break,
            },
            _ = stop.changed(), if !draining => {
                draining = true;
                if sub.drain().await.is_err() {
                    break;
                }
                continue;
            }
        };
        // Invariant: the semaphore is never closed.
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore is open");
        let meta = Meta::from_headers(msg.headers.as_ref()).unwrap_or_else(|_| Meta::root());
        let done = subscription
            .handler
            .handle(reply_codec(&msg), msg.payload, meta);
        let counter = metrics.events.clone();
        let subject = subject.clone();
        tokio::spawn(async move {
            let outcome = AssertUnwindSafe(done)
                .catch_unwind()
                .await
                .unwrap_or(EventOutcome::Crashed);
            counter
                .with_label_values(&[subject.as_str(), outcome.label()])
                .inc();
            drop(permit);
        });
    }
    // Wait for the events being handled: all permits back.
    let _ = permits.acquire_many(limit as u32).await;
}

/// The nine `$SRV` subscriptions: three verbs, three subject forms each.
pub(super) async fn subscribe_srv(
    nats: &async_nats::Client,
    shared: &Shared,
) -> Result<Vec<Subscriber>, Error> {
    let mut subs = Vec::with_capacity(9);
    for verb in Verb::ALL {
        for subject in verb.subjects(&shared.name, &shared.id) {
            subs.push(subscribe(nats, &subject, None).await?);
        }
    }
    Ok(subs)
}

/// Answers `$SRV.PING|INFO|STATS` in JSON until aborted.
pub(super) async fn serve_srv(
    shared: Arc<Shared>,
    subs: Vec<Subscriber>,
    nats: async_nats::Client,
    metrics: Metrics,
) {
    let mut all = futures::stream::select_all(subs);
    while let Some(msg) = all.next().await {
        let Some(reply) = msg.reply else {
            metrics.no_reply.inc();
            tracing::warn!(subject = %msg.subject, "$SRV request has no reply subject.");
            continue;
        };
        let body = match Verb::of_subject(&msg.subject) {
            Some(Verb::Ping) => serde_json::to_vec(&shared.ping()),
            Some(Verb::Info) => serde_json::to_vec(&shared.info()),
            Some(Verb::Stats) => serde_json::to_vec(&shared.stats()),
            None => continue,
        };
        // Invariant: the replies are plain structs of strings, numbers and string maps.
        let body = body.expect("$SRV replies always encode");
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, crate::codec::JSON);
        publish(&nats, reply, headers, body.into()).await;
    }
}
