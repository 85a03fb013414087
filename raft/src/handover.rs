//! Leader handover: a leader that is being removed first hands leadership to another voter.
//!
//! openraft 0.9 has no leader transfer (`transfer_leader` arrives in 0.10), so it is built
//! from what 0.9 offers:
//! 1. The leader waits until its own leader lease has run out: a leader refuses to vote for
//!    anyone while its lease (`election_timeout_max` from the moment it was elected) runs.
//!    Writes still flow during this wait.
//! 2. It pauses writes (`Metadata::paused`): local writes and forwarded ones wait instead of
//!    appending, so no entry is added that the successor might miss.
//! 3. It waits until some other voter holds its whole log, then asks that voter over the
//!    plane to start an election (`Request::Elect`).
//! 4. The old leader grants the vote: the candidate's term is higher and its log is up to
//!    date. In a 3-voter region that vote and the candidate's own make a quorum, so the
//!    region has a new leader after one round trip. In larger regions the remaining voters
//!    join once their lease from the old leader runs out.
//!
//! Paused writes resume against the new leader, so a client sees a short wait, not a 503.
//! If no voter catches up or the election does not happen in time, the caller falls back to
//! the leader committing its own removal and stepping down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::node::Metadata;
use crate::plane::rpc::{Request, Response};
use crate::types::{NodeId, Raft};
use crate::{Error, Result};

/// How long each handover step (catch-up, election) may take before the handover is abandoned.
const STEP: Duration = Duration::from_secs(3);

/// When this node last became leader, and in which term; kept by a task watching the metrics.
#[derive(Default)]
pub(crate) struct Tenure(Mutex<Option<(u64, Instant)>>);

impl Tenure {
    /// Starts a task that records the moment this node becomes leader of each new term.
    pub(crate) fn watch(raft: &Raft, id: NodeId) -> Arc<Tenure> {
        let tenure = Arc::new(Tenure::default());
        let mut metrics = raft.metrics();
        let t = tenure.clone();
        tokio::spawn(async move {
            loop {
                let (leads, term) = {
                    let m = metrics.borrow_and_update();
                    (m.current_leader == Some(id), m.current_term)
                };
                {
                    let mut since = t.0.lock().expect("tenure lock");
                    match *since {
                        Some((t, _)) if leads && t == term => {}
                        _ if leads => *since = Some((term, Instant::now())),
                        _ => *since = None,
                    }
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
        tenure
    }

    pub(crate) fn since(&self) -> Option<Instant> {
        self.0.lock().expect("tenure lock").map(|(_, at)| at)
    }
}

impl Metadata {
    /// Hands leadership to the most advanced other voter and returns its id. Runs on the
    /// leader, with membership changes serialised by the caller.
    pub(crate) async fn hand_over(&self) -> Result<NodeId> {
        let plane = self
            .plane
            .as_ref()
            .ok_or(Error::NotLeader { leader: None })?;
        let lease = Duration::from_millis(self.raft.config().election_timeout_max);
        if let Some(since) = self.tenure.since() {
            let lease_ends = since + lease + Duration::from_millis(50);
            tokio::time::sleep_until(lease_ends.into()).await;
        }
        let _paused = self.paused.write().await;
        let (target, addr) = self.caught_up_voter().await?;
        match plane.call(target, &addr, &Request::Elect, STEP).await? {
            Response::Done => {}
            other => {
                return Err(Error::Membership(format!(
                    "node {target} would not campaign: {other:?}"
                )))
            }
        }
        let me = self.node_id;
        let mut metrics = self.raft.metrics();
        let moved = metrics.wait_for(|m| m.current_leader.is_some_and(|l| l != me));
        let leader = tokio::time::timeout(STEP, moved)
            .await
            .map_err(|_| {
                Error::Membership(format!("node {target} was not elected within {STEP:?}"))
            })?
            .map_err(|_| Error::Fatal("raft stopped during a handover".into()))?
            .current_leader;
        Ok(leader.unwrap_or(target))
    }

    /// Waits until another voter holds this leader's whole log; returns it and its address.
    async fn caught_up_voter(&self) -> Result<(NodeId, String)> {
        let deadline = Instant::now() + STEP;
        loop {
            let m = self.raft.metrics().borrow().clone();
            if m.current_leader != Some(self.node_id) {
                return Err(Error::NotLeader {
                    leader: m.current_leader,
                });
            }
            let membership = m.membership_config.membership();
            let found = m.replication.as_ref().and_then(|matched| {
                membership
                    .voter_ids()
                    .filter(|id| *id != self.node_id)
                    .find(|id| matched.get(id).and_then(|l| l.map(|l| l.index)) == m.last_log_index)
            });
            if let Some(id) = found {
                let node = membership.get_node(&id).expect("a voter is a member");
                return Ok((id, node.cluster.clone()));
            }
            if Instant::now() > deadline {
                return Err(Error::Membership(format!(
                    "no other voter caught up with the leader within {STEP:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A voter asked by the current leader to campaign (the other half of `hand_over`).
    pub(crate) async fn campaign_for(&self, asker: NodeId) -> Result<()> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(asker) {
            return Err(Error::Membership(format!(
                "node {asker} is not the leader here; only the leader hands leadership over"
            )));
        }
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Error::Fatal(e.to_string()))
    }
}
