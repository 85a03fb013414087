//! OpenTelemetry traces for both binaries (`shoal`, `shoal-origin`): export over OTLP
//! (HTTP/protobuf) when an endpoint is configured, and the W3C `traceparent` that carries a
//! trace from a client through a node, to its peers over the cluster plane and to the
//! origin over HTTP, so that one pull across nodes is one trace.
//!
//! Configured by the standard variables, read by the OpenTelemetry SDK itself:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), `OTEL_SERVICE_NAME`,
//! `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` (e.g. `parentbased_traceidratio` and
//! `0.01`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*`. Without an endpoint nothing is set up
//! and no span costs more than the logs already do.
//!
//! It lives in this crate because the origin is the one crate every binary links; it knows
//! nothing of what is traced. Spans are exported from a thread of the SDK's batch processor
//! (the blocking HTTP client must not run on a tokio worker), so exporting never delays a
//! request; a full queue drops spans (the SDK's own bound, `OTEL_BSP_MAX_QUEUE_SIZE`).

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;

/// Flushes and stops the exporter when dropped: keep it until the process ends.
pub struct Exporter(SdkTracerProvider);

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

fn set(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.trim().is_empty())
}

/// Whether an OTLP endpoint is configured.
pub fn configured() -> bool {
    set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT")
}

/// The exporter and the tracer spans go to, when an endpoint is configured; `service` names
/// the process and `instance` (`node-3`) tells the processes of a region apart, unless
/// `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` say otherwise.
pub fn exporter(
    service: &'static str,
    instance: Option<String>,
) -> Result<Option<(Exporter, SdkTracer)>, String> {
    if !configured() {
        return Ok(None);
    }
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(|e| format!("the OTLP exporter: {e}"))?;
    let mut resource = Resource::builder();
    let named = set("OTEL_SERVICE_NAME")
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    if !named {
        resource = resource.with_service_name(service);
    }
    let attributes = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
    if let (Some(instance), false) = (instance, attributes.contains("service.instance.id=")) {
        resource = resource.with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            instance,
        ));
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("shoal");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(Some((Exporter(provider), tracer)))
}

/// The OpenTelemetry layer for `tracer`, taking Shoal's own spans from `debug` up (the
/// HTTP, QUIC and Raft libraries' internals stay out of traces), and nothing inside a span
/// whose trace is not sampled (`begin`): with 1 % of traces sampled, the other requests pay
/// for one span each, not for every span they would have made.
pub fn layer<S>(tracer: SdkTracer) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    use tracing_subscriber::filter::FilterExt as _;
    use tracing_subscriber::Layer as _;
    let ours = tracing_subscriber::filter::Targets::new()
        .with_target("shoal_proxy", tracing::Level::DEBUG)
        .with_target("shoal_origin", tracing::Level::DEBUG)
        .with_target("shoal_raft", tracing::Level::DEBUG);
    let sampled = tracing_subscriber::filter::DynFilterFn::new(
        |_: &tracing::Metadata<'_>, cx: &tracing_subscriber::layer::Context<'_, S>| {
            cx.lookup_current().is_none_or(|current| {
                current
                    .scope()
                    .all(|s| s.extensions().get::<Unsampled>().is_none())
            })
        },
    );
    // No busy/idle timing (a clock read at every poll of every instrumented future), no
    // thread or source-location attributes: what a span costs is paid on every request.
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_filter(ours.and(sampled))
}

/// Marks a span whose trace is not sampled.
struct Unsampled;

/// Settles `span`'s sampling decision (the sampler's, which for a child of a remote context
/// follows the remote's flag) and returns its trace id, which logs quote; `None` without an
/// exporter. Call it once the span's parent is set and before the span is entered.
pub fn begin(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if !span_context.is_valid() {
        return None;
    }
    if !span_context.is_sampled() {
        span.with_subscriber(|(id, dispatch)| {
            if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() {
                if let Some(data) = registry.span(id) {
                    // `begin` may run twice on a span (`adopt`, then its caller).
                    data.extensions_mut().replace(Unsampled);
                }
            }
        });
    }
    Some(span_context.trace_id().to_string())
}

struct One<'a>(&'a str);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// The current span's context as a W3C `traceparent`; `None` when it has none (no
/// exporter, or outside any span).
pub fn traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Sets an attribute of `span`'s exported span only (not a log field).
pub fn attribute(span: &tracing::Span, key: &'static str, value: impl Into<opentelemetry::Value>) {
    span.set_attribute(key, value);
}

/// Makes `span` a child of the remote span `traceparent` names (a client's, or the node's
/// that called) and settles its sampling (`begin`). Must come before the span is first
/// entered; a malformed value is ignored.
pub fn adopt(span: &tracing::Span, traceparent: &str) {
    let context = TraceContextPropagator::new().extract(&One(traceparent));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
    begin(span);
}
