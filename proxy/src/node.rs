//! `run`: starts one node from a `Config` and serves until `shutdown` completes.
//!
//! The public listener is bound first, so the node knows its real API URL (port 0 allowed)
//! before it records itself in the region's membership. Raft, the cluster plane and sled run
//! on a tokio runtime of their own; Pingora runs its services on its runtimes and must not be
//! started inside another runtime, so `run` is a plain blocking function. A node started with
//! `--join` asks the region to add it in the background while it already serves. Order on the
//! way down: stop accepting, let requests finish (bounded), stop Raft and the plane, flush sled.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shoal_origin::{BlobStore, FsStore, RemoteStore};
use shoal_raft::{ClusterConfig, MetaConfig, Metadata};

use crate::api::Api;
use crate::auth::{Gate, GateConfig};
use crate::cache::{BlobCache, CacheConfig};
use crate::config::{Cluster, Config};
use crate::http::{self, FrontEnd, ShutdownFuture};
use crate::registry::Registry;
use crate::usage::UsageMeter;

pub fn run(config: Config, shutdown: ShutdownFuture) -> anyhow::Result<()> {
    // The public listener's TLS (Pingora builds it with the process's default provider):
    // aws-lc's AES-GCM uses the CPU's widest vector units, which ring's does not, and
    // encrypting is most of what an HTTPS body costs.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    std::fs::create_dir_all(&config.data)
        .with_context(|| format!("creating the data directory {}", config.data.display()))?;
    let listener =
        http::listen(&config.listen).with_context(|| format!("binding {}", config.listen))?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let api_url = match &config.advertise_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => format!("{scheme}://{}", listener.local_addr()?),
    };
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("shoal-meta")
        .enable_all()
        .build()?;
    crate::metrics::install();
    let (meta, store) = background.block_on(async {
        let meta = Metadata::open(MetaConfig {
            node_id: config.node_id,
            dir: config.meta_dir(),
            api_url: api_url.clone(),
            snapshot_every: config.snapshot_every,
            cache_bytes: config.metadata_cache,
            cluster: config.cluster.as_ref().map(|c| ClusterConfig {
                listen: c.listen,
                advertise: c.advertise.clone(),
                tls_dir: c.tls_dir.clone(),
                bootstrap: c.bootstrap,
            }),
        })
        .await
        .context("opening the metadata store")?;
        if config.cluster.as_ref().is_none_or(|c| c.bootstrap) {
            crate::auth::bootstrap::first_start(&meta, &config.data)
                .await
                .context("initialising access control")?;
        }
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
    if let Some(cluster) = &config.cluster {
        let (id, member) = meta.member();
        tracing::info!(id, api = %member.api, cluster = %member.cluster, "cluster plane up");
        if let Some(join) = &cluster.join {
            background.spawn(join_region(meta.clone(), join.clone(), cluster.clone()));
        }
        {
            let _guard = background.enter();
            meta.keep_voters(cluster.voters, cluster.replace_dead_voter_after);
            meta.watch_removal();
        }
    }
    let cache_config = CacheConfig {
        dir: config.cache_dir(),
        max_bytes: config.cache_max_bytes,
        keep_mirrored: config.origin.is_some(),
    };
    let fills = {
        let _guard = background.enter();
        BlobCache::open(
            &cache_config,
            store.clone(),
            &meta,
            background.handle().clone(),
        )
        .with_context(|| format!("opening the blob cache in {}", cache_config.dir.display()))?
    };
    // Blob reads go through the cache only with a separate origin; mirror fills always do.
    let cache = config.origin.as_ref().map(|_| fills.clone());
    let mirrors = Arc::new(crate::mirror::Mirrors::new(
        meta.clone(),
        config.upstream_timeout,
    ));
    fills.set_upstream(Arc::new(crate::mirror::source::MirrorSource {
        mirrors: mirrors.clone(),
        meta: meta.clone(),
        store: store.clone(),
    }));
    if config.public_url.is_none() && listener.local_addr()?.ip().is_unspecified() {
        tracing::warn!(
            url = %api_url,
            "listening on every address without --public-url: token realms name {api_url}, which remote clients cannot reach; set --public-url"
        );
    }
    let audit = crate::audit::AuditLog::open(&config.audit, config.node_id)
        .context("opening the audit log")?;
    let auth = Arc::new(Gate::new(
        meta.clone(),
        GateConfig {
            public_url: config.public_url.clone(),
            own_url: api_url.clone(),
            failed_sign_ins: config.edge.failed_login_rate,
            audit,
        },
    ));
    let usage = Arc::new(UsageMeter::default());
    background.spawn(usage.clone().run(meta.clone(), config.usage_interval));
    let wanted = config.cluster.as_ref().map_or(1, |c| c.voters);
    metrics::gauge!(crate::metrics::RAFT_VOTERS_WANTED).set(wanted as f64);
    background.spawn(publish_disks(config.data.clone(), config.cache_dir.clone()));
    background.spawn(async {
        loop {
            tokio::time::sleep(crate::malloc::TRIM_EVERY).await;
            let _ = tokio::task::spawn_blocking(crate::malloc::trim).await;
        }
    });
    let registry = Arc::new(Registry {
        meta: meta.clone(),
        store,
        cache,
        auth: auth.clone(),
        usage: usage.clone(),
        max_open_uploads: config.max_open_uploads,
        gc_grace: config.lifecycle.gc.grace,
        mirrors,
        fills,
        served: crate::registry::served_manifests(),
    });
    background.spawn(crate::lifecycle::run(
        meta.clone(),
        registry.store.clone(),
        config.lifecycle.clone(),
    ));
    let api = Arc::new(Api {
        meta: meta.clone(),
        auth,
        region: config.region.clone(),
        store: registry.store.clone(),
        lifecycle: config.lifecycle.clone(),
    });
    let console = Arc::new(crate::ui::Console::new(
        api.clone(),
        registry.clone(),
        config.console_session.as_secs().clamp(60, 30 * 86_400) as i64,
    ));
    let front = FrontEnd {
        threads: config.threads,
        shutdown_timeout_secs: config.shutdown_timeout_secs,
        tls: config.tls.clone(),
        header_timeout: config.edge.header_timeout,
        connections_per_ip: config.edge.connections_per_ip,
        trusted_proxies: config.edge.trusted_proxies.clone(),
        metrics_auth: config.metrics_auth,
    };
    let edge = crate::edge::Edge::new(&config.edge);
    let bound = http::bind(&front, listener, registry, api, console, edge)
        .context("starting the HTTP front end")?;
    let origin = config
        .origin
        .as_ref()
        .map_or_else(|| "embedded".to_string(), |o| o.url.clone());
    let cluster = config
        .cluster
        .as_ref()
        .map_or_else(|| "single node".to_string(), |c| c.listen.to_string());
    tracing::info!(
        version = crate::VERSION,
        node_id = config.node_id,
        region = %config.region,
        data = %config.data.display(),
        %origin,
        listen = %bound.addr,
        %cluster,
        "node ready"
    );
    println!("listening on {scheme}://{}", bound.addr);
    std::io::stdout().flush()?;
    bound.run(shutdown);
    tracing::info!("shutting down: recording usage, stopping raft and flushing metadata");
    background.block_on(async {
        // A write would wait out its timeout on a node that no leader hears (a removed
        // ex-leader took 5 s to stop): its counts are dropped at once instead.
        if let Some(why) = meta.removed() {
            tracing::warn!(%why, "the last usage counts are dropped");
        } else if !meta.hears_a_leader() {
            tracing::warn!("the last usage counts are dropped: no leader to record them");
        } else {
            let last = tokio::time::timeout(Duration::from_secs(5), usage.flush(&meta));
            if last.await.is_err() {
                tracing::warn!("the last usage counts could not be recorded in time");
            }
        }
        meta.shutdown().await
    })?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Asks the region behind `url` to add this node, retrying until it is a member. The
/// member's cluster address comes from its open `/api/v1/cluster/plane`; the request itself
/// goes over the authenticated cluster plane (a member that does not lead passes it on).
async fn join_region(meta: Arc<Metadata>, url: String, cluster: Cluster) {
    let http = reqwest::Client::new();
    let plane_url = format!("{}/api/v1/cluster/plane", url.trim_end_matches('/'));
    let mut delay = Duration::from_millis(200);
    loop {
        let (me, mine) = meta.member();
        // A member whose recorded addresses are still its own is done; one restarted with
        // new addresses joins again, which records them.
        let recorded = meta
            .cluster_status()
            .members
            .into_iter()
            .find(|m| m.id == me);
        if recorded.is_some_and(|m| m.api == mine.api && m.cluster == mine.cluster) {
            tracing::info!(me, "this node is a member of the region");
            return;
        }
        let attempt = async {
            let plane: serde_json::Value = http
                .get(&plane_url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let target = plane["node_id"]
                .as_u64()
                .context("the member reports no node id")?;
            let addr = plane["cluster"]
                .as_str()
                .filter(|a| !a.is_empty())
                .context("the member reports no cluster address")?;
            meta.request_join(target, addr, cluster.voters).await?;
            anyhow::Ok(())
        };
        match attempt.await {
            Ok(()) => {
                tracing::info!(via = %url, "joined the region");
                return;
            }
            Err(e) => {
                tracing::warn!(via = %url, error = %format!("{e:#}"), "joining the region failed; retrying")
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
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

/// Keeps the disk gauges of the data and cache directories current: once at once, before
/// the node serves (so the first scrape has them), then every 15 s (a `statvfs` each).
fn publish_disks(
    data: std::path::PathBuf,
    cache: Option<std::path::PathBuf>,
) -> impl std::future::Future<Output = ()> {
    let publish = move || {
        crate::metrics::publish_disk("data", &data);
        if let Some(c) = &cache {
            crate::metrics::publish_disk("cache", c);
        }
    };
    publish();
    async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(15)).await;
            publish();
        }
    }
}
