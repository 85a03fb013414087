//! The walk `BlobStore::purge_stale` shares between the backends that hold sessions
//! themselves (`FsStore`, `S3Store`): page through the sessions and, for each one listed as
//! stale, ask the backend to remove it if it still is.
//!
//! Why the backend looks again: a listing is a moment old by the time a session is taken, and
//! an append may have finished in between. The backend first takes the session as an append
//! would, so no append or commit can start, then checks its time once more; a session that
//! someone holds is reported as skipped rather than waited for. Pages keep the walk's memory
//! bounded however many sessions there are.

use async_trait::async_trait;

use crate::store::{BlobStore, PurgeReport, UploadId};
use crate::Result;

/// Sessions examined per page of `list_uploads`.
const PAGE: usize = 1000;

/// What became of one session the listing called stale.
pub(crate) enum Outcome {
    Removed {
        bytes_freed: u64,
        multiparts_aborted: u64,
    },
    /// An append or a commit holds it.
    Held,
    /// Written to since it was listed, or already gone.
    Kept,
}

#[async_trait]
pub(crate) trait StaleSessions: BlobStore {
    /// Removes the session if nobody holds it and it was last written before `cutoff`.
    async fn remove_if_stale(&self, id: &UploadId, cutoff: i64) -> Result<Outcome>;
}

/// The last write time before which a session is stale: older than `untouched_for_secs`
/// before `now`.
pub(crate) fn cutoff(untouched_for_secs: i64, now: i64) -> i64 {
    now.saturating_sub(untouched_for_secs)
}

/// Removes every session last written before `cutoff` that nobody holds.
pub(crate) async fn purge_sessions<S: StaleSessions>(
    store: &S,
    cutoff: i64,
) -> Result<PurgeReport> {
    let mut report = PurgeReport::default();
    let mut after: Option<UploadId> = None;
    loop {
        let page = store.list_uploads(after.as_ref(), PAGE).await?;
        for entry in page.iter().filter(|e| e.modified < cutoff) {
            match store.remove_if_stale(&entry.id, cutoff).await? {
                Outcome::Removed {
                    bytes_freed,
                    multiparts_aborted,
                } => {
                    report.removed.push(entry.id.clone());
                    report.bytes_freed += bytes_freed;
                    report.multiparts_aborted += multiparts_aborted;
                }
                Outcome::Held => report.skipped.push(entry.id.clone()),
                Outcome::Kept => {}
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(last.id.clone()),
            _ => return Ok(report),
        }
    }
}
