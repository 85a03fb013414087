//! The clock of a run and what is read around it: Shoal's counters and the watched server
//! processes just before the clock starts and just after it stops, then the `Report`.
//!
//! Every scenario goes through `Measure`, so setup (pushing the image, hashing it, making
//! clients) always happens before `start` and never counts, and every report has the same
//! fields whatever the scenario.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::host::{Machine, Watch};
use crate::report::{Phase, Report, Throughput};
use crate::shoal_metrics::{self, Snapshot};
use crate::stats::{percentiles, Recorder, Timeline};
use crate::target::Targets;

pub struct Measure {
    timeline: Arc<Timeline>,
    urls: Vec<String>,
    before: Snapshot,
    watches: Vec<Watch>,
    stopped: Option<Duration>,
}

/// What the scenario tells the report besides its samples.
pub struct Outline<P: Serialize> {
    pub scenario: &'static str,
    pub params: P,
    /// What `throughput.ops` counts.
    pub ops_unit: &'static str,
    pub counts: BTreeMap<String, u64>,
    pub facts: BTreeMap<String, String>,
}

impl Measure {
    /// Reads the counters and processes, then starts the clock.
    pub async fn start(targets: &Targets) -> Measure {
        let before = shoal_metrics::scrape(targets.urls()).await;
        let watches = targets.pids().iter().map(|p| Watch::start(*p)).collect();
        Measure {
            timeline: Timeline::start(),
            urls: targets.urls().to_vec(),
            before,
            watches,
            stopped: None,
        }
    }

    pub fn timeline(&self) -> Arc<Timeline> {
        self.timeline.clone()
    }

    /// Stops the clock (for scenarios with untimed checks after the load).
    pub fn stop(&mut self) {
        self.stopped
            .get_or_insert_with(|| self.timeline.started().elapsed());
    }

    /// Stops the clock if still running, reads the counters and processes again, and makes
    /// the report.
    pub async fn finish<P: Serialize>(mut self, rec: Recorder, outline: Outline<P>) -> Report {
        self.stop();
        let elapsed = self.stopped.expect("stopped above");
        let after = shoal_metrics::scrape(&self.urls).await;
        let timeline = self.timeline.snapshot(elapsed);
        let bytes: u64 = timeline.bytes.iter().sum();
        let ops: u64 = timeline.ops.iter().sum();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let done = rec.finish();
        let mut counts = outline.counts;
        counts.extend(done.events.iter().map(|(k, v)| (k.to_string(), *v)));
        Report {
            scenario: outline.scenario.to_string(),
            params: serde_json::to_value(&outline.params).unwrap_or_default(),
            targets: self.urls.clone(),
            elapsed_s: elapsed.as_secs_f64(),
            phases: done
                .phases
                .iter()
                .filter_map(|p| {
                    Some(Phase {
                        name: p.name.to_string(),
                        latency: percentiles(&p.ms)?,
                        bytes: p.bytes,
                    })
                })
                .collect(),
            throughput: Throughput {
                bytes,
                mb_per_s: bytes as f64 / secs / 1e6,
                ops,
                ops_unit: outline.ops_unit.to_string(),
                ops_per_s: ops as f64 / secs,
            },
            counts,
            facts: outline.facts,
            errors: done.errors,
            error_messages: done.messages,
            shoal: shoal_metrics::delta(&self.before, &after),
            servers: self.watches.into_iter().map(|w| w.finish(bytes)).collect(),
            machine: Machine::this(),
            timeline,
            samples: done.phases,
        }
    }
}
