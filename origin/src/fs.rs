//! Filesystem backend of `BlobStore`: the embedded default origin.
//!
//! Upload bytes go straight to `uploads/<id>`; a running sha256 is kept in memory per session
//! so committing a 1 GiB upload does not read it back. The in-memory state is only an
//! optimisation: after a restart a session is recovered from its file and re-hashed on commit.
//! A std `Mutex` guards the session table because it is held for a few map operations only,
//! never across an `.await`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

use crate::chunks::file_chunks;
use crate::digest::{Algorithm, Hasher};
use crate::paths::Layout;
use crate::store::{BlobReader, BlobStore, ByteRange, UploadId, UploadWriter};
use crate::{Digest, Error, Result};

const IO_BUF: usize = 1 << 20;

struct Session {
    /// Bytes acknowledged so far; the file may be longer after a torn append.
    size: u64,
    /// Running sha256 of the first `size` bytes; `None` after a restart.
    sha256: Option<Hasher>,
    busy: bool,
}

struct Inner {
    layout: Layout,
    sessions: Mutex<HashMap<UploadId, Session>>,
}

/// A `BlobStore` on a local directory.
#[derive(Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub async fn open(root: impl AsRef<Path>) -> Result<FsStore> {
        let layout = Layout::new(root.as_ref());
        fs::create_dir_all(layout.blobs_dir()).await?;
        fs::create_dir_all(layout.uploads_dir()).await?;
        Ok(FsStore {
            inner: Arc::new(Inner {
                layout,
                sessions: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Claims the session for exclusive use, recovering it from disk if this process has
    /// not seen it (restart). Returns its acknowledged size and running hash.
    async fn claim(&self, id: &UploadId) -> Result<(u64, Option<Hasher>)> {
        let known = {
            let mut sessions = self.inner.sessions.lock().expect("session table poisoned");
            match sessions.get_mut(id) {
                Some(s) if s.busy => return Err(Error::UploadBusy),
                Some(s) => {
                    s.busy = true;
                    Some((s.size, s.sha256.clone()))
                }
                None => None,
            }
        };
        if let Some(found) = known {
            return Ok(found);
        }
        let len = match fs::metadata(self.inner.layout.upload(id)).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::UploadNotFound(id.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        let mut sessions = self.inner.sessions.lock().expect("session table poisoned");
        let s = sessions.entry(id.clone()).or_insert(Session {
            size: len,
            sha256: None,
            busy: false,
        });
        if s.busy {
            return Err(Error::UploadBusy);
        }
        s.busy = true;
        Ok((s.size, s.sha256.clone()))
    }

    fn release(&self, id: &UploadId, update: Option<(u64, Option<Hasher>)>) {
        let mut sessions = self.inner.sessions.lock().expect("session table poisoned");
        if let Some(s) = sessions.get_mut(id) {
            s.busy = false;
            if let Some((size, sha256)) = update {
                s.size = size;
                s.sha256 = sha256;
            }
        }
    }

    fn forget(&self, id: &UploadId) {
        self.inner
            .sessions
            .lock()
            .expect("session table poisoned")
            .remove(id);
    }

    async fn hash_file(path: &Path, len: u64, algorithm: Algorithm) -> Result<Digest> {
        let mut file = File::open(path).await?.take(len);
        let mut hasher = Hasher::new(algorithm);
        let mut buf = vec![0u8; IO_BUF];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finish())
    }

    async fn commit_claimed(&self, id: &UploadId, digest: &Digest) -> Result<u64> {
        let (size, sha256) = self.claim(id).await?;
        let upload = self.inner.layout.upload(id);
        let actual = match sha256 {
            Some(h) if digest.algorithm() == Algorithm::Sha256 => h.finish(),
            _ => Self::hash_file(&upload, size, digest.algorithm()).await?,
        };
        if &actual != digest {
            let _ = fs::remove_file(&upload).await;
            self.forget(id);
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let file = OpenOptions::new().write(true).open(&upload).await?;
        file.set_len(size).await?;
        file.sync_all().await?;
        drop(file);
        let target = self.inner.layout.blob(digest);
        let dir = target.parent().expect("blob path has a parent");
        fs::create_dir_all(dir).await?;
        fs::rename(&upload, &target).await?;
        File::open(dir).await?.sync_all().await?;
        self.forget(id);
        Ok(size)
    }
}

struct FsWriter {
    store: FsStore,
    id: UploadId,
    file: BufWriter<File>,
    hasher: Option<Hasher>,
    size: u64,
    finished: bool,
}

#[async_trait]
impl UploadWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if let Some(h) = self.hasher.as_mut() {
            h.update(&chunk);
        }
        self.file.write_all(&chunk).await?;
        self.size += chunk.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64> {
        self.file.flush().await?;
        self.finished = true;
        self.store
            .release(&self.id, Some((self.size, self.hasher.take())));
        Ok(self.size)
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if !self.finished {
            // The bytes written past the acknowledged size are cut off by the next append.
            self.store.release(&self.id, None);
        }
    }
}

#[async_trait]
impl BlobStore for FsStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match fs::metadata(self.inner.layout.blob(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobReader> {
        let file = match File::open(self.inner.layout.blob(digest)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::BlobNotFound(digest.clone()))
            }
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata().await?.len();
        let range = ByteRange::within(range, size)?;
        Ok(BlobReader {
            size,
            range,
            body: file_chunks(file.into_std().await, range.start, range.end),
        })
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        match fs::remove_file(self.inner.layout.blob(digest)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let alg_dir = self.inner.layout.blobs_dir().join(alg.as_str());
            let Ok(mut prefixes) = fs::read_dir(&alg_dir).await else {
                continue;
            };
            while let Some(prefix) = prefixes.next_entry().await? {
                let mut files = fs::read_dir(prefix.path()).await?;
                while let Some(f) = files.next_entry().await? {
                    let name = f.file_name();
                    let name = name.to_string_lossy();
                    if let Ok(d) = format!("{}:{}", alg.as_str(), name).parse() {
                        out.push(d);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn create_upload(&self) -> Result<UploadId> {
        let id = UploadId::new();
        File::create(self.inner.layout.upload(&id)).await?;
        self.inner
            .sessions
            .lock()
            .expect("session table poisoned")
            .insert(
                id.clone(),
                Session {
                    size: 0,
                    sha256: Some(Hasher::new(Algorithm::Sha256)),
                    busy: false,
                },
            );
        Ok(id)
    }

    async fn upload_size(&self, id: &UploadId) -> Result<u64> {
        if let Some(s) = self
            .inner
            .sessions
            .lock()
            .expect("session table poisoned")
            .get(id)
        {
            return Ok(s.size);
        }
        match fs::metadata(self.inner.layout.upload(id)).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::UploadNotFound(id.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn append(&self, id: &UploadId, offset: u64) -> Result<Box<dyn UploadWriter>> {
        let (size, hasher) = self.claim(id).await?;
        let opened = async {
            if offset != size {
                return Err(Error::UploadOffset {
                    expected: size,
                    got: offset,
                });
            }
            let mut file = OpenOptions::new()
                .write(true)
                .open(self.inner.layout.upload(id))
                .await?;
            file.set_len(size).await?;
            file.seek(std::io::SeekFrom::Start(size)).await?;
            Ok(file)
        }
        .await;
        match opened {
            Ok(file) => Ok(Box::new(FsWriter {
                store: self.clone(),
                id: id.clone(),
                file: BufWriter::with_capacity(IO_BUF, file),
                hasher,
                size,
                finished: false,
            })),
            Err(e) => {
                self.release(id, None);
                Err(e)
            }
        }
    }

    async fn commit_upload(&self, id: &UploadId, digest: &Digest) -> Result<u64> {
        let result = self.commit_claimed(id, digest).await;
        if result.is_err() {
            self.release(id, None);
        }
        result
    }

    async fn cancel_upload(&self, id: &UploadId) -> Result<()> {
        let known = self
            .inner
            .sessions
            .lock()
            .expect("session table poisoned")
            .remove(id)
            .is_some();
        match fs::remove_file(self.inner.layout.upload(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !known => {
                Err(Error::UploadNotFound(id.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fs_store_passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        crate::conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn upload_survives_restart_and_is_rehashed() {
        let dir = tempfile::tempdir().unwrap();
        let before = FsStore::open(dir.path()).await.unwrap();
        let after = FsStore::open(dir.path()).await.unwrap();
        crate::conformance::upload_resumes_after_restart(&before, &after).await;
    }
}
