//! `blob`: the first scenario, kept with its flags: push one large generated blob with a
//! streamed upload (POST, one PATCH carrying all of it, PUT `?digest=`), then GET it back
//! `--gets` times one after another. Push and GETs are timed separately (`push`, `get`
//! phases, each with its MB/s); `blob-get` is the fuller form of the read side.

use std::collections::BTreeMap;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use super::measure::{Measure, Outline};
use crate::args::{check_repo, parse_size, seed_or_clock};
use crate::image::Blob;
use crate::oci::{self, UploadMode};
use crate::report::Report;
use crate::stats::Recorder;
use crate::target::Targets;

#[derive(Args, Serialize, Clone, Debug)]
pub struct Config {
    /// Repository to push into (its namespace must exist on Shoal).
    #[arg(long, default_value = "bench/blob")]
    pub repo: String,
    /// Blob size: bytes or a size with KiB/MiB/GiB.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// GETs of the pushed blob to time, run one after another.
    #[arg(long, default_value_t = 3)]
    pub gets: u32,
    #[arg(long)]
    pub seed: Option<u64>,
}

pub async fn run(cfg: &Config, targets: &Targets) -> anyhow::Result<Report> {
    check_repo(&cfg.repo)?;
    let reg = targets.client(0)?;
    let (seed, size) = (seed_or_clock(cfg.seed), cfg.size);
    let blob = tokio::task::spawn_blocking(move || Blob::generated(seed, size)).await?;
    let facts = BTreeMap::from([
        ("repo".to_string(), cfg.repo.clone()),
        ("digest".to_string(), blob.digest.clone()),
    ]);

    let measure = Measure::start(targets).await;
    let timeline = measure.timeline();
    let mut rec = Recorder::default();
    let started = Instant::now();
    // One PATCH of the whole blob: the chunk size is the blob's size.
    let pushed = oci::push_blob(
        &reg,
        &cfg.repo,
        &blob,
        UploadMode::Chunked,
        size.max(1),
        Some(timeline.clone()),
    )
    .await;
    match pushed {
        Ok(_) => {
            rec.record_bytes("push", started.elapsed(), size);
            timeline.op();
            for _ in 0..cfg.gets {
                let started = Instant::now();
                match oci::get_blob(&reg, &cfg.repo, &blob.digest, None, &timeline, false).await {
                    Ok(got) => {
                        rec.record_bytes("get", started.elapsed(), got.bytes);
                        timeline.op();
                    }
                    Err(e) => {
                        rec.error(&e);
                        break;
                    }
                }
            }
        }
        Err(e) => rec.error(&e),
    }
    let counts = BTreeMap::from([("gets".to_string(), rec.count("get") as u64)]);
    let outline = Outline {
        scenario: "blob",
        params: cfg,
        ops_unit: "transfers",
        counts,
        facts,
    };
    Ok(measure.finish(rec, outline).await)
}
