//! Spans of the hops a request makes, for the trace exporter a process installs.
//!
//! Each hop already has its span in the wire's trace context: [`Meta::trace`] is the caller's
//! trace id with a span id of this hop's own, and the caller's span id is
//! [`Meta::parent_span`]. So a span here is those ids with a name, a kind and a time, made
//! when the hop ends, and handed to the one [`Exporter`] the process installed
//! ([`install`]; `courier-runtime` installs an OTLP one when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set). Without one, [`enabled`] is a load of a once-set cell and nothing else is done: the
//! hot path pays nothing for spans it does not export.
//!
//! A hop that can be cancelled midway (a handler past its deadline, a caller that gave up, an
//! HTTP client gone) holds an [`Open`] span, recorded as cancelled when it is dropped before
//! it ends: the spans of its callees name it as their parent, so it must reach the trace.
//!
//! Spans made here: the endpoint's handling (server), a call to another service (client), a
//! durable event's publish (producer) and its handling (consumer). The gateway adds its HTTP
//! request (server), the orders service its saga's steps (internal).

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use crate::meta::{Meta, TraceContext};

/// What a span stands for, as OpenTelemetry names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Handling a request.
    Server,
    /// Waiting for another service's answer.
    Client,
    /// Sending a durable event.
    Producer,
    /// Handling a durable event.
    Consumer,
    /// Work of the process's own (a saga's step).
    Internal,
}

/// A finished span.
#[derive(Debug, Clone)]
pub struct Span {
    /// What was done: the subject, or `<method> <route>` at the gateway.
    pub name: Cow<'static, str>,
    /// Its kind.
    pub kind: SpanKind,
    /// The trace and this span's id.
    pub trace: TraceContext,
    /// The span this one was made for; `None` for the first of a trace.
    pub parent: Option<u64>,
    /// When it started, on the wall clock.
    pub start: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// Attributes: the request id always, then whatever the hop knows (status, subject).
    pub attributes: Vec<(&'static str, String)>,
    /// The error it ended with, as `<code> <message>`; `None` when it succeeded.
    pub error: Option<String>,
}

impl Span {
    /// The span `trace` names (under `parent`), that started `took` ago and ends now, with no
    /// attributes yet.
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        trace: TraceContext,
        parent: Option<u64>,
        took: Duration,
    ) -> Self {
        Self {
            name: name.into(),
            kind,
            trace,
            parent,
            start: SystemTime::now() - took,
            duration: took,
            attributes: Vec::new(),
            error: None,
        }
    }

    /// A span of `meta`'s hop that started `took` ago and ends now.
    pub fn of_hop(
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        meta: &Meta,
        took: Duration,
    ) -> Self {
        Self::new(name, kind, meta.trace, meta.parent_span, took)
            .with("courier.request_id", meta.request_id.clone())
    }

    /// The same span with one more attribute.
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.attributes.push((key, value.into()));
        self
    }

    /// The same span, failed with `error` when there is one.
    pub fn failed(mut self, error: Option<String>) -> Self {
        self.error = error;
        self
    }
}

/// A span under way: recorded by [`Open::finish`], or, if dropped first, as cancelled.
#[derive(Debug)]
pub struct Open {
    span: Option<Span>,
    started: Instant,
}

impl Open {
    /// Opens `span` now (its start, duration and error are set when it ends); `None` without
    /// an exporter, and then `span` is never built.
    pub fn new(span: impl FnOnce() -> Span) -> Option<Self> {
        enabled().then(|| Self {
            span: Some(Span {
                start: SystemTime::now(),
                ..span()
            }),
            started: Instant::now(),
        })
    }

    /// Opens the span of `meta`'s hop, named `name`.
    pub fn hop(
        name: impl FnOnce() -> Cow<'static, str>,
        kind: SpanKind,
        meta: &Meta,
    ) -> Option<Self> {
        Self::new(|| Span::of_hop(name(), kind, meta, Duration::ZERO))
    }

    /// Names the span (what it is is known only once work has started, say a route).
    pub fn rename(&mut self, name: impl Into<Cow<'static, str>>) {
        if let Some(span) = &mut self.span {
            span.name = name.into();
        }
    }

    /// Adds an attribute.
    pub fn set(&mut self, key: &'static str, value: impl Into<String>) {
        if let Some(span) = &mut self.span {
            span.attributes.push((key, value.into()));
        }
    }

    /// Ends the span now, failed with `error` when there is one, and records it.
    pub fn finish(mut self, error: Option<String>) {
        self.end(error);
    }

    fn end(&mut self, error: Option<String>) {
        if let Some(mut span) = self.span.take() {
            span.duration = self.started.elapsed();
            span.error = error;
            record(span);
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.end(Some("cancelled before it ended".to_owned()));
    }
}

tokio::task_local! {
    /// The hop whose work the current task is doing (see [`within`]).
    static HOP: Hop;
}

/// What the work of a hop carries with it: its trace, for the spans of work done inside it,
/// and its request id, for log lines.
pub(crate) struct Hop {
    trace: TraceContext,
    request_id: String,
}

impl Hop {
    /// The hop `meta` describes, when an exporter or the log output wants it.
    pub(crate) fn of(meta: &Meta) -> Option<Self> {
        (enabled() || LOG_IDS.load(Ordering::Relaxed)).then(|| Self {
            trace: meta.trace,
            request_id: meta.request_id.clone(),
        })
    }

