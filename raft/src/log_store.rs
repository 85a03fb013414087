//! The Raft log, vote and committed pointer in sled.
//!
//! Entries live in tree `log` under big-endian indexes (so sled order is log order), encoded
//! with postcard; the vote, committed id and last purged id live in tree `log-meta` as JSON.
//! Every write is flushed before openraft is told it is durable: an acknowledged entry must
//! survive `kill -9`.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, Vote};

use crate::types::{read_err, write_err, NodeId, StorageResult, TypeConfig};

#[derive(Clone)]
pub struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    pub fn open(db: &sled::Db) -> crate::Result<LogStore> {
        Ok(LogStore {
            log: db.open_tree(crate::format::LOG)?,
            meta: db.open_tree(crate::format::LOG_META)?,
        })
    }

    /// Whether this store has voted or holds entries: a group was initialised here before.
    pub fn has_state(&self) -> crate::Result<bool> {
        Ok(self.meta.contains_key("vote")? || !self.log.is_empty())
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, k: &str) -> StorageResult<Option<T>> {
        match self.meta.get(k).map_err(read_err)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    async fn put_meta<T: serde::Serialize>(&self, k: &str, v: &T) -> StorageResult<()> {
        self.meta
            .insert(k, serde_json::to_vec(v).map_err(write_err)?)
            .map_err(write_err)?;
        self.meta.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    /// The id of the last entry on disk (or of the last purged one, when none is left).
    pub(crate) fn last_log_id(&self) -> StorageResult<Option<LogId<NodeId>>> {
        match self.log.last().map_err(read_err)? {
            Some((_, v)) => Ok(Some(Self::decode(&v)?.log_id)),
            None => self.get_meta("last_purged"),
        }
    }

    fn decode(bytes: &[u8]) -> StorageResult<Entry<TypeConfig>> {
        postcard::from_bytes(bytes).map_err(read_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for kv in self.log.range(key(start)..) {
            let (k, v) = kv.map_err(read_err)?;
            let index = u64::from_be_bytes(k.as_ref().try_into().expect("log keys are 8 bytes"));
            if !range.contains(&index) {
                break;
            }
            out.push(Self::decode(&v)?);
        }
        Ok(out)
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

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.put_meta("committed", &committed).await
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
        let mut batch = sled::Batch::default();
        for e in entries {
            let bytes = postcard::to_stdvec(&e).map_err(write_err)?;
            batch.insert(&key(e.log_id.index), bytes);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        match self.log.flush_async().await {
            Ok(_) => {
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
        let mut batch = sled::Batch::default();
        for kv in self.log.range(key(log_id.index)..) {
            batch.remove(kv.map_err(read_err)?.0);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.log.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    /// Removes the entries up to `log_id` in batches of `PURGE_BATCH`: snapshots of a large
    /// catalogue come tens of thousands of entries apart, and one sled batch of them all
    /// held hundreds of MB while it was applied. `last_purged` is recorded first, so a
    /// crash half way leaves only entries openraft no longer reads, removed by the next
    /// purge.
    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        const PURGE_BATCH: usize = 1024;
        self.put_meta("last_purged", &log_id).await?;
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for kv in self.log.range(..=key(log_id.index)).take(PURGE_BATCH) {
                batch.remove(kv.map_err(read_err)?.0);
                n += 1;
            }
            self.log.apply_batch(batch).map_err(write_err)?;
            if n < PURGE_BATCH {
                break;
            }
        }
        self.log.flush_async().await.map_err(write_err)?;
        Ok(())
    }
}
