//! Region membership and the cluster plane's request handler.
//!
//! A node joins by asking any member over the authenticated plane; a member that is not the
//! leader passes the request on. The leader adds the node as a learner, waits until it has
//! caught up, and promotes it to voter while the region has fewer voters than it wants, so
//! extra nodes add read capacity without growing the quorum. A joining node may only ask for
//! its own id: the id must be the one its certificate names.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::raft::AppendEntriesResponse;
use openraft::ChangeMembers;
use serde::Serialize;

use crate::node::Metadata;
use crate::plane::rpc::{Request, Response};
use crate::plane::Handler;
use crate::types::{Member, NodeId};
use crate::{Error, Result};

/// How long a learner may take to catch up before its join is answered as failed.
const CATCH_UP: Duration = Duration::from_secs(60);
const PLANE_CALL: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Serialize)]
pub struct MemberStatus {
    pub id: NodeId,
    pub api: String,
    pub cluster: String,
    pub voter: bool,
    /// Last log index the leader knows this member holds (only known on the leader).
    pub matched: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    pub state: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_applied: Option<u64>,
    pub members: Vec<MemberStatus>,
}

pub(crate) fn write_err(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Error::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            Error::Membership(c.to_string())
        }
        RaftError::Fatal(f) => Error::Fatal(f.to_string()),
    }
}