    /// Runs `work` inside `hop`, or as it is without one.
    pub(crate) fn within<F: Future>(hop: Option<Self>, work: F) -> impl Future<Output = F::Output> {
        match hop {
            Some(hop) => futures::future::Either::Left(HOP.scope(hop, work)),
            None => futures::future::Either::Right(work),
        }
    }
}

/// Whether log lines want the ids of the hop they are written in ([`carry_log_ids`]).
static LOG_IDS: AtomicBool = AtomicBool::new(false);

/// Makes every hop's work carry its request id and trace id for log lines to read
/// ([`log_ids`]); `courier-runtime` turns it on with its log output. Off, and without an
/// exporter, [`within`] costs nothing.
pub fn carry_log_ids(on: bool) {
    LOG_IDS.store(on, Ordering::Relaxed);
}

/// Runs `work` as the hop `meta` describes: spans of work done inside it without a [`Meta`]
/// at hand (a database call: [`inner`]) are its children, and log lines written by it can
/// name its request and trace ([`log_ids`]). A plain task-local, set only when an exporter or
/// the log output wants it: a request pays a copy of its id, not a `tracing` span.
pub fn within<F: Future>(meta: &Meta, work: F) -> impl Future<Output = F::Output> {
    Hop::within(Hop::of(meta), work)
}

/// The request id and trace id (32 hex digits) of the hop the current task works for
/// ([`within`]), for a log line; `None` outside one.
pub fn log_ids() -> Option<(String, String)> {
    HOP.try_with(|hop| (hop.request_id.clone(), hop.trace.trace_id_hex()))
        .ok()
}

/// A span for work that took `took` and ends now inside the current hop ([`within`]), as its
/// child; `None` outside a hop or without an exporter, so callers build nothing then.
pub fn inner(name: impl Into<Cow<'static, str>>, kind: SpanKind, took: Duration) -> Option<Span> {
    if !enabled() {
        return None;
    }
    let hop = HOP.try_with(|hop| hop.trace).ok()?;
    Some(Span::new(name, kind, hop.child(), Some(hop.span_id), took))
}

/// Where finished spans go. Called on the thread that finished the span: it must not block.
pub trait Exporter: Send + Sync + 'static {
    /// Takes one finished span.
    fn export(&self, span: Span);
}

static EXPORTER: OnceLock<Box<dyn Exporter>> = OnceLock::new();

/// Installs the process's exporter; `false` when one was installed already (it stays).
pub fn install(exporter: impl Exporter) -> bool {
    EXPORTER.set(Box::new(exporter)).is_ok()
}

/// Whether spans are exported: build one only then.
#[inline]
pub fn enabled() -> bool {
    EXPORTER.get().is_some()
}

/// Hands `span` to the exporter, if there is one.
pub fn record(span: Span) {
    if let Some(exporter) = EXPORTER.get() {
        exporter.export(span);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Keeps what it is given (the test binary's one exporter: other tests' spans land here
    /// too, so each test looks for its own by name).
    struct Keep(&'static Mutex<Vec<Span>>);

    impl Exporter for Keep {
        fn export(&self, span: Span) {
            self.0.lock().unwrap().push(span);
        }
    }

    fn recorded(name: &str) -> Vec<Span> {
        static KEPT: Mutex<Vec<Span>> = Mutex::new(Vec::new());
        install(Keep(&KEPT));
        let kept = KEPT.lock().unwrap();
        kept.iter().filter(|s| s.name == name).cloned().collect()
    }

    #[test]
    fn an_open_span_dropped_before_its_end_is_recorded_as_cancelled() {
        recorded("");
        let meta = Meta::root().next_hop();
        let finished = Open::hop(|| "finished".into(), SpanKind::Client, &meta).unwrap();
        let mut dropped = Open::hop(|| "dropped".into(), SpanKind::Server, &meta).unwrap();
        dropped.set("http.route", "/orders");
        finished.finish(None);
        drop(dropped);
        let finished = recorded("finished");
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].error, None);
        assert_eq!(finished[0].parent, meta.parent_span);
        assert_eq!(finished[0].trace, meta.trace);
        let dropped = recorded("dropped");
        assert_eq!(dropped.len(), 1, "recorded once, when dropped");
        assert_eq!(
            dropped[0].error.as_deref(),
            Some("cancelled before it ended")
        );
        assert!(dropped[0]
            .attributes
            .contains(&("http.route", "/orders".to_owned())));
    }

    #[tokio::test]
    async fn work_within_a_hop_makes_spans_under_it() {
        recorded("");
        let meta = Meta::root();
        assert!(
            inner("SELECT", SpanKind::Client, Duration::ZERO).is_none(),
            "outside a hop"
        );
        let span = within(&meta, async {
            inner("SELECT", SpanKind::Client, Duration::from_millis(1))
        })
        .await
        .expect("inside the hop");
        assert_eq!(span.trace.trace_id, meta.trace.trace_id);
        assert_eq!(span.parent, Some(meta.trace.span_id));
        assert_ne!(span.trace.span_id, meta.trace.span_id);
    }
}
