//! Carrying a trace across the plane without knowing how traces are kept: the node installs
//! how to read the current span's context as a W3C `traceparent` and how to make a span the
//! child of one (`shoal_origin::telemetry` does both); without hooks nothing travels. A
//! forwarded write carries its writer's context, so the leader's commit joins the trace.

use std::sync::OnceLock;

/// How the node reads and adopts trace contexts.
#[derive(Clone, Copy)]
pub struct TraceHooks {
    /// The current span's context, if it has one.
    pub current: fn() -> Option<String>,
    /// Makes a span, not yet entered, the child of a remote context.
    pub adopt: fn(&tracing::Span, &str),
    /// Whether work under this remote context is traced here.
    pub sampled: fn(Option<&str>) -> bool,
}

static HOOKS: OnceLock<TraceHooks> = OnceLock::new();

/// Installs the hooks for this process (the first call wins).
pub fn set_trace_hooks(hooks: TraceHooks) {
    let _ = HOOKS.set(hooks);
}

pub(crate) fn current() -> Option<String> {
    HOOKS.get().and_then(|h| (h.current)())
}

/// The span `make` makes, as a child of the remote context `parent`; no span at all without
/// one, or when its trace is not sampled.
pub(crate) fn child(parent: Option<&str>, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    match (HOOKS.get(), parent) {
        (Some(h), Some(parent)) if (h.sampled)(Some(parent)) => {
            let span = make();
            (h.adopt)(&span, parent);
            span
        }
        _ => tracing::Span::none(),
    }
}
