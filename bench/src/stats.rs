//! What a run measures: latency samples per phase, errors, and a throughput timeline.
//!
//! Latencies are kept as every sample in a `Vec` and sorted once at the end, so percentiles
//! are exact (nearest rank) at any count; at 8 bytes a sample a million requests cost 8 MB,
//! well within what a run that long can afford. Each simulated client records into its own
//! `Recorder`, which is merged after the clock stops, so nothing is shared while timed.
//!
//! The timeline is shared, because bytes are counted inside body streams the HTTP client
//! owns: a fixed array of atomic 250 ms buckets, so adding to it never locks or allocates.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

pub const BUCKET_MS: u64 = 250;
/// Two hours of buckets; later bytes land in the last one.
const MAX_BUCKETS: usize = 2 * 3600 * 1000 / BUCKET_MS as usize;

/// Bytes moved and operations finished per 250 ms since the clock started.
pub struct Timeline {
    start: Instant,
    bytes: Box<[AtomicU64]>,
    ops: Box<[AtomicU64]>,
}

impl Timeline {
    /// Starts the clock.
    pub fn start() -> Arc<Timeline> {
        let zeros = || (0..MAX_BUCKETS).map(|_| AtomicU64::new(0)).collect();
        Arc::new(Timeline {
            start: Instant::now(),
            bytes: zeros(),
            ops: zeros(),
        })
    }

    pub fn started(&self) -> Instant {
        self.start
    }

    fn bucket(&self) -> usize {
        let ms = self.start.elapsed().as_millis() as u64;
        ((ms / BUCKET_MS) as usize).min(MAX_BUCKETS - 1)
    }

    pub fn bytes(&self, n: u64) {
        self.bytes[self.bucket()].fetch_add(n, Ordering::Relaxed);
    }

    pub fn op(&self) {
        self.ops[self.bucket()].fetch_add(1, Ordering::Relaxed);
    }

    /// The buckets up to and including the one `elapsed` falls in.
    pub fn snapshot(&self, elapsed: Duration) -> TimelineData {
        let n = ((elapsed.as_millis() as u64 / BUCKET_MS) as usize + 1).min(MAX_BUCKETS);
        let read = |v: &[AtomicU64]| v[..n].iter().map(|a| a.load(Ordering::Relaxed)).collect();
        TimelineData {
            bucket_ms: BUCKET_MS,
            bytes: read(&self.bytes),
            ops: read(&self.ops),
        }
    }
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct TimelineData {
    pub bucket_ms: u64,
    /// Bytes moved in each bucket (received for pulls, handed to the socket for pushes).
    pub bytes: Vec<u64>,
    /// Operations finished in each bucket (requests, or images for image scenarios).
    pub ops: Vec<u64>,
}

/// One client's samples and errors.
#[derive(Default, Debug)]
pub struct Recorder {
    phases: Vec<PhaseSamples>,
    /// Things counted (e.g. monolithic uploads that needed a PUT), by name.
    pub events: BTreeMap<&'static str, u64>,
    pub errors: u64,
    messages: Vec<String>,
}

/// The latencies of one phase (ms, in the order recorded until `finish` sorts them) and the
/// bytes its operations moved.
#[derive(Debug, Clone)]
pub struct PhaseSamples {
    pub name: &'static str,
    pub ms: Vec<f64>,
    pub bytes: u64,
}

/// Error messages kept per run; the count is exact either way.
const MESSAGES: usize = 8;

impl Recorder {
    pub fn record(&mut self, phase: &'static str, took: Duration) {
        self.record_bytes(phase, took, 0);
    }

    pub fn record_bytes(&mut self, phase: &'static str, took: Duration, bytes: u64) {
        let p = self.phase(phase);
        p.ms.push(took.as_secs_f64() * 1000.0);
        p.bytes += bytes;
    }

    fn phase(&mut self, name: &'static str) -> &mut PhaseSamples {
        let i = match self.phases.iter().position(|p| p.name == name) {
            Some(i) => i,
            None => {
                self.phases.push(PhaseSamples {
                    name,
                    ms: Vec::new(),
                    bytes: 0,
                });
                self.phases.len() - 1
            }
        };
        &mut self.phases[i]
    }

    pub fn event(&mut self, name: &'static str) {
        *self.events.entry(name).or_default() += 1;
    }

    pub fn error(&mut self, e: &anyhow::Error) {
        self.errors += 1;
        let msg = format!("{e:#}");
        if self.messages.len() < MESSAGES && !self.messages.contains(&msg) {
            self.messages.push(msg);
        }
    }

