//! Snapshot files: the catalogue written out as one stream of pairs, so that building,
//! sending, receiving and installing a snapshot never holds the catalogue in memory.
//!
//! Up to format 3 a snapshot was one postcard value in the `snapshot` tree: building it
//! copied the whole catalogue into memory, installing it held it again, and sled rewrote
//! the value into its log every few thousand entries. Now the `snapshot` tree keeps only
//! which file is current, and the bytes lie beside the database, where openraft reads them
//! in chunks to send them and writes received chunks at their offsets.
//!
//! ```text
//! <meta dir>/snapshots/<last index>-<unix ms>-<n>.snap  the current snapshot (older ones are removed)
//!                     /migrated.snap                    the snapshot a format-3 directory held
//!                     /*.part                           being built or received (removed at open)
//!
//! tree snapshot:  meta        JSON SnapshotMeta of the current snapshot
//!                 file        its file name
//!                 installing  JSON Installing: a snapshot being loaded into the catalogue
//! tree snapshot.undo:  catalogue key → 0 (absent when the build began) | 1 ++ value
//!                      (only while a build runs; cleared at open)
//!
//! file:  magic    "SHOALSNP"
//!        format   u32 BE      the metadata format of the pairs (format::CURRENT)
//!        pair*    key length u32 BE, key, value length u32 BE, value
//!        end      u32 BE FFFF_FFFF, pair count u64 BE,
//!                 SHA-256 of every byte before it (32 bytes)
//! ```
//!
//! A snapshot shows the catalogue as it was when openraft asked for it, while entries go
//! on being applied: sled has no point-in-time view, so from that moment until the file is
//! written the state machine saves the value each write replaces, once per key, into tree
//! `snapshot.undo` (`Undo`) before it writes. The file is then every live pair whose key
//! has no saved value, followed by every saved value that existed (a key changed after
//! the live pass read it appears twice, with the same value: installing writes it twice).
//! Writing a large catalogue out therefore never holds writes up.
//!
//! A received file is read through and checked (format, count, hash) before the catalogue
//! is touched. Loading clears the catalogue and writes the pairs back in batches, so a crash
//! in between would leave half a catalogue: `installing` is recorded before the first
//! batch and removed after the last, and `Snapshots::open` finishes an install it finds
//! begun. Recording which file is current happens under one lock, so a build that finishes
//! after a newer install never replaces it.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use openraft::{LogId, SnapshotMeta};
use sha2::{Digest as _, Sha256};

use crate::batch::Batch;
use crate::keys::{APPLIED, MEMBERSHIP};
use crate::types::{read_err, write_err, Member, NodeId, StorageResult};

const MAGIC: &[u8; 8] = b"SHOALSNP";
const END: u32 = u32::MAX;
/// No catalogue value comes near this (manifests are capped far below it); a length above
/// it is a damaged file, refused before anything is allocated for it.
const MAX_PART: u32 = 256 << 20;
/// Pairs written to sled per batch while loading: sled holds a batch's pages in memory
/// until it is applied, and 4096 pairs of ~300 bytes cost twice the memory of 256.
const BATCH: usize = 256;
const BUFFER: usize = 1 << 20;
const DIR: &str = "snapshots";
const META: &[u8] = b"meta";
const FILE: &[u8] = b"file";
const INSTALLING: &[u8] = b"installing";
/// The name a migration from format 3 gives the snapshot it writes out.
pub(crate) const MIGRATED: &str = "migrated.snap";

type Meta = SnapshotMeta<NodeId, Member>;

/// A snapshot being loaded into the catalogue.
#[derive(serde::Serialize, serde::Deserialize)]
struct Installing {
    file: String,
    meta: Meta,
}

