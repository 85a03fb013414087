//! The cluster plane: QUIC (quinn) with mutual TLS between the members of a region. Raft
//! RPCs, write forwarding and membership requests all travel here; see `tls` for who may
//! connect and `rpc` for the messages. The node also opens byte streams over it (peer blob
//! fetch, `Plane::open` / `StreamSource`): the plane carries those bytes without reading them.
//!
//! One endpoint per node acts as server and client on one UDP socket. A call opens a
//! bidirectional stream on a cached connection to the target (dialled by the TLS name its
//! id implies), writes the request, and reads the whole response. The server runs each
//! stream in its own task and tells the handler which node id the peer's certificate names.

pub mod rpc;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};

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

/// A byte stream the node serves to its peers.
pub type ByteStream = Box<dyn AsyncRead + Send + Unpin>;

/// Answers `Request::Open`: the node's own streams (peer blob fetch). The payload and the
/// bytes are the node's business; an error ends the stream abruptly, never cleanly.
#[async_trait]
pub trait StreamSource: Send + Sync + 'static {
    async fn open(&self, peer: NodeId, payload: Vec<u8>)
        -> std::result::Result<ByteStream, String>;
}

/// Status byte that precedes an opened stream's bytes; anything else is followed by an error.
const OPENED: u8 = 0;
const REFUSED: u8 = 1;
/// Size of the writes that copy an opened stream onto QUIC.
const STREAM_CHUNK: usize = 1 << 20;

pub struct Plane {
    endpoint: quinn::Endpoint,
    conns: tokio::sync::Mutex<HashMap<NodeId, quinn::Connection>>,
    streams: OnceLock<Arc<dyn StreamSource>>,
}

/// What the plane asks of the kernel for its socket's receive and send buffers (the kernel
/// caps them at `net.core.rmem_max` / `wmem_max`, 4 MiB on this kind of machine).
const UDP_BUFFER: usize = 8 << 20;

