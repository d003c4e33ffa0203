//! The bridge: the only code that reads NATS requests and writes replies (event loops are in
//! `events.rs`). Everything it calls (codec, meta, handlers, stats) is plain Rust.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::client::PublishErrorKind;
use async_nats::{HeaderMap, Message, Subject, Subscriber};
use bytes::Bytes;
use futures::future::{BoxFuture, CatchUnwind};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use super::deadlines::{Deadlines, Place};
use super::{until_stopped, EndpointRuntime, Shared};
use crate::error::truncate;
use crate::meta::{name, request_id, Cancellation, HeaderError};
use crate::micro::Verb;
use crate::stats::{Metrics, Slot};
use crate::trace::{Open, Span, SpanKind};
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

/// How long the server may take to echo a message back at start.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

/// Returns once the server has processed everything `nats` sent before (subscriptions
/// included): a message to an inbox of our own comes back only after them, since the server
/// handles a connection's protocol in order. (`flush` only empties the client's buffer.)
pub(super) async fn round_trip(nats: &async_nats::Client) -> Result<(), Error> {
    let inbox = nats.new_inbox();
    let mut echo = subscribe(nats, &inbox, None).await?;
    let sent = nats.publish(inbox.clone(), Bytes::new()).await;
    let echoed = tokio::time::timeout(ROUND_TRIP_TIMEOUT, echo.next()).await;
    match (sent, echoed) {
        (Ok(()), Ok(Some(_))) => Ok(()),
        _ => Err(Error::RoundTrip {
            waited: ROUND_TRIP_TIMEOUT,
        }),
    }
}

/// Takes requests until told to stop, then drains the subscription: what the server already
/// sent is still handled, and the loop ends when the stream has ended and every request it
/// admitted has been answered.
///
/// Admitted requests run as futures inside this task rather than as spawned tasks: replies made
/// in one wake-up reach the connection together, which batches writes (see the benchmark). Their
/// time limits are kept by one timer ([`Deadlines`]).
pub(super) async fn serve_endpoint(
    ep: Arc<EndpointRuntime>,
    subs: Vec<Subscriber>,
    nats: async_nats::Client,
    metrics: Metrics,
    stop: watch::Receiver<bool>,
) {
    let (ep, nats) = (&*ep, &nats);
    let mut subs = futures::stream::select_all(subs);
    let mut running = FuturesUnordered::new();
    let mut deadlines = Deadlines::new();
    let (mut draining, mut ended) = (false, false);
    let stopped = until_stopped(stop);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            msg = subs.next(), if !ended => match msg {
                Some(msg) => {
                    if let Some(request) = accept(ep, nats, &metrics, msg, &mut deadlines).await {
                        running.push(request);
                    }
                }
                None => ended = true,
            },
            Some(place) = running.next(), if !running.is_empty() => {
                if let Some(place) = place {
                    deadlines.release(place);
                }
            }
            () = deadlines.fired(), if deadlines.waiting() => deadlines.expire(),
            () = &mut stopped, if !draining => {
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

/// Admits a request (returning the future that handles it, which ends with the place of its
/// deadline) or refuses it at once.
async fn accept<'a>(
    ep: &'a EndpointRuntime,
    nats: &'a async_nats::Client,
    metrics: &Metrics,
    msg: Message,
    deadlines: &mut Deadlines,
) -> Option<Pin<Box<impl Future<Output = Option<Place>> + 'a>>> {
    let Some(reply) = msg.reply.clone() else {
        metrics.no_reply.inc();
        tracing::warn!(subject = %msg.subject, "Request has no reply subject.");
        return None;
    };
    ep.stats.received();
    match ep.stats.in_flight.try_enter() {
        Some(slot) => {
            let started = Instant::now();
            let meta = Meta::from_headers(msg.headers.as_ref());
            let limit = meta
                .as_ref()
                .map_or(Limit::None, |meta| Limit::of(ep, meta, started));
            let place = match (&limit, &meta) {
                (Limit::Until(until, _), Ok(meta)) => {
                    Some(deadlines.hold((*until).into(), meta.cancellation()))
                }
                _ => None,
            };
            // Boxed here: the future is about 2 KB, and moving it by value through the select
            // and into the set of running requests copied it several times per request (a
            // tenth of the users service's CPU was memmove).
            let request = Admitted {
                msg,
                reply,
                slot,
                started,
                meta,
                limit,
            };
            Some(Box::pin(async move {
                handle(ep, nats, request).await;
                place
            }))
        }
        None => {
            ep.stats.rejected();
            let error = ServiceError::unavailable(format!(
                "{} is at its limit of requests in flight; retry later",
                ep.name
            ));
            ep.stats.failed(error.code, &error.message);
            let (codec, request_id) = (reply_codec(&msg), request_id(msg.headers.as_ref()));
            let mut headers = error_headers(codec, &request_id, &error);
            headers.insert(name::retry_after_ms(), RETRY_AFTER_MS);
            let reply = Reply {
                subject: reply,
                codec,
                request_id,
            };
            reply
                .send(nats, Some(headers), encode_error(codec, &error))
                .await;
            None
        }
    }
}

