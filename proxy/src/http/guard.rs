//! A bound on open connections per client address, applied when a connection arrives and
//! before a byte of it is read, so that one address cannot hold every socket and worker of
//! the node (a slow-header flood: the other half, the time a request head may take, is cut
//! in `app`).
//!
//! It wraps the HTTP application as a Pingora `ServerApp`: `process_new` runs once per
//! connection (Pingora's HTTP/1 keep-alive loop runs inside it), so a slot is held exactly
//! as long as the connection. The address is the TCP peer: nothing has been read yet, and a
//! trusted proxy (whose connections carry many clients) is not bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use crate::forwarded::TrustedProxies;

/// Open connections per address, each counted while its `Slot` lives.
pub struct Connections {
    per_ip: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl Connections {
    pub fn new(per_ip: usize) -> Arc<Connections> {
        Arc::new(Connections {
            per_ip,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, or `None` when it holds `per_ip` already.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock();
        let n = open.entry(ip).or_insert(0);
        if *n >= self.per_ip {
            return None;
        }
        *n += 1;
        Some(Slot {
            connections: self.clone(),
            ip,
        })
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock();
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

pub struct Slot {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.release(self.ip);
    }
}

/// `app` behind the per-address bound.
pub struct Guarded<A> {
    pub app: Arc<A>,
    pub connections: Option<Arc<Connections>>,
    pub trusted: TrustedProxies,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _slot = match (&self.connections, peer) {
            (Some(c), Some(ip)) if !self.trusted.trusts(ip) => match c.take(ip) {
                Some(slot) => Some(slot),
                None => {
                    tracing::warn!(%ip, "too many open connections from one address; closing");
                    crate::metrics::count_refused_connection("per_ip");
                    return None;
                }
            },
            _ => None,
        };
        self.app.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_address_and_come_back() {
        let c = Connections::new(2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let s1 = c.take(a).unwrap();
        let _s2 = c.take(a).unwrap();
        assert!(c.take(a).is_none(), "a third from the same address");
        assert!(c.take(b).is_some(), "another address is not affected");
        drop(s1);
        assert!(c.take(a).is_some(), "a closed connection frees its slot");
    }
}
