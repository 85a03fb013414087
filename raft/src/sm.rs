//! The Raft state machine: applies committed commands to the `Catalog` and builds/installs
//! snapshots.
//!
//! Each entry is applied as one sled batch that also records `~applied` (and `~membership`
//! for membership entries), so the catalogue and the bookkeeping can never disagree after a
//! crash, and a replayed entry is skipped rather than applied twice. A snapshot is the
//! catalogue streamed into a file (`snapshot`) while entries go on being applied: it
//! begins in `get_snapshot_builder`, in order with `apply`, and from then on `apply` saves
//! what each write replaces until the file is written, so it shows the catalogue as it was
//! at that moment. Memory holds one pair at a time.

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StoredMembership,
};

use crate::catalog::Catalog;
use crate::command::Outcome;
use crate::snapshot::{SnapshotFile, Snapshots};
use crate::types::{read_err, write_err, Member, NodeId, StorageResult, TypeConfig};

use crate::keys::{APPLIED, MEMBERSHIP};

#[derive(Clone)]
pub struct StateMachine {
    catalog: Catalog,
    snapshots: Snapshots,
    /// Digests unlinked from a repository, announced after the entry is applied so that a
    /// node's cache can drop them (`Metadata::blob_unlinks`).
    unlinked: tokio::sync::broadcast::Sender<String>,
}

impl StateMachine {
    /// The state machine over `db`, with its snapshot files in `dir` (the database's).
    pub fn open(db: &sled::Db, dir: &std::path::Path) -> crate::Result<StateMachine> {
        let catalog = db.open_tree(crate::format::CATALOG)?;
        let snapshots = Snapshots::open(
            dir,
            db.open_tree(crate::format::SNAPSHOT)?,
            db.open_tree(crate::format::SNAPSHOT_UNDO)?,
            &catalog,
        )?;
        Ok(StateMachine {
            catalog: Catalog::new(catalog),
            snapshots,
            unlinked: tokio::sync::broadcast::channel(1024).0,
        })
    }

    pub fn unlinked(&self) -> tokio::sync::broadcast::Sender<String> {
        self.unlinked.clone()
    }

    pub fn catalog(&self) -> Catalog {
        self.catalog.clone()
    }

    pub fn snapshots(&self) -> Snapshots {
        self.snapshots.clone()
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
            let mut batch = crate::batch::Batch::default();
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
            self.snapshots
                .undo()
                .save(self.tree(), &batch)
                .map_err(write_err)?;
            self.tree()
                .apply_batch(batch.into_sled())
                .map_err(write_err)?;
            self.catalog.changed();
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
            .and_then(|(applied, membership)| {
                self.snapshots.begin().map_err(write_err)?;
                Ok((applied, membership))
            });
        SnapshotBuilder {
            state: Some(state),
            snapshots: self.snapshots.clone(),
            catalog: self.tree().clone(),
            _guard: self.snapshots.build_guard(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<SnapshotFile>> {
        Ok(Box::new(self.snapshots.receive().await.map_err(write_err)?))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<SnapshotFile>,
    ) -> StorageResult<()> {
        let part = snapshot.close().await?;
        let (tree, snapshots, meta) = (self.tree().clone(), self.snapshots.clone(), meta.clone());
        // Readers see the catalogue emptied and refilled while it loads: nothing derived
        // from it meanwhile may be kept, and nothing derived before holds after.
        let loading = self.catalog.loading();
        tokio::task::spawn_blocking(move || {
            // Held by the load itself, which runs on even if this future is dropped.
            let _loading = loading;
            snapshots.install(&part, &meta, &tree)
        })
        .await
        .map_err(write_err)?
        .map_err(write_err)
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        Ok(self.snapshots.current()?.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

type Taken = StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>)>;

/// A snapshot begun in order with `apply` (its applied state and membership), written out
/// when openraft builds it.
pub struct SnapshotBuilder {
    state: Option<Taken>,
    snapshots: Snapshots,
    catalog: sled::Tree,
    /// Last, so that it is dropped after the trees.
    _guard: crate::snapshot::BuildGuard,
}

impl Drop for SnapshotBuilder {
    fn drop(&mut self) {
        if self.state.is_some() {
            self.snapshots.abandon();
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (last_log_id, last_membership) = match self.state.take() {
            Some(Ok(state)) => state,
            Some(Err(e)) => {
                self.snapshots.abandon();
                return Err(e);
            }
            None => return Err(write_err(std::io::Error::other("a snapshot builds once"))),
        };
        let (snapshots, catalog) = (self.snapshots.clone(), self.catalog.clone());
        let guard = self.snapshots.build_guard();
        let built = tokio::task::spawn_blocking(move || {
            let written = snapshots.write(&catalog);
            drop((snapshots, catalog));
            drop(guard);
            written
        })
        .await
        .map_err(write_err)?
        .map_err(write_err)?;
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
        let snapshots = self.snapshots.clone();
        let kept_meta = meta.clone();
        tokio::task::spawn_blocking(move || snapshots.keep_built(&built, &kept_meta))
            .await
            .map_err(write_err)?
            .map_err(write_err)?;
        // Overtaken by a newer install, the build is still a valid snapshot of its own
        // state for openraft's bookkeeping; what is sent from now on is the current one.
        let (meta, file) = match self.snapshots.current()? {
            Some((current, file)) if current.last_log_id >= meta.last_log_id => (current, file),
            _ => {
                return Err(read_err(std::io::Error::other(
                    "the built snapshot vanished",
                )))
            }
        };
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}
