//! Raft RPC transport. The QUIC cluster plane (mutual TLS, quinn) is built by the region
//! cluster issue; until then a node can only form a single-member group, which never sends
//! an RPC. Any attempt to reach a peer fails loudly as `Unreachable` rather than pretending.

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use crate::types::{NodeId, TypeConfig};

const NOT_BUILT: &str =
    "the QUIC cluster plane is not built yet: this node can only run a single-member group";

fn unreachable<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    let io = std::io::Error::new(std::io::ErrorKind::Unsupported, NOT_BUILT);
    RPCError::Unreachable(Unreachable::new(&io))
}

/// The network of a single-member group.
pub struct SingleNodeNetwork;

pub struct NoPeer;

impl RaftNetworkFactory<TypeConfig> for SingleNodeNetwork {
    type Network = NoPeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> NoPeer {
        tracing::error!(target, addr = %node.addr, "{NOT_BUILT}");
        NoPeer
    }
}

impl RaftNetwork<TypeConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }
}
