//! S3 backend of `BlobStore`, over the `object_store` crate, for an origin whose bytes live in
//! a bucket (AWS, MinIO, Ceph, moto). Key layout, drawn once:
//!
//! ```text
//! blobs/<algorithm>/<hex>               committed blob; immutable, named by its digest
//! uploads/<upload-uuid>/created         empty marker, so an upload with no bytes exists
//! uploads/<upload-uuid>/part-<offset>   one object per finished append; offset is 20 digits
//! uploads/<upload-uuid>/commit          the digest a commit of the session began for
//! ```
//!
//! Objects cannot be appended to, so each append is its own object, keyed by where it starts:
//! an append whose completion was lost is simply overwritten by the retry at the same offset.
//! A writer streams into a multipart upload that is completed only on `finish`, so a dropped
//! writer leaves no object at all. A commit streams the parts into a multipart upload of
//! the blob key itself while hashing them, and completes it only if the digest matches: an
//! incomplete multipart upload is invisible, so nothing unverified ever appears under
//! `blobs/`, and no server-side copy (capped at 5 GiB on AWS) or second rewrite is needed.
//! The session table (size, busy) is this process's lock on a session, not a record of it: a
//! session's size is read from the bucket (by listing its parts) on every claim and status,
//! so after a restart, or when another origin process sharing the bucket appended meanwhile,
//! the answer is the same. A std `Mutex` guards it because it is never held across an
//! `.await`.
//!
//! Several `shoal-origin` processes may serve one bucket, and nodes fail over between them
//! (`remote.rs`): any of them serves any blob and continues any session. Nothing locks a
//! session across processes; it needs no lock to stay safe. Two appends at one offset through
//! two processes (a client that did not wait for its first PATCH) write the same part key and
//! the last completed wins; the commit hashes whatever chain the parts form and stores it only
//! if the digest matches. The worst outcome is a failed commit, never an unverified blob. Two
//! commits of one digest write the same bytes.
//!
//! Purging. A session was last written at the newest `LastModified` of its objects: the
//! `created` marker, the parts of finished appends, the `commit` marker of a commit attempt.
//! A part is an object made by a multipart upload, which S3 may date from when that upload
//! (the append) began rather than ended; so "untouched for N seconds" means no session object
//! was written for N seconds, an append counting from its start. An append running in this
//! process holds the session, so it is never removed under it. Besides its objects a session
//! may leave incomplete multipart uploads: of `uploads/<id>/part-…` (an append that died) and
//! of a blob key (a commit that died; the `commit` marker names which blob). Cancelling or
//! purging a session aborts those, and `purge_stale` also aborts every incomplete multipart
//! upload under `blobs/` or `uploads/` initiated before its cutoff that no append or commit of
//! this process is running (`multiparts` lists them); with several origin processes, an
//! append or commit another one has been running for longer than that cutoff (the node's
//! `--upload-max-age`, a day by default) could be aborted under it, and its client retries. A blob's `modified` is its object's
//! `LastModified`: when its commit's multipart upload began or completed. Listings and purging
//! are in `listing`.

mod listing;
mod multiparts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::ClientOptions;
use object_store::{
    GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart,
};

use crate::purge;
use crate::store::{
    BlobEntry, BlobInfo, BlobReader, BlobStore, ByteRange, PurgeReport, UploadEntry, UploadId,
    UploadWriter,
};
use crate::{Digest, Error, Hasher, Result};
use multiparts::{Multiparts, S3Multiparts};

/// S3 parts must be at least 5 MiB except the last; 8 MiB keeps a 1 GiB blob at 128 parts,
/// far below the 10,000-part limit, while bounding a writer to a few buffers in memory.
const PART_SIZE: usize = 8 << 20;
/// Part uploads in flight per writer before `write` waits: the backpressure on the client.
const IN_FLIGHT: usize = 2;

