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
}

static HOOKS: OnceLock<TraceHooks> = OnceLock::new();

/// Installs the hooks for this process (the first call wins).
pub fn set_trace_hooks(hooks: TraceHooks) {
    let _ = HOOKS.set(hooks);
}

pub(crate) fn current() -> Option<String> {
    HOOKS.get().and_then(|h| (h.current)())
}

pub(crate) fn adopt(span: &tracing::Span, parent: Option<&str>) {
    if let (Some(h), Some(parent)) = (HOOKS.get(), parent) {
        (h.adopt)(span, parent);
    }
}
