//! Usage metering per namespace: pulls (manifest GETs), pushes (manifest PUTs) and bytes
//! served, counted in memory once a reply went out whole (`Reply::when_sent`) and added to the replicated catalogue by
//! one `RecordUsage` command per interval. A Raft write per pull would put consensus on the
//! hot path; a batch every few seconds costs nothing and loses at most one interval of
//! counts if the node dies. Stored bytes are not metered here: the catalogue computes them
//! from the blob links.
//!
//! A batch whose write fails (no quorum) is put back and sent with the next one. If the
//! write was committed but its answer lost, that batch counts twice: counts are
//! at-least-once, never silently dropped.
//!
//! The same flush records when manifests and tags were last pulled (`RecordPulls`), which
//! retention's `pulled within` and `most recently pulled` conditions read: the latest time
//! per (repository, manifest, tag), at most `MAX_PULLS` distinct ones per interval (past
//! that, new ones wait for the next interval; a pull time a little late is harmless).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use shoal_raft::{Command, Metadata, Pulled, Usage, UsageDelta};

/// Distinct (repository, manifest, tag) pull times kept between two flushes.
const MAX_PULLS: usize = 100_000;

type PullKey = (String, String, Option<String>);

#[derive(Default)]
pub struct UsageMeter {
    pending: Mutex<HashMap<String, Usage>>,
    pulled: Mutex<HashMap<PullKey, i64>>,
}

impl UsageMeter {
    fn add(&self, namespace: &str, f: impl FnOnce(&mut Usage)) {
        let mut pending = self.pending.lock();
        match pending.get_mut(namespace) {
            Some(u) => f(u),
            None => {
                let mut u = Usage::default();
                f(&mut u);
                pending.insert(namespace.to_string(), u);
            }
        }
    }

    /// A manifest pulled, `bytes` long.
    pub fn pull(&self, namespace: &str, bytes: u64) {
        self.add(namespace, |u| {
            u.pulls += 1;
            u.bytes_out += bytes;
        });
    }

    /// Manifest `digest` of `repo` was pulled at `at` (by `tag`, if by one).
    pub fn pulled(&self, repo: &str, digest: &str, tag: Option<&str>, at: i64) {
        let mut pulled = self.pulled.lock();
        let key = (
            repo.to_string(),
            digest.to_string(),
            tag.map(str::to_string),
        );
        if pulled.len() >= MAX_PULLS && !pulled.contains_key(&key) {
            return;
        }
        let t = pulled.entry(key).or_insert(at);
        *t = (*t).max(at);
    }

    fn take_pulls(&self) -> Vec<Pulled> {
        let mut pulls: Vec<Pulled> = self
            .pulled
            .lock()
            .drain()
            .map(|((repo, digest, tag), at)| Pulled {
                repo,
                digest,
                tag,
                at,
            })
            .collect();
        pulls.sort_by(|a, b| (&a.repo, &a.digest, &a.tag).cmp(&(&b.repo, &b.digest, &b.tag)));
        pulls
    }

    pub fn push(&self, namespace: &str) {
        self.add(namespace, |u| u.pushes += 1);
    }

    /// Blob bytes sent.
    pub fn served(&self, namespace: &str, bytes: u64) {
        self.add(namespace, |u| u.bytes_out += bytes);
    }

    fn take(&self) -> Vec<UsageDelta> {
        let mut deltas: Vec<UsageDelta> = self
            .pending
            .lock()
            .drain()
            .map(|(namespace, usage)| UsageDelta { namespace, usage })
            .collect();
        deltas.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        deltas
    }

    fn put_back(&self, deltas: Vec<UsageDelta>) {
        for d in deltas {
            self.add(&d.namespace, |u| {
                u.pulls += d.usage.pulls;
                u.pushes += d.usage.pushes;
                u.bytes_out += d.usage.bytes_out;
            });
        }
    }

    /// Adds what was counted since the last flush to the catalogue.
    pub async fn flush(&self, meta: &Metadata) {
        let pulls = self.take_pulls();
        for chunk in pulls.chunks(1000) {
            let record = Command::RecordPulls {
                pulls: chunk.to_vec(),
            };
            if let Err(e) = meta
                .write(shoal_raft::Proposal::system("usage", record))
                .await
            {
                tracing::warn!(error = %e, "recording pull times failed; they wait for the next batch");
                for p in chunk {
                    self.pulled(&p.repo, &p.digest, p.tag.as_deref(), p.at);
                }
            }
        }
        let deltas = self.take();
        if deltas.is_empty() {
            return;
        }
        let record = Command::RecordUsage {
            deltas: deltas.clone(),
        };
        if let Err(e) = meta
            .write(shoal_raft::Proposal::system("usage", record))
            .await
        {
            tracing::warn!(error = %e, "recording usage failed; retrying with the next batch");
            self.put_back(deltas);
        }
    }

    /// Flushes every `every` until the process ends.
    pub async fn run(self: Arc<Self>, meta: Arc<Metadata>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.flush(&meta).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gather_per_namespace_and_survive_a_failed_flush() {
        let m = UsageMeter::default();
        m.pull("a", 10);
        m.pull("a", 5);
        m.served("a", 100);
        m.push("b");
        let taken = m.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(
            taken[0].usage,
            Usage {
                pulls: 2,
                pushes: 0,
                bytes_out: 115
            }
        );
        assert_eq!(taken[1].usage.pushes, 1);
        assert!(m.take().is_empty(), "taking empties the meter");
        m.push("b");
        m.put_back(taken);
        let again = m.take();
        assert_eq!(again[1].usage.pushes, 2, "a put-back batch joins the next");
    }
}