/// The snapshot files of one node and the record of which is current.
#[derive(Clone)]
pub struct Snapshots {
    dir: PathBuf,
    tree: sled::Tree,
    /// Held while the current snapshot is read or replaced, and while files are removed.
    lock: Arc<Mutex<()>>,
    /// How long the last build took, in ms.
    build_ms: Arc<AtomicU64>,
    /// The size of the current snapshot's file.
    current_bytes: Arc<AtomicU64>,
    undo: Undo,
    /// Builds whose trees are still held (`BuildGuard`).
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a build while it holds trees of the database, so that a shutdown can wait for
/// it to let go (reopening the directory in the same process needs sled's lock).
pub(crate) struct BuildGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for BuildGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The values writes replaced since a snapshot build began.
#[derive(Clone)]
pub(crate) struct Undo {
    tree: sled::Tree,
    building: Arc<AtomicBool>,
}

impl Undo {
    fn begin(&self) -> sled::Result<()> {
        self.tree.clear()?;
        self.building.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn end(&self) {
        self.building.store(false, Ordering::SeqCst);
        if let Err(e) = self.tree.clear() {
            tracing::warn!(error = %e, "could not clear the snapshot's saved values");
        }
    }

    /// Saves what `batch` is about to replace, if a build is under way and the key has
    /// not been saved since it began. Called by `apply` before it writes the batch.
    pub fn save(&self, catalog: &sled::Tree, batch: &Batch) -> sled::Result<()> {
        if !self.building.load(Ordering::SeqCst) {
            return Ok(());
        }
        for key in batch.keys() {
            if self.tree.contains_key(key)? {
                continue;
            }
            let old = match catalog.get(key)? {
                Some(v) => [&[1u8][..], &v].concat(),
                None => vec![0],
            };
            self.tree.insert(key, old)?;
        }
        Ok(())
    }
}

/// What the metadata takes on disk, for metrics and benchmarks.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct StorageStats {
    /// The database and the snapshot files.
    pub disk_bytes: u64,
    /// The current snapshot file: the catalogue's own bytes plus 8 per pair.
    pub snapshot_bytes: u64,
    /// How long writing the last snapshot out took (applying goes on meanwhile).
    pub snapshot_build_seconds: f64,
}

impl Snapshots {
    /// Opens `<meta dir>/snapshots`: removes what a crash left half written and finishes an
    /// install that a crash interrupted.
    pub fn open(
        meta_dir: &Path,
        tree: sled::Tree,
        undo: sled::Tree,
        catalog: &sled::Tree,
    ) -> crate::Result<Self> {
        let dir = meta_dir.join(DIR);
        let io = |e: io::Error| crate::Error::Fatal(format!("snapshots in {}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(io)?;
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|x| x == "part") {
                std::fs::remove_file(&path).map_err(io)?;
            }
        }
        let snapshots = Snapshots {
            dir,
            tree,
            lock: Arc::default(),
            build_ms: Arc::default(),
            current_bytes: Arc::default(),
            in_flight: Arc::default(),
            undo: Undo {
                tree: undo,
                building: Arc::default(),
            },
        };
        // A build a crash cut short is not resumed: openraft asks again.
        snapshots.undo.tree.clear()?;
        if let Some(name) = snapshots.tree.get(FILE)? {
            let path = snapshots.dir.join(String::from_utf8_lossy(&name).as_ref());
            let len = std::fs::metadata(path).map_or(0, |m| m.len());
            snapshots.current_bytes.store(len, Ordering::Relaxed);
        }
        if let Some(begun) = snapshots.tree.get(INSTALLING)? {
            let begun: Installing = serde_json::from_slice(&begun)
                .map_err(|e| crate::Error::Corrupt(format!("snapshot being installed: {e}")))?;
            tracing::warn!(file = %begun.file, "finishing a snapshot install a crash interrupted");
            snapshots
                .load(&begun, catalog)
                .map_err(|e| crate::Error::Fatal(format!("finishing a snapshot install: {e}")))?;
        }
        Ok(snapshots)
    }

    /// The directory the files are in (a migration writes into it).
    pub fn dir_of(meta_dir: &Path) -> PathBuf {
        meta_dir.join(DIR)
    }

    /// A new file for a snapshot being built or received.
    fn part(&self, kind: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!("{kind}-{}-{n}.part", std::process::id()))
    }

    /// The writes `apply` makes from now on save what they replace, until `write` is done
    /// (or the build is dropped). Called in order with `apply`.
    pub fn begin(&self) -> io::Result<()> {
        Ok(self.undo.begin()?)
    }

    pub(crate) fn undo(&self) -> &Undo {
        &self.undo
    }

