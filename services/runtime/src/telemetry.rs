//! Log output and trace export for Courier binaries.
//!
//! Logs: pretty lines for people or JSON for machines, on stderr. In JSON each line written
//! while a request, an event or a saga step is handled carries its ids as
//! `"span":{"request_id":..,"trace_id":..}`. They come from the task-local that
//! [`courier_actors::trace::within`] sets around the work, read only when a line is written:
//! a request pays a copy of its id, not a `tracing` span (a registry slot, its fields
//! formatted as JSON, the filter consulted at every poll). Pretty lines do not carry them.
//!
//! Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set,
//! every hop's span ([`courier_actors::trace`]) is exported over OTLP/HTTP, protobuf or JSON
//! as `OTEL_EXPORTER_OTLP_PROTOCOL` says (`http/protobuf` by default), in batches from a
//! thread of the exporter's own. `OTEL_SERVICE_NAME` names the service (else the Courier
//! service name); `OTEL_SDK_DISABLED=true` turns export off. Every trace is exported:
//! `OTEL_TRACES_SAMPLER` is not read, and a trace begun here is marked sampled (dropping some
//! hops of a trace would leave the others without their parents).

use std::time::Duration;

use courier_actors::trace::{Exporter, Span, SpanKind};
use courier_config::{LogFormat, LogSettings};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How long the last spans may take to leave when the process stops.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Logging and trace export, as [`init`] set them up. Call [`Telemetry::shutdown`] at the
/// end of `main` to send the spans still buffered; dropping it does the same, as a fallback.
#[must_use = "dropping it stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exports_traces(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still buffered, waiting a few seconds at most, and stops exporting.
    pub fn shutdown(mut self) {
        self.flush();
    }

    fn flush(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
                tracing::warn!(%error, "Could not send the last spans.");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Installs the global log subscriber (`RUST_LOG` when set, else `settings.level`; pretty or
/// JSON lines on stderr, coloured only on a terminal) and, when the environment asks for it, OTLP export of the spans of
/// `service` (see the module docs). Calling it twice keeps the first subscriber and exporter
/// (tests may call it per test).
pub fn init(service: &str, settings: &LogSettings) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    // Colours only for a terminal: a log file keeps plain text.
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    let _ = match settings.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => {
            let json = tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false);
            let installed = builder.json().event_format(WithIds(json)).try_init();
            if installed.is_ok() {
                courier_actors::trace::carry_log_ids(true);
            }
            installed
        }
    };
    Telemetry {
        provider: otlp(service),
    }
}

/// A JSON line written inside a hop's work ([`courier_actors::trace::within`]) with the
/// hop's ids added as `"span":{"request_id":..,"trace_id":..}`; other lines as `F` writes them.
struct WithIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((request_id, trace_id)) = courier_actors::trace::log_ids() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        if line.contains("\"span\":") {
            // The event has a field of that name: a second key would be ambiguous.
            return writer.write_str(&line);
        }
        let ids = serde_json::json!({ "request_id": request_id, "trace_id": trace_id });
        // Invariant: the JSON format writes one object and a line end.
        match line.trim_end().strip_suffix('}') {
            Some(object) => {
                let comma = if object.trim_end().ends_with('{') {
                    ""
                } else {
                    ","
                };
                writeln!(writer, "{object}{comma}\"span\":{ids}}}")
            }
            None => writer.write_str(&line),
        }
    }
}

/// The OTLP exporter the environment asks for, installed as `courier_actors`' exporter.
fn otlp(service: &str) -> Option<SdkTracerProvider> {
    let env = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
    let protocol = match env("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        None | Some("http/protobuf") => Protocol::HttpBinary,
        Some("http/json") => Protocol::HttpJson,
        Some(other) => {
            tracing::warn!(
                protocol = other,
                "OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf and http/json are supported; \
                 traces are not exported."
            );
            return None;
        }
    };
    // The exporter reads the endpoint, headers and time-out from the environment itself.
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
    {
        Ok(exporter) => exporter,
        Err(error) => {
            tracing::warn!(%error, "Cannot export traces over OTLP; going on without.");
            return None;
        }
    };
    let name = env("OTEL_SERVICE_NAME").unwrap_or_else(|| service.to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(name)
                .build(),
        )
        .build();
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "courier");
    if !courier_actors::trace::install(Otlp(tracer)) {
        return None;
    }
    tracing::info!("Exporting traces over OTLP.");
    Some(provider)
}

/// Hands Courier's spans to the OpenTelemetry SDK with their own ids, so the exported trace
/// is the one the `traceparent` headers carried.
struct Otlp(Tracer);

impl Exporter for Otlp {
    fn export(&self, span: Span) {
        let trace_id = TraceId::from_bytes(span.trace.trace_id.to_be_bytes());
        let flags = TraceFlags::new(span.trace.flags);
        let parent = match span.parent {
            Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
                trace_id,
                SpanId::from_bytes(parent.to_be_bytes()),
                flags,
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let end = span.start + span.duration;
        let status = match span.error {
            None => Status::Unset,
            Some(message) => Status::error(message),
        };
        let builder = self
            .0
            .span_builder(span.name)
            .with_kind(kind(span.kind))
            .with_trace_id(trace_id)
            .with_span_id(SpanId::from_bytes(span.trace.span_id.to_be_bytes()))
            .with_start_time(span.start)
            .with_attributes(
                span.attributes
                    .into_iter()
                    .map(|(key, value)| KeyValue::new(key, value)),
            )
            .with_status(status);
        self.0
            .build_with_context(builder, &parent)
            .end_with_timestamp(end);
    }
}

fn kind(kind: SpanKind) -> opentelemetry::trace::SpanKind {
    use opentelemetry::trace::SpanKind as Otel;
    match kind {
        SpanKind::Server => Otel::Server,
        SpanKind::Client => Otel::Client,
        SpanKind::Producer => Otel::Producer,
        SpanKind::Consumer => Otel::Consumer,
        SpanKind::Internal => Otel::Internal,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use courier_actors::{trace, Meta};
    use tracing_subscriber::fmt::MakeWriter;

    use super::WithIds;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    #[tokio::test]
    async fn a_json_line_written_inside_a_hop_carries_its_ids_and_others_do_not() {
        let lines = Lines::default();
        let json = tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false);
        let subscriber = tracing_subscriber::fmt()
            .json()
            .event_format(WithIds(json))
            .with_writer(lines.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        trace::carry_log_ids(true);
        let meta = Meta::root();
        tracing::info!(n = 1, "before");
        trace::within(&meta, async { tracing::info!(n = 2, "inside") }).await;
        tracing::info!(n = 3, "after");

        let written = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = written
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect();
        assert_eq!(lines.len(), 3, "{written}");
        let inside = &lines[1];
        assert_eq!(inside["message"], "inside", "{written}");
        assert_eq!(inside["n"], 2, "the event's own fields stay: {written}");
        assert_eq!(inside["span"]["request_id"], meta.request_id.as_str());
        assert_eq!(inside["span"]["trace_id"], meta.trace.trace_id_hex());
        for outside in [&lines[0], &lines[2]] {
            assert!(outside.get("span").is_none(), "{outside}");
        }
    }
}
