//! Purging abandoned upload sessions: the origin removes every session nobody wrote to for
//! `--upload-max-age` (files, S3 parts, incomplete multipart uploads), and the catalogue
//! forgets their records, so they no longer count against their owner's open sessions. A
//! record whose session the origin no longer has (purged earlier, or lost) and that is as
//! old is forgotten too. A client that continues a purged session gets
//! `BLOB_UPLOAD_UNKNOWN`, as for any session that does not exist.

use shoal_origin::{BlobStore, UploadId};
use shoal_raft::{Command, Metadata, Proposal};

use crate::errors::ApiResult;

/// Records forgotten per command, and looked at per purge.
const BATCH: usize = 256;
const RECORDS_PER_PURGE: usize = 10_000;

/// Removes sessions untouched for `max_age` seconds before `now`; returns how many.
pub async fn purge(
    meta: &Metadata,
    store: &dyn BlobStore,
    max_age: i64,
    now: i64,
) -> ApiResult<usize> {
    let report = store.purge_stale(max_age, now).await?;
    let mut forget: Vec<String> = report.removed.iter().map(UploadId::to_string).collect();
    let catalog = meta.catalog();
    for (id, _) in catalog.uploads_started_before(now.saturating_sub(max_age), RECORDS_PER_PURGE)? {
        if forget.contains(&id) {
            continue;
        }
        let Ok(parsed) = id.parse::<UploadId>() else {
            forget.push(id);
            continue;
        };
        if matches!(
            store.upload_size(&parsed).await,
            Err(shoal_origin::Error::UploadNotFound(_))
        ) {
            forget.push(id);
        }
    }
    let removed = forget.len();
    for chunk in forget.chunks(BATCH) {
        let cmd = Command::CloseUploads {
            ids: chunk.to_vec(),
        };
        match meta.write(Proposal::system("upload-purge", cmd)).await? {
            shoal_raft::Outcome::Done => {}
            shoal_raft::Outcome::Rejected(r) => return Err(r.into()),
        }
    }
    if removed > 0 {
        metrics::counter!(crate::metrics::UPLOADS_PURGED).increment(report.removed.len() as u64);
        tracing::info!(
            sessions = report.removed.len(),
            records = removed,
            bytes = report.bytes_freed,
            "purged abandoned upload sessions"
        );
    }
    Ok(removed)
}
