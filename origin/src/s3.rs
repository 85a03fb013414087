//! S3 backend of `BlobStore`, over the `object_store` crate, for an origin whose bytes live in
//! a bucket (AWS, MinIO, Ceph, moto). Key layout, drawn once:
//!
//! ```text
//! blobs/<algorithm>/<hex>               committed blob; immutable, named by its digest
//! uploads/<upload-uuid>/created         empty marker, so an upload with no bytes exists
//! uploads/<upload-uuid>/part-<offset>   one object per finished append; offset is 20 digits
//! ```
//!
//! Objects cannot be appended to, so each append is its own object, keyed by where it starts:
//! an append whose completion was lost is simply overwritten by the retry at the same offset.
//! A writer streams into a multipart upload that is completed only on `finish`, so a dropped
//! writer leaves no object at all. A commit streams the parts into a multipart upload of
//! the blob key itself while hashing them, and completes it only if the digest matches: an
//! incomplete multipart upload is invisible, so nothing unverified ever appears under
//! `blobs/`, and no server-side copy (capped at 5 GiB on AWS) or second rewrite is needed.
//! As in `fs.rs`, the session table (size, busy) is only a cache: after a restart a session is
//! recovered by listing its parts. A std `Mutex` guards it because it is never held across an
//! `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::ClientOptions;
use object_store::{GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt, WriteMultipart};

