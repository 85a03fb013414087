//! Filesystem backend of `BlobStore`: the embedded default origin.
//!
//! Upload bytes go straight to `uploads/<id>`; a running sha256 is kept in memory per session
//! so committing a 1 GiB upload does not read it back. The in-memory state is only an
//! optimisation: after a restart a session is recovered from its file and re-hashed on commit.
//! A std `Mutex` guards the session table because it is held for a few map operations only,
//! never across an `.await`.
//!
//! An append hands its chunks, as they are (no copy), over a short channel to a blocking
//! thread that hashes them and hands them on to a second thread that writes them. The
//! request's task only reads the socket, so reading, hashing and writing overlap instead of
//! taking turns: with hashing and a buffered async file on the request's thread, a 1 GiB
//! push ran at ~335 MB/s here. The hashing thread releases the session itself after the
//! last write, so a dropped writer's bytes are all on disk (and cut
//! off by the next append) before anyone else may append. It writes through
//! `direct::SequentialWriter`, around the page cache where the filesystem allows (see there
//! why), so the commit's fsync of a 1 GiB blob finds almost nothing left to write.
//!
//! Times, for listings and purging, are file mtimes. A session was last written when its
//! file's mtime says: creating it and every append (the cut back to the acknowledged size,
//! then the writes) set it, so "untouched for N seconds" means no session was created and no
//! append truncated or wrote the file for N seconds. The upload file is all a session leaves
//! on disk (there is no sidecar), so removing it and the table entry removes the session. A
//! session is held while an append (`Writing`), an abandoned append's thread (`Closing`) or
//! a commit has it; `purge_stale` takes a session the same way before it removes it, so it
//! never removes one under a writer. A blob's mtime is set to the time of its commit before
//! the rename (a rename would keep the upload's last write), so a collector's grace period
//! counts from the commit. Listings are in `listing`.

mod listing;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::fs::{self, File, OpenOptions};
use tokio::io::AsyncReadExt;

use crate::digest::{Algorithm, Hasher};
use crate::direct::SequentialWriter;
use crate::paths::Layout;
use crate::purge::{self, Outcome, StaleSessions};
use crate::store::{
    unix_secs, BlobEntry, BlobInfo, BlobReader, BlobStore, ByteRange, PurgeReport, UploadEntry,
    UploadId, UploadWriter,
};
use crate::{Digest, Error, Result};

const IO_BUF: usize = 1 << 20;
/// Chunks queued for the hashing thread: with 64 KiB request pieces, about 1 MiB in flight.
const WRITE_QUEUE: usize = 16;
/// Chunks hashed but not yet written (`write_chunks`): with 64 KiB pieces, 2 MiB, two of
/// the direct writer's 1 MiB writes.
const DISK_QUEUE: usize = 32;

struct Session {
    /// Bytes acknowledged so far; the file may be longer after a torn append.
    size: u64,
    /// Running sha256 of the first `size` bytes; `None` after a restart.
    sha256: Option<Hasher>,
    use_: Use,
}

/// Who holds a session.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    Idle,
    /// An append is writing.
    Writing,
    /// An abandoned append's thread is writing out what it was given; the session is free
    /// as soon as it stops.
    Closing,
}

struct Inner {
    layout: Layout,
    sessions: Mutex<HashMap<UploadId, Session>>,
    /// Woken whenever a session is released.
    released: tokio::sync::Notify,
}

