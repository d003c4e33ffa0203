//! Request metadata carried in plain NATS headers: request id, W3C trace context, time budget.
//!
//! Any NATS client can set them; a caller that sets none gets a fresh request id and trace.
//!
//! Time travels as a budget, not a wall-clock instant: `Courier-Timeout-Ms` says how long the
//! caller will still wait when it sends, and each hop turns it into a deadline on its own
//! monotonic clock (as gRPC's `grpc-timeout` does), so clock skew between hosts never turns
//! into false 504s. `Courier-Deadline` (absolute, Unix milliseconds) is written beside it for
//! people reading headers, and read only from callers that send no budget.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use futures::task::AtomicWaker;
use tokio::sync::Notify;

use crate::error::quote;

/// Header names Courier reads and writes.
pub mod header {
    /// Payload format of the message.
    pub const CONTENT_TYPE: &str = "Content-Type";
    /// The request id, echoed on the reply and carried to outgoing calls.
    pub const REQUEST_ID: &str = "X-Request-Id";
    /// W3C trace context: `00-<trace id>-<parent span id>-<flags>`.
    pub const TRACEPARENT: &str = "traceparent";
    /// JetStream: a published message's id, which the stream stores once within its
    /// duplicate window.
    pub const MESSAGE_ID: &str = "Nats-Msg-Id";
    /// The caller's remaining time budget in whole milliseconds when it sent the request.
    pub const TIMEOUT_MS: &str = "Courier-Timeout-Ms";
    /// Absolute deadline, milliseconds since the Unix epoch: informative, and the fallback for
    /// callers that send no [`TIMEOUT_MS`] (it trusts the clocks to agree).
    pub const DEADLINE: &str = "Courier-Deadline";
    /// NATS micro: the error message of a failed request.
    pub const SERVICE_ERROR: &str = "Nats-Service-Error";
    /// NATS micro: the error code of a failed request.
    pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";
    /// How long a refused caller should wait before trying again, in milliseconds.
    pub const RETRY_AFTER_MS: &str = "Retry-After-Ms";
    /// The verified subject (user id) of the end user a request is made for, set by the
    /// gateway from a checked token; absent on calls from inside.
    pub const AUTH_SUBJECT: &str = "Courier-Auth-Subject";
    /// That user's roles, comma-separated.
    pub const AUTH_ROLES: &str = "Courier-Auth-Roles";
}

/// The names of [`header`] as made `HeaderName`s, built at compile time: a lookup or insert
/// by `&str` validates the name and allocates a copy of it on every call, and these sit on
/// the path of every request and event.
pub(crate) mod name {
    use async_nats::HeaderName;

    use super::header;

    macro_rules! names {
        ($($name:ident = $header:ident),* $(,)?) => {$(
            #[inline]
            pub(crate) fn $name() -> HeaderName {
                const { HeaderName::from_static(header::$header) }
            }
        )*};
    }

    names! {
        content_type = CONTENT_TYPE,
        request_id = REQUEST_ID,
        traceparent = TRACEPARENT,
        timeout_ms = TIMEOUT_MS,
        deadline = DEADLINE,
        service_error = SERVICE_ERROR,
        service_error_code = SERVICE_ERROR_CODE,
        retry_after_ms = RETRY_AFTER_MS,
        auth_subject = AUTH_SUBJECT,
        auth_roles = AUTH_ROLES,
        message_id = MESSAGE_ID,
    }
}

/// The end user a request is made for, as the gateway verified it from a token.
///
/// NATS permissions, not this type, decide who may set the headers: the gateway strips them
/// from HTTP requests and sets them from the token, and a caller without claims is a service
/// inside the system, which is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caller {
    /// The token's `sub`: the user id.
    pub subject: String,
    /// The token's roles.
    pub roles: Vec<String>,
}

impl Caller {
    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Reads `Courier-Auth-Subject` and `Courier-Auth-Roles`; `None` without a subject.
    fn from_headers(headers: Option<&HeaderMap>) -> Option<Self> {
        let headers = headers?;
        let subject = headers.get(name::auth_subject())?.as_str().trim();
        if subject.is_empty() {
            return None;
        }
        let roles = headers
            .get(name::auth_roles())
            .map(|v| v.as_str())
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        Some(Self {
            subject: subject.to_owned(),
            roles,
        })
    }

    /// Writes the two headers.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(name::auth_subject(), self.subject.as_str());
        if !self.roles.is_empty() {
            headers.insert(name::auth_roles(), self.roles.join(",").as_str());
        }
    }
}

