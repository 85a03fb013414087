//! `tag-push`: the second scenario, kept with its flags: push one small image, then PUT its
//! manifest under COUNT new tags one after another and report the latency percentiles.
//! Every PUT is a Raft write; through a follower it includes forwarding to the leader and
//! waiting for the local replica.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::measure::{Measure, Outline};
use crate::args::{check_repo, seed_or_clock};
use crate::image::{Image, OCI_MANIFEST};
use crate::oci;
use crate::report::Report;
use crate::stats::Recorder;
use crate::target::Targets;

#[derive(Args, Serialize, Clone, Debug)]
pub struct Config {
    #[arg(long, default_value = "bench/tags")]
    pub repo: String,
    /// Manifest PUTs, each under a new tag.
    #[arg(long, default_value_t = 200)]
    pub count: u32,
    #[arg(long)]
    pub seed: Option<u64>,
}

pub async fn run(cfg: &Config, targets: &Targets) -> anyhow::Result<Report> {
    check_repo(&cfg.repo)?;
    let reg = targets.client(0)?;
    let seed = seed_or_clock(cfg.seed);
    let image = Image::generate(seed, 1, 4096);
    let prefix = format!("t{seed:016x}-");
    oci::push_image(&reg, &cfg.repo, &format!("{prefix}base"), &image)
        .await
        .context("pushing the image (untimed)")?;
    let facts = BTreeMap::from([
        ("repo".to_string(), cfg.repo.clone()),
        ("tag_prefix".to_string(), prefix.clone()),
    ]);

    let measure = Measure::start(targets).await;
    let timeline = measure.timeline();
    let mut rec = Recorder::default();
    for i in 0..cfg.count {
        let started = Instant::now();
        match oci::put_manifest(
            &reg,
            &cfg.repo,
            &format!("{prefix}{i}"),
            OCI_MANIFEST,
            &image.manifest,
        )
        .await
        {
            Ok(()) => {
                rec.record("manifest-put", started.elapsed());
                timeline.op();
            }
            Err(e) => rec.error(&e),
        }
    }
    let counts = BTreeMap::from([("tags".to_string(), rec.count("manifest-put") as u64)]);
    let outline = Outline {
        scenario: "tag-push",
        params: cfg,
        ops_unit: "manifest PUTs",
        counts,
        facts,
    };
    Ok(measure.finish(rec, outline).await)
}