/// How long a new append waits for an abandoned one's thread to stop.
const CLOSING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

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
                released: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Claims the session for exclusive use, recovering it from disk if this process has
    /// not seen it (restart). Returns its acknowledged size and running hash. A session an
    /// abandoned append is still closing is waited for; one being written is busy.
    async fn claim(&self, id: &UploadId) -> Result<(u64, Option<Hasher>)> {
        let deadline = tokio::time::Instant::now() + CLOSING_WAIT;
        let known = loop {
            let released = self.inner.released.notified();
            {
                let mut sessions = self.inner.sessions.lock().expect("session table poisoned");
                match sessions.get_mut(id) {
                    Some(s) if s.use_ == Use::Writing => return Err(Error::UploadBusy),
                    Some(s) if s.use_ == Use::Closing => {}
                    Some(s) => {
                        s.use_ = Use::Writing;
                        break Some((s.size, s.sha256.clone()));
                    }
                    None => break None,
                }
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(Error::UploadBusy);
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
            use_: Use::Idle,
        });
        if s.use_ != Use::Idle {
            return Err(Error::UploadBusy);
        }
        s.use_ = Use::Writing;
        Ok((s.size, s.sha256.clone()))
    }

    /// Takes a session nobody holds, without waiting, entering it with `size` if this process
    /// has not seen it. `None` if it is held; else whether it was entered here.
    fn take_idle(&self, id: &UploadId, size: u64) -> Option<bool> {
        let mut sessions = self.inner.sessions.lock().expect("session table poisoned");
        match sessions.get_mut(id) {
            Some(s) if s.use_ != Use::Idle => None,
            Some(s) => {
                s.use_ = Use::Writing;
                Some(false)
            }
            None => {
                let s = Session {
                    size,
                    sha256: None,
                    use_: Use::Writing,
                };
                sessions.insert(id.clone(), s);
                Some(true)
            }
        }
    }

    /// Undoes `take_idle`: an entry it made is dropped again, so the next user recovers the
    /// session from its file as usual.
    fn give_back(&self, id: &UploadId, inserted: bool) {
        if inserted {
            self.forget(id);
        } else {
            self.release(id, None);
        }
    }

    /// Marks a session whose append was dropped without finishing.
    fn abandon(&self, id: &UploadId) {
        let mut sessions = self.inner.sessions.lock().expect("session table poisoned");
        if let Some(s) = sessions.get_mut(id).filter(|s| s.use_ == Use::Writing) {
            s.use_ = Use::Closing;
        }
    }

    fn release(&self, id: &UploadId, update: Option<(u64, Option<Hasher>)>) {
        let mut sessions = self.inner.sessions.lock().expect("session table poisoned");
        if let Some(s) = sessions.get_mut(id) {
            s.use_ = Use::Idle;
            if let Some((size, sha256)) = update {
                s.size = size;
                s.sha256 = sha256;
            }
        }
        drop(sessions);
        self.inner.released.notify_waiters();
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
        self.place(file.into_std().await, &upload, digest).await?;
        self.forget(id);
        Ok(size)
    }

    /// Moves the verified file `file` at `path` into place as blob `digest`: its time is
    /// now (the commit's, see the module doc), made durable with its bytes and its name.
    async fn place(
        &self,
        file: std::fs::File,
        path: &Path,
        digest: &Digest,
    ) -> std::io::Result<()> {
        tokio::task::spawn_blocking(move || {
            file.set_modified(SystemTime::now())?;
            file.sync_all()
        })
        .await
        .map_err(std::io::Error::other)??;
        let target = self.inner.layout.blob(digest);
        let dir = target.parent().expect("blob path has a parent");
        fs::create_dir_all(dir).await?;
        fs::rename(path, &target).await?;
        File::open(dir).await?.sync_all().await
    }
}

/// The request side of an append: chunks go to the hashing thread; `None` says "finish".
struct FsWriter {
    store: FsStore,
    id: UploadId,
    chunks: tokio::sync::mpsc::Sender<Option<Bytes>>,
    thread: Option<tokio::task::JoinHandle<Result<u64>>>,
    finishing: bool,
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if !self.finishing {
            self.store.abandon(&self.id);
        }
    }
}

impl FsWriter {
    /// Waits for the hashing thread (it joins the disk thread first) to stop; its result.
    async fn join(&mut self) -> Result<u64> {
        match self.thread.take() {
            Some(t) => t.await.map_err(|e| {
                Error::Io(std::io::Error::other(format!(
                    "the upload writer failed: {e}"
                )))
            })?,
            None => Err(Error::Io(std::io::Error::other(
                "the upload writer is gone",
            ))),
        }
    }

    /// The hashing thread's error once it has stopped (it stops only on an error, or when
    /// asked to finish).
    async fn stopped(&mut self) -> Error {
        match self.join().await {
            Err(e) => e,
            Ok(_) => Error::Io(std::io::Error::other("the upload writer already finished")),
        }
    }
}

/// Hashes and writes every chunk until told to finish or abandoned; then releases the
/// session: with the new size and hash when finished, unchanged otherwise.
///
/// Hashing and writing run on two threads: a direct write waits for the disk, and done in
/// turn with the hash on one thread the two added up (a 1 GiB push: SHA-256 ~0.6 s, the
/// writes ~0.65 s of waiting). The disk thread lags the hash by at most `DISK_QUEUE`
/// chunks; it writes out what it was given even when the append is abandoned (those bytes
/// lie past the acknowledged size, and the next append or the commit cuts them off).
fn write_chunks(
    store: FsStore,
    id: UploadId,
    file: SequentialWriter,
    mut hasher: Option<Hasher>,
    mut size: u64,
    mut chunks: tokio::sync::mpsc::Receiver<Option<Bytes>>,
) -> Result<u64> {
    let result = std::thread::scope(|scope| {
        let (to_disk, queued) = std::sync::mpsc::sync_channel::<Bytes>(DISK_QUEUE);
        // A thread the system refuses is an error of this append, never a panic: a panic
        // here would skip the release below and leave the session busy.
        let disk = std::thread::Builder::new()
            .name("shoal-upload-io".into())
            .spawn_scoped(scope, move || write_out(file, queued))
            .map_err(Error::Io)?;
        let told = loop {
            match chunks.blocking_recv() {
                Some(Some(chunk)) => {
                    if let Some(h) = hasher.as_mut() {
                        h.update(&chunk);
                    }
                    let len = chunk.len() as u64;
                    if to_disk.send(chunk).is_err() {
                        // The disk thread stopped on an error; it is read below.
                        break false;
                    }
                    size += len;
                }
                Some(None) => break true,
                None => break false,
            }
        };
        drop(to_disk);
        let written = disk
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the upload's disk thread panicked")));
        match (told, written) {
            (_, Err(e)) => Err(e.into()),
            (true, Ok(())) => Ok(size),
            (false, Ok(())) => Err(Error::Io(std::io::Error::other("the append was abandoned"))),
        }
    });
    match result {
        Ok(size) => {
            store.release(&id, Some((size, hasher)));
            Ok(size)
        }
        Err(e) => {
            // The bytes written past the acknowledged size are cut off by the next append.
            store.release(&id, None);
            Err(e)
        }
    }
}

