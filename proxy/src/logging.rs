//! Log set-up: `tracing` to stderr, human-readable or JSON (`--log-format json`), filtered by
//! `RUST_LOG` (default `DEFAULT`: Shoal at `info`, openraft and Pingora from `warn`).
//! Pingora's own `log` records are bridged in. Colours only on a terminal, so a log file or
//! collector gets plain text.
//!
//! Lines are collected in memory and written in batches by a thread of their own
//! (`log_lines`): with one access line per request, writing each to unbuffered stderr on
//! the request's thread cost a syscall per request (5 % of a manifest-GET load), and a
//! worker woken per line cost twice that. Nothing is dropped. `init` returns a guard that
//! flushes on drop, so `main` keeps it until the process ends. It also starts the trace
//! exporter when one is configured, and lets the metadata carry trace contexts over the
//! plane.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::log_lines::Flusher;

use crate::config::LogFormat;

/// Shoal's own events at `info`; openraft's internals (state dumps at start, elections,
/// replication) and Pingora's start and shutdown chatter only from `warn` up. `RUST_LOG`
/// replaces it (`RUST_LOG=info,openraft=info` brings openraft back).
const DEFAULT: &str = "info,openraft=warn,pingora_core=warn,pingora=warn";

/// What `init` set up; dropping it flushes the last log lines and spans.
pub struct Logging {
    _lines: Flusher,
    _traces: Option<shoal_origin::telemetry::Exporter>,
}

/// Logs, and traces when an OTLP endpoint is configured (`shoal_origin::telemetry`). The log
/// filter applies to the log lines only: with traces on, Shoal's `debug` spans still reach
/// the exporter without reaching the logs.
pub fn init(format: LogFormat, node_id: u64) -> Option<Logging> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT));
    let logged = filter.max_level_hint();
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = match crate::log_lines::lines(std::io::stderr(), "shoal-log") {
        Ok(w) => w,
        Err(e) => {
            eprintln!("logging is off: no thread to write it: {e}");
            return None;
        }
    };
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let lines = match format {
        LogFormat::Json => lines.json().flatten_event(true).with_filter(filter).boxed(),
        LogFormat::Text => lines.with_filter(filter).boxed(),
    };
    let (traces, tracer) =
        match shoal_origin::telemetry::exporter("shoal", Some(format!("node-{node_id}"))) {
            Ok(t) => t.unzip(),
            Err(e) => {
                eprintln!("traces are off: {e}");
                (None, None)
            }
        };
    if tracer.is_some() {
        shoal_raft::set_trace_hooks(shoal_raft::TraceHooks {
            current: shoal_origin::telemetry::traceparent,
            child: shoal_origin::telemetry::child,
        });
    }
    let result = tracing_subscriber::registry()
        .with(lines)
        .with(tracer.map(shoal_origin::telemetry::layer))
        .try_init();
    // `log` records (Pingora's) are bridged in up to the most verbose level any layer takes:
    // with traces on, that is `debug` for Shoal's spans, and every debug record of the HTTP
    // stack would be built and filtered per request. Only the log lines want them.
    if let Some(level) = logged {
        log::set_max_level(tracing_log::AsLog::as_log(&level));
    }
    match result {
        Ok(()) => Some(Logging {
            _lines: guard,
            _traces: traces,
        }),
        Err(e) => {
            eprintln!("logging was already initialised: {e}");
            None
        }
    }
}
