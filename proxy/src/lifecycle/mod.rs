//! Jobs that keep storage in check, run by the region's leader only: garbage collection
//! (`gc`), retention policies (`retention` decides, `retain` runs), purging abandoned
//! upload sessions (`purge`), and expiring the audit trail past `--audit-retention`.
//!
//! `run` ticks every second and does nothing on a node that does not lead. On the leader it
//! runs the collector when asked (`shoal gc run` records a request in the catalogue) or when
//! `--gc-interval` has passed since the last run finished (the replicated `GcStatus` says
//! when, so a new leader keeps the rhythm and finishes a run its predecessor left), the
//! retention policies every `--retention-interval`, and the upload purge a few times per
//! `--upload-max-age`. One job at a time: none of them is urgent, and each commits in
//! bounded batches so pushes and pulls go on beside it.

pub mod gc;
pub mod purge;
pub mod retain;
pub mod retention;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_origin::BlobStore;
use shoal_raft::{Catalog, Metadata};

use crate::errors::ApiResult;

#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    /// Collect this often; `None`: only when asked.
    pub gc_interval: Option<Duration>,
    pub gc: gc::GcConfig,
    /// Run retention policies this often; `None`: only when asked.
    pub retention_interval: Option<Duration>,
    /// Upload sessions untouched this long are removed.
    pub upload_max_age: Duration,
    /// Audit events older than this are removed; `None`: kept forever.
    pub audit_retention: Option<Duration>,
}

impl LifecycleConfig {
    /// How often the purge looks: a quarter of the age, between 1 s and 10 min.
    fn purge_every(&self) -> Duration {
        (self.upload_max_age / 4).clamp(Duration::from_secs(1), Duration::from_secs(600))
    }
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The manifests of `repo` reached from `roots`: themselves, the children of reached
/// indexes, and the referrers (signatures, SBOMs, attestations) of reached manifests.
pub fn reachable(
    catalog: &Catalog,
    repo: &str,
    roots: impl IntoIterator<Item = String>,
) -> ApiResult<BTreeSet<String>> {
    let mut reached = BTreeSet::new();
    let mut todo: Vec<String> = roots.into_iter().collect();
    while let Some(d) = todo.pop() {
        if !reached.insert(d.clone()) {
            continue;
        }
        if let Some(m) = catalog.manifest(repo, &d)? {
            todo.extend(m.manifests);
            todo.extend(catalog.referrers(repo, &d)?.into_iter().map(|r| r.digest));
        }
    }
    Ok(reached)
}

/// Runs the jobs while this node leads, until the process ends.
pub async fn run(meta: Arc<Metadata>, store: Arc<dyn BlobStore>, config: LifecycleConfig) {
    let collector = gc::Collector {
        meta: meta.clone(),
        store: store.clone(),
        config: config.gc.clone(),
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retention = Instant::now();
    let mut last_purge = Instant::now();
    // The first look comes soon after a node starts leading.
    let mut last_audit_expiry = Instant::now()
        .checked_sub(Duration::from_secs(60))
        .unwrap_or_else(Instant::now);
    loop {
        tick.tick().await;
        let status = meta.status();
        if status.leader != Some(status.node_id) {
            continue;
        }
        if gc_due(&meta, &config) {
            if let Err(e) = collector.run(false).await {
                tracing::warn!(error = %e.message, "garbage collection failed; the next run resumes it");
            }
        }
        if config
            .retention_interval
            .is_some_and(|every| last_retention.elapsed() >= every)
        {
            last_retention = Instant::now();
            if let Err(e) = retain::run_all(&meta, unix_now()).await {
                tracing::warn!(error = %e.message, "running retention policies failed");
            }
        }
        if let Some(keep) = config.audit_retention {
            if last_audit_expiry.elapsed() >= audit_expiry_every(keep) {
                last_audit_expiry = Instant::now();
                if let Err(e) = expire_audit(&meta, keep).await {
                    tracing::warn!(error = %e.message, "expiring the audit trail failed");
                }
            }
        }
        if last_purge.elapsed() >= config.purge_every() {
            last_purge = Instant::now();
            let max_age = config.upload_max_age.as_secs() as i64;
            if let Err(e) = purge::purge(&meta, store.as_ref(), max_age, unix_now()).await {
                tracing::warn!(error = %e.message, "purging abandoned uploads failed");
            }
        }
    }
}

/// How often the leader looks for expired audit events: a quarter of the retention,
/// between 1 s and a minute.
fn audit_expiry_every(keep: Duration) -> Duration {
    (keep / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Removes audit events older than `keep`, a bounded batch per command until none is left
/// (the state machine caps each command's batch).
async fn expire_audit(meta: &Metadata, keep: Duration) -> ApiResult<()> {
    let before = chrono::Utc::now().timestamp_millis() - keep.as_millis() as i64;
    while meta.catalog().has_audit_before(before)? {
        let cmd = shoal_raft::Command::ExpireAudit { before };
        if let shoal_raft::Outcome::Rejected(r) = meta
            .write(shoal_raft::Proposal::system("audit-retention", cmd))
            .await?
        {
            return Err(r.into());
        }
    }
    Ok(())
}

/// Whether the collector should run now: asked for, or its interval passed since the last
/// run finished (a run some leader left unfinished counts as due).
fn gc_due(meta: &Metadata, config: &LifecycleConfig) -> bool {
    let Ok(status) = meta.catalog().gc_status() else {
        return false;
    };
    if status.requested_at.is_some() || status.running.is_some() {
        return true;
    }
    let Some(every) = config.gc_interval else {
        return false;
    };
    match status.last.and_then(|l| l.finished_at) {
        None => true,
        Some(at) => unix_now().saturating_sub(at) >= every.as_secs() as i64,
    }
}