/// How long a request may run.
enum Limit {
    /// Its deadline had passed when it was taken in.
    Passed,
    /// Until then, set by the caller's deadline or by the endpoint's limit.
    Until(Instant, Expiry),
    /// No limit (a malformed request, or an endpoint limit too far to count to).
    None,
}

/// Whose limit a request ran out of.
#[derive(Clone, Copy)]
enum Expiry {
    Deadline,
    Endpoint,
}

impl Limit {
    /// The sooner of the caller's deadline and the endpoint's limit, counted from when the
    /// request was taken in (`started`).
    fn of(ep: &EndpointRuntime, meta: &Meta, started: Instant) -> Self {
        let (limit, expiry) = match meta.remaining() {
            Some(left) if left.is_zero() => return Self::Passed,
            Some(left) if left < ep.timeout => (left, Expiry::Deadline),
            _ => (ep.timeout, Expiry::Endpoint),
        };
        started
            .checked_add(limit)
            .map_or(Self::None, |until| Self::Until(until, expiry))
    }
}

impl Expiry {
    fn error(self, ep: &EndpointRuntime) -> ServiceError {
        ServiceError::timeout(match self {
            Self::Deadline => "the request's deadline passed while it was handled".to_owned(),
            Self::Endpoint => format!("{} took longer than its limit of {:?}", ep.name, ep.timeout),
        })
    }
}

/// A request taken in, with what was read of it then.
struct Admitted {
    msg: Message,
    reply: Subject,
    /// Its place under the in-flight limit.
    slot: Slot,
    /// When it was taken in: its time limit counts from then.
    started: Instant,
    meta: Result<Meta, HeaderError>,
    limit: Limit,
}