/// What a handler knows about the request it serves, and passes on to the calls it makes.
/// Clones share one cancellation: see [`Meta::cancelled`].
#[derive(Debug, Clone)]
pub struct Meta {
    /// Read from `X-Request-Id`, or made up when absent.
    pub request_id: String,
    /// This hop's trace context (the caller's trace id, a new span id).
    pub trace: TraceContext,
    /// The caller's span id, from its `traceparent`; `None` when this hop began the trace.
    pub parent_span: Option<u64>,
    /// When the caller stops waiting, on this host's monotonic clock, if it said.
    pub deadline: Option<Instant>,
    /// The end user the request is made for, when it came through the gateway with a token;
    /// `None` for calls from inside the system. Carried on to outgoing calls.
    pub caller: Option<Caller>,
    cancel: Cancellation,
}

/// One request's cancellation, shared by every clone of its [`Meta`]: a flag, and the tasks
/// waiting for it. A clone is one atomic increment: every request clones it a few times, and
/// tokio-util's `CancellationToken` takes a mutex on each clone and drop (it keeps a tree of
/// parents and children, which requests do not need).
#[derive(Debug, Clone, Default)]
pub(crate) struct Cancellation(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    /// [`RUNNING`], then [`CANCELLED`] or [`SETTLED`], never again changed.
    state: AtomicU8,
    /// The task that answers the request (the bridge): one per request, so it waits in a slot
    /// of its own, without the lock of the list below.
    answerer: AtomicWaker,
    waiters: Notify,
}

/// The states of a [`Cancellation`].
const RUNNING: u8 = 0;
const CANCELLED: u8 = 1;
/// Answered with its work done: too late to cancel.
const SETTLED: u8 = 2;

impl Cancellation {
    /// Cancels, unless settled: [`Cancellation::cancelled`] resolves for every clone, now and
    /// later.
    pub(crate) fn cancel(&self) {
        let cancelled =
            self.0
                .state
                .compare_exchange(RUNNING, CANCELLED, Ordering::AcqRel, Ordering::Acquire);
        if cancelled.is_ok() {
            self.0.answerer.wake();
            self.0.waiters.notify_waiters();
        }
    }

    /// Marks the request answered with its work done: a later [`Cancellation::cancel`] (its
    /// deadline passing while the reply is sent) does nothing.
    pub(crate) fn settle(&self) {
        let _ =
            self.0
                .state
                .compare_exchange(RUNNING, SETTLED, Ordering::AcqRel, Ordering::Acquire);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.state.load(Ordering::Acquire) == CANCELLED
    }