    /// Writes the catalogue as it was at `begin` into a new `.part` file while `apply`
    /// goes on; memory holds one pair at a time.
    pub fn write(&self, catalog: &sled::Tree) -> io::Result<PathBuf> {
        let started = std::time::Instant::now();
        let path = self.part("build");
        let undo = &self.undo.tree;
        let live = catalog.iter().filter_map(|kv| match kv {
            Ok((k, v)) => match undo.contains_key(&k) {
                Ok(false) => Some(Ok((k, v))),
                Ok(true) => None,
                Err(e) => Some(Err(io::Error::from(e))),
            },
            Err(e) => Some(Err(io::Error::from(e))),
        });
        let saved = undo.iter().filter_map(|kv| match kv {
            Ok((k, old)) => old
                .split_first()
                .filter(|(present, _)| **present == 1)
                .map(|(_, v)| Ok((k, sled::IVec::from(v)))),
            Err(e) => Some(Err(io::Error::from(e))),
        });
        let written = write_file(&path, live.chain(saved));
        self.undo.end();
        written?;
        let ms = started.elapsed().as_millis() as u64;
        self.build_ms.store(ms, Ordering::Relaxed);
        tracing::debug!(ms, "catalogue written out for a snapshot");
        Ok(path)
    }

    /// How many entries should follow the current snapshot before the next is built: at
    /// least `every`, and more as the catalogue grows, so that writing it out costs each
    /// entry about 4 KiB however large the catalogue (a fixed count would write a 1 GB
    /// catalogue out every few seconds under load).
    pub fn due_after(&self, every: u64) -> u64 {
        every.max(self.current_bytes.load(Ordering::Relaxed) / 4096)
    }