/// The plane's UDP socket, with buffers large enough that a burst of a peer's blob stream
/// is not dropped while this node's runtime is busy: the default (~208 KiB) holds a few
/// large datagrams, and each one dropped halves the sender's congestion window (a storm's
/// peer fills ran at ~50 MB/s so).
fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Both families on an unspecified IPv6 address, whatever the host's
        // `net.ipv6.bindv6only` says (the Linux default, which `Endpoint::server` relied on).
        let _ = socket.set_only_v6(false);
    }
    for set in [Socket::set_recv_buffer_size, Socket::set_send_buffer_size] {
        if let Err(e) = set(&socket, UDP_BUFFER) {
            tracing::warn!(error = %e, "the plane's UDP buffers keep their default size");
        }
    }
    let granted = [
        ("receive", "net.core.rmem_max", socket.recv_buffer_size()),
        ("send", "net.core.wmem_max", socket.send_buffer_size()),
    ];
    for (which, sysctl, size) in granted {
        match size {
            Ok(bytes) => match too_small(which, sysctl, bytes) {
                Some(warning) => tracing::warn!(bytes, "{warning}"),
                None => tracing::debug!(bytes, "the plane's UDP {which} buffer"),
            },
            Err(e) => tracing::warn!(error = %e, "the plane's UDP {which} buffer size is unknown"),
        }
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Below this, as the kernel reports a buffer (Linux reports twice what it grants), a peer's
/// blob stream loses datagrams in bursts.
const UDP_BUFFER_ENOUGH: usize = 1 << 20;

/// The warning for a buffer the kernel capped below `UDP_BUFFER_ENOUGH`: what was granted and
/// the setting that caps it.
fn too_small(which: &str, sysctl: &str, reported: usize) -> Option<String> {
    (reported < UDP_BUFFER_ENOUGH).then(|| {
        format!(
            "the plane's UDP {which} buffer is {} KiB (asked for {} MiB): peer fetches may lose \
             datagrams in bursts and slow down; raise `{sysctl}` (sysctl -w {sysctl}={UDP_BUFFER})",
            reported / 1024,
            UDP_BUFFER >> 20
        )
    })
}

impl Plane {
    /// Binds the plane's UDP socket.
    pub fn bind(addr: SocketAddr, tls: tls::PlaneTls) -> Result<Arc<Plane>> {
        let bind_err = |e: std::io::Error| Error::Tls(format!("binding {addr}: {e}"));
        let socket = udp_socket(addr).map_err(bind_err)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| Error::Tls("the plane needs a Tokio runtime".into()))?;
        let mut endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(tls.server),
            socket,
            runtime,
        )
        .map_err(bind_err)?;
        endpoint.set_default_client_config(tls.client);
        Ok(Arc::new(Plane {
            endpoint,
            conns: tokio::sync::Mutex::new(HashMap::new()),
            streams: OnceLock::new(),
        }))
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.endpoint
            .local_addr()
            .map_err(|e| Error::Tls(e.to_string()))
    }

    /// Sets what answers `Request::Open` (once; later calls are ignored).
    pub fn serve_streams(&self, source: Arc<dyn StreamSource>) {
        let _ = self.streams.set(source);
    }

    /// Accepts connections until the endpoint closes, answering with `handler`.
    pub fn serve(self: &Arc<Self>, handler: Arc<dyn Handler>) {
        let endpoint = self.endpoint.clone();
        let plane = self.clone();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let handler = handler.clone();
                let plane = plane.clone();
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
                        let plane = plane.clone();
                        tokio::spawn(async move {
                            let resp = match recv.read_to_end(MAX_MESSAGE).await {
                                Ok(bytes) => match postcard::from_bytes::<Request>(&bytes) {
                                    Ok(Request::Open(payload)) => {
                                        plane.serve_stream(peer, payload, send).await;
                                        return;
                                    }
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
            let mut recv = self.send(target, addr, req).await?;
            let io = |e: &dyn std::fmt::Display| unreachable_at(target, addr, e);
            let bytes = recv.read_to_end(MAX_MESSAGE).await.map_err(|e| io(&e))?;
            postcard::from_bytes::<Response>(&bytes).map_err(|e| io(&e))
        };
        tokio::time::timeout(timeout, attempt).await.map_err(|_| {
            Error::Unreachable(format!(
                "node {target} at {addr}: no answer within {timeout:?}"
            ))
        })?
    }

    /// Opens a stream to `target`, writes `req` and returns the stream to read the answer from.
    async fn send(&self, target: NodeId, addr: &str, req: &Request) -> Result<quinn::RecvStream> {
        let conn = self.connection(target, addr).await?;
        let io = |e: &dyn std::fmt::Display| unreachable_at(target, addr, e);
        let (mut send, recv) = conn.open_bi().await.map_err(|e| io(&e))?;
        send.write_all(&rpc::encode(req))
            .await
            .map_err(|e| io(&e))?;
        send.finish().map_err(|e| io(&e))?;
        Ok(recv)
    }

    /// Copies the stream the node opens for `payload` onto `send`, after a status byte.
    async fn serve_stream(&self, peer: NodeId, payload: Vec<u8>, mut send: quinn::SendStream) {
        let opened = match self.streams.get() {
            Some(source) => source.open(peer, payload).await,
            None => Err("this node serves no streams".to_string()),
        };
        let mut reader = match opened {
            Ok(r) => r,
            Err(e) => {
                let mut answer = vec![REFUSED];
                answer.extend_from_slice(e.as_bytes());
                let _ = send.write_all(&answer).await;
                let _ = send.finish();
                return;
            }
        };
        if send.write_all(&[OPENED]).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; STREAM_CHUNK];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => {
                    let _ = send.finish();
                    return;
                }
                Ok(n) => {
                    if send.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(peer, error = %e, "a stream served to a peer failed; resetting it");
                    let _ = send.reset(1u32.into());
                    return;
                }
            }
        }
    }

    /// Opens a byte stream on node `target` (its `StreamSource` decides what `payload`
    /// means). Waits at most `timeout` for the stream to open; the bytes then arrive as
    /// fast as the peer sends them, and a peer failure is a read error, never a clean end.
    pub async fn open(
        &self,
        target: NodeId,
        addr: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<ByteStream> {
        let attempt = async {
            let mut recv = self.send(target, addr, &Request::Open(payload)).await?;
            let io = |e: &dyn std::fmt::Display| unreachable_at(target, addr, e);
            let mut status = [0u8; 1];
            recv.read_exact(&mut status).await.map_err(|e| io(&e))?;
            if status[0] == OPENED {
                return Ok(Box::new(recv) as ByteStream);
            }
            let why = recv.read_to_end(64 << 10).await.map_err(|e| io(&e))?;
            Err(Error::Refused(String::from_utf8_lossy(&why).into_owned()))
        };
        tokio::time::timeout(timeout, attempt).await.map_err(|_| {
            Error::Unreachable(format!(
                "node {target} at {addr}: the stream did not open within {timeout:?}"
            ))
        })?
    }

    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutting down");
    }
}

fn unreachable_at(target: NodeId, addr: &str, e: &dyn std::fmt::Display) -> Error {
    Error::Unreachable(format!("node {target} at {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_udp_buffer_is_reported_with_the_setting_that_caps_it() {
        // Linux's default cap (212 992 bytes), as getsockopt reports it.
        let warning = too_small("receive", "net.core.rmem_max", 2 * 212_992).unwrap();
        assert!(warning.contains("416 KiB"), "{warning}");
        assert!(
            warning.contains("sysctl -w net.core.rmem_max=8388608"),
            "{warning}"
        );
        assert_eq!(
            too_small("send", "net.core.wmem_max", UDP_BUFFER_ENOUGH),
            None
        );
        assert_eq!(too_small("send", "net.core.wmem_max", 2 * UDP_BUFFER), None);
    }
}
