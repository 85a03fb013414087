//! `run`: starts one node from a `Config` and serves until `shutdown` completes.
//!
//! Raft and its sled storage run on a tokio runtime of their own; Pingora runs its services
//! on its runtimes and must not be started inside another runtime, so `run` is a plain
//! blocking function. Order on the way down: stop accepting, let requests finish (bounded),
//! stop Raft, flush sled.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use shoal_origin::{BlobStore, FsStore, RemoteStore};
use shoal_raft::{MetaConfig, Metadata};

use crate::api::Api;
use crate::auth::OpenAccess;
use crate::config::Config;
use crate::http::{self, FrontEnd, ShutdownFuture};
use crate::registry::Registry;

pub fn run(config: Config, shutdown: ShutdownFuture) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&config.data)
        .with_context(|| format!("creating the data directory {}", config.data.display()))?;
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("shoal-meta")
        .enable_all()
        .build()?;
    let (meta, store) = background.block_on(async {
        let meta = Metadata::open(MetaConfig {
            node_id: config.node_id,
            dir: config.meta_dir(),
            advertise: config.listen.clone(),
            snapshot_every: MetaConfig::DEFAULT_SNAPSHOT_EVERY,
        })
        .await
        .context("opening the metadata store")?;
        let store: Arc<dyn BlobStore> = match &config.origin {
            None => Arc::new(
                FsStore::open(config.origin_dir())
                    .await
                    .context("opening the embedded origin")?,
            ),
            Some(o) => {
                tracing::info!(url = %o.url, "blobs live in a separate origin service");
                Arc::new(RemoteStore::new(&o.url, &o.secret)?)
            }
        };
        anyhow::Ok((meta, store))
    })?;
    let auth: Arc<dyn crate::auth::Authorizer> = Arc::new(OpenAccess::install());
    let registry = Arc::new(Registry {
        meta: meta.clone(),
        store,
        auth: auth.clone(),
    });
    let api = Arc::new(Api {
        meta: meta.clone(),
        auth,
    });
    let front = FrontEnd {
        listen: config.listen.clone(),
        threads: config.threads,
        shutdown_timeout_secs: config.shutdown_timeout_secs,
    };
    let bound =
        http::bind(&front, registry, api).with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(addr = %bound.addr, data = %config.data.display(), "node ready");
    println!("listening on http://{}", bound.addr);
    std::io::stdout().flush()?;
    bound.run(shutdown);
    tracing::info!("shutting down: stopping raft and flushing metadata");
    background.block_on(meta.shutdown())?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub fn os_signals() -> ShutdownFuture {
    Box::pin(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; the node stops only when killed");
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
