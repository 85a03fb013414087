//! Raft RPC transport. `QuicNetwork` sends every RPC over the cluster plane; a transport
//! failure is reported as `Unreachable` so openraft backs off instead of spinning.
//! `SingleNodeNetwork` serves the single-node default (no `--cluster-listen`), whose
//! one-member group never sends an RPC: any attempt fails loudly rather than pretending.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::plane::rpc::{Request, Response};
use crate::plane::Plane;
use crate::types::{Member, NodeId, TypeConfig};
use crate::voters::Acks;

const NOT_CLUSTERED: &str =
    "this node runs without a cluster plane (no --cluster-listen): it can only be a single-member group";

fn unreachable<E: std::error::Error>(why: &str) -> RPCError<NodeId, Member, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(why.to_string())))
}

fn remote_failed<E: std::error::Error>(why: String) -> RPCError<NodeId, Member, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(why)))
}

/// The network of a single-member group.
pub struct SingleNodeNetwork;

pub struct NoPeer;

impl RaftNetworkFactory<TypeConfig> for SingleNodeNetwork {
    type Network = NoPeer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> NoPeer {
        tracing::error!(target, cluster = %node.cluster, "{NOT_CLUSTERED}");
        NoPeer
    }
}

impl RaftNetwork<TypeConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        Err(unreachable(NOT_CLUSTERED))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(unreachable(NOT_CLUSTERED))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        Err(unreachable(NOT_CLUSTERED))
    }
}

/// Raft over the QUIC cluster plane.
pub struct QuicNetwork {
    pub plane: Arc<Plane>,
    pub acks: Arc<Acks>,
}

pub struct QuicPeer {
    plane: Arc<Plane>,
    acks: Arc<Acks>,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for QuicNetwork {
    type Network = QuicPeer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> QuicPeer {
        QuicPeer {
            plane: self.plane.clone(),
            acks: self.acks.clone(),
            target,
            addr: node.cluster.clone(),
        }
    }
}

impl QuicPeer {
    async fn call<E: std::error::Error>(
        &self,
        req: Request,
        option: &RPCOption,
    ) -> Result<Response, RPCError<NodeId, Member, E>> {
        let ttl = option.hard_ttl().max(Duration::from_millis(200));
        let answer = self
            .plane
            .call(self.target, &self.addr, &req, ttl)
            .await
            .map_err(|e| unreachable(&e.to_string()))?;
        // Any answer is the peer alive (`voters` replaces voters that stay silent).
        self.acks.heard(self.target);
        Ok(answer)
    }
}

impl RaftNetwork<TypeConfig> for QuicPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        match self.call(Request::Append(rpc), &option).await? {
            Response::Append(Ok(r)) => Ok(r),
            Response::Append(Err(e)) | Response::Failed(e) => Err(remote_failed(e)),
            other => Err(remote_failed(format!("unexpected answer {other:?}"))),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.call(Request::Snapshot(rpc), &option).await? {
            Response::Snapshot(Ok(r)) => Ok(r),
            Response::Snapshot(Err(e)) | Response::Failed(e) => Err(remote_failed(e)),
            other => Err(remote_failed(format!("unexpected answer {other:?}"))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        match self.call(Request::Vote(rpc), &option).await? {
            Response::Vote(Ok(r)) => Ok(r),
            Response::Vote(Err(e)) | Response::Failed(e) => Err(remote_failed(e)),
            other => Err(remote_failed(format!("unexpected answer {other:?}"))),
        }
    }
}