/// The disk side of an append: writes the chunks in order, then what the writer holds back.
fn write_out(
    mut file: SequentialWriter,
    queued: std::sync::mpsc::Receiver<Bytes>,
) -> std::io::Result<()> {
    for chunk in queued {
        file.write(&chunk)?;
    }
    file.finish().map(|_| ())
}

#[async_trait]
impl UploadWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if self.chunks.send(Some(chunk)).await.is_err() {
            return Err(self.stopped().await);
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64> {
        self.finishing = true;
        if self.chunks.send(None).await.is_err() {
            return Err(self.stopped().await);
        }
        self.join().await
    }
}

#[async_trait]
impl BlobStore for FsStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>> {
        match fs::metadata(self.inner.layout.blob(digest)).await {
            Ok(m) => Ok(Some(BlobInfo {
                size: m.len(),
                modified: unix_secs(m.modified()?),
            })),
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
        BlobReader::from_file(file.into_std().await, size, range)
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        match fs::remove_file(self.inner.layout.blob(digest)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<BlobEntry>> {
        let (layout, after) = (self.inner.layout.clone(), after.cloned());
        tokio::task::spawn_blocking(move || listing::blobs(&layout, after.as_ref(), limit))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?
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
                    use_: Use::Idle,
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
            let path = self.inner.layout.upload(id);
            let file = OpenOptions::new().write(true).open(&path).await?;
            file.set_len(size).await?;
            let file = file.into_std().await;
            tokio::task::spawn_blocking(move || SequentialWriter::new(file, &path, size))
                .await
                .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))
        }
        .await;
        match opened {
            Ok(file) => {
                let (tx, rx) = tokio::sync::mpsc::channel(WRITE_QUEUE);
                let (store, owned_id) = (self.clone(), id.clone());
                let thread = tokio::task::spawn_blocking(move || {
                    write_chunks(store, owned_id, file, hasher, size, rx)
                });
                Ok(Box::new(FsWriter {
                    store: self.clone(),
                    id: id.clone(),
                    chunks: tx,
                    thread: Some(thread),
                    finishing: false,
                }))
            }
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

    async fn list_uploads(
        &self,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<UploadEntry>> {
        let (layout, after) = (self.inner.layout.clone(), after.cloned());
        tokio::task::spawn_blocking(move || listing::uploads(&layout, after.as_ref(), limit))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?
    }

    async fn adopt_file(&self, path: &std::path::Path, digest: &Digest) -> Result<bool> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        match self.place(file, path, digest).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn purge_stale(&self, untouched_for_secs: i64, now: i64) -> Result<PurgeReport> {
        purge::purge_sessions(self, purge::cutoff(untouched_for_secs, now)).await
    }
}

#[async_trait]
impl StaleSessions for FsStore {
    async fn remove_if_stale(&self, id: &UploadId, cutoff: i64) -> Result<Outcome> {
        let path = self.inner.layout.upload(id);
        // The size an unknown session is recovered with, as `claim` would.
        let size = match fs::metadata(&path).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Kept),
            Err(e) => return Err(e.into()),
        };
        let Some(inserted) = self.take_idle(id, size) else {
            return Ok(Outcome::Held);
        };
        // Held now, so no append can touch the file: its mtime is final.
        let removed = async {
            let m = fs::metadata(&path).await?;
            if unix_secs(m.modified()?) >= cutoff {
                return Ok(None);
            }
            fs::remove_file(&path).await?;
            Ok::<_, std::io::Error>(Some(m.len()))
        }
        .await;
        match removed {
            Ok(Some(bytes_freed)) => {
                self.forget(id);
                Ok(Outcome::Removed {
                    bytes_freed,
                    multiparts_aborted: 0,
                })
            }
            Ok(None) => {
                self.give_back(id, inserted);
                Ok(Outcome::Kept)
            }
            // Cancelled meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.give_back(id, inserted);
                Ok(Outcome::Kept)
            }
            Err(e) => {
                self.give_back(id, inserted);
                Err(e.into())
            }
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