use crate::store::{BlobReader, BlobStore, ByteRange, UploadId, UploadWriter};
use crate::{Digest, Error, Hasher, Result};

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
    sessions: Mutex<HashMap<UploadId, Session>>,
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
        let store = Self::builder(cfg).build().map_err(storage)?;
        Ok(Self::from_store(Arc::new(store)))
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

    /// A store over any `ObjectStore`; tests use `object_store::memory::InMemory`.
    pub fn from_store(store: Arc<dyn ObjectStore>) -> S3Store {
        S3Store {
            inner: Arc::new(Inner {
                store,
                sessions: Mutex::new(HashMap::new()),
            }),
        }
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

    /// Claims the session for exclusive use and returns its acknowledged size.
    async fn claim(&self, id: &UploadId) -> Result<u64> {
        let known = match self.sessions().get_mut(id) {
            Some(s) if s.busy => return Err(Error::UploadBusy),
            Some(s) => {
                s.busy = true;
                Some(s.size)
            }
            None => None,
        };
        if let Some(size) = known {
            return Ok(size);
        }
        let size = self.recover(id).await?;
        let mut sessions = self.sessions();
        let s = sessions.entry(id.clone()).or_insert(Session::new(size));
        if s.busy {
            return Err(Error::UploadBusy);
        }
        s.busy = true;
        Ok(s.size)
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

    /// Size of the object at `key`, or `None` if there is none.
    async fn size_of(&self, key: &Path) -> Result<Option<u64>> {
        match self.inner.store.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
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
        let upload_keys = keys(objects);
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
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        self.size_of(&blob_key(digest)).await
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobReader> {
        let key = blob_key(digest);
        let not_found = || Error::BlobNotFound(digest.clone());
        let size = self.size_of(&key).await?.ok_or_else(not_found)?;
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
        if self.size_of(&key).await?.is_none() {
            return Ok(false);
        }
        match self.inner.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(storage(e)),
        }
    }

    async fn list(&self) -> Result<Vec<Digest>> {
        let prefix = Path::from("blobs");
        let listed = self.inner.store.list(Some(&prefix)).try_collect().await;
        let objects: Vec<ObjectMeta> = listed.map_err(storage)?;
        let mut out: Vec<Digest> = objects
            .iter()
            .filter_map(|o| {
                let (alg, hex) = o
                    .location
                    .as_ref()
                    .strip_prefix("blobs/")?
                    .split_once('/')?;
                format!("{alg}:{hex}").parse().ok()
            })
            .collect();
        out.sort();
        Ok(out)
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
        if let Some(s) = self.sessions().get(id) {
            return Ok(s.size);
        }
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
        let known = self.sessions().remove(id).is_some();
        let objects = self.upload_objects(id).await?;
        if objects.is_empty() && !known {
            return Err(Error::UploadNotFound(id.to_string()));
        }
        self.delete_all(keys(objects)).await
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn s3_store_passes_conformance_in_memory() {
        let store = S3Store::from_store(Arc::new(InMemory::new()));
        crate::conformance::run_all(&store).await;
    }

    /// A restarted origin must find an upload's size from its part objects alone.
    #[tokio::test]
    async fn upload_survives_restart() {
        let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let before = S3Store::from_store(bucket.clone());
        let after = S3Store::from_store(bucket);
        crate::conformance::upload_resumes_after_restart(&before, &after).await;
    }

    /// Kills moto however the test ends, so a failed assertion leaves no server behind.
    struct Moto(Child);

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Starts `moto_server` on a free port and returns it with its base URL, or `None` if
    /// moto is not installed (a failure when `CI=true`).
    fn start_moto() -> Option<(Moto, String)> {
        let spawned = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("moto_server is not on PATH and CI=true: pip install 'moto[server]'");
                }
                eprintln!(
                    "!!!!! MOTO MISSING, test did not run (pip install 'moto[server]') !!!!!"
                );
                return None;
            }
            Err(e) => panic!("starting moto_server: {e}"),
        };
        let (tx, rx) = mpsc::channel();
        // Both pipes are drained for moto's whole life: a full pipe would stall the server.
        let pipes: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for pipe in pipes {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(|l| l.ok()) {
                    if let Some(at) = line.find("Running on http://") {
                        let _ = tx.send(line[at + "Running on ".len()..].trim().to_string());
                    }
                }
            });
        }
        let moto = Moto(child);
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("moto_server printed no address within 30 s");
        Some((moto, url))
    }

    #[tokio::test]
    async fn s3_store_passes_conformance_against_moto() {
        let Some((_moto, url)) = start_moto() else {
            return;
        };
        let bucket = "shoal-conformance";
        let created = reqwest::Client::new()
            .put(format!("{url}/{bucket}"))
            .send()
            .await
            .expect("creating the bucket");
        assert!(created.status().is_success(), "create bucket: {created:?}");
        let cfg = S3Config {
            endpoint: Some(url),
            bucket: bucket.into(),
            region: Some("us-east-1".into()),
            allow_http: true,
        };
        // Credentials set on the builder rather than in the environment, which other tests
        // share: moto accepts any key but object_store insists on one to sign with.
        let s3 = S3Store::builder(&cfg)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        let store = S3Store::from_store(Arc::new(s3));
        crate::conformance::run_all(&store).await;
        blob_of_several_parts(&store).await;
    }

    /// Appends and the commit span several 8 MiB parts, which a real S3 checks against its
    /// 5 MiB minimum part size; the conformance suite's blobs all fit in one part.
    async fn blob_of_several_parts(store: &S3Store) {
        let data: Vec<u8> = (0..20u32 << 20).map(|i| (i % 253) as u8).collect();
        let id = store.create_upload().await.unwrap();
        for (start, end) in [(0, 13 << 20), (13 << 20, data.len())] {
            let mut w = store.append(&id, start as u64).await.unwrap();
            for chunk in data[start..end].chunks(1 << 20) {
                w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
            }
            assert_eq!(w.finish().await.unwrap(), end as u64);
        }
        let d = Digest::sha256_of(&data);
        assert_eq!(store.commit_upload(&id, &d).await.unwrap(), 20 << 20);
        let range = ByteRange {
            start: (8 << 20) - 5,
            end: (13 << 20) + 5,
        };
        let r = store.read(&d, Some(range)).await.unwrap();
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r.into_async_read(), &mut got)
            .await
            .unwrap();
        assert!(
            got == data[range.start as usize..range.end as usize],
            "range across parts"
        );
    }
}
