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
    Failed(String),
    /// The answer to `Request::PreVote`. Variants are only ever added last: the variant's
    /// index is its tag on the wire, and a node of the previous version must keep reading
    /// every message it knows.
    PreVote {
        granted: bool,
    },
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("plane messages serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the wire across a rolling upgrade: postcard tags a variant with its index, so a
    /// variant inserted anywhere but last would make an older node read one message as
    /// another (`PreVote` was first put before `Failed`). These are the first bytes of the
    /// messages the previous version sends, which this one must still read the same way.
    #[test]
    fn messages_of_the_previous_version_keep_their_tags() {
        let requests = [
            (Request::Elect, 6u8),
            (Request::Open(vec![]), 7),
            (Request::ReadIndex, 8),
            (Request::Membership, 9),
            (Request::PreVote { last_log: None }, 10),
        ];
        for (req, tag) in requests {
            assert_eq!(encode(&req)[0], tag, "{req:?}");
        }
        let responses = [
            (Response::Done, 4u8),
            (Response::NotLeader { leader: None }, 5),
            (Response::ReadIndex { index: 0 }, 6),
            (
                Response::Membership {
                    member: true,
                    knows_leader: true,
                },
                7,
            ),
            (Response::Failed(String::new()), 8),
            (Response::PreVote { granted: true }, 9),
        ];
        for (resp, tag) in responses {
            assert_eq!(encode(&resp)[0], tag, "{resp:?}");
        }
    }
}
