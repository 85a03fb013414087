//! The Raft state machine: applies committed commands to the `Catalog` and builds/installs
//! snapshots.
//!
//! Each entry is applied as one sled batch that also records `~applied` (and `~membership`
//! for membership entries), so the catalogue and the bookkeeping can never disagree after a
//! crash, and a replayed entry is skipped rather than applied twice. Snapshots are a copy of
//! the whole catalogue tree taken in `get_snapshot_builder`, which runs in order with `apply`
//! (the build itself runs concurrently and must not read live state).

use std::io::Cursor;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StoredMembership,
};

use crate::catalog::Catalog;
use crate::command::Outcome;
use crate::types::{read_err, write_err, Member, NodeId, StorageResult, TypeConfig};

use crate::keys::{APPLIED, MEMBERSHIP};

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Clone)]
pub struct StateMachine {
    catalog: Catalog,
    snapshots: sled::Tree,
    /// Digests unlinked from a repository, announced after the entry is applied so that a
    /// node's cache can drop them (`Metadata::blob_unlinks`).
    unlinked: tokio::sync::broadcast::Sender<String>,
}

impl StateMachine {
    pub fn open(db: &sled::Db) -> crate::Result<StateMachine> {
        Ok(StateMachine {
            catalog: Catalog::new(db.open_tree(crate::format::CATALOG)?),
            snapshots: db.open_tree(crate::format::SNAPSHOT)?,
            unlinked: tokio::sync::broadcast::channel(1024).0,
        })
    }

    pub fn unlinked(&self) -> tokio::sync::broadcast::Sender<String> {
        self.unlinked.clone()
    }

    pub fn catalog(&self) -> Catalog {
        self.catalog.clone()
    }

    fn tree(&self) -> &sled::Tree {
        self.catalog.tree()
    }

    fn last_applied(&self) -> StorageResult<Option<LogId<NodeId>>> {
        match self.tree().get(APPLIED).map_err(read_err)? {
            Some(v) => serde_json::from_slice(&v).map_err(read_err),
            None => Ok(None),
        }
    }

    fn copy_all(&self) -> StorageResult<Pairs> {
        self.tree()
            .iter()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(read_err))
            .collect()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>)> {
        let membership = match self.tree().get(MEMBERSHIP).map_err(read_err)? {
            Some(v) => serde_json::from_slice(&v).map_err(read_err)?,
            None => StoredMembership::default(),
        };
        Ok((self.last_applied()?, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Outcome>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let applied = self.last_applied()?;
        for entry in entries {
            if applied.is_some_and(|a| a.index >= entry.log_id.index) {
                out.push(Outcome::Done);
                continue;
            }
            let mut batch = sled::Batch::default();
            let applied = serde_json::to_vec(&Some(entry.log_id)).map_err(write_err)?;
            batch.insert(APPLIED, applied);
            let mut unlinked = Vec::new();
            let outcome = match entry.payload {
                EntryPayload::Blank => Outcome::Done,
                EntryPayload::Normal(proposal) => {
                    let event = self
                        .catalog
                        .audit_event(&proposal, entry.log_id.index)
                        .map_err(write_err)?;
                    let outcome = self
                        .catalog
                        .plan(&proposal.command, &mut batch, &mut unlinked)
                        .map_err(write_err)?;
                    if let Some(event) = event {
                        self.catalog.record_audit(event, &outcome, &mut batch);
                    }
                    outcome
                }
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(entry.log_id), m);
                    batch.insert(MEMBERSHIP, serde_json::to_vec(&stored).map_err(write_err)?);
                    Outcome::Done
                }
            };
            self.tree().apply_batch(batch).map_err(write_err)?;
            if outcome == Outcome::Done {
                for digest in unlinked {
                    // Nobody listening (no cache) is fine.
                    let _ = self.unlinked.send(digest);
                }
            }
            out.push(outcome);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let state = self
            .applied_state()
            .await
            .and_then(|(applied, membership)| Ok((applied, membership, self.copy_all()?)));
        SnapshotBuilder {
            state: Some(state),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let pairs: Pairs = postcard::from_bytes(&data).map_err(read_err)?;
        let mut batch = sled::Batch::default();
        for kv in self.tree().iter() {
            batch.remove(kv.map_err(read_err)?.0);
        }
        for (k, v) in pairs {
            batch.insert(k, v);
        }
        // The snapshot's own bookkeeping pairs are overwritten by its metadata.
        batch.insert(
            APPLIED,
            serde_json::to_vec(&meta.last_log_id).map_err(write_err)?,
        );
        batch.insert(
            MEMBERSHIP,
            serde_json::to_vec(&meta.last_membership).map_err(write_err)?,
        );
        self.tree().apply_batch(batch).map_err(write_err)?;
        save_snapshot(&self.snapshots, meta, &data)?;
        self.tree().flush_async().await.map_err(write_err)?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let (Some(meta), Some(data)) = (
            self.snapshots.get("meta").map_err(read_err)?,
            self.snapshots.get("data").map_err(read_err)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            meta: serde_json::from_slice(&meta).map_err(read_err)?,
            snapshot: Box::new(Cursor::new(data.to_vec())),
        }))
    }
}

fn save_snapshot(
    tree: &sled::Tree,
    meta: &SnapshotMeta<NodeId, Member>,
    data: &[u8],
) -> StorageResult<()> {
    let mut batch = sled::Batch::default();
    batch.insert("meta", serde_json::to_vec(meta).map_err(write_err)?);
    batch.insert("data", data);
    tree.apply_batch(batch).map_err(write_err)?;
    tree.flush().map_err(write_err)?;
    Ok(())
}

type Taken = StorageResult<(
    Option<LogId<NodeId>>,
    StoredMembership<NodeId, Member>,
    Pairs,
)>;

/// Holds a copy of the catalogue taken in order with `apply`.
pub struct SnapshotBuilder {
    state: Option<Taken>,
    snapshots: sled::Tree,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (last_log_id, last_membership, pairs) =
            self.state.take().expect("a snapshot builder builds once")?;
        let data = postcard::to_stdvec(&pairs).map_err(write_err)?;
        let snapshot_id = match last_log_id {
            Some(l) => format!(
                "{}-{}-{}",
                l.leader_id,
                l.index,
                chrono::Utc::now().timestamp_millis()
            ),
            None => format!("empty-{}", chrono::Utc::now().timestamp_millis()),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        save_snapshot(&self.snapshots, &meta, &data)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
