//! The Raft log: entries in segment files (`segments`), the vote and the committed and
//! purged pointers in sled's tree `log-meta` as JSON.
//!
//! Every append is synced before openraft is told it is durable: an acknowledged entry must
//! survive `kill -9`. The file IO runs on blocking threads, and the lock over the segments is
//! not held while they sync, so replication goes on reading entries meanwhile. The catalogue
//! (sled) is not flushed with each entry: sled writes it back within half a second, and
//! after a crash openraft applies again, from the log, whatever sled had not written. That
//! holds only while the log still has those entries, so a purge flushes sled first.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, Vote};

use crate::segments::{Segments, SEGMENT_BYTES};
use crate::types::{read_err, write_err, NodeId, StorageResult, TypeConfig};

#[derive(Clone)]
pub struct LogStore {
    entries: Arc<Mutex<Segments>>,
    meta: sled::Tree,
}

impl LogStore {
    /// Opens the log of the metadata directory `dir`, whose database is `db`.
    pub fn open(db: &sled::Db, dir: &Path) -> crate::Result<LogStore> {
        let path = dir.join(crate::segments::DIR);
        let entries = Segments::open(&path, SEGMENT_BYTES)
            .map_err(|e| crate::Error::Fatal(format!("the Raft log in {}: {e}", path.display())))?;
        Ok(LogStore {
            entries: Arc::new(Mutex::new(entries)),
            meta: db.open_tree(crate::format::LOG_META)?,
        })
    }

    fn segments(&self) -> std::sync::MutexGuard<'_, Segments> {
        lock(&self.entries)
    }

    /// Whether this store has voted or holds entries: a group was initialised here before.
    pub fn has_state(&self) -> crate::Result<bool> {
        Ok(self.meta.contains_key("vote")? || self.segments().last_index().is_some())
    }

    /// Entries openraft may still read (after the last purged one), and the bytes the
    /// segment files take.
    pub(crate) fn size(&self) -> StorageResult<(u64, u64)> {
        let purged = self.get_meta::<LogId<NodeId>>("last_purged")?;
        let s = self.segments();
        let live = match (s.first_index(), s.last_index()) {
            (Some(first), Some(last)) => {
                let from = purged.map_or(first, |p| first.max(p.index + 1));
                (last + 1).saturating_sub(from)
            }
            _ => 0,
        };
        Ok((live, s.bytes()))
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, k: &str) -> StorageResult<Option<T>> {
        match self.meta.get(k).map_err(read_err)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    fn set_meta<T: serde::Serialize>(&self, k: &str, v: &T) -> StorageResult<()> {
        self.meta
            .insert(k, serde_json::to_vec(v).map_err(write_err)?)
            .map_err(write_err)?;
        Ok(())
    }

    /// Records `k` and flushes the database (the catalogue with it).
    async fn put_meta<T: serde::Serialize>(&self, k: &str, v: &T) -> StorageResult<()> {
        self.set_meta(k, v)?;
        self.meta.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    /// The id of the last entry on disk (or of the last purged one, when none is left).
    pub(crate) fn last_log_id(&self) -> StorageResult<Option<LogId<NodeId>>> {
        let last = {
            let s = self.segments();
            match s.last_index() {
                Some(i) => s.read(i, i + 1).map_err(read_err)?.pop(),
                None => None,
            }
        };
        match last {
            Some(bytes) => Ok(Some(Self::decode(&bytes)?.log_id)),
            None => self.get_meta("last_purged"),
        }
    }

    fn decode(bytes: &[u8]) -> StorageResult<Entry<TypeConfig>> {
        postcard::from_bytes(bytes).map_err(read_err)
    }

    /// Runs `io` on the segments on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        io: impl FnOnce(&Mutex<Segments>) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let entries = self.entries.clone();
        tokio::task::spawn_blocking(move || io(&entries))
            .await
            .map_err(std::io::Error::other)?
    }
}

fn lock(m: &Mutex<Segments>) -> std::sync::MutexGuard<'_, Segments> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let from = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        let records = self.segments().read(from, to).map_err(read_err)?;
        records.iter().map(|b| Self::decode(b)).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        Ok(LogState {
            last_purged_log_id: self.get_meta("last_purged")?,
            last_log_id: self.last_log_id()?,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.put_meta("vote", vote).await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.get_meta("vote")
    }

    /// Not flushed: openraft needs no durable commit pointer (after a crash it applies up to
    /// what it finds, and the leader commits the rest again), and a flush per commit made
    /// sled rewrite its pages for every entry.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.set_meta("committed", &committed)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self
            .get_meta::<Option<LogId<NodeId>>>("committed")?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for e in entries {
            encoded.push((e.log_id.index, postcard::to_stdvec(&e).map_err(write_err)?));
        }
        let written = self
            .blocking(move |entries| {
                let unsynced =
                    lock(entries).append(encoded.iter().map(|(i, b)| (*i, b.as_slice())))?;
                unsynced.sync()
            })
            .await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.blocking(move |entries| lock(entries).truncate(log_id.index))
            .await
            .map_err(write_err)
    }

    /// Records `last_purged`, which flushes sled (the catalogue must be durable past every
    /// entry dropped: after a crash, openraft applies again from the log what sled had not
    /// written), then deletes the segments wholly before it.
    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.put_meta("last_purged", &log_id).await?;
        self.blocking(move |entries| lock(entries).purge(log_id.index))
            .await
            .map_err(write_err)
    }
}
