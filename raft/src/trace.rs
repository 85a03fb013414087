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
    /// The span `make` makes as the child of a remote context, or none (no context, or
    /// not sampled).
    pub child: fn(Option<&str>, &dyn Fn() -> tracing::Span) -> tracing::Span,
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
/// hooks, without a context, or when its trace is not sampled.
pub(crate) fn child(parent: Option<&str>, make: &dyn Fn() -> tracing::Span) -> tracing::Span {
    match HOOKS.get() {
        Some(h) => (h.child)(parent, make),
        None => tracing::Span::none(),
    }
}
