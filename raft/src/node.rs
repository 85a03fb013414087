//! Opening, initialising and driving this node's member of the metadata group.
//!
//! `Metadata` is what the rest of Shoal sees: `write` proposes a command through Raft and
//! returns the state machine's outcome once applied here; `catalog` reads the local replica.
//! Without a cluster plane a brand-new data directory initialises a single-member group and
//! a restart recovers from its log and elects itself again. With one, a `bootstrap`
//! node initialises a region and the others join it (see `cluster`). Either way every write
//! goes through Raft; a follower forwards it to the leader and waits for its own replica.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ServerState, SnapshotPolicy};

use crate::catalog::Catalog;
use crate::command::{Outcome, Proposal};
use crate::handover::Tenure;
use crate::log_store::LogStore;
use crate::network::{QuicNetwork, SingleNodeNetwork};
use crate::plane::rpc::{Request, Response};
use crate::plane::{self, Plane};
use crate::sm::StateMachine;
use crate::types::{Member, NodeId, Raft};
use crate::voters::Acks;
use crate::{Error, Result};

/// How long a write may wait for a commit before it is answered as unavailable.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct MetaConfig {
    pub node_id: NodeId,
    /// Directory of the sled database (log + state machine).
    pub dir: PathBuf,
    /// This node's public API URL, recorded in the membership for operators and joiners.
    pub api_url: String,
    /// Build a snapshot (and purge the log behind it) after this many entries.
    pub snapshot_every: u64,
    /// Bytes sled may keep in its page cache (its own default is 1 GiB).
    pub cache_bytes: u64,
    /// `None`: the single-node default, a one-member group with no cluster plane.
    pub cluster: Option<ClusterConfig>,
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// UDP address of the QUIC cluster plane.
    pub listen: SocketAddr,
    /// Address peers dial (defaults to the bound address).
    pub advertise: Option<String>,
    /// This node's `ca.pem`, `node.pem`, `node-key.pem` (see `plane::tls`).
    pub tls_dir: PathBuf,
    /// Initialise a new region with this node as its only voter (ignored once initialised).
    pub bootstrap: bool,
}

impl MetaConfig {
    /// Entries after which a snapshot is built by default; the sled log then keeps
    /// `LOG_KEPT_AFTER_SNAPSHOT` entries behind it, so it stays bounded.
    pub const DEFAULT_SNAPSHOT_EVERY: u64 = 5000;
    /// sled's page cache by default: the catalogue's hot keys, not the catalogue.
    pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;
}