    /// Samples of `phase` so far.
    pub fn count(&self, phase: &str) -> usize {
        self.phases
            .iter()
            .find(|p| p.name == phase)
            .map_or(0, |p| p.ms.len())
    }

    pub fn merge(&mut self, other: Recorder) {
        for p in other.phases {
            let mine = self.phase(p.name);
            mine.ms.extend(p.ms);
            mine.bytes += p.bytes;
        }
        for (k, v) in other.events {
            *self.events.entry(k).or_default() += v;
        }
        self.errors += other.errors;
        for m in other.messages {
            if self.messages.len() < MESSAGES && !self.messages.contains(&m) {
                self.messages.push(m);
            }
        }
    }

    /// The phases in the order first recorded, each sorted; the error count and messages.
    pub fn finish(mut self) -> Finished {
        for p in &mut self.phases {
            p.ms.sort_by(f64::total_cmp);
        }
        Finished {
            phases: self.phases,
            events: self.events,
            errors: self.errors,
            messages: self.messages,
        }
    }
}

/// A merged recorder, sorted.
pub struct Finished {
    pub phases: Vec<PhaseSamples>,
    pub events: BTreeMap<&'static str, u64>,
    pub errors: u64,
    pub messages: Vec<String>,
}

/// Collects the recorders of finished client tasks; a task that panicked is one error.
pub async fn gather(tasks: Vec<tokio::task::JoinHandle<Recorder>>) -> Recorder {
    let mut all = Recorder::default();
    for t in tasks {
        match t.await {
            Ok(r) => all.merge(r),
            Err(e) => all.error(&anyhow::anyhow!("a client task failed: {e}")),
        }
    }
    all
}

/// Latency figures of one phase, in milliseconds.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Figures of sorted samples; `None` when there are none.
pub fn percentiles(sorted: &[f64]) -> Option<Percentiles> {
    let (first, last) = (*sorted.first()?, *sorted.last()?);
    Some(Percentiles {
        count: sorted.len(),
        min_ms: first,
        mean_ms: sorted.iter().sum::<f64>() / sorted.len() as f64,
        p50_ms: nearest_rank(sorted, 0.50),
        p95_ms: nearest_rank(sorted, 0.95),
        p99_ms: nearest_rank(sorted, 0.99),
        max_ms: last,
    })
}

/// The smallest sample with at least fraction `p` of the samples at or below it.
pub fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let rank = (p * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let check = |p: f64, want: f64| assert_eq!(nearest_rank(&hundred, p), want, "p{p}");
        check(0.50, 50.0);
        check(0.95, 95.0);
        check(0.99, 99.0);
        check(1.0, 100.0);
        check(0.0, 1.0);
        assert_eq!(nearest_rank(&[7.0], 0.99), 7.0);
        let p = percentiles(&hundred).unwrap();
        assert_eq!(
            (p.count, p.min_ms, p.max_ms, p.mean_ms),
            (100, 1.0, 100.0, 50.5)
        );
        assert_eq!(percentiles(&[]), None);
    }

    #[test]
    fn recorders_merge_by_phase_in_first_seen_order() {
        let mut a = Recorder::default();
        a.record("image", Duration::from_millis(3));
        a.record_bytes("blob", Duration::from_millis(1), 10);
        let mut b = Recorder::default();
        b.record_bytes("blob", Duration::from_millis(2), 5);
        b.record("manifest", Duration::from_millis(1));
        b.error(&anyhow::anyhow!("boom"));
        b.error(&anyhow::anyhow!("boom"));
        a.merge(b);
        let Finished {
            phases,
            errors,
            messages,
            ..
        } = a.finish();
        let names: Vec<_> = phases.iter().map(|p| p.name).collect();
        assert_eq!(names, ["image", "blob", "manifest"]);
        assert_eq!(phases[1].ms, [1.0, 2.0]);
        assert_eq!(phases[1].bytes, 15);
        assert_eq!((errors, messages), (2, vec!["boom".to_string()]));
    }

    #[test]
    fn the_timeline_covers_the_elapsed_time() {
        let t = Timeline::start();
        t.bytes(100);
        t.op();
        let snap = t.snapshot(Duration::from_millis(600));
        assert_eq!(snap.bytes.len(), 3);
        assert_eq!(snap.bytes.iter().sum::<u64>(), 100);
        assert_eq!(snap.ops.iter().sum::<u64>(), 1);
        assert_eq!(t.snapshot(Duration::ZERO).bytes.len(), 1);
    }
}
