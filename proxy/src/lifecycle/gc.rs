//! The garbage collector: reclaims what nothing needs any more, online, in bounded batches,
//! without ever racing a push. It decides from this node's replica and commits each
//! decision through Raft, where `raft::lifecycle` checks it again against the state the log
//! has reached (see that module's doc for the rules), so a decision made on stale data is a
//! no-op, never a loss. Three phases, each resumable (every fact they act on is in the
//! catalogue, so a run cut short by a restart or a leader change is finished by the next):
//!
//! 1. manifests: per repository, those that no tag reaches (directly, as a child of a
//!    reached index, or as a referrer of a reached manifest), that no `untagged` retention
//!    rule keeps, and whose lease is older than the grace period;
//! 2. blob links: those no manifest of their repository lists any more, leases older than
//!    the grace period;
//! 3. origin: blobs no repository links (the ones just unlinked, and any the origin holds
//!    that were never linked or were unlinked by a deletion) and older than the grace
//!    period are condemned (a tombstone, written only while nothing links them, refuses new
//!    links), then deleted from the origin, then forgotten. Deleting bytes never precedes
//!    the commit that makes them unreachable.
//!
//! A dry run walks the same phases without committing and reports what would go.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use shoal_origin::{BlobStore, Digest};
use shoal_raft::{Command, GcRun, Metadata, Proposal};

use super::retention::{Compiled, Untagged};
use crate::errors::{ApiError, ApiResult};

/// Decisions committed per command: small, so no entry of the log is large and applying
/// one never holds the state machine (and the pushes queued behind it) for long.
const BATCH: usize = 64;
/// The collector works at most this share of the time: after each slice of work it rests
/// for (1 - share) / share times as long as the slice took (and at least `--gc-pause`), so
/// on a busy node it leaves the cores and the log to pushes and pulls.
const WORK_SHARE: f64 = 0.2;
/// Origin blobs listed per page.
const PAGE: usize = 1000;
/// Entries listed in a dry run's report (the totals count everything).
const REPORTED: usize = 10_000;

/// Paces the collector: see `WORK_SHARE`.
struct Pacer {
    pause: Duration,
    since: std::time::Instant,
}

impl Pacer {
    fn new(pause: Duration) -> Pacer {
        Pacer {
            pause,
            since: std::time::Instant::now(),
        }
    }

    /// Rests after a commit, for the work done since the last rest.
    async fn rest(&mut self) {
        let worked = self.since.elapsed();
        let rest = worked
            .mul_f64((1.0 - WORK_SHARE) / WORK_SHARE)
            .max(self.pause);
        tokio::time::sleep(rest).await;
        self.since = std::time::Instant::now();
    }

    /// Rests during a long scan once it has worked a while (a catalogue with many clean
    /// repositories costs reading, not commits).
    async fn breathe(&mut self) {
        if self.since.elapsed() >= Duration::from_millis(10) {
            let rest = self
                .since
                .elapsed()
                .mul_f64((1.0 - WORK_SHARE) / WORK_SHARE);
            tokio::time::sleep(rest).await;
            self.since = std::time::Instant::now();
        }
    }
}

#[derive(Clone, Debug)]
pub struct GcConfig {
    /// Nothing written or touched within this many seconds is collected.
    pub grace: i64,
    /// The least rest between two committed batches (`--gc-pause`); the collector also
    /// rests in proportion to its work (`WORK_SHARE`).
    pub pause: Duration,
}

/// One thing a run reclaims (or would).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Item {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    pub digest: String,
    pub bytes: u64,
}

/// What a run reclaimed, or a dry run would.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub manifests: Vec<Item>,
    pub blob_links: Vec<Item>,
    pub blobs: Vec<Item>,
    pub manifests_total: u64,
    pub blob_links_total: u64,
    pub blobs_total: u64,
    pub bytes_total: u64,
    /// Candidates left alone because they were written or touched within the grace period.
    pub protected: u64,
    /// The lists stop at `REPORTED` entries each; the totals do not.
    pub truncated: bool,
}

impl Report {
    fn add(list: &mut Vec<Item>, total: &mut u64, truncated: &mut bool, item: Item) {
        *total += 1;
        if list.len() < REPORTED {
            list.push(item);
        } else {
            *truncated = true;
        }
    }
}

