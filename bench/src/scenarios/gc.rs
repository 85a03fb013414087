//! `gc`: the garbage collector on a large catalogue, and what it costs the traffic beside it.
//!
//! Setup (untimed) fills the target with REPOS repositories of MANIFESTS manifests each,
//! every manifest listing BLOBS small blobs of its own (so REPOS × MANIFESTS × BLOBS blob
//! links), a fraction of them untagged (pushed by digest): that fraction is garbage once
//! the grace period (the node's `--gc-grace`, which should be short here) has passed.
//! Timed: manifest GETs and blob pushes for SECONDS with nothing else running, then the
//! same for as long as one collector run (asked for through `POST /api/v1/gc`, as the
//! admin) works through the catalogue, every phase of it; and the run itself, from its
//! status: how long it took and what it collected. `--pid` adds the node's peak RSS.
//!
//! Shoal only: the API is Shoal's. Needs credentials of a cluster admin.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use reqwest::Method;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::measure::{Measure, Outline};
use crate::args::check_repo;
use crate::image::{Blob, OCI_MANIFEST};
use crate::oci::{self, UploadMode};
use crate::report::Report;
use crate::stats::{Recorder, Timeline};
use crate::target::{Registry, Targets};

#[derive(Args, Serialize, Clone, Debug)]
pub struct Config {
    /// Namespace the catalogue is made in (must exist).
    #[arg(long, default_value = "bench")]
    pub namespace: String,
    #[arg(long, default_value_t = 100)]
    pub repos: u32,
    #[arg(long, default_value_t = 1000)]
    pub manifests: u32,
    #[arg(long, default_value_t = 3)]
    pub blobs: u32,
    /// Percent of the manifests pushed by digest only (garbage).
    #[arg(long, default_value_t = 50)]
    pub untagged_percent: u32,
    /// Concurrent requests while filling.
    #[arg(long, default_value_t = 16)]
    pub fill_concurrency: usize,
    /// Seconds of traffic measured idle (the traffic beside the collector lasts its run).
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Concurrent clients of the measured traffic (half pull manifests, half push blobs).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Skip the fill (the catalogue is already there from an earlier run).
    #[arg(long)]
    pub no_fill: bool,
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The manifest of image `m` of repository `r` (its blobs are made from the same numbers).
fn manifest(r: u32, m: u32, blobs: u32) -> (Vec<Blob>, Bytes) {
    let config = Blob::from_bytes(Bytes::from(format!("{{\"r\":{r},\"m\":{m}}}")));
    let layers: Vec<Blob> = (0..blobs)
        .map(|b| Blob::from_bytes(Bytes::from(format!("layer {r}/{m}/{b}"))))
        .collect();
    let layer_json: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                "{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"{}\",\"size\":{}}}",
                l.digest, l.size
            )
        })
        .collect();
    let body = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{}\",\"size\":{}}},\"layers\":[{}]}}",
        config.digest,
        config.size,
        layer_json.join(",")
    );
    let mut all = vec![config];
    all.extend(layers);
    (all, Bytes::from(body))
}

async fn fill(reg: &Registry, cfg: &Config) -> anyhow::Result<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let total = u64::from(cfg.repos) * u64::from(cfg.manifests);
    let mut tasks = Vec::new();
    for _ in 0..cfg.fill_concurrency {
        let (reg, cfg, next) = (reg.clone(), cfg.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return anyhow::Ok(());
                }
                let (r, m) = (
                    (i % u64::from(cfg.repos)) as u32,
                    (i / u64::from(cfg.repos)) as u32,
                );
                let repo = format!("{}/gc{r:04}", cfg.namespace);
                let (blobs, body) = manifest(r, m, cfg.blobs);
                for b in &blobs {
                    oci::push_blob(&reg, &repo, b, UploadMode::Monolithic, 0, None).await?;
                }
                let untagged = (m * 100 / cfg.manifests.max(1)) < cfg.untagged_percent;
                let reference = if untagged {
                    sha(&body)
                } else {
                    format!("m{m}")
                };
                oci::put_manifest(&reg, &repo, &reference, OCI_MANIFEST, &body).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(total)
}

/// Runs pull and push clients until `stop`; (manifest GETs, blob pushes) done.
async fn traffic(
    reg: &Registry,
    cfg: &Config,
    stop: Arc<AtomicBool>,
    timeline: Arc<Timeline>,
    rec: &mut Recorder,
) -> (u64, u64) {
    let pulls = Arc::new(AtomicU64::new(0));
    let pushes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..cfg.clients {
        let (reg, cfg, stop, pulls, pushes, timeline) = (
            reg.clone(),
            cfg.clone(),
            stop.clone(),
            pulls.clone(),
            pushes.clone(),
            timeline.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = Recorder::default();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let started = Instant::now();
                let r = (n as u32 * 7 + c as u32) % cfg.repos;
                let repo = format!("{}/gc{r:04}", cfg.namespace);
                if c % 2 == 0 {
                    // A tagged manifest: the last ones pushed are tagged.
                    let tag = format!(
                        "m{}",
                        cfg.manifests - 1 - (n as u32 % (cfg.manifests / 4).max(1))
                    );
                    match oci::get_manifest(&reg, &repo, &tag).await {
                        Ok(_) => {
                            local.record("pull", started.elapsed());
                            pulls.fetch_add(1, Ordering::Relaxed);
                            timeline.op();
                        }
                        Err(e) => local.error(&e),
                    }
                } else {
                    let blob = Blob::from_bytes(Bytes::from(format!(
                        "traffic {c} {n} {:?}",
                        Instant::now()
                    )));
                    match oci::push_blob(&reg, &repo, &blob, UploadMode::Monolithic, 0, None).await
                    {
                        Ok(_) => {
                            local.record("push", started.elapsed());
                            pushes.fetch_add(1, Ordering::Relaxed);
                            timeline.op();
                        }
                        Err(e) => local.error(&e),
                    }
                }
            }
            local
        }));
    }
    for t in tasks {
        if let Ok(local) = t.await {
            rec.merge(local);
        }
    }
    (
        pulls.load(Ordering::Relaxed),
        pushes.load(Ordering::Relaxed),
    )
}

