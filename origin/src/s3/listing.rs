//! Paged listings and purging of the S3 backend.
//!
//! A page is one ranged listing of the bucket (`list_with_offset`, S3's `start-after`), read
//! only until the page is full. That works because the bucket lists keys in ascending byte
//! order (S3 does, and so does `InMemory`), and the layout was chosen so that order is the one
//! promised: `blobs/<alg>/<hex>` sorts as the digests' string form, and the objects of a
//! session sit together under `uploads/<id>/`, sessions in id order. Keys that are not of the
//! layout are skipped, never acted on. What "untouched" means here, and what a session leaves
//! besides its objects, is said in the `s3` module doc.

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};

use super::{
    blob_key, blob_of_key, chain, commit_marker, keys, part_key, part_of_key, session_of_key,
    storage, upload_dir, S3Store, Session,
};
use crate::purge::{Outcome, StaleSessions};
use crate::store::{BlobEntry, UploadEntry, UploadId};
use crate::{Digest, Result};

/// Bytes of the parts among a session's objects (its markers are not counted).
fn part_bytes(objects: &[ObjectMeta]) -> u64 {
    let parts = objects
        .iter()
        .filter(|o| part_of_key(o.location.as_ref()).is_some());
    parts.map(|o| o.size).sum()
}

/// When a session was last written: its newest object.
fn last_write(objects: &[ObjectMeta]) -> Option<i64> {
    objects.iter().map(|o| o.last_modified.timestamp()).max()
}