/// Handles one admitted request. The caller is answered as soon as there is an answer (a 504
/// the moment time runs out); the in-flight slot stays taken until the work behind the answer
/// has ended too, so the limit bounds work, not waiting callers. If this future is dropped (a
/// drain past its grace), the request is cancelled.
async fn handle(ep: &EndpointRuntime, nats: &async_nats::Client, request: Admitted) {
    let Admitted {
        msg,
        reply,
        slot: _slot,
        started,
        meta,
        limit,
    } = request;
    // Parsed once: the handler needs it or a 400, the reply falls back to JSON.
    let requested = Codec::from_content_type(content_type(&msg));
    let codec = requested.clone().unwrap_or_default();
    // The id the handler sees is the id the reply echoes, even when it was made up here.
    let request_id = match &meta {
        Ok(meta) => meta.request_id.clone(),
        Err(_) => request_id(msg.headers.as_ref()),
    };
    let cancel_on_drop = meta.as_ref().ok().map(CancelOnDrop::new);
    let mut span = meta.as_ref().ok().and_then(|meta| {
        Open::new(|| {
            Span::of_hop(ep.subject.clone(), SpanKind::Server, meta, Duration::ZERO)
                .with("courier.endpoint", ep.name.clone())
        })
    });
    let (result, unfinished) = run(ep, &msg, requested, meta, limit).await;
    if unfinished.is_none() {
        // Answered with the work done: a deadline passing while the reply is sent no longer
        // cancels it.
        if let Some(guard) = &cancel_on_drop {
            guard.settle();
        }
    }
    ep.stats.handled(started.elapsed());
    let (headers, payload) = match result {
        // A request without headers (`nats req`, a bare client) gets a bare JSON reply, as
        // NATS micro services answer: headers it did not ask for would cost every hop bytes
        // and parsing. Errors always carry them (the micro protocol's error headers).
        Ok(payload) => {
            let headers = msg.headers.is_some().then(|| {
                let mut headers = HeaderMap::new();
                headers.insert(name::content_type(), codec.content_type());
                headers.insert(name::request_id(), request_id.as_str());
                headers
            });
            (headers, payload)
        }
        Err(error) => {
            let error = error.bounded();
            ep.stats.failed(error.code, &error.message);
            log_failure(ep, &request_id, &error);
            if let Some(span) = span.take() {
                span.finish(Some(format!("{} {}", error.code, error.message)));
            }
            (
                Some(error_headers(codec, &request_id, &error)),
                encode_error(codec, &error),
            )
        }
    };
    let reply = Reply {
        subject: reply,
        codec,
        request_id,
    };
    reply.send(nats, headers, payload).await;
    if let Some(span) = span {
        span.finish(None);
    }
    if let Some(work) = unfinished {
        // Cancelled already: cooperative work ends at once, other work when it will.
        let _ = work.await;
    }
    if let Some(guard) = cancel_on_drop {
        guard.disarm();
    }
}

/// A 500 is our bug and worth an error line; 503 and 504 are load and deadlines, 4xx the
/// caller's: counted in the metrics and visible in `$SRV.STATS`.
fn log_failure(ep: &EndpointRuntime, request_id: &str, error: &ServiceError) {
    if error.code == 500 {
        tracing::error!(endpoint = %ep.name, %request_id, code = error.code, message = %error.message, "Request failed.");
    } else {
        tracing::debug!(endpoint = %ep.name, %request_id, code = error.code, message = %error.message, "Request refused.");
    }
}

/// The handler's work, still running after the caller was answered (it was cancelled).
type Unfinished = CatchUnwind<AssertUnwindSafe<BoxFuture<'static, Result<Bytes, ServiceError>>>>;

/// Codec, headers, time limit, handler: the reply payload or the error to send, and the work
/// that is still running when time ran out (the loop's [`Deadlines`] cancel the request then).
async fn run(
    ep: &EndpointRuntime,
    msg: &Message,
    codec: Result<Codec, String>,
    meta: Result<Meta, HeaderError>,
    limit: Limit,
) -> (Result<Bytes, ServiceError>, Option<Unfinished>) {
    let codec = match codec {
        Ok(codec) => codec,
        Err(problem) => return (Err(ServiceError::bad_request(problem)), None),
    };
    let meta = match meta {
        Ok(meta) => meta,
        Err(e) => return (Err(ServiceError::bad_request(e.to_string())), None),
    };
    let expiry = match limit {
        Limit::Passed => {
            let error = "the request's deadline passed before it was handled";
            return (Err(ServiceError::timeout(error)), None);
        }
        Limit::Until(_, expiry) => expiry,
        // Cancelled only if this future is dropped, when nothing is answered.
        Limit::None => Expiry::Endpoint,
    };
    let cancel = meta.cancellation();
    let mut work =
        AssertUnwindSafe(ep.handler.handle(codec, msg.payload.clone(), meta)).catch_unwind();
    // The work first: an answer ready as time runs out is still sent.
    tokio::select! {
        biased;
        done = &mut work => (done.unwrap_or_else(|_| Err(crashed())), None),
        () = cancel.answerer_cancelled() => (Err(expiry.error(ep)), Some(work)),
    }
}

