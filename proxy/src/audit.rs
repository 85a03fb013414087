//! The node's own audit events, which change no metadata and so are not in the replicated
//! trail (`shoal_raft::AuditEvent`): sign-ins that failed (with the login name tried),
//! tokens issued (who, through which credential, for what access), console sign-ins, and
//! pulls when `--audit-pulls` asks for them. They go as JSON lines to `--audit-log`
//! (a file, appended to, or `stdout`).
//!
//! Writing never blocks a request: events go through a bounded queue to a writer thread,
//! and when the queue is full (the disk is slow, or someone floods sign-ins) the event is
//! dropped and counted in `shoal_audit_events_dropped_total`. A node without `--audit-log`
//! builds no event at all.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use serde::Serialize;

use crate::wire::Request;

/// Events waiting for the writer at most.
const QUEUE: usize = 16_384;

/// Where node-local audit events go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditSink {
    Stdout,
    File(PathBuf),
}

impl AuditSink {
    /// `stdout`, or a file path.
    pub fn parse(s: &str) -> AuditSink {
        match s {
            "stdout" | "-" => AuditSink::Stdout,
            path => AuditSink::File(PathBuf::from(path)),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct AuditConfig {
    /// `None`: node-local events are not recorded.
    pub log: Option<AuditSink>,
    /// Record every manifest pull too.
    pub pulls: bool,
}

/// One node-local event, as its JSON line spells it.
#[derive(Serialize, Default)]
pub struct NodeEvent<'a> {
    /// `signin.failed`, `token.issue`, `console.signin`, `pull`.
    pub action: &'a str,
    /// The principal acting, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<&'a str>,
    /// The credential or federated identity it acted through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'a str>,
    /// The login name a client signed in with (also when it was wrong).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<&'a str>,
    /// Access granted (`repository:team/app:pull`).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub access: &'a [String],
    /// `ok`, or why it was refused.
    pub result: &'a str,
}

#[derive(Serialize)]
struct Line<'a> {
    at: String,
    node: u64,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(flatten)]
    event: NodeEvent<'a>,
}

/// A handle to the node's audit log; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct AuditLog {
    tx: Option<SyncSender<String>>,
    pulls: bool,
    node: u64,
}

impl AuditLog {
    /// Opens the sink of `config` (creating the file, appending) and starts its writer.
    pub fn open(config: &AuditConfig, node: u64) -> std::io::Result<AuditLog> {
        let Some(sink) = &config.log else {
            return Ok(AuditLog::default());
        };
        let out: Box<dyn Write + Send> = match sink {
            AuditSink::Stdout => Box::new(std::io::stdout()),
            AuditSink::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("shoal-audit".into())
            .spawn(move || write_lines(rx, out))?;
        Ok(AuditLog {
            tx: Some(tx),
            pulls: config.pulls,
            node,
        })
    }

    /// Whether pulls are recorded.
    pub fn pulls(&self) -> bool {
        self.pulls && self.tx.is_some()
    }

    /// Queues `event`, caused by `req`; drops it (counted) when the queue is full.
    pub fn record(&self, req: &Request, event: NodeEvent) {
        let Some(tx) = &self.tx else {
            return;
        };
        let line = Line {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            node: self.node,
            request_id: &req.id,
            from: req.client.map(|c| c.to_string()),
            event,
        };
        let Ok(json) = serde_json::to_string(&line) else {
            return;
        };
        // Full (a slow disk, a flood of sign-ins) or the writer gone: never wait.
        if tx.try_send(json).is_err() {
            metrics::counter!(crate::metrics::AUDIT_DROPPED).increment(1);
        }
    }
}

/// Writes each queued line, flushing whenever the queue runs empty.
fn write_lines(rx: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(line) = next {
            if writeln!(out, "{line}").is_err() {
                metrics::counter!(crate::metrics::AUDIT_DROPPED).increment(1);
            } else {
                metrics::counter!(crate::metrics::AUDIT_WRITTEN).increment(1);
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            tracing::warn!(error = %e, "writing the audit log failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn events_are_json_lines_with_request_and_client() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(
            &AuditConfig {
                log: Some(AuditSink::File(path.clone())),
                pulls: false,
            },
            3,
        )
        .unwrap();
        let mut req = Request::new(http::Method::GET, "/auth/token", Default::default());
        req.id = "r-1".into();
        req.client = Some([192, 0, 2, 9].into());
        log.record(
            &req,
            NodeEvent {
                action: "signin.failed",
                login: Some("mallory"),
                result: "invalid username or password",
                ..NodeEvent::default()
            },
        );
        let mut text = String::new();
        for _ in 0..200 {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.ends_with('\n') {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["action"], "signin.failed");
        assert_eq!(v["login"], "mallory");
        assert_eq!(v["from"], "192.0.2.9");
        assert_eq!(v["request_id"], "r-1");
        assert_eq!(v["node"], 3);
        assert!(v.get("actor").is_none(), "absent fields are left out");
        assert!(!log.pulls());
    }

    #[test]
    fn without_a_sink_nothing_is_recorded() {
        let log = AuditLog::open(&AuditConfig::default(), 1).unwrap();
        assert!(log.tx.is_none());
        assert!(!log.pulls());
    }
}