async fn gc_status(reg: &Registry) -> anyhow::Result<serde_json::Value> {
    let resp = reg.api(Method::GET, "gc").await?;
    let resp = oci::expect(resp, &[200], "GET /api/v1/gc").await?;
    Ok(resp.json().await?)
}

pub async fn run(cfg: &Config, targets: &Targets) -> anyhow::Result<Report> {
    check_repo(&format!("{}/x", cfg.namespace))?;
    if cfg.manifests == 0 || cfg.repos == 0 {
        bail!("--repos and --manifests must be positive");
    }
    let reg = targets.client(0)?;
    let mut counts = BTreeMap::new();
    if !cfg.no_fill {
        let filled = Instant::now();
        let n = fill(&reg, cfg)
            .await
            .context("filling the catalogue (untimed)")?;
        counts.insert("manifests_filled".to_string(), n);
        counts.insert("fill_ms".to_string(), filled.elapsed().as_millis() as u64);
    }
    let links = u64::from(cfg.repos) * u64::from(cfg.manifests) * u64::from(cfg.blobs + 1);
    counts.insert("blob_links".to_string(), links);
    let before = gc_status(&reg).await?;

    let measure = Measure::start(targets).await;
    let mut rec = Recorder::default();
    // Idle: traffic alone.
    let stop = Arc::new(AtomicBool::new(false));
    let idle_stop = stop.clone();
    let secs = cfg.seconds;
    let timer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        idle_stop.store(true, Ordering::Relaxed);
    });
    let idle_started = Instant::now();
    let (idle_pulls, idle_pushes) = traffic(&reg, cfg, stop, measure.timeline(), &mut rec).await;
    let idle_s = idle_started.elapsed().as_secs_f64();
    timer.await.ok();
    // Busy: the same traffic while one collector run works.
    let resp = reg.api(Method::POST, "gc").await?;
    oci::expect(resp, &[202], "POST /api/v1/gc").await?;
    let stop = Arc::new(AtomicBool::new(false));
    let (watch_reg, busy_stop) = (reg.clone(), stop.clone());
    let watcher = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let done = match gc_status(&watch_reg).await {
                Ok(s) => s["requested_at"].is_null() && s["running"].is_null(),
                Err(_) => false,
            };
            if done {
                busy_stop.store(true, Ordering::Relaxed);
                return;
            }
        }
    });
    let mut busy_rec = Recorder::default();
    let busy_started = Instant::now();
    let (busy_pulls, busy_pushes) =
        traffic(&reg, cfg, stop, measure.timeline(), &mut busy_rec).await;
    let busy_s = busy_started.elapsed().as_secs_f64();
    watcher.await.ok();
    // The run has ended (or ends now); read its result.
    let run = loop {
        let s = gc_status(&reg).await?;
        if s["requested_at"].is_null() && s["running"].is_null() && s["last"] != before["last"] {
            break s["last"].clone();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut facts = BTreeMap::new();
    let rate = |n: u64, s: f64| format!("{:.1}", n as f64 / s.max(1e-9));
    facts.insert("idle_pulls_per_s".into(), rate(idle_pulls, idle_s));
    facts.insert("idle_pushes_per_s".into(), rate(idle_pushes, idle_s));
    facts.insert("gc_pulls_per_s".into(), rate(busy_pulls, busy_s));
    facts.insert("gc_pushes_per_s".into(), rate(busy_pushes, busy_s));
    facts.insert("gc_run".into(), run.to_string());
    let seconds = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(run[k].as_str().unwrap_or_default())
            .map(|t| t.timestamp())
    };
    if let (Ok(a), Ok(b)) = (seconds("started_at"), seconds("finished_at")) {
        counts.insert("gc_seconds".into(), (b - a).max(0) as u64);
    }
    for k in [
        "manifests",
        "blob_links",
        "blobs_deleted",
        "bytes_reclaimed",
    ] {
        counts.insert(format!("gc_{k}"), run[k].as_u64().unwrap_or(0));
    }
    rec.merge(busy_rec);
    Ok(measure
        .finish(
            rec,
            Outline {
                scenario: "gc",
                params: cfg.clone(),
                ops_unit: "requests",
                counts,
                facts,
            },
        )
        .await)
}
