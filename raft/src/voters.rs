//! Keeping the region's voters: the leader promotes a caught-up learner whenever the region
//! has fewer voters than it wants (a voter was removed, or left), and replaces a voter it has
//! not heard from for `replace_dead_after` with one. Without this a region shrunk from 9 to 3
//! nodes could be left with voters {1, 2} and learner {4}, and losing either voter stopped
//! every write.
//!
//! "Heard from" is the last successful Raft RPC to that member (`Acks`, fed by the network),
//! not openraft's replication index, which does not move while the region is idle. A voter
//! replaced stays a learner: if it comes back, it catches up and may be promoted again. One
//! change per tick, each under the membership lock, so joins, removals and this never race.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::ChangeMembers;

use crate::node::Metadata;
use crate::types::NodeId;
use crate::Result;

/// How often the leader looks.
const TICK: Duration = Duration::from_secs(1);
/// A learner heard from within this long, and at most `BEHIND` entries behind, may vote.
const LIVE: Duration = Duration::from_secs(3);
const BEHIND: u64 = 64;

/// When each peer last answered a Raft RPC from this node.
#[derive(Default)]
pub(crate) struct Acks(Mutex<HashMap<NodeId, Instant>>);

impl Acks {
    pub(crate) fn heard(&self, id: NodeId) {
        self.0.lock().expect("acks lock").insert(id, Instant::now());
    }

    fn within(&self, id: NodeId, d: Duration) -> bool {
        let at = self.0.lock().expect("acks lock").get(&id).copied();
        at.is_some_and(|t| t.elapsed() < d)
    }
}

impl Metadata {
    /// Starts the task that keeps `wanted` voters while enough members exist, replacing a
    /// voter silent for `replace_dead_after` (`None`: never).
    pub fn keep_voters(self: &Arc<Self>, wanted: usize, replace_dead_after: Option<Duration>) {
        let meta = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                let Some(meta) = meta.upgrade() else { return };
                if let Err(e) = meta.tend_voters(wanted, replace_dead_after).await {
                    tracing::warn!(error = %e, "could not change the region's voters");
                }
            }
        });
    }

    /// Makes learner `id` a voter.
    pub(crate) async fn promote(&self, id: NodeId) -> Result<()> {
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
            .await
            .map_err(crate::cluster::write_err)?;
        Ok(())
    }

    async fn tend_voters(&self, wanted: usize, dead_after: Option<Duration>) -> Result<()> {
        if !self.leads() {
            return Ok(());
        }
        let Ok(_serial) = self.membership_lock.try_lock() else {
            return Ok(()); // a join or removal is under way; look again next tick
        };
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        if membership.get_joint_config().len() > 1 {
            return Ok(());
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let matched = |id: &NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .map_or(0, |l| l.index)
        };
        let learner = membership
            .learner_ids()
            .filter(|id| self.acks.within(*id, LIVE) && matched(id) + BEHIND >= last)
            .max_by_key(|id| (matched(id), std::cmp::Reverse(*id)));
        let Some(learner) = learner else {
            return Ok(());
        };
        if voters.len() < wanted {
            self.promote(learner).await?;
            tracing::info!(
                learner,
                voters = voters.len() + 1,
                wanted,
                "promoted a learner: the region had too few voters"
            );
            return Ok(());
        }
        let Some(after) = dead_after else {
            return Ok(());
        };
        // Only a leader that has led that long could have heard from them.
        if self.tenure.since().is_none_or(|s| s.elapsed() < after) {
            return Ok(());
        }
        let dead = voters
            .iter()
            .copied()
            .find(|v| *v != self.node_id && !self.acks.within(*v, after));
        if let Some(dead) = dead {
            // One change, so a failure half way cannot leave an extra voter behind (and the
            // next tick adding another); `retain` keeps the silent one as a learner.
            let mut replaced = voters;
            replaced.remove(&dead);
            replaced.insert(learner);
            self.raft
                .change_membership(ChangeMembers::ReplaceAllVoters(replaced), true)
                .await
                .map_err(crate::cluster::write_err)?;
            tracing::warn!(
                dead,
                learner,
                silent_for = ?after,
                "replaced a voter not heard from with a learner; it stays a learner"
            );
        }
        Ok(())
    }
}
