//! `catalog`: the metadata at scale. Fills the target with TAGS tags over REPOS
//! repositories and MANIFESTS distinct manifests (each about MANIFEST_BYTES long), the way
//! CI does it: a manifest `PUT` by tag for every tag, through FILL_CONCURRENCY clients.
//! The fill is timed apart (its PUTs per second are a figure of their own); then the
//! measured phase walks `_catalog` and `tags/list` page by page, from the start and from
//! the middle, and GETs one manifest by tag at CONCURRENCY for SECONDS. A Shoal target
//! also reports what its metadata takes on disk, its current snapshot and the last
//! snapshot's build time (`shoal_metadata_*`, scraped from `/metrics`); `--pid` adds the
//! node's peak RSS, which spans the fill and every snapshot built during it.
//!
//! Repository r holds manifests r, r + REPOS, …; tag t names manifest t mod MANIFESTS, so
//! the first tag of a manifest creates it and the others point at it. Each repository's
//! two blobs (a config and a layer, the same bytes everywhere) are pushed first.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use reqwest::Method;
use serde::Serialize;

use super::measure::{Measure, Outline};
use crate::args::{check_repo, positive};
use crate::image::{Blob, OCI_MANIFEST};
use crate::oci::{self, UploadMode};
use crate::report::Report;
use crate::stats::Recorder;
use crate::target::{Access, Registry, Targets};

#[derive(Args, Serialize, Clone, Debug)]
pub struct Config {
    /// Namespace the catalogue is made in (must exist).
    #[arg(long, default_value = "bench")]
    pub namespace: String,
    #[arg(long, default_value_t = 1000)]
    pub repos: u64,
    #[arg(long, default_value_t = 2000)]
    pub manifests: u64,
    #[arg(long, default_value_t = 10_000)]
    pub tags: u64,
    /// Size each manifest is padded to.
    #[arg(long, default_value_t = 1500)]
    pub manifest_bytes: usize,
    /// Concurrent PUTs while filling.
    #[arg(long, default_value_t = 64)]
    pub fill_concurrency: usize,
    /// Skip the fill (the catalogue is there from an earlier run with the same numbers).
    #[arg(long)]
    pub no_fill: bool,
    /// Pages of `_catalog` and of `tags/list` timed from each starting point.
    #[arg(long, default_value_t = 50)]
    pub pages: usize,
    /// Entries per page (`?n=`).
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,
    /// Clients of the manifest GETs, each on its own connection.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long the manifest GETs last, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
}

impl Config {
    fn repo(&self, r: u64) -> String {
        format!("{}/c{r:06}", self.namespace)
    }

    /// Manifest `m`, padded to `manifest_bytes`.
    fn manifest(&self, m: u64, config: &Blob, layer: &Blob) -> Bytes {
        let head = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{}\",\"size\":{}}},\"layers\":[{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"{}\",\"size\":{}}}],\"annotations\":{{\"m\":\"{m}\",\"pad\":\"",
            config.digest, config.size, layer.digest, layer.size
        );
        let pad = self.manifest_bytes.saturating_sub(head.len() + 3);
        Bytes::from(format!("{head}{}\"}}}}", "x".repeat(pad)))
    }
}

fn blobs() -> (Blob, Blob) {
    (
        Blob::from_bytes(Bytes::from_static(
            b"{\"architecture\":\"amd64\",\"os\":\"linux\"}",
        )),
        Blob::from_bytes(Bytes::from_static(b"catalog scale layer")),
    )
}

/// Runs `job(i)` for every i below `total` on `concurrency` tasks; how long it took.
async fn each<F, Fut>(total: u64, concurrency: usize, job: F) -> anyhow::Result<Duration>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, job) = (next.clone(), job.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return anyhow::Ok(());
                    }
                    job(i).await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

async fn fill(
    reg: &Registry,
    cfg: &Config,
    counts: &mut BTreeMap<String, u64>,
) -> anyhow::Result<f64> {
    let (config, layer) = blobs();
    let repos = {
        let (reg, cfg, config, layer) = (reg.clone(), cfg.clone(), config.clone(), layer.clone());
        each(cfg.repos, cfg.fill_concurrency, move |r| {
            let (reg, repo, config, layer) =
                (reg.clone(), cfg.repo(r), config.clone(), layer.clone());
            async move {
                for b in [&config, &layer] {
                    oci::push_blob(&reg, &repo, b, UploadMode::Monolithic, 0, None).await?;
                }
                Ok(())
            }
        })
        .await
        .context("pushing every repository's blobs")?
    };
    let tags = {
        let (reg, cfg) = (reg.clone(), cfg.clone());
        each(cfg.tags, cfg.fill_concurrency, move |t| {
            let (reg, cfg, config, layer) =
                (reg.clone(), cfg.clone(), config.clone(), layer.clone());
            async move {
                let m = t % cfg.manifests;
                let body = cfg.manifest(m, &config, &layer);
                oci::put_manifest(
                    &reg,
                    &cfg.repo(m % cfg.repos),
                    &format!("t{t}"),
                    OCI_MANIFEST,
                    &body,
                )
                .await
            }
        })
        .await
        .context("putting the manifests by tag")?
    };
    counts.insert("fill_blob_ms".into(), repos.as_millis() as u64);
    counts.insert("fill_put_ms".into(), tags.as_millis() as u64);
    Ok(cfg.tags as f64 / tags.as_secs_f64().max(1e-9))
}

