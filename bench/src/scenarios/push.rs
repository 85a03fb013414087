//! `push`: M CI jobs push a fresh image each at the same moment: every blob uploaded
//! (a bounded number at a time, as docker does) in the chosen upload form, then the
//! manifest PUT. Pushers are spread over the targets; each keeps to its own.
//!
//! The images are generated and hashed before the clock starts, and their bytes are made
//! again while they are sent, so the client neither holds a layer nor hashes while timed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use serde::Serialize;

use super::measure::{Measure, Outline};
use crate::args::{check_repo, parse_size, positive, seed_or_clock};
use crate::image::{splitmix, Image, OCI_MANIFEST};
use crate::oci::{self, UploadMode};
use crate::report::Report;
use crate::stats::{gather, Recorder, Timeline};
use crate::target::{Registry, Targets};

#[derive(Args, Serialize, Clone, Debug)]
pub struct Config {
    /// Concurrent pushes, one fresh image each.
    #[arg(long, visible_alias = "clients", default_value_t = 8)]
    pub pushers: usize,
    /// Layers per image.
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    /// Size of each layer (bytes, KiB, MiB, GiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub layer_size: u64,
    /// Upload form: monolithic (POST ?digest= with the body), post-put, or chunked.
    #[arg(long, value_enum, default_value_t = UploadMode::Monolithic)]
    pub mode: UploadMode,
    /// PATCH size for --mode chunked.
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    pub chunk_size: u64,
    /// Blobs one pusher uploads at once.
    #[arg(long, default_value_t = 3)]
    pub layer_parallelism: usize,
    #[arg(long, default_value = "bench/push")]
    pub repo: String,
    #[arg(long)]
    pub seed: Option<u64>,
}

pub async fn run(cfg: &Config, targets: &Targets) -> anyhow::Result<Report> {
    check_repo(&cfg.repo)?;
    positive("--pushers", cfg.pushers)?;
    positive("--layer-parallelism", cfg.layer_parallelism)?;
    if cfg.mode == UploadMode::Chunked && cfg.chunk_size == 0 {
        anyhow::bail!("--chunk-size must be at least 1 byte");
    }
    let seed = seed_or_clock(cfg.seed);
    let seeds = (0..cfg.pushers as u64).map(|i| splitmix(seed.wrapping_add(i)));
    let images = Image::generate_many(seeds, cfg.layers, cfg.layer_size).await?;
    let image_bytes: u64 = images.iter().map(Image::blob_bytes).sum();
    let clients: Vec<Registry> = (0..cfg.pushers)
        .map(|i| targets.client(i))
        .collect::<Result<_, _>>()?;
    let facts = BTreeMap::from([
        ("repo".to_string(), cfg.repo.clone()),
        ("tag_prefix".to_string(), format!("push-{seed:016x}-")),
    ]);

    let measure = Measure::start(targets).await;
    let tasks = clients
        .into_iter()
        .zip(images)
        .enumerate()
        .map(|(i, (reg, image))| {
            let (cfg, timeline) = (cfg.clone(), measure.timeline());
            let tag = format!("push-{seed:016x}-{i}");
            tokio::spawn(async move {
                let mut rec = Recorder::default();
                let started = Instant::now();
                match push(&reg, &cfg, &tag, &image, &timeline, &mut rec).await {
                    Ok(()) => {
                        rec.record_bytes("image", started.elapsed(), image.blob_bytes());
                        timeline.op();
                    }
                    Err(e) => rec.error(&e.context(format!("pusher of {}", reg.base))),
                }
                rec
            })
        })
        .collect();
    let rec = gather(tasks).await;
    let counts = BTreeMap::from([
        ("images".to_string(), rec.count("image") as u64),
        ("pushers".to_string(), cfg.pushers as u64),
        ("image_bytes".to_string(), image_bytes),
    ]);
    let outline = Outline {
        scenario: "push",
        params: cfg,
        ops_unit: "images",
        counts,
        facts,
    };
    Ok(measure.finish(rec, outline).await)
}

/// One CI job's push: every blob, then the manifest.
async fn push(
    reg: &Registry,
    cfg: &Config,
    tag: &str,
    image: &Image,
    timeline: &Arc<Timeline>,
    rec: &mut Recorder,
) -> anyhow::Result<()> {
    // The futures are made first and only then buffered: a closure inside the stream
    // would make the spawned task's future generic over lifetimes, which tokio refuses.
    let uploads: Vec<_> = image
        .layers
        .iter()
        .chain([&image.config])
        .map(|blob| upload(reg, cfg, blob, timeline))
        .collect();
    let results: Vec<_> = futures::stream::iter(uploads)
        .buffer_unordered(cfg.layer_parallelism)
        .collect()
        .await;
    for r in results {
        let (took, size, pushed) = r?;
        rec.record_bytes("blob", took, size);
        if pushed.fallback {
            rec.event("monolithic_fallbacks");
        }
    }
    let started = Instant::now();
    oci::put_manifest(reg, &cfg.repo, tag, OCI_MANIFEST, &image.manifest).await?;
    rec.record("manifest", started.elapsed());
    Ok(())
}

/// One timed blob upload: (time taken, size, how it went).
async fn upload(
    reg: &Registry,
    cfg: &Config,
    blob: &crate::image::Blob,
    timeline: &Arc<Timeline>,
) -> anyhow::Result<(Duration, u64, oci::Pushed)> {
    let started = Instant::now();
    let pushed = oci::push_blob(
        reg,
        &cfg.repo,
        blob,
        cfg.mode,
        cfg.chunk_size,
        Some(timeline.clone()),
    )
    .await?;
    Ok((started.elapsed(), blob.size, pushed))
}