const LOG_KEPT_AFTER_SNAPSHOT: u64 = 1000;
/// Entries per append sent to a follower (openraft's default is 300): small enough that a
/// follower holding back for its apply backlog (`APPLY_BACKLOG`) applies one payload well
/// within the wait it may take, so the backlog stays bounded.
const MAX_PAYLOAD_ENTRIES: u64 = 64;
/// A follower accepts new entries only while fewer than this many wait to be applied, or
/// after `APPLY_WAIT`. openraft reads every committed entry not yet applied into one queue
/// of decoded entries: a node catching up on 200 000 entries behind a snapshot received
/// them faster than it applied them and held 700 MiB of them.
const APPLY_BACKLOG: u64 = 1024;
/// Under the leader's append timeout (a heartbeat interval, `prevote::HEARTBEAT_MS`), so a
/// follower holding back looks slow to the leader, never unreachable.
const APPLY_WAIT: Duration = Duration::from_millis(60);
/// How long the leader waits for an answer to a snapshot chunk. The last chunk is answered
/// once the follower has checked the file and loaded it into its catalogue, which takes
/// tens of seconds for a million tags; with openraft's 200 ms the leader gave up, and sent
/// the whole snapshot again. A peer that dies is noticed sooner by the plane's keep-alives.
const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// Heartbeats come every 150 ms: a follower that heard nothing for this long is cut off
/// or was removed.
const LEADER_SILENCE_MS: u64 = 3_000;

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
    pub(crate) node_id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) plane: Option<Arc<Plane>>,
    pub(crate) member: Member,
    /// Serialises membership changes on the leader: openraft refuses a change while another
    /// is in progress, and concurrent joins would otherwise race for the voter slots.
    pub(crate) membership_lock: tokio::sync::Mutex<()>,
    /// Held for writing while a leader hands over (see `handover`); writes hold it for
    /// reading around their proposal, so none is appended that the successor could miss.
    pub(crate) paused: tokio::sync::RwLock<()>,
    pub(crate) tenure: Arc<Tenure>,
    /// When each peer last answered this node's Raft RPCs (`voters`).
    pub(crate) acks: Arc<crate::voters::Acks>,
    unlinked: tokio::sync::broadcast::Sender<String>,
    db: sled::Db,
    catalog: Catalog,
    snapshots: crate::snapshot::Snapshots,
    /// Set when the node starts shutting down: writes are refused from then on, before they
    /// reach a Raft that is stopping (which would log each as an error).
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    /// When entries (or a heartbeat) from a leader were last accepted, in ms after
    /// `started`: a follower or learner that hears nothing is cut off or was removed (a
    /// removed learner is never told).
    started: std::time::Instant,
    last_append_ms: std::sync::atomic::AtomicU64,
    /// Whether `readiness` last found this replica cut off from its leader (logged once).
    stale: std::sync::atomic::AtomicBool,
    /// The leader's commit index in the first entries this node accepted since it started
    /// (0 until then): a replica serves no clients before it has applied that far once, or
    /// a node that just joined would refuse the admin it has not applied yet.
    first_commit: std::sync::atomic::AtomicU64,
    /// Set once this replica has applied `first_commit` (or leads).
    caught_up: std::sync::atomic::AtomicBool,
    /// A member that hears from a leader said this node is not a member (`removal`).
    pub(crate) removed: std::sync::atomic::AtomicBool,
    pub(crate) read_index: crate::read_index::ReadIndexRounds,
    /// The log as stored (`prevote` reads its last id); openraft owns the other handle.
    pub(crate) log: LogStore,
}

/// sled's segment size for a new database: larger segments leave it less dead space
/// (`bench/RESULTS.md`, "Where applying an entry goes"). sled refuses to open a database
/// with another size than it was made with, so an existing one keeps the size its `conf`
/// file records.
const SEGMENT_BYTES: usize = 8 << 20;

fn segment_size(dir: &std::path::Path) -> usize {
    let recorded = std::fs::read(dir.join("conf")).ok().and_then(|conf| {
        String::from_utf8_lossy(&conf)
            .lines()
            .find_map(|l| l.strip_prefix("segment_size: ")?.trim().parse().ok())
    });
    recorded.unwrap_or(SEGMENT_BYTES)
}