/// Times `pages` pages of `path` (a `_catalog` or `tags/list` URL path with `n` set),
/// following each answer's `Link`; how many pages there were.
async fn walk(
    reg: &Registry,
    path: &str,
    access: Access<'_>,
    pages: usize,
    phase: &'static str,
    rec: &mut Recorder,
) -> anyhow::Result<usize> {
    let mut next = Some(path.to_string());
    let mut walked = 0;
    while let (Some(p), true) = (next.take(), walked < pages) {
        let started = Instant::now();
        let resp = reg.send(Method::GET, &reg.url(&p), access, |r| r).await?;
        let resp = oci::expect(resp, &[200], &format!("GET {p}")).await?;
        next = resp
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.split_once('<'))
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(url, _)| url.to_string());
        resp.bytes().await?;
        rec.record(phase, started.elapsed());
        walked += 1;
    }
    Ok(walked)
}

/// The `shoal_metadata_*` gauges of a Shoal target (nothing for another registry).
async fn storage(url: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(resp) = reqwest::get(format!("{url}/metrics")).await else {
        return out;
    };
    let Ok(text) = resp.text().await else {
        return out;
    };
    for (name, series, scale) in [
        ("metadata_disk_bytes", "shoal_metadata_disk_bytes", 1.0),
        ("snapshot_bytes", "shoal_metadata_snapshot_bytes", 1.0),
        (
            "snapshot_file_bytes",
            "shoal_metadata_snapshot_file_bytes",
            1.0,
        ),
        (
            "snapshot_build_ms",
            "shoal_metadata_snapshot_build_seconds",
            1000.0,
        ),
    ] {
        if text.contains(series) {
            let v = crate::shoal_metrics::sum_series(&text, series) * scale;
            out.insert(name.to_string(), v as u64);
        }
    }
    out
}

pub async fn run(cfg: &Config, targets: &Targets) -> anyhow::Result<Report> {
    check_repo(&cfg.repo(0))?;
    for (flag, n) in [
        ("--repos", cfg.repos),
        ("--manifests", cfg.manifests),
        ("--tags", cfg.tags),
    ] {
        if n == 0 {
            bail!("{flag} must be positive");
        }
    }
    if cfg.manifests < cfg.repos || cfg.tags < cfg.manifests {
        bail!("give at least as many manifests as repositories, and tags as manifests");
    }
    positive("--concurrency", cfg.concurrency)?;
    positive("--fill-concurrency", cfg.fill_concurrency)?;
    if !(cfg.seconds > 0.0 && cfg.seconds.is_finite()) {
        bail!("--seconds must be a positive number");
    }
    let reg = targets.client(0)?;
    let mut counts = BTreeMap::new();
    let mut facts = BTreeMap::new();
    if !cfg.no_fill {
        let rate = fill(&reg, cfg, &mut counts).await?;
        facts.insert("fill_puts_per_s".to_string(), format!("{rate:.0}"));
    }

    let measure = Measure::start(targets).await;
    let mut rec = Recorder::default();
    let n = cfg.page_size;
    let middle = cfg.repo(cfg.repos / 2);
    let catalog = Access::Catalog;
    walk(
        &reg,
        &format!("/v2/_catalog?n={n}"),
        catalog,
        cfg.pages,
        "catalog_page_first",
        &mut rec,
    )
    .await?;
    walk(
        &reg,
        &format!("/v2/_catalog?n={n}&last={middle}"),
        catalog,
        cfg.pages,
        "catalog_page_middle",
        &mut rec,
    )
    .await?;
    let repo = cfg.repo(0);
    walk(
        &reg,
        &format!("/v2/{repo}/tags/list?n={n}"),
        Access::Pull(&repo),
        cfg.pages,
        "tags_page",
        &mut rec,
    )
    .await?;
    let clients = super::manifest_rps::connect(targets, cfg.concurrency, &repo, "t0").await?;
    rec.merge(super::manifest_rps::get_for(clients, cfg.seconds, measure.timeline()).await);
    counts.insert("manifest_gets".to_string(), rec.count("manifest") as u64);
    facts.insert(
        "manifest_gets_per_s".to_string(),
        format!("{:.0}", rec.count("manifest") as f64 / cfg.seconds),
    );
    counts.extend(storage(&targets.urls()[0]).await);
    let outline = Outline {
        scenario: "catalog",
        params: cfg,
        ops_unit: "requests",
        counts,
        facts,
    };
    Ok(measure.finish(rec, outline).await)
}
