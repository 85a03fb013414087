//! `pull-storm`: N simulated Kubernetes nodes pull one image at the same moment, each the
//! way containerd does: the manifest by tag (an index leads to its linux/amd64 manifest),
//! then the config, then the layers, a bounded number at a time.
//!
//! A fresh random image is pushed first, untimed, so on Shoal the storm is cold (every
//! node's cache misses; the origin should be read once per blob); `--reuse TAG` pulls an
//! existing image instead, warm. Each client has its own connection pool and signs in on
//! its own, as separate nodes would. With `--push-to` the image goes to the upstream a
//! target mirrors and is pulled from `--pull-repo`: a cold pull through the mirror (the
//! manifest is resolved untimed, so the mirror has fetched it; every blob stays cold).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use futures::StreamExt;
use serde::Serialize;

use super::measure::{Measure, Outline};
use super::wait_visible;
use crate::args::{check_repo, parse_size, positive, seed_or_clock};
use crate::image::Image;
use crate::oci::{self, Refs};
use crate::report::Report;
use crate::stats::{gather, Recorder, Timeline};
use crate::target::{Registry, Targets};

#[derive(Args, Serialize, Clone, Debug)]
pub struct Config {
    /// Simulated Kubernetes nodes pulling at once, each with its own connection pool.
    #[arg(long, visible_alias = "nodes", default_value_t = 50)]
    pub clients: usize,
    /// Layers of the generated image.
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    /// Size of each generated layer (bytes, KiB, MiB, GiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub layer_size: u64,
    /// Layers one client fetches at once (containerd's default is 3).
    #[arg(long, default_value_t = 3)]
    pub layer_parallelism: usize,
    /// Repository to push to and pull from (on Shoal its namespace must exist).
    #[arg(long, default_value = "bench/pull-storm")]
    pub repo: String,
    /// Pull this existing tag of --repo instead of pushing a fresh image (a warm storm).
    #[arg(long, value_name = "TAG")]
    pub reuse: Option<String>,
    /// Seed of the generated image (default: from the clock, so each run is cold).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Hash every blob received and count a mismatch as an error (hashing is then timed).
    #[arg(long)]
    pub verify: bool,
    /// Push the generated image to this registry instead of the first target: the upstream
    /// a target mirrors (a cold pull through a mirror).
    #[arg(long, value_name = "URL")]
    pub push_to: Option<String>,
    /// Pull from this repository instead of --repo: where the target serves what was pushed
    /// to --push-to (its mirror namespace, e.g. mirror/bench/pull-storm).
    #[arg(long, value_name = "REPO")]
    pub pull_repo: Option<String>,
}

pub async fn run(cfg: &Config, targets: &Targets) -> anyhow::Result<Report> {
    check_repo(&cfg.repo)?;
    positive("--clients", cfg.clients)?;
    positive("--layer-parallelism", cfg.layer_parallelism)?;
    let setup = targets.client(0)?;
    let pull_repo = cfg.pull_repo.clone().unwrap_or_else(|| cfg.repo.clone());
    check_repo(&pull_repo)?;
    let mut facts = BTreeMap::from([("repo".to_string(), pull_repo.clone())]);
    let tag = match &cfg.reuse {
        Some(tag) => tag.clone(),
        None => {
            let seed = seed_or_clock(cfg.seed);
            let (layers, size) = (cfg.layers, cfg.layer_size);
            let image =
                tokio::task::spawn_blocking(move || Image::generate(seed, layers, size)).await?;
            let tag = format!("storm-{seed:016x}");
            let pusher = match &cfg.push_to {
                Some(url) => targets.client_of(url)?,
                None => setup.clone(),
            };
            oci::push_image(&pusher, &cfg.repo, &tag, &image)
                .await
                .context("pushing the image to pull (untimed)")?;
            if cfg.push_to.is_none() {
                wait_visible(targets, &cfg.repo, &tag).await?;
            }
            tag
        }
    };
    // What a pull will fetch, resolved untimed (a manifest GET reads no blob).
    let (manifest_digest, blobs) = resolve(&setup, &pull_repo, &tag).await?;
    facts.insert("tag".into(), tag.clone());
    facts.insert("manifest_digest".into(), manifest_digest);
    let counts = BTreeMap::from([
        ("clients".to_string(), cfg.clients as u64),
        ("distinct_blobs".to_string(), blobs.len() as u64),
        ("image_bytes".to_string(), blobs.iter().map(|b| b.1).sum()),
    ]);

    let clients: Vec<Registry> = (0..cfg.clients)
        .map(|i| targets.client(i))
        .collect::<Result<_, _>>()?;
    let measure = Measure::start(targets).await;
    let tasks = clients
        .into_iter()
        .map(|reg| {
            let (repo, tag, timeline) = (pull_repo.clone(), tag.clone(), measure.timeline());
            let (parallelism, verify) = (cfg.layer_parallelism, cfg.verify);
            tokio::spawn(async move {
                let mut rec = Recorder::default();
                let started = Instant::now();
                match pull(&reg, &repo, &tag, parallelism, verify, &timeline, &mut rec).await {
                    Ok(bytes) => {
                        rec.record_bytes("image", started.elapsed(), bytes);
                        timeline.op();
                    }
                    Err(e) => rec.error(&e.context(format!("client of {}", reg.base))),
                }
                rec
            })
        })
        .collect();
    let rec = gather(tasks).await;
    let mut counts = counts;
    counts.insert("images".into(), rec.count("image") as u64);
    let outline = Outline {
        scenario: "pull-storm",
        params: cfg,
        ops_unit: "images",
        counts,
        facts,
    };
    Ok(measure.finish(rec, outline).await)
}

