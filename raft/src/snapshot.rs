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
//!                     /*.part                           being built or received (removed at open;
//!                                                       a received one when its transfer is dropped)
//!
//! tree snapshot:  meta        JSON SnapshotMeta of the current snapshot
//!                 file        its file name
//!                 bytes       u64 BE: its pairs' bytes uncompressed (absent before format 6,
//!                             and for the plain file a migration from format 3 writes: then
//!                             the file's length stands in, the same for a plain file)
//!                 installing  JSON Installing: a snapshot being loaded into the catalogue
//! tree snapshot.undo:  catalogue key → 0 (absent when the build began) | 1 ++ value
//!                      (only while a build runs; cleared at open)
//!
//! file:  magic    "SHOALSNP"
//!        format   u32 BE      the metadata format of the pairs (format::CURRENT when
//!                             written; 4 and later are read: formats 5 and 6 kept the pairs)
//!        body     from format 6 on one zstd stream of what follows, before it as it is:
//!          pair*    key length u32 BE, key, value length u32 BE, value
//!          end      u32 BE FFFF_FFFF, pair count u64 BE,
//!                   SHA-256 of every byte before it, uncompressed, header included (32 bytes)
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
//! is touched. Loading clears the catalogue and writes the pairs back one by one, so a crash
//! in between would leave half a catalogue: `installing` is recorded before the first
//! pair and removed after the last, and `Snapshots::open` finishes an install it finds
//! begun. Recording which file is current happens under one lock, so a build that finishes
//! after a newer install never replaces it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::{LogId, SnapshotMeta};

use crate::batch::Batch;
use crate::keys::{APPLIED, MEMBERSHIP};
use crate::types::{read_err, Member, NodeId, StorageResult};

pub(crate) use crate::snapshot_file::{
    check, read_file, write_file, write_file_as, SnapshotFile, Written,
};

