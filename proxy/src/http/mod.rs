//! The node's HTTP front end on Pingora. This module is the only one that touches Pingora
//! types: it binds the listener, runs the server until a shutdown signal, and adapts
//! sessions to `wire::Request`/`Reply`.

mod app;
mod guard;
mod prebound;
mod sendfile;
mod tls;

pub use tls::TlsFiles;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};

use crate::api::Api;
use crate::registry::Registry;

pub type ShutdownFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Settings of the HTTP front end.
pub struct FrontEnd {
    pub threads: usize,
    /// Seconds in-flight requests get after a shutdown signal before the runtime stops.
    pub shutdown_timeout_secs: u64,
    /// Serve HTTPS with these files; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// How long a connection may take to send a request head before it is closed.
    pub header_timeout: std::time::Duration,
    /// Open connections allowed per client address; `None`: unbounded.
    pub connections_per_ip: Option<usize>,
    /// Proxies exempt from the per-address bound (they carry many clients).
    pub trusted_proxies: crate::forwarded::TrustedProxies,
    /// `/metrics` needs credentials.
    pub metrics_auth: bool,
}

struct OnFuture(parking_lot::Mutex<Option<ShutdownFuture>>);

#[async_trait]
impl ShutdownSignalWatch for OnFuture {
    async fn recv(&self) -> ShutdownSignal {
        let fut = self.0.lock().take();
        if let Some(f) = fut {
            f.await;
        }
        ShutdownSignal::GracefulTerminate
    }
}

/// A bound, not yet running, HTTP server.
pub struct Bound {
    server: Server,
    pub addr: SocketAddr,
}

/// Binds the public listener now, so its real address is known before anything else starts.
pub fn listen(addr: &str) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr)
}

pub fn bind(
    front: &FrontEnd,
    listener: std::net::TcpListener,
    registry: Arc<Registry>,
    api: Arc<Api>,
    console: Arc<crate::ui::Console>,
    edge: crate::edge::Edge,
) -> std::io::Result<Bound> {
    let conf = ServerConf {
        threads: front.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(front.shutdown_timeout_secs),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let tls = front.tls.as_ref().map(TlsFiles::settings).transpose()?;
    let app = app::NodeApp {
        registry,
        api,
        console,
        edge,
        options: HttpServerOptions::default(),
        // Ids start at a random number, so the ids of different nodes and restarts do not
        // collide in logs and in the audit trail.
        requests: AtomicU64::new(rand::random::<u64>() >> 4),
        secure: tls.is_some(),
        header_timeout: front.header_timeout,
        metrics_auth: front.metrics_auth,
    };
    let app = guard::Guarded {
        app: Arc::new(app),
        connections: front.connections_per_ip.map(guard::Connections::new),
        trusted: front.trusted_proxies.clone(),
    };
    let (service, addr) =
        prebound::PreBound::adopt("shoal-http", listener, app, front.threads, tls)?;
    server.add_service(service);
    Ok(Bound { server, addr })
}

impl Bound {
    /// Serves until `shutdown` completes, then lets in-flight requests finish (bounded).
    /// Must not be called from inside a tokio runtime.
    pub fn run(self, shutdown: ShutdownFuture) {
        self.server.run(RunArgs {
            shutdown_signal: Box::new(OnFuture(parking_lot::Mutex::new(Some(shutdown)))),
        });
    }
}