/// Where the bucket is. Credentials come from the usual `AWS_*` environment variables.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// Base URL of an S3-compatible service; `None` means AWS itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Overrides `AWS_REGION`; without either, `us-east-1`.
    pub region: Option<String>,
    /// Permits a plain `http://` endpoint (a local MinIO or moto).
    pub allow_http: bool,
}

struct Session {
    /// End of the last acknowledged part.
    size: u64,
    busy: bool,
}

impl Session {
    fn new(size: u64) -> Session {
        Session { size, busy: false }
    }
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    /// The bucket's incomplete multipart uploads, where it can list them (not `InMemory`).
    multiparts: Option<Arc<dyn Multiparts>>,
    sessions: Mutex<HashMap<UploadId, Session>>,
    /// Digests this process is committing, with how many commits of each are running.
    committing: Mutex<HashMap<Digest, usize>>,
}

/// Marks a digest as being committed while alive, so that no cancel or purge aborts the
/// multipart upload of its blob key under the commit.
struct Committing<'a> {
    table: &'a Mutex<HashMap<Digest, usize>>,
    digest: Digest,
}

impl<'a> Committing<'a> {
    fn new(table: &'a Mutex<HashMap<Digest, usize>>, digest: &Digest) -> Committing<'a> {
        *table
            .lock()
            .expect("commit table poisoned")
            .entry(digest.clone())
            .or_insert(0) += 1;
        Committing {
            table,
            digest: digest.clone(),
        }
    }
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        let mut table = self.table.lock().expect("commit table poisoned");
        if let Some(n) = table.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
                table.remove(&self.digest);
            }
        }
    }
}

/// A `BlobStore` in an S3 bucket (or any `ObjectStore` with multipart uploads).
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

fn storage(e: object_store::Error) -> Error {
    Error::Io(std::io::Error::other(e))
}

fn inconsistent(msg: String) -> Error {
    Error::Io(std::io::Error::other(msg))
}

fn keys(objects: Vec<ObjectMeta>) -> Vec<Path> {
    objects.into_iter().map(|o| o.location).collect()
}

fn blob_key(d: &Digest) -> Path {
    Path::from(format!("blobs/{}/{}", d.algorithm().as_str(), d.hex()))
}

fn upload_dir(id: &UploadId) -> Path {
    Path::from(format!("uploads/{id}"))
}

fn part_key(id: &UploadId, offset: u64) -> Path {
    upload_dir(id).join(format!("part-{offset:020}").as_str())
}

fn commit_marker(id: &UploadId) -> Path {
    upload_dir(id).join("commit")
}

/// The digest a key from a listing stores, if it is a blob key of this layout. The key is
/// rebuilt from the digest and compared, so only keys this backend could have made pass.
fn blob_of_key(key: &str) -> Option<Digest> {
    let (alg, hex) = key.strip_prefix("blobs/")?.split_once('/')?;
    let d: Digest = format!("{alg}:{hex}").parse().ok()?;
    (blob_key(&d).as_ref() == key).then_some(d)
}

/// The session a key from a listing belongs to, if it is under `uploads/<id>/`.
fn session_of_key(key: &str) -> Option<UploadId> {
    let (id, rest) = key.strip_prefix("uploads/")?.split_once('/')?;
    if rest.is_empty() {
        return None;
    }
    id.parse().ok()
}

/// The session and offset of a part key from a listing, rebuilt and compared as above.
fn part_of_key(key: &str) -> Option<(UploadId, u64)> {
    let id = session_of_key(key)?;
    let offset = key.rsplit_once("/part-")?.1.parse().ok()?;
    (part_key(&id, offset).as_ref() == key).then_some((id, offset))
}

/// The acknowledged parts of an upload in offset order, and where they end. Parts starting at
/// or past `limit` are appends whose completion was never acknowledged, and are left out.
fn chain(id: &UploadId, objects: &[ObjectMeta], limit: u64) -> Result<(u64, Vec<Path>)> {
    let mut parts: Vec<(u64, &ObjectMeta)> = objects
        .iter()
        .filter_map(|o| {
            let offset = o.location.filename()?.strip_prefix("part-")?.parse().ok()?;
            (offset < limit).then_some((offset, o))
        })
        .collect();
    parts.sort_by_key(|(offset, _)| *offset);
    let mut end = 0;
    for (offset, o) in &parts {
        if *offset != end {
            return Err(inconsistent(format!(
                "upload {id} lacks bytes {end}..{offset}"
            )));
        }
        end += o.size;
    }
    let keys = parts.into_iter().map(|(_, o)| o.location.clone());
    Ok((end, keys.collect()))
}

