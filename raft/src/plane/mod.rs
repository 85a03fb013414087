//! The cluster plane: QUIC (quinn) with mutual TLS between the members of a region. Raft
//! RPCs, write forwarding and membership requests all travel here; see `tls` for who may
//! connect and `rpc` for the messages.
//!
//! One endpoint per node acts as server and client on one UDP socket. A call opens a
//! bidirectional stream on a cached connection to the target (dialled by the TLS name its
//! id implies), writes the request, and reads the whole response. The server runs each
//! stream in its own task and tells the handler which node id the peer's certificate names.

pub mod rpc;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::types::NodeId;
use crate::{Error, Result};
use rpc::{Request, Response};

/// Largest message accepted on a stream (snapshot chunks and log batches stay far below).
const MAX_MESSAGE: usize = 64 << 20;

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Answers `req` from the member whose certificate names `peer`.
    async fn handle(&self, peer: NodeId, req: Request) -> Response;
}

pub struct Plane {
    endpoint: quinn::Endpoint,
    conns: tokio::sync::Mutex<HashMap<NodeId, quinn::Connection>>,
}

impl Plane {
    /// Binds the plane's UDP socket.
    pub fn bind(addr: SocketAddr, tls: tls::PlaneTls) -> Result<Arc<Plane>> {
        let mut endpoint = quinn::Endpoint::server(tls.server, addr)
            .map_err(|e| Error::Tls(format!("binding {addr}: {e}")))?;
        endpoint.set_default_client_config(tls.client);
        Ok(Arc::new(Plane {
            endpoint,
            conns: tokio::sync::Mutex::new(HashMap::new()),
        }))
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.endpoint
            .local_addr()
            .map_err(|e| Error::Tls(e.to_string()))
    }

    /// Accepts connections until the endpoint closes, answering with `handler`.
    pub fn serve(self: &Arc<Self>, handler: Arc<dyn Handler>) {
        let endpoint = self.endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let handler = handler.clone();
                tokio::spawn(async move {
                    let conn = match incoming.await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "refused a cluster-plane connection");
                            return;
                        }
                    };
                    let Some(peer) = tls::peer_id(&conn) else {
                        tracing::warn!("cluster-plane peer certificate names no node; closing");
                        conn.close(1u32.into(), b"certificate names no node");
                        return;
                    };
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let handler = handler.clone();
                        tokio::spawn(async move {
                            let resp = match recv.read_to_end(MAX_MESSAGE).await {
                                Ok(bytes) => match postcard::from_bytes::<Request>(&bytes) {
                                    Ok(req) => handler.handle(peer, req).await,
                                    Err(e) => Response::Failed(format!("undecodable request: {e}")),
                                },
                                Err(e) => Response::Failed(format!("reading the request: {e}")),
                            };
                            let _ = send.write_all(&rpc::encode(&resp)).await;
                            let _ = send.finish();
                        });
                    }
                });
            }
        });
    }

    /// A live connection to `target`, dialled if needed. The cache lock is never held while
    /// dialling: a dead peer's handshake must not hold up calls to the live ones.
    async fn connection(&self, target: NodeId, addr: &str) -> Result<quinn::Connection> {
        if let Some(c) = self.conns.lock().await.get(&target) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let sock = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| Error::Unreachable(format!("resolving {addr}: {e}")))?
            .next()
            .ok_or_else(|| Error::Unreachable(format!("{addr} resolves to nothing")))?;
        let conn = self
            .endpoint
            .connect(sock, &tls::node_name(target))
            .map_err(|e| Error::Unreachable(format!("node {target} at {addr}: {e}")))?
            .await
            .map_err(|e| Error::Unreachable(format!("node {target} at {addr}: {e}")))?;
        self.conns.lock().await.insert(target, conn.clone());
        Ok(conn)
    }

    /// Sends `req` to node `target` at `addr` and waits for its answer, at most `timeout`.
    pub async fn call(
        &self,
        target: NodeId,
        addr: &str,
        req: &Request,
        timeout: Duration,
    ) -> Result<Response> {
        let attempt = async {
            let conn = self.connection(target, addr).await?;
            let io = |e: &dyn std::fmt::Display| {
                Error::Unreachable(format!("node {target} at {addr}: {e}"))
            };
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| io(&e))?;
            send.write_all(&rpc::encode(req))
                .await
                .map_err(|e| io(&e))?;
            send.finish().map_err(|e| io(&e))?;
            let bytes = recv.read_to_end(MAX_MESSAGE).await.map_err(|e| io(&e))?;
            postcard::from_bytes::<Response>(&bytes).map_err(|e| io(&e))
        };
        tokio::time::timeout(timeout, attempt).await.map_err(|_| {
            Error::Unreachable(format!(
                "node {target} at {addr}: no answer within {timeout:?}"
            ))
        })?
    }

    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutting down");
    }
}