const DIR: &str = "snapshots";
const META: &[u8] = b"meta";
const FILE: &[u8] = b"file";
/// The current snapshot's pairs' bytes uncompressed (u64 BE), from format 6 on.
const BYTES: &[u8] = b"bytes";
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
    /// The current snapshot's pairs' bytes uncompressed (what paces builds, `due_after`).
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
    /// The current snapshot uncompressed: the catalogue's own bytes plus 8 per pair.
    pub snapshot_bytes: u64,
    /// The current snapshot's file on disk (compressed from format 6 on).
    pub snapshot_file_bytes: u64,
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
        if snapshots.tree.get(FILE)?.is_some() {
            let bytes = match snapshots.tree.get(BYTES)? {
                Some(b) => <[u8; 8]>::try_from(b.as_ref()).map_or(0, u64::from_be_bytes),
                None => snapshots.current_file_len(),
            };
            snapshots.current_bytes.store(bytes, Ordering::Relaxed);
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
    pub fn write(&self, catalog: &sled::Tree) -> io::Result<Built> {
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
        let written = written?;
        let ms = started.elapsed().as_millis() as u64;
        self.build_ms.store(ms, Ordering::Relaxed);
        tracing::debug!(ms, "catalogue written out for a snapshot");
        Ok(Built { path, written })
    }

    /// How many entries should follow the current snapshot before the next is built: at
    /// least `every`, and more as the catalogue grows, so that writing it out costs each
    /// entry about 4 KiB however large the catalogue (a fixed count would write a 1 GB
    /// catalogue out every few seconds under load). The catalogue's bytes, not its
    /// compressed file's: reading it out of sled is what a build costs.
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
    /// what sled and the log's segment files take on disk.
    pub fn stats(&self, database: u64) -> StorageStats {
        let files: u64 = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum();
        StorageStats {
            disk_bytes: database + files,
            snapshot_bytes: self.current_bytes.load(Ordering::Relaxed),
            snapshot_file_bytes: self.current_file_len(),
            snapshot_build_seconds: self.build_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }

    /// A new file for a snapshot the leader sends.
    pub async fn receive(&self) -> io::Result<SnapshotFile> {
        tracing::info!("receiving a snapshot from the leader");
        let path = self.part("received");
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(SnapshotFile {
            path,
            file,
            partial: true,
        })
    }

    /// Makes the built file at `part` the current snapshot, unless a newer one already is
    /// (an install overtook the build): then the file is removed and `None` returned.
    pub fn keep_built(&self, built: &Built, meta: &Meta) -> io::Result<Option<PathBuf>> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = self.current_meta()? {
            if current.last_log_id > meta.last_log_id {
                std::fs::remove_file(&built.path)?;
                return Ok(None);
            }
        }
        let name = file_name(meta.last_log_id);
        let path = self.dir.join(&name);
        std::fs::rename(&built.path, &path)?;
        self.record(meta, &name, built.written.bytes)?;
        Ok(Some(path))
    }

    /// Checks a received file whole, then replaces the catalogue with its pairs and makes it
    /// the current snapshot.
    pub fn install(&self, part: &Path, meta: &Meta, catalog: &sled::Tree) -> io::Result<()> {
        let started = std::time::Instant::now();
        let held = check(part).inspect_err(|_| {
            let _ = std::fs::remove_file(part);
        })?;
        let checked = started.elapsed();
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
        tracing::info!(
            last_log_id = ?meta.last_log_id,
            pairs = held.pairs,
            bytes = held.bytes,
            check_seconds = checked.as_secs_f64(),
            load_seconds = (started.elapsed() - checked).as_secs_f64(),
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    /// Loads a checked file into the catalogue and records it as current. Pairs are
    /// inserted one by one, not in batches: the load needs no atomicity of its own (an
    /// install a crash interrupts is loaded again whole, `open`), sled took 1.4× as long
    /// for a million pairs in batches of 32 to 4 096, and a batch holds its pairs in
    /// memory (`bench/RESULTS.md`, "Joining on a long log").
    fn load(&self, begun: &Installing, catalog: &sled::Tree) -> io::Result<()> {
        catalog.clear()?;
        let mut held = Written::default();
        for kv in read_file(&self.dir.join(&begun.file))? {
            let (k, v) = kv?;
            held.add(&k, &v);
            catalog.insert(k, v)?;
        }
        // The file's own bookkeeping pairs are overwritten by its metadata.
        let mut batch = sled::Batch::default();
        batch.insert(APPLIED, json(&begun.meta.last_log_id)?);
        batch.insert(MEMBERSHIP, json(&begun.meta.last_membership)?);
        catalog.apply_batch(batch)?;
        catalog.flush()?;
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.record(&begun.meta, &begun.file, held.bytes)
    }

    /// Records `name`, whose pairs take `bytes` uncompressed, as the current snapshot, ends
    /// any install, and removes every other snapshot file. Called with the lock held.
    fn record(&self, meta: &Meta, name: &str, bytes: u64) -> io::Result<()> {
        let mut batch = sled::Batch::default();
        batch.insert(META, json(meta)?);
        batch.insert(FILE, name.as_bytes());
        batch.insert(BYTES, &bytes.to_be_bytes());
        batch.remove(INSTALLING);
        self.tree.apply_batch(batch)?;
        self.tree.flush()?;
        self.current_bytes.store(bytes, Ordering::Relaxed);
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

    /// The path of the snapshot file named `name` in the snapshot tree.
    fn file_path(&self, name: &[u8]) -> PathBuf {
        self.dir.join(String::from_utf8_lossy(name).as_ref())
    }

    /// The length of the current snapshot's file on disk; 0 when there is none.
    fn current_file_len(&self) -> u64 {
        let name = self.tree.get(FILE).ok().flatten();
        name.and_then(|n| std::fs::metadata(self.file_path(&n)).ok())
            .map_or(0, |m| m.len())
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
        let path = self.file_path(&name);
        let file = std::fs::File::open(&path).map_err(read_err)?;
        Ok(Some((
            meta,
            SnapshotFile {
                path,
                file: tokio::fs::File::from_std(file),
                partial: false,
            },
        )))
    }
}

/// A snapshot written out and not yet kept: its `.part` file and what it holds.
pub struct Built {
    pub path: PathBuf,
    pub(crate) written: Written,
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

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