impl S3Store {
    /// Connects to the bucket described by `cfg`. No request is made until first use.
    pub fn open(cfg: &S3Config) -> Result<S3Store> {
        Self::from_s3(Self::builder(cfg).build().map_err(storage)?)
    }

    /// A store over an S3 client, which can also find incomplete multipart uploads.
    fn from_s3(s3: AmazonS3) -> Result<S3Store> {
        let s3 = Arc::new(s3);
        let multiparts: Arc<dyn Multiparts> = Arc::new(S3Multiparts::new(s3.clone())?);
        Ok(Self::with(s3, Some(multiparts)))
    }

    fn builder(cfg: &S3Config) -> AmazonS3Builder {
        // object_store's default 30 s limit covers the whole request, body included, which
        // would cut a slow pull of a large layer; only connecting is bounded. The client
        // options replace any from the environment, so they come before `with_allow_http`.
        let client = ClientOptions::new()
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(10));
        let mut b = AmazonS3Builder::from_env()
            .with_client_options(client)
            .with_bucket_name(&cfg.bucket)
            .with_allow_http(cfg.allow_http);
        if let Some(endpoint) = &cfg.endpoint {
            b = b.with_endpoint(endpoint);
        }
        if let Some(region) = &cfg.region {
            b = b.with_region(region);
        }
        b
    }

    /// A store over any `ObjectStore`; tests use `object_store::memory::InMemory`. It does not
    /// look for incomplete multipart uploads, which such a store need not have.
    pub fn from_store(store: Arc<dyn ObjectStore>) -> S3Store {
        Self::with(store, None)
    }

    fn with(store: Arc<dyn ObjectStore>, multiparts: Option<Arc<dyn Multiparts>>) -> S3Store {
        S3Store {
            inner: Arc::new(Inner {
                store,
                multiparts,
                sessions: Mutex::new(HashMap::new()),
                committing: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Whether a commit of `digest` is running in this process.
    fn is_committing(&self, digest: &Digest) -> bool {
        let table = self.inner.committing.lock().expect("commit table poisoned");
        table.contains_key(digest)
    }

    /// Whether an append or a commit of this process holds the session.
    fn is_held(&self, id: &UploadId) -> bool {
        self.sessions().get(id).is_some_and(|s| s.busy)
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<UploadId, Session>> {
        self.inner.sessions.lock().expect("session table poisoned")
    }

    async fn upload_objects(&self, id: &UploadId) -> Result<Vec<ObjectMeta>> {
        let prefix = upload_dir(id);
        let listed = self.inner.store.list(Some(&prefix)).try_collect().await;
        listed.map_err(storage)
    }

    /// The size of an upload this process has not seen, from its parts.
    async fn recover(&self, id: &UploadId) -> Result<u64> {
        let objects = self.upload_objects(id).await?;
        if objects.is_empty() {
            return Err(Error::UploadNotFound(id.to_string()));
        }
        Ok(chain(id, &objects, u64::MAX)?.0)
    }

    /// Claims the session for exclusive use in this process and returns its acknowledged
    /// size, read from the bucket: another origin process sharing it may have appended
    /// since this one last saw the session, so the table's size is never trusted.
    async fn claim(&self, id: &UploadId) -> Result<u64> {
        {
            let mut sessions = self.sessions();
            let s = sessions.entry(id.clone()).or_insert(Session::new(0));
            if s.busy {
                return Err(Error::UploadBusy);
            }
            s.busy = true;
        }
        match self.recover(id).await {
            Ok(size) => {
                if let Some(s) = self.sessions().get_mut(id) {
                    s.size = size;
                }
                Ok(size)
            }
            Err(e @ Error::UploadNotFound(_)) => {
                self.forget(id);
                Err(e)
            }
            Err(e) => {
                self.release(id, None);
                Err(e)
            }
        }
    }

    fn release(&self, id: &UploadId, size: Option<u64>) {
        if let Some(s) = self.sessions().get_mut(id) {
            s.busy = false;
            s.size = size.unwrap_or(s.size);
        }
    }

    fn forget(&self, id: &UploadId) {
        self.sessions().remove(id);
    }

    async fn delete_all(&self, keys: Vec<Path>) -> Result<()> {
        let keys = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
        let deleted = self.inner.store.delete_stream(keys);
        deleted
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(storage)
    }

    /// The object at `key`, or `None` if there is none.
    async fn head(&self, key: &Path) -> Result<Option<ObjectMeta>> {
        match self.inner.store.head(key).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    /// Streams the parts into a multipart upload of the blob key while hashing; the upload is
    /// completed (made visible) only if the content matches `digest`.
    async fn commit_claimed(&self, id: &UploadId, digest: &Digest, size: u64) -> Result<u64> {
        let store = &self.inner.store;
        let objects = self.upload_objects(id).await?;
        let (end, parts) = chain(id, &objects, size)?;
        if end != size {
            return Err(inconsistent(format!(
                "upload {id} holds {end} of {size} bytes"
            )));
        }
        let _committing = Committing::new(&self.inner.committing, digest);
        // Written before the multipart upload exists, so a cancel after a crash finds it.
        let marker = commit_marker(id);
        let named = PutPayload::from(digest.to_string());
        store.put(&marker, named).await.map_err(storage)?;
        let upload = store
            .put_multipart(&blob_key(digest))
            .await
            .map_err(storage)?;
        let mut out = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut hasher = Hasher::new(digest.algorithm());
        let streamed = async {
            for part in &parts {
                let mut body = store.get(part).await?.into_stream();
                while let Some(chunk) = body.try_next().await? {
                    hasher.update(&chunk);
                    out.wait_for_capacity(IN_FLIGHT).await?;
                    out.put(chunk);
                }
            }
            Ok::<(), object_store::Error>(())
        }
        .await;
        if let Err(e) = streamed {
            let _ = out.abort().await;
            return Err(storage(e));
        }
        let actual = hasher.finish();
        let mut upload_keys = keys(objects);
        if !upload_keys.contains(&marker) {
            upload_keys.push(marker);
        }
        if &actual != digest {
            // The blob's multipart upload was never completed, so nothing of this content exists.
            let _ = out.abort().await;
            if let Err(e) = self.delete_all(upload_keys).await {
                tracing::warn!(upload = %id, error = %e, "cleaning up a mismatched upload");
            }
            self.forget(id);
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        out.finish().await.map_err(storage)?;
        self.delete_all(upload_keys).await?;
        self.forget(id);
        Ok(size)
    }
}

struct S3Writer {
    store: S3Store,
    id: UploadId,
    /// `None` once `finish` has taken it.
    upload: Option<WriteMultipart>,
    start: u64,
    written: u64,
    finished: bool,
}

#[async_trait]
impl UploadWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let upload = self.upload.as_mut().expect("writer used after finish");
        upload.wait_for_capacity(IN_FLIGHT).await.map_err(storage)?;
        self.written += chunk.len() as u64;
        upload.put(chunk);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64> {
        let upload = self.upload.take().expect("finish called once");
        let cancelled = !self.store.sessions().contains_key(&self.id);
        if self.written == 0 || cancelled {
            // An uncompleted multipart upload holds no object; a failed abort only leaves
            // parts for the bucket's lifecycle rule to expire.
            let _ = upload.abort().await;
            if cancelled {
                return Err(Error::UploadNotFound(self.id.to_string()));
            }
        } else {
            upload.finish().await.map_err(storage)?;
        }
        let size = self.start + self.written;
        self.finished = true;
        self.store.release(&self.id, Some(size));
        Ok(size)
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // The part object is created only by completing the multipart upload, so the
        // acknowledged size stands; aborting just frees the parts already sent.
        self.store.release(&self.id, None);
        if let (Some(upload), Ok(rt)) = (self.upload.take(), tokio::runtime::Handle::try_current())
        {
            rt.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>> {
        let meta = self.head(&blob_key(digest)).await?;
        Ok(meta.map(|m| BlobInfo {
            size: m.size,
            modified: m.last_modified.timestamp(),
        }))
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobReader> {
        let key = blob_key(digest);
        let not_found = || Error::BlobNotFound(digest.clone());
        let size = self.head(&key).await?.ok_or_else(not_found)?.size;
        let range = ByteRange::within(range, size)?;
        if range.is_empty() {
            // S3 rejects a zero-length range, and an empty blob has nothing to fetch.
            let body = Box::pin(futures::stream::empty());
            return Ok(BlobReader::streamed(size, range, body));
        }
        let opts = GetOptions::default().with_range(Some(range.start..range.end));
        let got = match self.inner.store.get_opts(&key, opts).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Err(not_found()),
            Err(e) => return Err(storage(e)),
        };
        let body = Box::pin(got.into_stream().map_err(std::io::Error::other));
        Ok(BlobReader::streamed(size, range, body))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let key = blob_key(digest);
        if self.head(&key).await?.is_none() {
            return Ok(false);
        }
        match self.inner.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(storage(e)),
        }
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<BlobEntry>> {
        self.list_blobs(after, limit).await
    }

    async fn create_upload(&self) -> Result<UploadId> {
        let id = UploadId::new();
        let marker = upload_dir(&id).join("created");
        self.inner
            .store
            .put(&marker, Default::default())
            .await
            .map_err(storage)?;
        self.sessions().insert(id.clone(), Session::new(0));
        Ok(id)
    }

    async fn upload_size(&self, id: &UploadId) -> Result<u64> {
        // From the bucket, not the table: another origin process may have appended.
        self.recover(id).await
    }

    async fn append(&self, id: &UploadId, offset: u64) -> Result<Box<dyn UploadWriter>> {
        let size = self.claim(id).await?;
        if offset != size {
            self.release(id, None);
            return Err(Error::UploadOffset {
                expected: size,
                got: offset,
            });
        }
        let upload = match self.inner.store.put_multipart(&part_key(id, offset)).await {
            Ok(upload) => upload,
            Err(e) => {
                self.release(id, None);
                return Err(storage(e));
            }
        };
        Ok(Box::new(S3Writer {
            store: self.clone(),
            id: id.clone(),
            upload: Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)),
            start: offset,
            written: 0,
            finished: false,
        }))
    }

    async fn commit_upload(&self, id: &UploadId, digest: &Digest) -> Result<u64> {
        let size = self.claim(id).await?;
        let result = self.commit_claimed(id, digest, size).await;
        if result.is_err() {
            self.release(id, None);
        }
        result
    }

    async fn cancel_upload(&self, id: &UploadId) -> Result<()> {
        let held = self.sessions().remove(id).map(|s| s.busy);
        let objects = self.upload_objects(id).await?;
        if objects.is_empty() && held.is_none() {
            return Err(Error::UploadNotFound(id.to_string()));
        }
        // An append or commit running here aborts its own multipart upload when it ends.
        if held != Some(true) {
            self.abort_leftovers(id, &objects).await;
        }
        self.delete_all(keys(objects)).await
    }

    async fn list_uploads(
        &self,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<UploadEntry>> {
        self.list_sessions(after, limit).await
    }

    async fn purge_stale(&self, untouched_for_secs: i64, now: i64) -> Result<PurgeReport> {
        let cutoff = purge::cutoff(untouched_for_secs, now);
        let mut report = purge::purge_sessions(self, cutoff).await?;
        report.multiparts_aborted += self.abort_stale_multiparts(cutoff).await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
