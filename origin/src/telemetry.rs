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

/// Whether an OTLP endpoint is configured (read once: the environment is settled before
/// the first span).
pub fn configured() -> bool {
    static CONFIGURED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CONFIGURED.get_or_init(|| {
        set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT")
    })
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
    let attributes = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
    if !set("OTEL_SERVICE_NAME") && !attributes.contains("service.name=") {
        resource = resource.with_service_name(service);
    }
    if let (Some(instance), false) = (instance, attributes.contains("service.instance.id=")) {
        resource = resource.with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            instance,
        ));
    }
    // The sampling decision is taken before a root span exists (`sampled`); the SDK
    // keeps every span it is given.
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.build())
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .build();
    let tracer = provider.tracer("shoal");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(Some((Exporter(provider), tracer)))
}

/// The OpenTelemetry layer for `tracer`, taking Shoal's own spans from `debug` up (the
/// HTTP, QUIC and Raft libraries' internals stay out of traces).
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
    // Only the spans that begin a process's part of a trace may be roots, and their makers
    // ask `sampled` first: the work of a request that is not traced makes no span.
    let sampled = tracing_subscriber::filter::DynFilterFn::new(
        |meta: &tracing::Metadata<'_>, cx: &tracing_subscriber::layer::Context<'_, S>| {
            cx.lookup_current().is_some() || ROOTS.contains(&meta.name())
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

/// The spans that begin a process's part of a trace: a client's request, the origin's
/// request, a peer's fetch and a forwarded write. Whoever makes one asks `sampled` first.
pub const ROOTS: [&str; 4] = ["request", "origin request", "peer serve", "forwarded write"];

/// `OTEL_TRACES_SAMPLER` and its argument, as the specification defines them: what a root
/// gets, and whether a child follows its parent's flag instead.
#[derive(Clone, Copy)]
struct Sampler {
    parent_based: bool,
    ratio: f64,
}

impl Sampler {
    /// The sampler `OTEL_TRACES_SAMPLER` names with argument `arg` (the default:
    /// `parentbased_always_on`; a ratio outside 0..=1 counts as 1).
    fn parse(name: &str, arg: Option<&str>) -> Sampler {
        let arg = arg
            .and_then(|a| a.trim().parse::<f64>().ok())
            .filter(|r| (0.0..=1.0).contains(r))
            .unwrap_or(1.0);
        let (parent_based, ratio) = match name.trim() {
            "always_on" => (false, 1.0),
            "always_off" => (false, 0.0),
            "traceidratio" => (false, arg),
            "parentbased_always_off" => (true, 0.0),
            "parentbased_traceidratio" => (true, arg),
            _ => (true, 1.0),
        };
        Sampler {
            parent_based,
            ratio,
        }
    }

    /// Whether to trace, given the parent's sampled flag (if any) and a random draw.
    fn decide(self, parent: Option<bool>, draw: impl FnOnce() -> f64) -> bool {
        match parent.filter(|_| self.parent_based) {
            Some(flag) => flag,
            None => self.ratio >= 1.0 || (self.ratio > 0.0 && draw() < self.ratio),
        }
    }
}

fn sampler() -> Sampler {
    static SAMPLER: std::sync::OnceLock<Sampler> = std::sync::OnceLock::new();
    *SAMPLER.get_or_init(|| {
        let name = std::env::var("OTEL_TRACES_SAMPLER").unwrap_or_default();
        let arg = std::env::var("OTEL_TRACES_SAMPLER_ARG").ok();
        Sampler::parse(&name, arg.as_deref())
    })
}

/// Whether a request carrying `traceparent` (or none) is traced here: decided before any
/// span exists, so a request that is not traced costs nothing. A parent-based sampler
/// follows the parent's flag; otherwise the ratio draws at random.
pub fn sampled(traceparent: Option<&str>) -> bool {
    if !configured() {
        return false;
    }
    let parent = traceparent.and_then(|t| {
        let context = TraceContextPropagator::new().extract(&One(t));
        let span = context.span();
        let sc = span.span_context();
        sc.is_valid().then(|| sc.is_sampled())
    });
    sampler().decide(parent, rand::random::<f64>)
}

/// The trace id of `span` (made after `sampled` said yes), which logs quote; `None` without
/// an exporter. Call it once the span's parent is set and before the span is entered.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if !span_context.is_valid() {
        return None;
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

/// The span `make` makes as the child of the remote context `parent` (a peer's or the
/// writer's), or none at all: work done for another process is traced only as part of its
/// trace, and only when that trace is sampled.
pub fn child(parent: Option<&str>, make: &dyn Fn() -> tracing::Span) -> tracing::Span {
    match parent {
        Some(parent) if sampled(Some(parent)) => {
            let span = make();
            adopt(&span, parent);
            span
        }
        _ => tracing::Span::none(),
    }
}

/// Sets an attribute of `span`'s exported span only (not a log field).
pub fn attribute(span: &tracing::Span, key: &'static str, value: impl Into<opentelemetry::Value>) {
    span.set_attribute(key, value);
}

/// Makes `span` a child of the remote span `traceparent` names (a client's, or the node's
/// that called). Must come before the span is first entered; a malformed value is ignored.
pub fn adopt(span: &tracing::Span, traceparent: &str) {
    let context = TraceContextPropagator::new().extract(&One(traceparent));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

#[cfg(test)]
mod tests {
    use super::Sampler;

    fn check(name: &str, arg: Option<&str>, parent: Option<bool>, draw: f64, expected: bool) {
        let s = Sampler::parse(name, arg);
        assert_eq!(
            s.decide(parent, || draw),
            expected,
            "{name} {arg:?} parent {parent:?} draw {draw}"
        );
    }

    #[test]
    fn samplers_decide_as_the_specification_says() {
        // The default follows the parent, and traces roots.
        check("", None, None, 0.5, true);
        check("", None, Some(false), 0.5, false);
        check("parentbased_always_on", None, Some(true), 0.5, true);
        check("parentbased_always_off", None, None, 0.0, false);
        check("parentbased_always_off", None, Some(true), 0.5, true);
        // A ratio draws for roots; parent-based, a parent's flag wins.
        check("parentbased_traceidratio", Some("0.01"), None, 0.005, true);
        check("parentbased_traceidratio", Some("0.01"), None, 0.5, false);
        check(
            "parentbased_traceidratio",
            Some("0.01"),
            Some(true),
            0.5,
            true,
        );
        check("traceidratio", Some("0.01"), Some(true), 0.5, false);
        check("traceidratio", Some("0"), None, 0.0, false);
        check("always_on", None, Some(false), 0.99, true);
        check("always_off", None, Some(true), 0.0, false);
        // A ratio that is no ratio counts as 1.
        check("traceidratio", Some("2"), None, 0.99, true);
        check("traceidratio", Some("lots"), None, 0.99, true);
    }
}