    pub(crate) async fn cancelled(&self) {
        loop {
            // Made before the flag is read: a `notify_waiters` after this wakes it even if it
            // has not been polled yet, so no cancellation falls between the two.
            let notified = self.0.waiters.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// [`Cancellation::cancelled`] for the one task that answers the request. A second task
    /// waiting this way would take the first one's place, and the first would not be woken.
    pub(crate) fn answerer_cancelled(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            if self.is_cancelled() {
                return Poll::Ready(());
            }
            self.0.answerer.register(cx.waker());
            // Read again: a cancel between the first read and the register found no waker.
            if self.is_cancelled() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// A bad header value, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header {name}: {problem}")]
pub struct HeaderError {
    /// The header.
    pub name: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl Meta {
    /// A new root: fresh request id and trace, no deadline (for work that starts here).
    pub fn root() -> Self {
        Self {
            request_id: new_request_id(),
            trace: TraceContext::new_root(),
            parent_span: None,
            deadline: None,
            caller: None,
            cancel: Cancellation::default(),
        }
    }

    /// The first hop of a request that arrived from outside NATS (HTTP at the gateway):
    /// `request_id`, this hop's `trace`, the caller's span `parent_span` when it sent one; no
    /// deadline or caller yet.
    pub fn arriving(request_id: String, trace: TraceContext, parent_span: Option<u64>) -> Self {
        Self {
            request_id,
            trace,
            parent_span,
            deadline: None,
            caller: None,
            cancel: Cancellation::default(),
        }
    }

    /// Continues the caller's trace `parent`: this hop gets a span of its own under it.
    pub fn follow(&mut self, parent: TraceContext) {
        self.trace = parent.child();
        self.parent_span = Some(parent.span_id);
    }

    /// The meta of a hop made from this one (a call out, an event's publish): the same
    /// request, a span of its own under this one's.
    pub fn next_hop(&self) -> Self {
        let mut next = self.clone();
        next.follow(self.trace);
        next
    }

    /// The same request with a deadline `timeout` from now (or the caller's, if sooner).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        let candidate = Instant::now() + timeout;
        self.deadline = Some(self.deadline.map_or(candidate, |d| d.min(candidate)));
        self
    }

    /// Reads the metadata of an incoming message. A malformed `traceparent` starts a new trace
    /// (as W3C asks); a malformed time budget or deadline is an error, since guessing it could
    /// run work the caller no longer waits for or refuse work it does.
    pub fn from_headers(headers: Option<&HeaderMap>) -> Result<Self, HeaderError> {
        let get = |name| headers.and_then(|h| h.get(name)).map(|v| v.as_str().trim());
        let request_id = request_id(headers);
        let parent = get(name::traceparent()).and_then(TraceContext::parse);
        let trace = parent.map_or_else(TraceContext::new_root, TraceContext::child);
        let deadline = match (get(name::timeout_ms()), get(name::deadline())) {
            (Some(budget), _) => Some(Instant::now() + parse_budget(budget)?),
            (None, Some(absolute)) => Some(Instant::now() + until(parse_deadline(absolute)?)),
            (None, None) => None,
        };
        Ok(Self {
            request_id,
            trace,
            parent_span: parent.map(|p| p.span_id),
            deadline,
            caller: Caller::from_headers(headers),
            cancel: Cancellation::default(),
        })
    }

    /// Time left before the deadline; `Some(ZERO)` when it has passed, `None` without one.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Resolves when the bridge has given up on this request (its deadline or the endpoint's
    /// time limit passed, or a drain ran out of grace) and answered it already. Work still
    /// running for it should stop: [`crate::Request::serve`] drops it at that moment.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Whether the bridge has given up on this request.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Gives up on the request: [`Meta::cancelled`] resolves for every clone.
    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The request's cancellation alone, for who must cancel it but needs nothing else of
    /// it (cheaper to keep than a clone of the whole `Meta`).
    pub(crate) fn cancellation(&self) -> Cancellation {
        self.cancel.clone()
    }

    /// Headers for a call or event sent on behalf of this request: the remaining budget as of
    /// now, and the absolute deadline it makes on this host's clock.
    pub fn outgoing_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name::request_id(), self.request_id.as_str());
        headers.insert(name::traceparent(), self.trace.to_header().as_str());
        if let Some(left) = self.remaining() {
            headers.insert(name::timeout_ms(), left.as_millis().to_string().as_str());
            let absolute = unix_millis(SystemTime::now() + left);
            headers.insert(name::deadline(), absolute.to_string().as_str());
        }
        if let Some(caller) = &self.caller {
            caller.write_headers(&mut headers);
        }
        headers
    }
}

/// The request's id: its `X-Request-Id` (trimmed), or a fresh one when it has none. Also
/// used where the rest of the headers may be malformed, so an error reply still echoes it.
pub(crate) fn request_id(headers: Option<&HeaderMap>) -> String {
    headers
        .and_then(|h| h.get(name::request_id()))
        .map(|v| v.as_str().trim())
        .filter(|id| !id.is_empty())
        .map_or_else(new_request_id, str::to_owned)
}

/// A fresh request id: a NUID from this thread's own generator (nuid's global one sits behind a
/// mutex that every worker would take for every request without an id).
pub fn new_request_id() -> String {
    thread_local! {
        static IDS: RefCell<nuid::NUID> = const { RefCell::new(nuid::NUID::new()) };
    }
    IDS.with(|ids| ids.borrow_mut().next().as_str().to_owned())
}

fn parse_budget(value: &str) -> Result<Duration, HeaderError> {
    value
        .parse()
        .map(Duration::from_millis)
        .map_err(|_| HeaderError {
            name: header::TIMEOUT_MS,
            problem: format!("{} is not a whole number of milliseconds", quote(value)),
        })
}

fn parse_deadline(value: &str) -> Result<SystemTime, HeaderError> {
    let millis: u64 = value.parse().map_err(|_| HeaderError {
        name: header::DEADLINE,
        problem: format!("{} is not milliseconds since the Unix epoch", quote(value)),
    })?;
    Ok(UNIX_EPOCH + Duration::from_millis(millis))
}

/// Time from now until `time` on the wall clock; zero when it has passed.
fn until(time: SystemTime) -> Duration {
    time.duration_since(SystemTime::now()).unwrap_or_default()
}

/// Milliseconds since the Unix epoch, as `Courier-Deadline` carries them.
pub fn unix_millis(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// A W3C trace context (`traceparent` version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 bytes, never all zero.
    pub trace_id: u128,
    /// 8 bytes, never zero: the span of this hop.
    pub span_id: u64,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// A new trace, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero(rand::random()),
            span_id: nonzero(rand::random()),
            flags: 1,
        }
    }