impl Metadata {
    pub async fn open(cfg: MetaConfig) -> Result<Arc<Metadata>> {
        let db = sled::Config::new()
            .path(&cfg.dir)
            .cache_capacity(cfg.cache_bytes)
            .segment_size(segment_size(&cfg.dir))
            .open()?;
        crate::format::open(&db, &cfg.dir)?;
        let log = LogStore::open(&db, &cfg.dir)?;
        let log_handle = log.clone();
        let recovering = log.has_state()?;
        let sm = StateMachine::open(&db, &cfg.dir)?;
        let catalog = sm.catalog();
        let snapshots = sm.snapshots();
        let snapshot_every = cfg.snapshot_every;
        let unlinked = sm.unlinked();
        let config = openraft::Config {
            cluster_name: "shoal".into(),
            // Elections run with a pre-vote (`prevote`), which sets these timings.
            heartbeat_interval: crate::prevote::HEARTBEAT_MS,
            election_timeout_min: crate::prevote::LEASE_MS / 2,
            election_timeout_max: crate::prevote::LEASE_MS,
            // `keep_snapshots` asks for them, at an interval that grows with the catalogue.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: LOG_KEPT_AFTER_SNAPSHOT.min(cfg.snapshot_every),
            purge_batch_size: 1,
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Fatal(e.to_string()))?;
        let config = Arc::new(config);
        let fatal = |e: openraft::error::Fatal<NodeId>| Error::Fatal(e.to_string());
        let acks = Arc::new(Acks::default());
        let (raft, plane, member) = match &cfg.cluster {
            None => {
                let member = Member {
                    api: cfg.api_url.clone(),
                    cluster: String::new(),
                };
                let raft = Raft::new(cfg.node_id, config, SingleNodeNetwork, log, sm)
                    .await
                    .map_err(fatal)?;
                (raft, None, member)
            }
            Some(c) => {
                let plane = Plane::bind(c.listen, plane::tls::load(&c.tls_dir)?)?;
                let cluster = match &c.advertise {
                    Some(a) => a.clone(),
                    None => plane.local_addr()?.to_string(),
                };
                let member = Member {
                    api: cfg.api_url.clone(),
                    cluster,
                };
                let network = QuicNetwork {
                    plane: plane.clone(),
                    acks: acks.clone(),
                };
                let raft = Raft::new(cfg.node_id, config, network, log, sm)
                    .await
                    .map_err(fatal)?;
                (raft, Some(plane), member)
            }
        };
        let tenure = Tenure::watch(&raft, cfg.node_id);
        let meta = Arc::new(Metadata {
            node_id: cfg.node_id,
            raft,
            paused: tokio::sync::RwLock::new(()),
            tenure,
            unlinked,
            plane,
            member: member.clone(),
            membership_lock: tokio::sync::Mutex::new(()),
            acks,
            db,
            catalog,
            snapshots,
            stopping: std::sync::atomic::AtomicBool::new(false),
            started: std::time::Instant::now(),
            last_append_ms: std::sync::atomic::AtomicU64::new(0),
            stale: std::sync::atomic::AtomicBool::new(false),
            first_commit: std::sync::atomic::AtomicU64::new(0),
            caught_up: std::sync::atomic::AtomicBool::new(false),
            removed: std::sync::atomic::AtomicBool::new(false),
            read_index: Default::default(),
            log: log_handle,
        });
        meta.keep_snapshots(snapshot_every);
        meta.run_elections();
        if let Some(plane) = &meta.plane {
            plane.serve(meta.clone());
        }
        let initialise = cfg.cluster.as_ref().is_none_or(|c| c.bootstrap);
        if initialise && recovering {
            // Asking openraft to initialise again would only have it log an error.
            tracing::info!(
                node_id = cfg.node_id,
                "recovering the metadata group from disk"
            );
        } else if initialise {
            let members = BTreeMap::from([(cfg.node_id, member)]);
            match meta.raft.initialize(members).await {
                Ok(()) => tracing::info!(node_id = cfg.node_id, "initialised a new metadata group"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                    tracing::info!(
                        node_id = cfg.node_id,
                        "recovering the metadata group from disk"
                    )
                }
                Err(e) => return Err(Error::Fatal(e.to_string())),
            }
        }
        if cfg.cluster.is_none() {
            meta.raft
                .wait(Some(Duration::from_secs(30)))
                .state(ServerState::Leader, "single member elects itself")
                .await
                .map_err(|e| Error::NoQuorum(e.to_string()))?;
        }
        Ok(meta)
    }