    pub(crate) fn build_guard(&self) -> BuildGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        BuildGuard(self.in_flight.clone())
    }

    /// Waits (up to `within`) until no build holds trees of the database.
    pub async fn builds_done(&self, within: std::time::Duration) {
        let deadline = std::time::Instant::now() + within;
        while self.in_flight.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Ends a build that will not be written.
    pub fn abandon(&self) {
        self.undo.end();
    }

    /// The bytes of the snapshot files and how long the last build took; `database` is
    /// sled's own size on disk.
    pub fn stats(&self, database: u64) -> StorageStats {
        let mut files = 0;
        let mut current = 0;
        let name = self.tree.get(FILE).ok().flatten();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let len = entry.metadata().map_or(0, |m| m.len());
            files += len;
            if name.as_deref() == Some(entry.file_name().as_encoded_bytes()) {
                current = len;
            }
        }
        StorageStats {
            disk_bytes: database + files,
            snapshot_bytes: current,
            snapshot_build_seconds: self.build_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }

    /// A new file for a snapshot the leader sends.
    pub async fn receive(&self) -> io::Result<SnapshotFile> {
        let path = self.part("received");
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(SnapshotFile { path, file })
    }

    /// Makes the built file at `part` the current snapshot, unless a newer one already is
    /// (an install overtook the build): then the file is removed and `None` returned.
    pub fn keep_built(&self, part: &Path, meta: &Meta) -> io::Result<Option<PathBuf>> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = self.current_meta()? {
            if current.last_log_id > meta.last_log_id {
                std::fs::remove_file(part)?;
                return Ok(None);
            }
        }
        let name = file_name(meta.last_log_id);
        let path = self.dir.join(&name);
        std::fs::rename(part, &path)?;
        self.record(meta, &name)?;
        Ok(Some(path))
    }

    /// Checks a received file whole, then replaces the catalogue with its pairs and makes it
    /// the current snapshot.
    pub fn install(&self, part: &Path, meta: &Meta, catalog: &sled::Tree) -> io::Result<()> {
        let pairs = check(part).inspect_err(|_| {
            let _ = std::fs::remove_file(part);
        })?;
        let begun = {
            let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            let file = file_name(meta.last_log_id);
            std::fs::rename(part, self.dir.join(&file))?;
            let begun = Installing {
                file,
                meta: meta.clone(),
            };
            self.tree.insert(INSTALLING, json(&begun)?)?;
            self.tree.flush()?;
            begun
        };
        self.load(&begun, catalog)?;
        tracing::info!(last_log_id = ?meta.last_log_id, pairs, "installed a snapshot from the leader");
        Ok(())
    }

    /// Loads a checked file into the catalogue and records it as current.
    fn load(&self, begun: &Installing, catalog: &sled::Tree) -> io::Result<()> {
        catalog.clear()?;
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for kv in read_file(&self.dir.join(&begun.file))? {
            let (k, v) = kv?;
            batch.insert(k, v);
            n += 1;
            if n == BATCH {
                catalog.apply_batch(std::mem::take(&mut batch))?;
                n = 0;
            }
        }
        // The file's own bookkeeping pairs are overwritten by its metadata.
        batch.insert(APPLIED, json(&begun.meta.last_log_id)?);
        batch.insert(MEMBERSHIP, json(&begun.meta.last_membership)?);
        catalog.apply_batch(batch)?;
        catalog.flush()?;
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.record(&begun.meta, &begun.file)
    }

    /// Records `name` as the current snapshot, ends any install, and removes every other
    /// snapshot file. Called with the lock held.
    fn record(&self, meta: &Meta, name: &str) -> io::Result<()> {
        let mut batch = sled::Batch::default();
        batch.insert(META, json(meta)?);
        batch.insert(FILE, name.as_bytes());
        batch.remove(INSTALLING);
        self.tree.apply_batch(batch)?;
        self.tree.flush()?;
        let len = std::fs::metadata(self.dir.join(name))?.len();
        self.current_bytes.store(len, Ordering::Relaxed);
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let other = path.file_name().is_some_and(|f| f != name);
            if other && path.extension().is_some_and(|x| x == "snap") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    fn current_meta(&self) -> io::Result<Option<Meta>> {
        self.tree
            .get(META)?
            .map(|m| serde_json::from_slice(&m).map_err(io::Error::other))
            .transpose()
    }

    /// The current snapshot, opened for reading.
    pub fn current(&self) -> StorageResult<Option<(Meta, SnapshotFile)>> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(meta), Some(name)) = (
            self.current_meta().map_err(read_err)?,
            self.tree.get(FILE).map_err(read_err)?,
        ) else {
            return Ok(None);
        };
        let path = self.dir.join(String::from_utf8_lossy(&name).as_ref());
        let file = std::fs::File::open(&path).map_err(read_err)?;
        Ok(Some((
            meta,
            SnapshotFile {
                path,
                file: tokio::fs::File::from_std(file),
            },
        )))
    }
}

fn json<T: serde::Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(io::Error::other)
}

fn file_name(last: Option<LogId<NodeId>>) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let index = last.map_or("empty".to_string(), |l| l.index.to_string());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{index}-{}-{n}.snap", chrono::Utc::now().timestamp_millis())
}

/// Writes `pairs` as a snapshot file at `path` and syncs it; returns how many it wrote.
pub(crate) fn write_file<K, V>(
    path: &Path,
    pairs: impl Iterator<Item = io::Result<(K, V)>>,
) -> io::Result<u64>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let file = std::fs::File::create(path)?;
    let mut out = Hashing {
        inner: BufWriter::with_capacity(BUFFER, file),
        hash: Sha256::new(),
    };
    out.write_all(MAGIC)?;
    out.write_all(&crate::format::CURRENT.to_be_bytes())?;
    let mut count = 0u64;
    for kv in pairs {
        let (k, v) = kv?;
        for part in [k.as_ref(), v.as_ref()] {
            let len = u32::try_from(part.len())
                .ok()
                .filter(|l| *l <= MAX_PART)
                .ok_or_else(|| io::Error::other("a catalogue key or value over 256 MiB"))?;
            out.write_all(&len.to_be_bytes())?;
            out.write_all(part)?;
        }
        count += 1;
    }
    out.write_all(&END.to_be_bytes())?;
    out.write_all(&count.to_be_bytes())?;
    let Hashing { mut inner, hash } = out;
    inner.write_all(&hash.finalize())?;
    inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(count)
}