/// The manifest digest and the blobs (digest, size) a pull of `repo:tag` fetches.
async fn resolve(
    reg: &Registry,
    repo: &str,
    tag: &str,
) -> anyhow::Result<(String, Vec<(String, u64)>)> {
    let mut reference = tag.to_string();
    for _ in 0..2 {
        let m = oci::get_manifest(reg, repo, &reference).await?;
        match oci::refs(&m.bytes)? {
            Refs::Index { child } => reference = child,
            Refs::Image { config, layers } => {
                let digest = crate::image::Blob::from_bytes(m.bytes).digest;
                let mut blobs = vec![config];
                for l in layers {
                    if !blobs.contains(&l) {
                        blobs.push(l);
                    }
                }
                return Ok((digest, blobs));
            }
        }
    }
    bail!("{repo}:{tag}: an index of indexes")
}

/// One node's pull; returns the blob bytes received.
async fn pull(
    reg: &Registry,
    repo: &str,
    tag: &str,
    parallelism: usize,
    verify: bool,
    timeline: &Timeline,
    rec: &mut Recorder,
) -> anyhow::Result<u64> {
    let started = Instant::now();
    let mut m = oci::get_manifest(reg, repo, tag).await?;
    let mut refs = oci::refs(&m.bytes)?;
    if let Refs::Index { child } = &refs {
        m = oci::get_manifest(reg, repo, child).await?;
        refs = oci::refs(&m.bytes)?;
    }
    let Refs::Image { config, layers } = refs else {
        bail!("{repo}:{tag}: an index of indexes");
    };
    rec.record("manifest", started.elapsed());

    let (took, mut bytes) = fetch(reg, repo, &config, timeline, verify).await?;
    rec.record_bytes("blob", took, bytes);
    // The futures are made first and only then buffered: a closure inside the stream
    // would make the spawned task's future generic over lifetimes, which tokio refuses.
    let fetches: Vec<_> = layers
        .iter()
        .map(|l| fetch(reg, repo, l, timeline, verify))
        .collect();
    let results: Vec<_> = futures::stream::iter(fetches)
        .buffer_unordered(parallelism)
        .collect()
        .await;
    let mut first_error = None;
    for r in results {
        match r {
            Ok((took, n)) => {
                rec.record_bytes("blob", took, n);
                bytes += n;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(bytes),
    }
}

/// GETs one blob; with `verify`, checks its digest.
async fn fetch(
    reg: &Registry,
    repo: &str,
    (digest, size): &(String, u64),
    timeline: &Timeline,
    verify: bool,
) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let got = oci::get_blob(reg, repo, digest, None, timeline, verify).await?;
    let took = started.elapsed();
    if got.bytes != *size {
        bail!(
            "blob {digest}: {} bytes, the manifest says {size}",
            got.bytes
        );
    }
    if let Some(d) = got.digest.filter(|d| d != digest) {
        bail!("blob {digest} arrived with digest {d}");
    }
    Ok((took, got.bytes))
}