    /// The local replica of the catalogue.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Asks Raft for a snapshot (which purges the log behind it) once
    /// `Snapshots::due_after` entries followed the last one, as soon as an apply crosses
    /// the line. The task holds the metrics' receiver and a weak reference only, so a
    /// node shut down and dropped lets go of its database.
    fn keep_snapshots(self: &Arc<Self>, every: u64) {
        let meta = Arc::downgrade(self);
        let mut metrics = self.raft.metrics();
        tokio::spawn(async move {
            let mut asked_at = None;
            loop {
                let (applied, last) = {
                    let m = metrics.borrow_and_update();
                    let applied = m.last_applied.map_or(0, |l| l.index);
                    let last = m.snapshot.map_or(0, |l| l.index);
                    (applied, last.max(asked_at.unwrap_or(0)))
                };
                {
                    let Some(meta) = meta.upgrade() else { return };
                    if applied.saturating_sub(last) >= meta.snapshots.due_after(every) {
                        asked_at = Some(applied);
                        if meta.raft.trigger().snapshot().await.is_err() {
                            return;
                        }
                    }
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// What the metadata takes on disk and what its last snapshot cost.
    pub fn storage_stats(&self) -> crate::StorageStats {
        let log_bytes = self.log.size().map_or(0, |(_, bytes)| bytes);
        self.snapshots
            .stats(self.db.size_on_disk().unwrap_or(0) + log_bytes)
    }

    /// Digests unlinked from a repository, announced on every node as the unlink is applied
    /// there (a node's cache drops them).
    pub fn blob_unlinks(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.unlinked.subscribe()
    }

    /// The cluster plane, if this node is part of a region.
    pub fn plane(&self) -> Option<&Arc<Plane>> {
        self.plane.as_ref()
    }

    /// Every member's id and cluster-plane address, as this replica knows them.
    pub fn members(&self) -> Vec<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.cluster.clone()))
            .collect()
    }

    /// This node's id and addresses.
    pub fn member(&self) -> (NodeId, &Member) {
        (self.node_id, &self.member)
    }

    /// Proposes `cmd` and waits until it is committed and applied on this node. A follower
    /// or learner forwards it to the leader over the cluster plane, then waits for its own
    /// replica to apply it, so a client reads its write on the node that took it.
    pub async fn write(&self, cmd: Proposal) -> Result<Outcome> {
        let kind: &'static str = crate::command::CommandKind::from(&cmd.command).into();
        let span = tracing::debug_span!("metadata write", command = kind);
        tracing::Instrument::instrument(self.commit(cmd), span).await
    }

    async fn commit(&self, cmd: Proposal) -> Result<Outcome> {
        if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Stopping);
        }
        let deadline = Instant::now() + WRITE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::NoQuorum(format!(
                    "no leader committed the write within {WRITE_TIMEOUT:?}"
                )));
            }
            let Ok(proposing) = self.paused.try_read() else {
                // Leadership is being handed over: wait for the successor.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let resp = tokio::time::timeout(left, self.raft.client_write(cmd.clone()))
                .await
                .map_err(|_| Error::NoQuorum(format!("no commit within {WRITE_TIMEOUT:?}")))?;
            drop(proposing);
            let forward = match resp {
                Ok(r) => return Ok(r.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f,
                Err(RaftError::APIError(e)) => return Err(Error::NoQuorum(e.to_string())),
                Err(RaftError::Fatal(e)) => return Err(Error::Fatal(e.to_string())),
            };
            let Some(plane) = &self.plane else {
                return Err(Error::NotLeader {
                    leader: forward.leader_id,
                });
            };
            let (Some(leader), Some(node)) = (forward.leader_id, forward.leader_node) else {
                // An election is under way; nothing was proposed, so trying again is safe.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            // If another leader appears while we wait, the old one is gone or deposed: answer
            // at once (the client retries against the new leader) instead of waiting out the
            // timeout on a dead peer. Not retried here: the old leader may have committed it.
            let mut metrics = self.raft.metrics();
            let replaced = async move {
                let _ = metrics
                    .wait_for(|m| m.current_leader.is_some_and(|l| l != leader))
                    .await;
            };
            let forwarding = tracing::debug_span!("forward to leader", leader);
            let req = Request::Forward {
                proposal: Box::new(cmd.clone()),
                trace: forwarding.in_scope(crate::trace::current),
            };
            let call = plane.call(leader, &node.cluster, &req, left);
            let answer = tokio::select! {
                biased;
                // The leader may be up and unable to reach a quorum, so its silence is
                // reported as what the client suffers: no commit, not "peer unreachable".
                a = tracing::Instrument::instrument(call, forwarding) => a.map_err(|e| {
                    Error::NoQuorum(format!(
                        "the write went to leader {leader}, which did not commit it: {e}"
                    ))
                })?,
                _ = replaced => {
                    return Err(Error::NoQuorum(format!(
                        "leader {leader} was replaced while this write was forwarded to it; retry the write"
                    )))
                }
            };
            match answer {
                Response::Forwarded { index, outcome } => {
                    self.wait_applied(index, deadline).await?;
                    return Ok(outcome);
                }
                Response::NotLeader { .. } => tokio::time::sleep(Duration::from_millis(50)).await,
                other => {
                    return Err(Error::NoQuorum(format!(
                        "leader {leader} answered {other:?}"
                    )))
                }
            }
        }
    }

    /// Waits until this replica has applied the entry at `index`.
    pub(crate) async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(left.max(Duration::from_millis(1))))
            .applied_index_at_least(Some(index), "read your own write")
            .await
            .map(|_| ())
            .map_err(|e| {
                Error::NoQuorum(format!(
                    "this replica did not apply entry {index} in time: {e}"
                ))
            })
    }

    /// Entries the log holds after the last purged one (for tests and diagnostics).
    pub fn log_len(&self) -> Result<usize> {
        let (live, _) = self.log.size().map_err(|e| Error::Fatal(e.to_string()))?;
        Ok(live as usize)
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

    /// Waits (at most `APPLY_WAIT`) until fewer than `APPLY_BACKLOG` entries wait to be
    /// applied here: called before a follower accepts more entries.
    pub(crate) async fn apply_backlog(&self) {
        let mut metrics = self.raft.metrics();
        let backlog = |m: &openraft::RaftMetrics<NodeId, Member>| {
            let applied = m.last_applied.as_ref().map_or(0, |l| l.index);
            m.last_log_index.unwrap_or(0).saturating_sub(applied)
        };
        let deadline = tokio::time::Instant::now() + APPLY_WAIT;
        while backlog(&metrics.borrow_and_update()) >= APPLY_BACKLOG {
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                // Waited long enough, or Raft stopped.
                _ => return,
            }
        }
    }

    /// Notes that entries or a heartbeat from the leader were accepted (`Handler`), with
    /// the leader's commit index when it sent one.
    pub(crate) fn heard_from_leader(&self, commit: Option<u64>) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.started.elapsed().as_millis() as u64;
        self.last_append_ms.store(now, Relaxed);
        if let Some(commit) = commit.filter(|c| *c > 0) {
            let _ = self
                .first_commit
                .compare_exchange(0, commit, Relaxed, Relaxed);
        }
    }

    /// How long since entries or a heartbeat last came from a leader, in ms.
    pub(crate) fn leader_silence_ms(&self) -> u64 {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self
            .last_append_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        now.saturating_sub(last)
    }

    /// Whether this node leads, or knows a leader it heard from lately.
    pub fn hears_a_leader(&self) -> bool {
        match self.raft.metrics().borrow().current_leader {
            Some(leader) => leader == self.node_id || self.leader_silence_ms() <= LEADER_SILENCE_MS,
            None => false,
        }
    }

    /// Whether this node should get clients, or why not: Raft has stopped; the node is not
    /// a member of the region (removed, or not joined yet); no leader is known (no quorum);
    /// as a follower, nothing came from the leader for `LEADER_SILENCE_MS`; as the leader,
    /// it has not heard from a quorum for `QUORUM_SILENCE`; as a follower or learner, it has
    /// not yet applied, since it started, what the leader had committed when it first heard
    /// from it; its replica has more than `APPLY_BACKLOG` entries of its log left to apply.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        const QUORUM_SILENCE_MS: u64 = 5_000;
        const APPLY_BACKLOG: u64 = 10_000;
        let m = self.raft.metrics().borrow().clone();
        if let Err(e) = &m.running_state {
            return Err(format!("the metadata group has stopped: {e}"));
        }
        if let Some(why) = self.removed() {
            return Err(why);
        }
        let membership = m.membership_config.membership();
        if membership.get_node(&self.node_id).is_none() {
            return Err(format!(
                "node {} is not a member of the region (removed, or not joined yet)",
                self.node_id
            ));
        }
        let Some(leader) = m.current_leader else {
            return Err("no leader: the region has no quorum this node can reach".into());
        };
        if leader != self.node_id {
            let silent = self.leader_silence_ms();
            let stale = silent > LEADER_SILENCE_MS;
            if stale != self.stale.swap(stale, std::sync::atomic::Ordering::Relaxed) {
                match stale {
                    true => tracing::warn!(
                        leader,
                        silent_ms = silent,
                        "nothing from the leader: this node was removed from the region or is cut off; not ready"
                    ),
                    false => tracing::info!(leader, "hearing from the leader again; ready"),
                }
            }
            if stale {
                return Err(format!(
                    "nothing from leader {leader} for {} s: this node was removed from the region or is cut off",
                    silent / 1000
                ));
            }
        }
        if leader == self.node_id {
            if let Some(ms) = m
                .millis_since_quorum_ack
                .filter(|ms| *ms > QUORUM_SILENCE_MS)
            {
                return Err(format!(
                    "this node leads but has not heard from a quorum for {} s",
                    ms / 1000
                ));
            }
        }
        let applied = m.last_applied.map_or(0, |l| l.index);
        if leader != self.node_id && !self.caught_up.load(std::sync::atomic::Ordering::Relaxed) {
            let first = self.first_commit.load(std::sync::atomic::Ordering::Relaxed);
            if first == 0 || applied < first {
                return Err(format!(
                    "this replica is catching up with the region: {applied} of the {first} entries committed when it first heard from leader {leader} applied"
                ));
            }
            self.caught_up
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let backlog = m.last_log_index.unwrap_or(0).saturating_sub(applied);
        if backlog > APPLY_BACKLOG {
            return Err(format!(
                "this replica has {backlog} log entries left to apply"
            ));
        }
        Ok(())
    }

    /// Stops Raft and the cluster plane and flushes everything to disk.
    pub async fn shutdown(&self) -> Result<()> {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(%e, "raft shutdown");
        }
        if let Some(p) = &self.plane {
            p.close();
        }
        self.snapshots.builds_done(Duration::from_secs(60)).await;
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
            api_url: "http://127.0.0.1:0".into(),
            snapshot_every,
            cache_bytes: MetaConfig::DEFAULT_CACHE_BYTES,
            cluster: None,
        }
    }

    fn ns(i: usize) -> Proposal {
        Proposal::system(
            "test",
            crate::Command::CreateNamespace {
                record: crate::NamespaceRecord {
                    name: format!("ns{i:03}"),
                    ..crate::NamespaceRecord::for_test("")
                },
            },
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_survive_restart_and_the_log_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::open(config(dir.path(), 10)).await.unwrap();
        let bootstrap = crate::Command::Bootstrap {
            org: crate::OrgRecord {
                name: "default".into(),
                description: None,
                home: true,
                created_at: 1,
            },
            admin: crate::Principal {
                name: "admin".into(),
                kind: crate::PrincipalKind::User,
                organisation: "default".into(),
                password_hash: None,
                created_at: 1,
                uid: "u-admin".into(),
            },
            key: crate::SigningKey {
                kid: "k".into(),
                private_pem: String::new(),
                public_pem: String::new(),
                created_at: 1,
            },
        };
        let bootstrap = Proposal::system("test", bootstrap);
        assert_eq!(meta.write(bootstrap).await.unwrap(), Outcome::Done);
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

    /// Opens `config`, waiting while the database dropped just before still holds its file
    /// lock (sled's flusher thread lets go of it a moment after the drop).
    fn open_when_free(config: sled::Config) -> sled::Result<sled::Db> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match config.open() {
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                r => return r,
            }
        }
    }

    #[test]
    fn a_database_keeps_the_segment_size_it_was_made_with() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(super::segment_size(dir.path()), super::SEGMENT_BYTES);
        let old = 512 << 10;
        let config = |size| sled::Config::new().path(dir.path()).segment_size(size);
        drop(open_when_free(config(old)).unwrap());
        assert_eq!(super::segment_size(dir.path()), old);
        // sled refuses another size, so the recorded one is what opens it.
        let refused = open_when_free(config(super::SEGMENT_BYTES)).err().unwrap();
        assert!(!refused.to_string().contains("lock"), "{refused}");
        drop(open_when_free(config(super::segment_size(dir.path()))).unwrap());
    }
}
