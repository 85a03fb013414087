//! Opening, initialising and driving this node's member of the metadata group.
//!
//! `Metadata` is what the rest of Shoal sees: `write` proposes a command through Raft and
//! returns the state machine's outcome once applied here; `catalog` reads the local replica.
//! A brand-new data directory initialises a single-member group; a restart recovers from the
//! sled log and elects itself again. There is no second code path without Raft.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};

use crate::catalog::Catalog;
use crate::command::{Command, Outcome};
use crate::log_store::LogStore;
use crate::network::SingleNodeNetwork;
use crate::sm::StateMachine;
use crate::types::{NodeId, Raft};
use crate::{Error, Result};

/// How long a write may wait for a commit before it is answered as unavailable.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct MetaConfig {
    pub node_id: NodeId,
    /// Directory of the sled database (log + state machine).
    pub dir: PathBuf,
    /// Address other members would use to reach this node (recorded in the membership).
    pub advertise: String,
    /// Build a snapshot (and purge the log behind it) after this many entries.
    pub snapshot_every: u64,
}

impl MetaConfig {
    /// Entries after which a snapshot is built by default; the sled log then keeps
    /// `LOG_KEPT_AFTER_SNAPSHOT` entries behind it, so it stays bounded.
    pub const DEFAULT_SNAPSHOT_EVERY: u64 = 5000;
}

const LOG_KEPT_AFTER_SNAPSHOT: u64 = 1000;

/// Leader, term and progress as this node sees them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    pub node_id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_applied: Option<u64>,
    pub state: String,
}

pub struct Metadata {
    node_id: NodeId,
    raft: Raft,
    db: sled::Db,
    catalog: Catalog,
}

impl Metadata {
    pub async fn open(cfg: MetaConfig) -> Result<Arc<Metadata>> {
        let db = sled::Config::new().path(&cfg.dir).open()?;
        let log = LogStore::open(&db)?;
        let sm = StateMachine::open(&db)?;
        let catalog = sm.catalog();
        let config = openraft::Config {
            cluster_name: "shoal".into(),
            heartbeat_interval: 250,
            election_timeout_min: 800,
            election_timeout_max: 1600,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: LOG_KEPT_AFTER_SNAPSHOT.min(cfg.snapshot_every),
            purge_batch_size: 1,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Fatal(e.to_string()))?;
        let raft = Raft::new(cfg.node_id, Arc::new(config), SingleNodeNetwork, log, sm)
            .await
            .map_err(|e| Error::Fatal(e.to_string()))?;
        let members = BTreeMap::from([(cfg.node_id, BasicNode::new(&cfg.advertise))]);
        match raft.initialize(members).await {
            Ok(()) => tracing::info!(node_id = cfg.node_id, "initialised a new metadata group"),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                tracing::info!(
                    node_id = cfg.node_id,
                    "recovering the metadata group from disk"
                )
            }
            Err(e) => return Err(Error::Fatal(e.to_string())),
        }
        raft.wait(Some(Duration::from_secs(30)))
            .state(ServerState::Leader, "single member elects itself")
            .await
            .map_err(|e| Error::NoQuorum(e.to_string()))?;
        Ok(Arc::new(Metadata {
            node_id: cfg.node_id,
            raft,
            db,
            catalog,
        }))
    }

    /// The local replica of the catalogue.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Proposes `cmd` and waits until it is committed and applied on this node.
    pub async fn write(&self, cmd: Command) -> Result<Outcome> {
        let resp = tokio::time::timeout(WRITE_TIMEOUT, self.raft.client_write(cmd))
            .await
            .map_err(|_| Error::NoQuorum(format!("no commit within {WRITE_TIMEOUT:?}")))?;
        match resp {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Error::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(RaftError::APIError(e)) => Err(Error::NoQuorum(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(Error::Fatal(e.to_string())),
        }
    }

    /// Number of entries currently held in the sled log (for tests and diagnostics).
    pub fn log_len(&self) -> Result<usize> {
        Ok(self.db.open_tree("log")?.len())
    }

    pub fn status(&self) -> Status {
        let m = self.raft.metrics().borrow().clone();
        Status {
            node_id: self.node_id,
            leader: m.current_leader,
            term: m.current_term,
            last_applied: m.last_applied.map(|l| l.index),
            state: format!("{:?}", m.state),
        }
    }

    /// True while this node can serve: Raft is running and knows a leader.
    pub fn ready(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.running_state.is_ok() && m.current_leader.is_some()
    }

    /// Stops Raft and flushes everything to disk.
    pub async fn shutdown(&self) -> Result<()> {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(%e, "raft shutdown");
        }
        self.db.flush_async().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, snapshot_every: u64) -> MetaConfig {
        MetaConfig {
            node_id: 1,
            dir: dir.to_path_buf(),
            advertise: "127.0.0.1:0".into(),
            snapshot_every,
        }
    }

    fn ns(i: usize) -> Command {
        Command::CreateNamespace {
            name: format!("ns{i:03}"),
            description: None,
            created_at: i as i64,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_survive_restart_and_the_log_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::open(config(dir.path(), 10)).await.unwrap();
        for i in 0..60 {
            assert_eq!(meta.write(ns(i)).await.unwrap(), Outcome::Done);
        }
        assert_eq!(
            meta.write(ns(0)).await.unwrap(),
            Outcome::Rejected(crate::Rejection::NamespaceExists("ns000".into()))
        );
        // Snapshots are built in the background; give the purge a moment to land.
        for _ in 0..100 {
            if meta.log_len().unwrap() <= 25 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let kept = meta.log_len().unwrap();
        assert!(
            kept <= 25,
            "the log holds {kept} entries after 60 writes with snapshots every 10"
        );
        meta.shutdown().await.unwrap();
        drop(meta);

        let meta = Metadata::open(config(dir.path(), 10)).await.unwrap();
        assert_eq!(meta.catalog().namespaces().unwrap().len(), 60);
        assert_eq!(meta.write(ns(60)).await.unwrap(), Outcome::Done);
        assert!(meta.status().leader == Some(1));
        meta.shutdown().await.unwrap();
    }
}
