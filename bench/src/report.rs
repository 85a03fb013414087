//! The result of one run and its two written forms: a table for people and JSON with every
//! figure for machines (RESULTS.md, a comparison, CI's smoke test). The picture is
//! `plot.rs`.
//!
//! A scenario returns a `Report` and never prints, so a comparison can run scenarios
//! against several registries and put their reports side by side. The raw samples stay in
//! the report (not in the JSON) for the plot's latency distribution.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context;
use serde::Serialize;

use crate::args::{show_bytes, OutputArgs};
use crate::host::{Machine, ProcessUsage};
use crate::shoal_metrics::ShoalDeltas;
use crate::stats::{Percentiles, PhaseSamples, TimelineData};

#[derive(Serialize, Debug, Clone)]
pub struct Report {
    pub scenario: String,
    /// The scenario's flags as given (sizes in bytes).
    pub params: serde_json::Value,
    pub targets: Vec<String>,
    /// Seconds from the clock's start to its stop.
    pub elapsed_s: f64,
    /// Latency per phase (e.g. `image`, `manifest`, `blob`), in the order first seen.
    pub phases: Vec<Phase>,
    pub throughput: Throughput,
    /// Numbers the scenario counts (images, distinct blobs, monolithic fallbacks, …).
    pub counts: BTreeMap<String, u64>,
    /// Names the scenario used (repository, tag, digest).
    pub facts: BTreeMap<String, String>,
    pub errors: u64,
    /// The first few distinct error messages.
    pub error_messages: Vec<String>,
    /// Deltas of Shoal's cache and origin counters, summed over the targets that are Shoal.
    pub shoal: Option<ShoalDeltas>,
    /// Server processes given with `--pid`.
    pub servers: Vec<ProcessUsage>,
    pub machine: Machine,
    pub timeline: TimelineData,
    #[serde(skip)]
    pub samples: Vec<PhaseSamples>,
}

#[derive(Serialize, Debug, Clone)]
pub struct Phase {
    pub name: String,
    #[serde(flatten)]
    pub latency: Percentiles,
    /// Bytes the phase's operations moved.
    pub bytes: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct Throughput {
    /// Bytes moved while timed (received for pulls, sent for pushes).
    pub bytes: u64,
    /// Decimal megabytes (10^6) per second.
    pub mb_per_s: f64,
    pub ops: u64,
    /// What an operation is here: `images`, `requests`, `streams`, …
    pub ops_unit: String,
    pub ops_per_s: f64,
}

impl Report {
    /// Prints the table, then writes the JSON and the plot if asked.
    pub fn emit(&self, out: &OutputArgs) -> anyhow::Result<()> {
        print!("{}", self.table());
        if let Some(path) = &out.json {
            let text = serde_json::to_string_pretty(self)?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = &out.plot {
            crate::plot::draw(self, path)?;
        }
        Ok(())
    }

    /// The readable form.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{} against {}", self.scenario, self.targets.join(", "));
        if let Some(map) = self.params.as_object() {
            let params: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
                .collect();
            let _ = writeln!(s, "  {}", params.join(" "));
        }
        let _ = writeln!(
            s,
            "{:<12} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "phase", "count", "p50 ms", "p95 ms", "p99 ms", "max ms", "mean ms", "MB/s/op"
        );
        for p in &self.phases {
            let l = &p.latency;
            let per_op = self
                .samples
                .iter()
                .find(|x| x.name == p.name)
                .map(|x| x.ms.iter().sum::<f64>() / 1000.0)
                .filter(|secs| p.bytes > 0 && *secs > 0.0)
                .map_or("-".to_string(), |secs| {
                    format!("{:.0}", p.bytes as f64 / secs / 1e6)
                });
            let _ = writeln!(
                s,
                "{:<12} {:>8} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10}",
                p.name, l.count, l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.mean_ms, per_op
            );
        }
        let t = &self.throughput;
        let _ = writeln!(
            s,
            "throughput   {} in {:.2} s: {:.1} MB/s; {} {}, {:.1}/s",
            show_bytes(t.bytes),
            self.elapsed_s,
            t.mb_per_s,
            t.ops,
            t.ops_unit,
            t.ops_per_s
        );
        if !self.counts.is_empty() {
            let counts: Vec<String> = self
                .counts
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(s, "counts       {}", counts.join(" "));
        }
        let _ = writeln!(s, "errors       {}", self.errors);
        for m in &self.error_messages {
            let _ = writeln!(s, "  {m}");
        }
        if let Some(d) = &self.shoal {
            let _ = writeln!(
                s,
                "shoal        {} node(s): cache hits +{}, misses +{}, origin fetches +{}, origin bytes +{}",
                d.nodes,
                d.cache_hits,
                d.cache_misses,
                d.origin_fetches,
                show_bytes(d.origin_bytes as u64)
            );
        }
        for u in &self.servers {
            let rss = u.peak_rss_bytes.map_or("?".into(), show_bytes);
            let since = if u.peak_reset {
                "during the run"
            } else {
                "since its start"
            };
            let cpu = u.cpu_seconds.map_or("?".into(), |c| format!("{c:.2} s"));
            let per = u
                .cpu_seconds_per_gib
                .map_or(String::new(), |c| format!(" ({c:.2} s/GiB)"));
            let _ = writeln!(
                s,
                "server       pid {}: peak RSS {rss} {since}, CPU {cpu}{per}",
                u.pid
            );
        }
        let m = &self.machine;
        let _ = writeln!(
            s,
            "machine      {} cores, {} memory, {}",
            m.cores,
            show_bytes(m.memory_bytes),
            m.cpu_model
        );
        s
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stats::percentiles;

    /// A small report as a scenario would return it.
    pub(crate) fn sample() -> Report {
        let ms = vec![1.0, 2.0, 3.0, 40.0];
        Report {
            scenario: "pull-storm".into(),
            params: serde_json::json!({"clients": 2, "reuse": null}),
            targets: vec!["http://127.0.0.1:1".into()],
            elapsed_s: 0.5,
            phases: vec![Phase {
                name: "image".into(),
                latency: percentiles(&ms).unwrap(),
                bytes: 4_000_000,
            }],
            throughput: Throughput {
                bytes: 4_000_000,
                mb_per_s: 8.0,
                ops: 4,
                ops_unit: "images".into(),
                ops_per_s: 8.0,
            },
            counts: BTreeMap::from([("images".to_string(), 4)]),
            facts: BTreeMap::new(),
            errors: 0,
            error_messages: vec![],
            shoal: None,
            servers: vec![],
            machine: Machine::this(),
            timeline: TimelineData {
                bucket_ms: 250,
                bytes: vec![1_000_000, 3_000_000],
                ops: vec![1, 3],
            },
            samples: vec![PhaseSamples {
                name: "image",
                ms,
                bytes: 4_000_000,
            }],
        }
    }

    #[test]
    fn the_table_names_every_figure() {
        let t = sample().table();
        for want in [
            "pull-storm against http://127.0.0.1:1",
            "clients=2",
            "image",
            "40.00",
            "8.0 MB/s",
            "errors       0",
        ] {
            assert!(t.contains(want), "{want:?} missing from\n{t}");
        }
        assert!(!t.contains("reuse"), "null params are left out:\n{t}");
    }

    #[test]
    fn the_json_flattens_percentiles() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["phases"][0]["p99_ms"], 40.0);
        assert_eq!(v["phases"][0]["count"], 4);
        assert_eq!(v["throughput"]["ops_unit"], "images");
        assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
        assert!(v.get("samples").is_none());
    }
}