impl S3Store {
    pub(super) async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<BlobEntry>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let prefix = Path::from("blobs");
        let store = &self.inner.store;
        let mut objects = match after {
            Some(d) => store.list_with_offset(Some(&prefix), &blob_key(d)),
            None => store.list(Some(&prefix)),
        };
        while let Some(o) = objects.try_next().await.map_err(storage)? {
            let Some(digest) = blob_of_key(o.location.as_ref()) else {
                continue;
            };
            out.push(BlobEntry {
                digest,
                size: o.size,
                modified: o.last_modified.timestamp(),
            });
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    pub(super) async fn list_sessions(
        &self,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<UploadEntry>> {
        let mut out: Vec<UploadEntry> = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let prefix = Path::from("uploads");
        let store = &self.inner.store;
        let mut objects = match after {
            // Past every object of `after` (their names all sort before "z"), and before
            // every object of a later session, whose id differs before the slash.
            Some(id) => store.list_with_offset(Some(&prefix), &upload_dir(id).join("z")),
            None => store.list(Some(&prefix)),
        };
        while let Some(o) = objects.try_next().await.map_err(storage)? {
            let key = o.location.as_ref();
            let Some(id) = session_of_key(key).filter(|id| after.is_none_or(|a| id > a)) else {
                continue;
            };
            let size = if part_of_key(key).is_some() {
                o.size
            } else {
                0
            };
            let modified = o.last_modified.timestamp();
            if let Some(e) = out.last_mut().filter(|e| e.id == id) {
                e.size += size;
                e.modified = e.modified.max(modified);
            } else if out.len() == limit {
                // The first object of one session more than the page holds.
                break;
            } else {
                out.push(UploadEntry { id, size, modified });
            }
        }
        Ok(out)
    }

    /// Takes a session nobody holds, without waiting, entering it with the size its parts
    /// give if this process has not seen it (0 if they do not chain: it could not be appended
    /// to anyway). `None` if it is held; else whether it was entered here.
    fn take_idle(&self, id: &UploadId, objects: &[ObjectMeta]) -> Option<bool> {
        let size = chain(id, objects, u64::MAX).map_or(0, |(end, _)| end);
        let mut sessions = self.sessions();
        match sessions.get_mut(id) {
            Some(s) if s.busy => None,
            Some(s) => {
                s.busy = true;
                Some(false)
            }
            None => {
                let mut s = Session::new(size);
                s.busy = true;
                sessions.insert(id.clone(), s);
                Some(true)
            }
        }
    }

    /// Undoes `take_idle`: an entry it made is dropped again.
    fn give_back(&self, id: &UploadId, inserted: bool) {
        if inserted {
            self.forget(id);
        } else {
            self.release(id, None);
        }
    }

    /// The digest the `commit` marker among `objects` names, if there is one.
    async fn marked_commit(&self, id: &UploadId, objects: &[ObjectMeta]) -> Result<Option<Digest>> {
        let marker = commit_marker(id);
        if !objects.iter().any(|o| o.location == marker) {
            return Ok(None);
        }
        let got = match self.inner.store.get(&marker).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(storage(e)),
        };
        let named = got.bytes().await.map_err(storage)?;
        Ok(std::str::from_utf8(&named)
            .ok()
            .and_then(|s| s.parse().ok()))
    }

    /// Aborts the incomplete multipart uploads a session left: of its parts (an append that
    /// died; the caller has made sure no append of this process runs) and of the blob its
    /// `commit` marker names (a commit that died), unless a commit of that digest is running
    /// here. Best effort, as the session's objects go anyway and `purge_stale` sweeps what is
    /// missed: failures are logged. Returns how many were aborted.
    pub(super) async fn abort_leftovers(&self, id: &UploadId, objects: &[ObjectMeta]) -> u64 {
        let Some(multiparts) = &self.inner.multiparts else {
            return 0;
        };
        let aborted = async {
            let mut found = multiparts
                .incomplete(&format!("{}/", upload_dir(id)))
                .await?;
            if let Some(d) = self.marked_commit(id, objects).await? {
                found.extend(multiparts.incomplete(blob_key(&d).as_ref()).await?);
            }
            let mut aborted = 0;
            for m in found {
                // Checked after listing: a commit listed and running is marked until it ends.
                let key = match (part_of_key(&m.key), blob_of_key(&m.key)) {
                    (Some((owner, offset)), _) if &owner == id => part_key(&owner, offset),
                    (_, Some(d)) if !self.is_committing(&d) => blob_key(&d),
                    _ => continue,
                };
                multiparts.abort(&key, &m.upload_id).await?;
                aborted += 1;
            }
            Ok::<_, crate::Error>(aborted)
        }
        .await;
        aborted.unwrap_or_else(|e| {
            tracing::warn!(upload = %id, error = %e, "aborting an upload's multipart uploads");
            0
        })
    }

    /// Aborts every incomplete multipart upload under `blobs/` or `uploads/` initiated before
    /// `cutoff` that no commit or append of this process is running. Returns how many.
    pub(super) async fn abort_stale_multiparts(&self, cutoff: i64) -> Result<u64> {
        let Some(multiparts) = &self.inner.multiparts else {
            return Ok(0);
        };
        let mut aborted = 0;
        for prefix in ["blobs/", "uploads/"] {
            for m in multiparts.incomplete(prefix).await? {
                if m.initiated >= cutoff {
                    continue;
                }
                // Checked now, not when listed: a commit or append that began since is not in
                // the listing, and one listed and running is marked until it ends.
                let key = match (blob_of_key(&m.key), part_of_key(&m.key)) {
                    (Some(d), _) if !self.is_committing(&d) => blob_key(&d),
                    (_, Some((id, offset))) if !self.is_held(&id) => part_key(&id, offset),
                    _ => continue,
                };
                multiparts.abort(&key, &m.upload_id).await?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }
}

#[async_trait]
impl StaleSessions for S3Store {
    async fn remove_if_stale(&self, id: &UploadId, cutoff: i64) -> Result<Outcome> {
        let objects = self.upload_objects(id).await?;
        if objects.is_empty() {
            return Ok(Outcome::Kept);
        }
        let Some(inserted) = self.take_idle(id, &objects) else {
            return Ok(Outcome::Held);
        };
        // Listed again now that no append can finish: an append may have before we took it.
        let removed = async {
            let objects = self.upload_objects(id).await?;
            if last_write(&objects).is_none_or(|t| t >= cutoff) {
                return Ok(None);
            }
            let bytes_freed = part_bytes(&objects);
            let multiparts_aborted = self.abort_leftovers(id, &objects).await;
            self.delete_all(keys(objects)).await?;
            Ok(Some(Outcome::Removed {
                bytes_freed,
                multiparts_aborted,
            }))
        }
        .await;
        match removed {
            Ok(Some(outcome)) => {
                self.forget(id);
                Ok(outcome)
            }
            Ok(None) => {
                self.give_back(id, inserted);
                Ok(Outcome::Kept)
            }
            Err(e) => {
                self.give_back(id, inserted);
                Err(e)
            }
        }
    }
}