    /// The same trace with a new span id, for the next hop.
    pub fn child(self) -> Self {
        Self {
            span_id: nonzero(rand::random()),
            ..self
        }
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; `None` for anything else or all-zero ids.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len| {
            (s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
            .then_some(())
        };
        hex(version, 2)?;
        hex(trace, 32)?;
        hex(span, 16)?;
        hex(flags, 2)?;
        if version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|t| *t != 0)?;
        let span_id = u64::from_str_radix(span, 16).ok().filter(|s| *s != 0)?;
        Some(Self {
            trace_id,
            span_id,
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    /// The 32 hex digits of the trace id, as logs show it.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The `traceparent` header value (`00-<32 hex>-<16 hex>-<2 hex>`, lower case). Written
    /// by hand: it is made for every event and outgoing call, and `format!` took several
    /// times as long.
    pub fn to_header(self) -> String {
        fn hex(out: &mut String, value: u128, digits: u32) {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for shift in (0..digits).rev() {
                out.push(char::from(HEX[((value >> (shift * 4)) & 0xf) as usize]));
            }
        }
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        hex(&mut out, self.trace_id, 32);
        out.push('-');
        hex(&mut out, u128::from(self.span_id), 16);
        out.push('-');
        hex(&mut out, u128::from(self.flags), 2);
        out
    }
}

fn nonzero<T: Default + PartialEq + From<u8>>(value: T) -> T {
    if value == T::default() {
        T::from(1)
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, *v);
        }
        h
    }

    #[test]
    fn a_valid_traceparent_keeps_its_trace_id_with_a_new_span() {
        let meta = Meta::from_headers(Some(&headers(&[(header::TRACEPARENT, PARENT)]))).unwrap();
        assert_eq!(
            meta.trace.trace_id_hex(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(meta.trace.span_id, 0x00f067aa0ba902b7);
        assert_eq!(
            meta.parent_span,
            Some(0x00f067aa0ba902b7),
            "the caller's span"
        );
        assert_eq!(meta.trace.flags, 1);
        let next = meta.next_hop();
        assert_eq!(next.trace.trace_id, meta.trace.trace_id);
        assert_eq!(next.parent_span, Some(meta.trace.span_id));
        assert_ne!(next.trace.span_id, meta.trace.span_id);
        assert_eq!(Meta::root().parent_span, None);
        let out = meta.outgoing_headers();
        assert!(out
            .get(header::TRACEPARENT)
            .unwrap()
            .as_str()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    }

    #[test]
    fn traceparent_round_trips() {
        assert_eq!(TraceContext::parse(PARENT).unwrap().to_header(), PARENT);
        let small = TraceContext {
            trace_id: 1,
            span_id: 0xab,
            flags: 1,
        };
        assert_eq!(
            small.to_header(),
            "00-00000000000000000000000000000001-00000000000000ab-01"
        );
    }

    #[test]
    fn malformed_traceparents_are_rejected() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_missing_request_id_is_made_up_and_a_given_one_kept() {
        assert!(!Meta::from_headers(None).unwrap().request_id.is_empty());
        let meta = Meta::from_headers(Some(&headers(&[(header::REQUEST_ID, "abc")]))).unwrap();
        assert_eq!(meta.request_id, "abc");
    }

    #[test]
    fn a_past_deadline_leaves_zero_time() {
        let meta = Meta::from_headers(Some(&headers(&[(header::DEADLINE, "1000")]))).unwrap();
        assert_eq!(meta.remaining(), Some(Duration::ZERO));
    }

    #[test]
    fn a_malformed_deadline_is_an_error() {
        let err = Meta::from_headers(Some(&headers(&[(header::DEADLINE, "soon")]))).unwrap_err();
        assert_eq!(err.name, header::DEADLINE);
    }

    #[test]
    fn the_budget_wins_over_an_absolute_deadline_from_a_skewed_clock() {
        // A caller whose clock is 10 s behind ours sends a deadline already in our past, and
        // a budget of 2 s: the budget is what it means.
        let behind = unix_millis(SystemTime::now() - Duration::from_secs(10)).to_string();
        let meta = Meta::from_headers(Some(&headers(&[
            (header::DEADLINE, &behind),
            (header::TIMEOUT_MS, "2000"),
        ])))
        .unwrap();
        let left = meta.remaining().unwrap();
        assert!(
            left > Duration::from_millis(1900) && left <= Duration::from_secs(2),
            "{left:?}"
        );
    }

    #[test]
    fn outgoing_headers_carry_the_remaining_budget_and_the_absolute_deadline() {
        let meta = Meta::root().with_timeout(Duration::from_millis(1500));
        let out = meta.outgoing_headers();
        let budget: u64 = out
            .get(header::TIMEOUT_MS)
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        assert!((1400..=1500).contains(&budget), "{budget}");
        let absolute: u128 = out.get(header::DEADLINE).unwrap().as_str().parse().unwrap();
        let expected = unix_millis(SystemTime::now() + Duration::from_millis(1500));
        assert!(
            absolute.abs_diff(expected) < 200,
            "{absolute} vs {expected}"
        );
        assert!(Meta::root()
            .outgoing_headers()
            .get(header::TIMEOUT_MS)
            .is_none());
    }

    #[test]
    fn a_malformed_budget_is_an_error_that_quotes_it_short() {
        let long = "9".repeat(100_000);
        let err = Meta::from_headers(Some(&headers(&[(header::TIMEOUT_MS, &long)]))).unwrap_err();
        assert_eq!(err.name, header::TIMEOUT_MS);
        assert!(err.to_string().len() < 300, "{}", err.to_string().len());
    }

    #[test]
    fn request_ids_from_threads_of_their_own_are_distinct() {
        let ids: std::collections::HashSet<String> = (0..4)
            .map(|_| std::thread::spawn(|| (0..1000).map(|_| new_request_id()).collect::<Vec<_>>()))
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(ids.len(), 4000);
    }

    #[test]
    fn the_caller_is_read_from_its_headers_and_carried_on() {
        let meta = Meta::from_headers(Some(&headers(&[
            (header::AUTH_SUBJECT, "u1"),
            (header::AUTH_ROLES, "admin, ops,"),
        ])))
        .unwrap();
        let caller = meta.caller.clone().unwrap();
        assert_eq!(caller.subject, "u1");
        assert_eq!(caller.roles, ["admin", "ops"]);
        assert!(caller.has_role("admin") && !caller.has_role("root"));
        let out = meta.outgoing_headers();
        assert_eq!(out.get(header::AUTH_SUBJECT).unwrap().as_str(), "u1");
        assert_eq!(out.get(header::AUTH_ROLES).unwrap().as_str(), "admin,ops");
        assert!(
            Meta::from_headers(Some(&headers(&[(header::AUTH_SUBJECT, " ")])))
                .unwrap()
                .caller
                .is_none()
        );
    }

    #[test]
    fn clones_share_one_cancellation() {
        let meta = Meta::root();
        let clone = meta.clone();
        assert!(!clone.is_cancelled());
        meta.cancel();
        assert!(clone.is_cancelled());
    }

    #[tokio::test]
    async fn cancelled_wakes_every_clone_waiting_and_answers_later_ones_at_once() {
        let meta = Meta::root();
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let clone = meta.clone();
                tokio::spawn(async move { clone.cancelled().await })
            })
            .collect();
        tokio::task::yield_now().await;
        let early = tokio::time::timeout(Duration::from_millis(50), meta.cancelled()).await;
        assert!(early.is_err(), "not cancelled yet");
        meta.cancel();
        for waiter in waiting {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("woken by the cancel")
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), meta.clone().cancelled())
            .await
            .expect("a wait begun after the cancel ends at once");
    }

    #[tokio::test]
    async fn the_answerer_is_woken_by_a_cancel_and_a_later_wait_ends_at_once() {
        let cancellation = Cancellation::default();
        let answerer = {
            let cancellation = cancellation.clone();
            tokio::spawn(async move { cancellation.answerer_cancelled().await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!answerer.is_finished(), "not cancelled yet");
        cancellation.cancel();
        tokio::time::timeout(Duration::from_secs(5), answerer)
            .await
            .expect("woken by the cancel")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), cancellation.answerer_cancelled())
            .await
            .expect("a wait begun after the cancel ends at once");
    }

    #[test]
    fn a_settled_request_is_not_cancelled_later() {
        let meta = Meta::root();
        meta.cancel.settle();
        meta.cancel();
        assert!(!meta.is_cancelled());
        let cancelled = Meta::root();
        cancelled.cancel();
        cancelled.cancel.settle();
        assert!(
            cancelled.is_cancelled(),
            "settling comes too late once cancelled"
        );
    }

    #[test]
    fn with_timeout_keeps_the_sooner_deadline() {
        let soon = Meta::root().with_timeout(Duration::from_millis(10));
        let later = soon.clone().with_timeout(Duration::from_secs(60));
        assert_eq!(soon.deadline, later.deadline);
    }
}
