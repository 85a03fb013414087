//! Hands Pingora a listening socket we bound ourselves.
//!
//! Pingora binds its listeners late (inside `run`) and cannot report the port it got for
//! `:0`. Binding first lets the node print its real address before serving, with no race:
//! connections queue in the kernel backlog until the accept loop starts. Pingora adopts an
//! fd from the `ListenFds` table when its key equals the listener address string.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::{Fds, ListenFds, ShutdownWatch};
use pingora::services::listening::Service as Listening;
use pingora::services::Service;

/// Per-connection write buffer, in bytes.
const WRITE_BUFFER: usize = 8 * 1024;

pub struct PreBound<A> {
    inner: Listening<A>,
    fds: ListenFds,
}

impl<A: pingora::apps::ServerApp + Send + Sync + 'static> PreBound<A> {
    /// Serves on `listener`, bound earlier; returns the service and the bound address.
    pub fn adopt(
        name: &str,
        listener: TcpListener,
        app: A,
        threads: usize,
        tls: Option<TlsSettings>,
    ) -> std::io::Result<(Self, SocketAddr)> {
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        let key = bound.to_string();
        let mut table = Fds::new();
        table.add(key.clone(), listener.into_raw_fd());
        let mut inner = Listening::new(name.to_string(), app);
        // A write buffer that holds a response head and a small body (a manifest, a token,
        // an error) sends them in one segment; Pingora's default of one MSS (1460 bytes)
        // split most manifest replies into two sends. Larger bodies pass straight through.
        let buffers = L4BufferSettings::default().write(WRITE_BUFFER);
        let mut config = ListenerConfig::tcp(&key).l4_buffer(buffers);
        if let Some(tls) = tls {
            config = config.tls(tls);
        }
        inner.add_listener(config);
        inner.threads = Some(threads);
        let fds = Arc::new(parking_lot::Mutex::new(table));
        Ok((PreBound { inner, fds }, bound))
    }
}

#[async_trait]
impl<A: pingora::apps::ServerApp + Send + Sync + 'static> Service for PreBound<A> {
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        per_fd: usize,
    ) {
        let fds = self.fds.clone();
        Service::start_service(&mut self.inner, Some(fds), shutdown, per_fd).await
    }

    fn name(&self) -> &str {
        Service::name(&self.inner)
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads
    }
}
