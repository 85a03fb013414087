//! openraft type configuration for Shoal's metadata group.

use crate::command::{Outcome, Proposal};

pub type NodeId = u64;

/// How the members of a region reach one another: the public API URL (for operators and
/// joining nodes) and the QUIC cluster-plane address.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub api: String,
    pub cluster: String,
}

openraft::declare_raft_types!(
    /// Shoal's Raft types: proposals in, outcomes out, snapshots as files.
    pub TypeConfig:
        D = Proposal,
        R = Outcome,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::snapshot::SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StorageResult<T> = Result<T, StorageError>;

pub(crate) fn read_err<E: std::error::Error + 'static>(e: E) -> StorageError {
    openraft::StorageIOError::read(&e).into()
}

pub(crate) fn write_err<E: std::error::Error + 'static>(e: E) -> StorageError {
    openraft::StorageIOError::write(&e).into()
}