pub struct Collector {
    pub meta: Arc<Metadata>,
    pub store: Arc<dyn BlobStore>,
    pub config: GcConfig,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Collector {
    fn propose(&self, command: Command, run: &str) -> Proposal {
        Proposal::new(shoal_raft::Actor::System("gc".into()), run, command)
    }

    async fn commit(&self, command: Command, run: &str) -> ApiResult<()> {
        match self.meta.write(self.propose(command, run)).await? {
            shoal_raft::Outcome::Done => Ok(()),
            shoal_raft::Outcome::Rejected(r) => Err(r.into()),
        }
    }

    async fn record(&self, run: &GcRun, id: &str) -> ApiResult<()> {
        self.commit(Command::RecordGc { run: run.clone() }, id)
            .await
    }

    /// One run; `dry` commits nothing and only reports.
    pub async fn run(&self, dry: bool) -> ApiResult<Report> {
        let started_at = now();
        let id = format!("gc-{started_at}");
        let mut run = GcRun {
            started_at,
            phase: "manifests".into(),
            ..GcRun::default()
        };
        if !dry {
            self.record(&run, &id).await?;
        }
        let timer = std::time::Instant::now();
        let result = self.phases(dry, &id, &mut run).await;
        if dry {
            return result;
        }
        crate::metrics::gc_finished(timer.elapsed(), result.is_ok());
        if let Ok(report) = &result {
            metrics::counter!(crate::metrics::GC_MANIFESTS).increment(report.manifests_total);
            metrics::counter!(crate::metrics::GC_BLOB_LINKS).increment(report.blob_links_total);
            metrics::counter!(crate::metrics::GC_PROTECTED).increment(report.protected);
        }
        run.finished_at = Some(now());
        match &result {
            Ok(report) => {
                run.phase = "done".into();
                run.manifests = report.manifests_total;
                run.blob_links = report.blob_links_total;
                run.blobs_deleted = report.blobs_total;
                run.bytes_reclaimed = report.bytes_total;
                run.protected = report.protected;
            }
            Err(e) => {
                run.phase = "failed".into();
                run.error = Some(e.message.clone());
            }
        }
        // The outcome is recorded even when the run failed; a failure to record it is
        // logged, and the run's own result is what the caller gets.
        if let Err(e) = self.record(&run, &id).await {
            tracing::warn!(error = %e.message, "recording the collector's result failed");
        }
        result
    }

    async fn phases(&self, dry: bool, id: &str, run: &mut GcRun) -> ApiResult<Report> {
        let mut report = Report::default();
        let mut pacer = Pacer::new(self.config.pause);
        let now = now();
        let grace = self.config.grace;
        let catalog = self.meta.catalog().clone();
        let mut dropped_manifests: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for ns in catalog.namespaces()? {
            let policy = match catalog.retention(&ns.name)? {
                Some(p) => Compiled::new(&p).ok(),
                None => None,
            };
            for repo in catalog.repositories_in(&ns.name)? {
                let keep = match &policy {
                    Some(p) if p.covers(&repo) && p.has_untagged_rules() => {
                        self.kept_untagged(&repo, p, &ns.immutable, now)?
                    }
                    _ => BTreeSet::new(),
                };
                let going = self.collectable_manifests(&repo, &keep, now, &mut report)?;
                for chunk in going.chunks(BATCH) {
                    for (d, bytes) in chunk {
                        let item = Item {
                            repository: Some(repo.clone()),
                            digest: d.clone(),
                            bytes: *bytes,
                        };
                        Report::add(
                            &mut report.manifests,
                            &mut report.manifests_total,
                            &mut report.truncated,
                            item,
                        );
                    }
                    if !dry {
                        let digests: Vec<String> = chunk.iter().map(|(d, _)| d.clone()).collect();
                        let cmd = Command::CollectManifests {
                            repo: repo.clone(),
                            digests,
                            now,
                            grace,
                        };
                        self.commit(cmd, id).await?;
                        pacer.rest().await;
                    }
                }
                if !dry {
                    pacer.breathe().await;
                }
                dropped_manifests
                    .entry(repo)
                    .or_default()
                    .extend(going.into_iter().map(|(d, _)| d));
            }
        }
        run.phase = "blob links".into();
        if !dry {
            self.record(run, id).await?;
        }
        let mut unlinked: BTreeSet<(String, String)> = BTreeSet::new();
        for (repo, dropped) in &dropped_manifests {
            let mut going = Vec::new();
            for (digest, size) in catalog.blob_links(repo)? {
                // In a dry run the manifests that would go still list their blobs.
                let listed = catalog
                    .referenced_by(repo, &digest)?
                    .into_iter()
                    .any(|m| !(dry && dropped.contains(&m)));
                if listed {
                    continue;
                }
                if catalog.lease(repo, &digest)?.saturating_add(grace) >= now {
                    report.protected += 1;
                    continue;
                }
                going.push((digest, size));
            }
            for chunk in going.chunks(BATCH) {
                for (d, size) in chunk {
                    unlinked.insert((repo.clone(), d.clone()));
                    let item = Item {
                        repository: Some(repo.clone()),
                        digest: d.clone(),
                        bytes: *size,
                    };
                    Report::add(
                        &mut report.blob_links,
                        &mut report.blob_links_total,
                        &mut report.truncated,
                        item,
                    );
                }
                if !dry {
                    let cmd = Command::CollectBlobs {
                        repo: repo.clone(),
                        digests: chunk.iter().map(|(d, _)| d.clone()).collect(),
                        now,
                        grace,
                    };
                    self.commit(cmd, id).await?;
                    pacer.rest().await;
                }
            }
            if !dry {
                pacer.breathe().await;
            }
        }
        run.phase = "origin".into();
        if !dry {
            self.record(run, id).await?;
        }
        self.sweep_origin(dry, id, now, &unlinked, &mut report, &mut pacer)
            .await?;
        Ok(report)
    }

    /// Untagged manifests of `repo` that an `untagged` rule of `policy` keeps.
    fn kept_untagged(
        &self,
        repo: &str,
        policy: &Compiled,
        immutable: &shoal_raft::ImmutableTags,
        now: i64,
    ) -> ApiResult<BTreeSet<String>> {
        let catalog = self.meta.catalog();
        let tagged: BTreeSet<String> = catalog.tag_map(repo)?.into_values().collect();
        let mut untagged = Vec::new();
        for m in catalog.manifests_of(repo)? {
            if !tagged.contains(&m.digest) {
                untagged.push(Untagged {
                    pulled_at: catalog.manifest_pulled_at(repo, &m.digest)?,
                    digest: m.digest,
                    pushed_at: m.pushed_at,
                });
            }
        }
        Ok(policy.decide(&[], &untagged, immutable, now).keep_untagged)
    }

    /// Manifests of `repo` that no tag reaches and `keep` does not hold, with their size,
    /// whose lease is older than the grace period.
    fn collectable_manifests(
        &self,
        repo: &str,
        keep: &BTreeSet<String>,
        now: i64,
        report: &mut Report,
    ) -> ApiResult<Vec<(String, u64)>> {
        let catalog = self.meta.catalog();
        let all = catalog.manifest_digests(repo)?;
        let roots = catalog
            .tag_map(repo)?
            .into_values()
            .chain(keep.iter().cloned());
        let reached = super::reachable(catalog, repo, roots)?;
        let mut going = Vec::new();
        for (digest, bytes) in all {
            if reached.contains(&digest) {
                continue;
            }
            if catalog
                .lease(repo, &digest)?
                .saturating_add(self.config.grace)
                >= now
            {
                report.protected += 1;
                continue;
            }
            going.push((digest, bytes));
        }
        Ok(going)
    }

    /// Phase 3: condemns the origin's blobs that nothing links, deletes their bytes, and
    /// forgets them; tombstones a cut-short run left are finished first.
    async fn sweep_origin(
        &self,
        dry: bool,
        id: &str,
        now: i64,
        unlinked: &BTreeSet<(String, String)>,
        report: &mut Report,
        pacer: &mut Pacer,
    ) -> ApiResult<()> {
        let catalog = self.meta.catalog().clone();
        if !dry {
            self.delete_condemned(id, report, pacer).await?;
        }
        let mut after: Option<Digest> = None;
        loop {
            let page = self.store.list(after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            let mut condemn = Vec::new();
            for entry in &page {
                let d = entry.digest.to_string();
                let links = catalog.linked_in(&d)?;
                // A dry run has not unlinked what phase 2 would: count those links as gone.
                let would_go = dry
                    && links
                        .iter()
                        .all(|r| unlinked.contains(&(r.clone(), d.clone())));
                if (!links.is_empty() && !would_go) || catalog.tombstone(&d)?.is_some() {
                    continue;
                }
                // The bytes' own age protects an upload whose link is not committed yet.
                if entry.modified.saturating_add(self.config.grace) >= now {
                    report.protected += 1;
                    continue;
                }
                if dry {
                    let item = Item {
                        repository: None,
                        digest: d,
                        bytes: entry.size,
                    };
                    report.bytes_total += entry.size;
                    Report::add(
                        &mut report.blobs,
                        &mut report.blobs_total,
                        &mut report.truncated,
                        item,
                    );
                } else {
                    condemn.push(d);
                }
            }
            for chunk in condemn.chunks(BATCH) {
                self.commit(
                    Command::CondemnDigests {
                        digests: chunk.to_vec(),
                        now,
                    },
                    id,
                )
                .await?;
                pacer.rest().await;
            }
            if !dry {
                self.delete_condemned(id, report, pacer).await?;
                pacer.breathe().await;
            }
            if page.len() < PAGE {
                break;
            }
        }
        Ok(())
    }

    /// Deletes the bytes of every condemned digest from the origin, then forgets them.
    async fn delete_condemned(
        &self,
        id: &str,
        report: &mut Report,
        pacer: &mut Pacer,
    ) -> ApiResult<()> {
        let condemned = self.meta.catalog().tombstones()?;
        for chunk in condemned.chunks(BATCH) {
            let mut gone = Vec::new();
            for (d, _) in chunk {
                let digest: Digest = d
                    .parse()
                    .map_err(|e| ApiError::internal("a tombstone names no digest", e))?;
                let size = self.store.stat(&digest).await?.map_or(0, |i| i.size);
                if self.store.delete(&digest).await? {
                    report.bytes_total += size;
                    let item = Item {
                        repository: None,
                        digest: d.clone(),
                        bytes: size,
                    };
                    Report::add(
                        &mut report.blobs,
                        &mut report.blobs_total,
                        &mut report.truncated,
                        item,
                    );
                    metrics::counter!(crate::metrics::GC_BYTES).increment(size);
                    metrics::counter!(crate::metrics::GC_BLOBS).increment(1);
                }
                gone.push(d.clone());
            }
            self.commit(Command::ForgetDigests { digests: gone }, id)
                .await?;
            pacer.rest().await;
        }
        Ok(())
    }
}