/// Reads a whole snapshot file, checking it: its pair count.
pub(crate) fn check(path: &Path) -> io::Result<u64> {
    let mut pairs = 0;
    for kv in read_file(path)? {
        kv?;
        pairs += 1;
    }
    Ok(pairs)
}

/// The pairs of the snapshot file at `path`, in order. The last item is an error if the
/// file is damaged; a caller that must not act on a damaged file `check`s it first.
pub(crate) fn read_file(path: &Path) -> io::Result<Pairs> {
    let file = std::fs::File::open(path)?;
    let mut input = Hashing {
        inner: BufReader::with_capacity(BUFFER, file),
        hash: Sha256::new(),
    };
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic).map_err(damaged)?;
    if &magic != MAGIC {
        return Err(invalid("not a Shoal snapshot file"));
    }
    let format = read_u32(&mut input)?;
    if format != crate::format::CURRENT {
        return Err(invalid(&format!(
            "a snapshot of metadata format {format}; this shoal reads {}",
            crate::format::CURRENT
        )));
    }
    Ok(Pairs {
        input,
        count: 0,
        ended: false,
    })
}

pub(crate) struct Pairs {
    input: Hashing<BufReader<std::fs::File>>,
    count: u64,
    ended: bool,
}

impl Pairs {
    fn part(&mut self, len: u32) -> io::Result<Vec<u8>> {
        if len > MAX_PART {
            return Err(invalid("a pair longer than any the catalogue holds"));
        }
        let mut part = Vec::new();
        (&mut self.input)
            .take(u64::from(len))
            .read_to_end(&mut part)?;
        if part.len() != len as usize {
            return Err(damaged(io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(part)
    }

    fn pair(&mut self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let len = read_u32(&mut self.input)?;
        if len == END {
            self.end()?;
            return Ok(None);
        }
        let key = self.part(len)?;
        let len = read_u32(&mut self.input)?;
        let value = self.part(len)?;
        self.count += 1;
        Ok(Some((key, value)))
    }

    fn end(&mut self) -> io::Result<()> {
        let mut count = [0u8; 8];
        self.input.read_exact(&mut count).map_err(damaged)?;
        if u64::from_be_bytes(count) != self.count {
            return Err(invalid("its pair count does not match its pairs"));
        }
        let expected = std::mem::take(&mut self.input.hash).finalize();
        let mut got = [0u8; 32];
        self.input.inner.read_exact(&mut got).map_err(damaged)?;
        if got[..] != expected[..] {
            return Err(invalid("its SHA-256 does not match its bytes"));
        }
        if self.input.inner.read(&mut [0u8; 1])? != 0 {
            return Err(invalid("bytes after its end"));
        }
        Ok(())
    }
}

impl Iterator for Pairs {
    type Item = io::Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let item = self.pair().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.ended = true;
        }
        item
    }
}

fn read_u32(input: &mut impl Read) -> io::Result<u32> {
    let mut be = [0u8; 4];
    input.read_exact(&mut be).map_err(damaged)?;
    Ok(u32::from_be_bytes(be))
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("damaged snapshot file: {why}"),
    )
}

fn damaged(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        invalid("it ends early")
    } else {
        e
    }
}

/// Hashes every byte read or written through it.
struct Hashing<T> {
    inner: T,
    hash: Sha256,
}

impl<T: Write> Write for Hashing<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Read> Read for Hashing<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// A snapshot file as openraft reads and writes it (`TypeConfig::SnapshotData`): the file
/// and where it lies, so that a received one can be checked and renamed.
#[derive(Debug)]
pub struct SnapshotFile {
    pub(crate) path: PathBuf,
    file: tokio::fs::File,
}

impl SnapshotFile {
    /// Syncs the received bytes and closes the file: its path.
    pub(crate) async fn close(self) -> StorageResult<PathBuf> {
        self.file.sync_all().await.map_err(write_err)?;
        Ok(self.path)
    }
}

impl tokio::io::AsyncRead for SnapshotFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SnapshotFile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().file).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_shutdown(cx)
    }
}

