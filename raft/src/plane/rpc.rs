//! What travels over the cluster plane: one request and one response per QUIC stream,
//! postcard-encoded. Raft's own errors travel as text: the caller only needs to know that
//! the remote side failed, not to rebuild its error type.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::command::{Outcome, Proposal};
use crate::types::{Member, NodeId, TypeConfig};

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower or learner asks the leader to commit a proposal for it; `trace` is the
    /// writer's trace context (W3C `traceparent`), when it has one.
    Forward {
        proposal: Box<Proposal>,
        trace: Option<String>,
    },
    /// A node asks to become a member; `voters` is how many voters the region wants.
    Join {
        id: NodeId,
        member: Member,
        voters: usize,
    },
    /// Remove a member from the region.
    Remove {
        id: NodeId,
    },
    /// The leader asks a caught-up voter to start an election (leader handover).
    Elect,
    /// Open a byte stream for the node's own use (peer blob fetch); the payload is the
    /// node's, the answer is a status byte and then raw bytes (see `Plane::open`).
    Open(Vec<u8>),
    /// Ask the leader for an index that covers every write committed so far (read-index).
    ReadIndex,
    /// Whether the asking node is still a member (`removal`).
    Membership,
    /// Would this node vote for the asker, whose log ends at `last_log` (`prevote`)?
    PreVote {
        last_log: Option<openraft::LogId<NodeId>>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Append(Result<AppendEntriesResponse<NodeId>, String>),
    Vote(Result<VoteResponse<NodeId>, String>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, String>),
    /// The command was committed at this log index with this outcome.
    Forwarded {
        index: u64,
        outcome: Outcome,
    },
    Done,
    /// This node is not the leader; try `leader` (if known).
    NotLeader {
        leader: Option<NodeId>,
    },
    /// Everything committed before the request is at or below this index.
    ReadIndex {
        index: u64,
    },
    /// The asker is in this node's membership; this node hears from a leader (or leads),
    /// so its membership is current.
    Membership {
        member: bool,
        knows_leader: bool,
    },
    PreVote {
        granted: bool,
    },
    Failed(String),
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("plane messages serialise")
}