fn crashed() -> ServiceError {
    ServiceError::internal("the request crashed its handler")
}

/// Cancels a request (or durable event) whose handling future is dropped before it finished
/// (a drain that ran out of grace aborts the loop), so cooperative work stops with it.
pub(crate) struct CancelOnDrop(Option<Cancellation>);

impl CancelOnDrop {
    pub(crate) fn new(meta: &Meta) -> Self {
        Self(Some(meta.cancellation()))
    }

    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }

    /// The request was answered with its work done: nothing cancels it any more.
    fn settle(&self) {
        if let Some(cancellation) = &self.0 {
            cancellation.settle();
        }
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancellation) = &self.0 {
            cancellation.cancel();
        }
    }
}

fn content_type(msg: &Message) -> Option<&str> {
    msg.headers
        .as_ref()?
        .get(name::content_type())
        .map(|v| v.as_str())
}

/// The codec of the reply: the request's, or JSON when the request's is unknown.
pub(super) fn reply_codec(msg: &Message) -> Codec {
    Codec::from_content_type(content_type(msg)).unwrap_or_default()
}

/// The longest `Nats-Service-Error` header value: a one-line summary; the body has the rest.
const ERROR_HEADER_BYTES: usize = 256;

fn error_headers(codec: Codec, request_id: &str, error: &ServiceError) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name::content_type(), codec.content_type());
    headers.insert(name::request_id(), request_id);
    // Header values are one line; the body keeps the message as it was.
    let one_line: String = truncate(&error.message, ERROR_HEADER_BYTES)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    headers.insert(name::service_error(), one_line.as_str());
    headers.insert(name::service_error_code(), error.code.to_string().as_str());
    headers
}

fn encode_error(codec: Codec, error: &ServiceError) -> Bytes {
    // Invariant: a ServiceError is a u16, a string and a JSON value, which both codecs encode.
    codec.encode(error).expect("a ServiceError always encodes")
}

/// Where and how a request is answered.
struct Reply {
    subject: Subject,
    codec: Codec,
    request_id: String,
}

impl Reply {
    /// Publishes the reply. One the server would refuse as too large is replaced by a small
    /// 500, so the caller always hears back instead of waiting for its time-out.
    async fn send(self, nats: &async_nats::Client, headers: Option<HeaderMap>, payload: Bytes) {
        let size = payload.len();
        let subject = self.subject.clone();
        let sent = match headers {
            Some(headers) => nats.publish_with_headers(subject, headers, payload).await,
            None => nats.publish(subject, payload).await,
        };
        let Err(error) = sent else {
            return;
        };
        if error.kind() != PublishErrorKind::MaxPayloadExceeded {
            tracing::warn!(%error, "Reply could not be sent.");
            return;
        }
        let limit = nats.server_info().max_payload;
        tracing::error!(size, limit, request_id = %self.request_id, "Reply too large for the server; sending a 500 instead.");
        let error = ServiceError::internal(format!(
            "the reply was too large to send ({size} bytes; the server takes {limit})"
        ));
        let headers = error_headers(self.codec, &self.request_id, &error);
        publish(
            nats,
            self.subject,
            headers,
            encode_error(self.codec, &error),
        )
        .await;
    }
}

async fn publish(nats: &async_nats::Client, reply: Subject, headers: HeaderMap, payload: Bytes) {
    if let Err(error) = nats.publish_with_headers(reply, headers, payload).await {
        tracing::warn!(%error, "Reply could not be sent.");
    }
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
        headers.insert(name::content_type(), crate::codec::JSON);
        publish(&nats, reply, headers, body.into()).await;
    }
}