impl tokio::io::AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.get_mut().file).start_seek(position)
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.get_mut().file).poll_complete(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_with(db: &sled::Db, name: &str, n: usize) -> sled::Tree {
        let tree = db.open_tree(name).unwrap();
        for i in 0..n {
            tree.insert(format!("k/{i:05}"), vec![i as u8; i % 300])
                .unwrap();
        }
        tree
    }

    fn pairs(tree: &sled::Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
        tree.iter()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect()
    }

    fn meta(index: u64) -> Meta {
        Meta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index)),
            last_membership: Default::default(),
            snapshot_id: format!("test-{index}"),
        }
    }

    fn setup() -> (tempfile::TempDir, sled::Db, Snapshots) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let snapshots = Snapshots::open(
            dir.path(),
            db.open_tree("snapshot").unwrap(),
            db.open_tree("snapshot.undo").unwrap(),
            &db.open_tree("catalog").unwrap(),
        )
        .unwrap();
        (dir, db, snapshots)
    }

    fn batch(writes: &[(&str, Option<&str>)]) -> Batch {
        let mut b = Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => b.insert(k.as_bytes(), v.as_bytes()),
                None => b.remove(k.as_bytes()),
            }
        }
        b
    }

    /// Writes applied after a build began (changes, deletions, new keys, a key changed
    /// twice) do not show in its file: it holds the catalogue as it was when it began.
    #[test]
    fn a_snapshot_shows_the_catalogue_as_it_was_when_it_began() {
        let (_dir, db, snapshots) = setup();
        let catalog = tree_with(&db, "catalog", 2_000);
        let before = pairs(&catalog);
        snapshots.begin().unwrap();
        let writes = [
            ("k/00010", Some("changed")),
            ("k/00011", None),
            ("k/99999", Some("new")),
            ("k/00010", Some("changed again")),
            ("k/01999", None),
        ];
        for w in writes.chunks(1) {
            let b = batch(w);
            snapshots.undo().save(&catalog, &b).unwrap();
            catalog.apply_batch(b.into_sled()).unwrap();
        }
        let part = snapshots.write(&catalog).unwrap();
        let mut got: Vec<(Vec<u8>, Vec<u8>)> =
            read_file(&part).unwrap().map(|kv| kv.unwrap()).collect();
        got.sort();
        got.dedup();
        assert_eq!(got, before);
        assert!(
            snapshots.undo.tree.is_empty(),
            "the saved values go with the build"
        );
        // After the build, writes save nothing.
        let b = batch(&[("k/00012", Some("later"))]);
        snapshots.undo().save(&catalog, &b).unwrap();
        assert!(snapshots.undo.tree.is_empty());
    }

    fn without_bookkeeping(tree: &sled::Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs(tree)
            .into_iter()
            .filter(|(k, _)| !k.starts_with(b"~"))
            .collect()
    }

    #[test]
    fn a_catalogue_written_and_installed_is_the_same_catalogue() {
        let (_dir, db, snapshots) = setup();
        let source = tree_with(&db, "source", 10_000);
        let part = snapshots.write(&source).unwrap();
        assert_eq!(check(&part).unwrap(), 10_000);
        let target = tree_with(&db, "catalog", 3);
        target.insert(b"only-here", b"x").unwrap();
        snapshots.install(&part, &meta(7), &target).unwrap();
        assert_eq!(without_bookkeeping(&target), pairs(&source));
        let applied: Option<LogId<NodeId>> =
            serde_json::from_slice(&target.get(APPLIED).unwrap().unwrap()).unwrap();
        assert_eq!(applied.unwrap().index, 7);
        let (current, _) = snapshots.current().unwrap().unwrap();
        assert_eq!(current.snapshot_id, "test-7");
        let files: Vec<_> = std::fs::read_dir(&snapshots.dir).unwrap().collect();
        assert_eq!(files.len(), 1, "only the current snapshot's file is kept");
    }

    /// A truncated, altered or foreign file is refused before the catalogue is touched.
    #[test]
    fn a_damaged_file_is_refused_and_the_catalogue_kept() {
        let (_dir, db, snapshots) = setup();
        let source = tree_with(&db, "source", 500);
        let good = snapshots.write(&source).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let target = tree_with(&db, "catalog", 20);
        let before = pairs(&target);
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 1;
        let mut longer = bytes.clone();
        longer.push(0);
        let mut huge = bytes.clone();
        huge[12..16].copy_from_slice(&(MAX_PART + 1).to_be_bytes());
        let mut older = bytes.clone();
        older[8..12].copy_from_slice(&(crate::format::CURRENT - 1).to_be_bytes());
        let cases: [(&str, &[u8], &str); 7] = [
            ("empty", &[], "ends early"),
            ("magic only", &bytes[..8], "ends early"),
            ("cut in a pair", &bytes[..bytes.len() / 3], "ends early"),
            ("cut in the hash", &bytes[..bytes.len() - 5], "ends early"),
            ("a bit flipped", &flipped, "SHA-256"),
            ("a byte too many", &longer, "after its end"),
            ("a length too long", &huge, "longer than any"),
        ];
        for (what, data, why) in cases
            .iter()
            .chain([&("another format", &older[..], "format")])
        {
            let part = snapshots.dir.join("case.part");
            std::fs::write(&part, data).unwrap();
            let err = snapshots.install(&part, &meta(9), &target).unwrap_err();
            assert!(err.to_string().contains(why), "{what}: {err}");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}");
            assert_eq!(pairs(&target), before, "{what}: the catalogue is untouched");
        }
        let mut foreign = bytes;
        foreign[0] = b'X';
        std::fs::write(snapshots.dir.join("x.part"), &foreign).unwrap();
        assert!(check(&snapshots.dir.join("x.part"))
            .unwrap_err()
            .to_string()
            .contains("not a Shoal snapshot"));
    }

    /// An install a crash cut short (half the pairs loaded) is finished when the directory
    /// is opened again.
    #[test]
    fn an_interrupted_install_finishes_on_the_next_open() {
        let (dir, db, snapshots) = setup();
        let source = tree_with(&db, "source", 9_000);
        let part = snapshots.write(&source).unwrap();
        let file = "12-1-0.snap".to_string();
        std::fs::rename(&part, snapshots.dir.join(&file)).unwrap();
        let catalog = db.open_tree("catalog").unwrap();
        for (k, v) in pairs(&source).into_iter().take(4_000) {
            catalog.insert(k, v).unwrap();
        }
        catalog.insert(b"stale", b"from before").unwrap();
        let begun = Installing {
            file,
            meta: meta(12),
        };
        snapshots
            .tree
            .insert(INSTALLING, json(&begun).unwrap())
            .unwrap();
        std::fs::write(snapshots.dir.join("received-1-1.part"), b"half").unwrap();
        let reopened = Snapshots::open(
            dir.path(),
            db.open_tree("snapshot").unwrap(),
            db.open_tree("snapshot.undo").unwrap(),
            &catalog,
        )
        .unwrap();
        assert_eq!(without_bookkeeping(&catalog), pairs(&source));
        assert!(reopened.tree.get(INSTALLING).unwrap().is_none());
        assert_eq!(
            reopened.current().unwrap().unwrap().0.snapshot_id,
            "test-12"
        );
        assert!(
            !snapshots.dir.join("received-1-1.part").exists(),
            "half-received files are removed"
        );
    }

    /// A build that finishes after a newer snapshot was installed does not replace it.
    #[test]
    fn a_build_overtaken_by_an_install_is_dropped() {
        let (_dir, db, snapshots) = setup();
        let catalog = tree_with(&db, "catalog", 10);
        let newer = snapshots.write(&catalog).unwrap();
        snapshots.install(&newer, &meta(20), &catalog).unwrap();
        let older = snapshots.write(&catalog).unwrap();
        assert!(snapshots.keep_built(&older, &meta(15)).unwrap().is_none());
        assert!(!older.exists());
        assert_eq!(
            snapshots.current().unwrap().unwrap().0.snapshot_id,
            "test-20"
        );
        let newest = snapshots.write(&catalog).unwrap();
        let kept = snapshots.keep_built(&newest, &meta(25)).unwrap().unwrap();
        assert!(kept.exists());
        assert_eq!(
            snapshots.current().unwrap().unwrap().0.snapshot_id,
            "test-25"
        );
        assert_eq!(std::fs::read_dir(&snapshots.dir).unwrap().count(), 1);
    }
}