impl Metadata {
    pub fn cluster_status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let matched = |id: &NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .map(|l| l.index)
                .or_else(|| {
                    (*id == self.node_id)
                        .then(|| m.last_applied.map(|l| l.index))
                        .flatten()
                })
        };
        let members = membership
            .nodes()
            .map(|(id, n)| MemberStatus {
                id: *id,
                api: n.api.clone(),
                cluster: n.cluster.clone(),
                voter: voters.contains(id),
                matched: matched(id),
            })
            .collect();
        ClusterStatus {
            node_id: self.node_id,
            state: format!("{:?}", m.state),
            leader: m.current_leader,
            term: m.current_term,
            last_applied: m.last_applied.map(|l| l.index),
            members,
        }
    }

    fn is_member(&self, id: NodeId) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config.membership().get_node(&id).is_some()
    }

    /// The leader's id and cluster address, if known.
    fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node.cluster))
    }

    /// Sends `req` to the leader over the plane (for membership requests a follower got).
    async fn to_leader(&self, req: Request) -> Result<()> {
        let plane = self
            .plane
            .as_ref()
            .ok_or(Error::NotLeader { leader: None })?;
        let deadline = Instant::now() + PLANE_CALL;
        loop {
            if let Some((id, addr)) = self.leader().filter(|(id, _)| *id != self.node_id) {
                match plane.call(id, &addr, &req, CATCH_UP + PLANE_CALL).await? {
                    Response::Done => return Ok(()),
                    Response::Failed(e) => return Err(Error::Membership(e)),
                    Response::NotLeader { .. } => {}
                    other => return Err(Error::Membership(format!("unexpected answer {other:?}"))),
                }
            }
            if Instant::now() > deadline {
                return Err(Error::NoQuorum(
                    "no leader to take the membership change".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) fn leads(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    /// Adds `id` to the region (run on the leader; other members pass it on).
    pub async fn add_member(&self, id: NodeId, member: Member, voters: usize) -> Result<()> {
        if !self.leads() {
            return self.to_leader(Request::Join { id, member, voters }).await;
        }
        let _serial = self.membership_lock.lock().await;
        // A member joining again from new addresses (restarted elsewhere, as a Kubernetes
        // pod is): record them, so the leader and everyone else reach it there. Only the
        // node itself may ask (its certificate names its id; `Handler`).
        let known = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned();
        if let Some(old) = known.filter(|old| *old != member) {
            self.raft
                .change_membership(
                    ChangeMembers::SetNodes(std::collections::BTreeMap::from([(
                        id,
                        member.clone(),
                    )])),
                    true,
                )
                .await
                .map_err(write_err)?;
            tracing::info!(
                id,
                old_api = %old.api,
                old_cluster = %old.cluster,
                api = %member.api,
                cluster = %member.cluster,
                "a member's addresses changed"
            );
        }
        let added = tokio::time::timeout(CATCH_UP, self.raft.add_learner(id, member, true))
            .await
            .map_err(|_| {
                Error::Membership(format!("node {id} did not catch up within {CATCH_UP:?}"))
            })?;
        added.map_err(write_err)?;
        let m = self.raft.metrics().borrow().clone();
        let current: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        if !current.contains(&id) && current.len() < voters {
            self.promote(id).await?;
            tracing::info!(id, "node joined as a voter");
        } else {
            tracing::info!(id, "node joined as a learner");
        }
        Ok(())
    }

    /// Removes `id` from the region. A leader asked to remove itself first hands leadership
    /// to another voter (`handover`) and lets the new leader remove it; if that fails it
    /// commits its own removal and steps down, and the remaining voters elect a new leader.
    pub async fn remove_member(&self, id: NodeId) -> Result<()> {
        if !self.leads() {
            return self.to_leader(Request::Remove { id }).await;
        }
        let _serial = self.membership_lock.lock().await;
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let others = membership.voter_ids().filter(|v| *v != id).count();
        if id == self.node_id && others > 0 && self.plane.is_some() {
            match self.hand_over().await {
                Ok(to) => {
                    tracing::info!(to, "handed leadership over to node {to} before leaving");
                    drop(_serial);
                    return self.to_leader(Request::Remove { id }).await;
                }
                Err(e) => tracing::warn!(
                    "leader handover failed ({e}); this leader commits its own removal and steps down"
                ),
            }
        }
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if membership.get_node(&id).is_some() {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(Error::Membership(format!("node {id} is not a member")));
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(write_err)?;
        tracing::info!(id, "node removed from the region");
        Ok(())
    }

    /// Waits until this replica has applied every write the region committed before the
    /// call (a read-index through the leader). Lets a node answer "does not exist" only
    /// when it is true region-wide, not merely not yet replicated here, and serves reads
    /// that ask to be linearizable. Concurrent callers share rounds (`ReadIndexRounds`).
    pub async fn catch_up(&self) -> Result<()> {
        // Boxed: callers' futures nest deep enough in the node for rustc's layout limit.
        Box::pin(self.read_index.shared(|| self.read_index_round())).await
    }

    async fn read_index_round(&self) -> Result<()> {
        let deadline = Instant::now() + PLANE_CALL;
        if self.leads() {
            return self
                .raft
                .ensure_linearizable()
                .await
                .map(|_| ())
                .map_err(|e| Error::NoQuorum(e.to_string()));
        }
        let plane = self
            .plane
            .as_ref()
            .ok_or(Error::NotLeader { leader: None })?;
        loop {
            if let Some((id, addr)) = self.leader().filter(|(id, _)| *id != self.node_id) {
                if let Response::ReadIndex { index } = plane
                    .call(id, &addr, &Request::ReadIndex, PLANE_CALL)
                    .await?
                {
                    return self.wait_applied(index, deadline).await;
                }
            }
            if Instant::now() > deadline {
                return Err(Error::NoQuorum(
                    "no leader to confirm the latest writes".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asks member `target` (at cluster address `addr`) to add this node.
    pub async fn request_join(&self, target: NodeId, addr: &str, voters: usize) -> Result<()> {
        let plane = self.plane.as_ref().ok_or_else(|| {
            Error::Membership("joining needs the cluster plane (--cluster-listen)".into())
        })?;
        let req = Request::Join {
            id: self.node_id,
            member: self.member.clone(),
            voters,
        };
        match plane
            .call(target, addr, &req, CATCH_UP + PLANE_CALL)
            .await?
        {
            Response::Done => Ok(()),
            Response::Failed(e) => Err(Error::Membership(e)),
            other => Err(Error::Membership(format!("unexpected answer {other:?}"))),
        }
    }
}

#[async_trait]
impl Handler for Metadata {
    async fn handle(&self, peer: NodeId, req: Request) -> Response {
        let done = |r: Result<()>| match r {
            Ok(()) => Response::Done,
            Err(Error::NotLeader { leader }) => Response::NotLeader { leader },
            Err(e) => Response::Failed(e.to_string()),
        };
        match req {
            Request::Append(r) => {
                if !r.entries.is_empty() {
                    self.apply_backlog().await;
                }
                let commit = r.leader_commit.map(|c| c.index);
                let answer = self.raft.append_entries(r).await;
                // Anything but a refusal of a stale leader is the current leader speaking;
                // its commit index counts once this node's log holds what it committed.
                match &answer {
                    Ok(AppendEntriesResponse::Success) => self.heard_from_leader(commit),
                    Ok(AppendEntriesResponse::HigherVote(_)) | Err(_) => {}
                    Ok(_) => self.heard_from_leader(None),
                }
                Response::Append(answer.map_err(|e| e.to_string()))
            }
            Request::Vote(r) => Response::Vote(self.raft.vote(r).await.map_err(|e| e.to_string())),
            Request::Snapshot(r) => {
                let answer = self.raft.install_snapshot(r).await;
                if answer.is_ok() {
                    self.heard_from_leader(None);
                }
                Response::Snapshot(answer.map_err(|e| e.to_string()))
            }
            Request::Forward { proposal, trace } => {
                if !self.is_member(peer) {
                    return Response::Failed(format!("node {peer} is not a member of this region"));
                }
                let Ok(_proposing) = self.paused.try_read() else {
                    // Handing leadership over: the forwarder waits and retries.
                    return Response::NotLeader { leader: None };
                };
                let span = crate::trace::child(trace.as_deref(), &|| {
                    tracing::debug_span!("forwarded write", from = peer)
                });
                match tracing::Instrument::instrument(self.raft.client_write(*proposal), span).await
                {
                    Ok(r) => Response::Forwarded {
                        index: r.log_id.index,
                        outcome: r.data,
                    },
                    Err(e) => match write_err(e) {
                        Error::NotLeader { leader } => Response::NotLeader { leader },
                        other => Response::Failed(other.to_string()),
                    },
                }
            }
            Request::Join { id, member, voters } => {
                if peer != id && !self.is_member(peer) {
                    return Response::Failed(format!(
                        "node {peer} may only ask to join as itself, not as node {id}"
                    ));
                }
                done(self.add_member(id, member, voters).await)
            }
            Request::ReadIndex => match self.raft.ensure_linearizable().await {
                Ok(applied) => Response::ReadIndex {
                    index: applied.map_or(0, |l| l.index),
                },
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    Response::NotLeader {
                        leader: f.leader_id,
                    }
                }
                Err(e) => {
                    Response::Failed(format!("the leader could not confirm its leadership: {e}"))
                }
            },
            Request::Elect => done(self.campaign_for(peer).await),
            Request::Membership => self.membership_of(peer),
            Request::PreVote { last_log } => Response::PreVote {
                granted: self.is_member(peer) && self.grants_pre_vote(last_log),
            },
            // The plane answers streams itself (`Plane::serve_stream`).
            Request::Open(_) => Response::Failed("streams are not requests".into()),
            Request::Remove { id } => {
                if !self.is_member(peer) {
                    return Response::Failed(format!("node {peer} is not a member of this region"));
                }
                done(self.remove_member(id).await)
            }
        }
    }
}
