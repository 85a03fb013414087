//! `blob-get`: one large blob read as fast as the registry can serve it: K full GETs in
//! parallel (`--streams K`; K = 1 is a single stream), or one GET split into K Range parts
//! (`--ranged`), for `--rounds` rounds. With `--pid` the server's peak RSS and CPU seconds
//! per GiB served are reported too, the figures that compare a registry with nginx.
//!
//! The blob is generated and pushed first (or named with `--digest`), untimed; `--warmup`
//! GETs it from every target before the clock starts, so Shoal's cache is warm.
//!
//! With `--plain` each target is the blob's own URL on a static file server (nginx with
//! sendfile, the reference for raw GET speed): no registry API, no push; the size comes
//! from a HEAD and `--digest` only tells `--verify` what to expect.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::measure::{Measure, Outline};
use crate::args::{check_repo, parse_size, positive, seed_or_clock};
use crate::image::Blob;
use crate::oci::{self, UploadMode};
use crate::report::Report;
use crate::stats::{Recorder, Timeline};
use crate::target::{Access, Registry, Targets};

#[derive(Args, Serialize, Clone, Debug)]
pub struct Config {
    /// Size of the generated blob (bytes, KiB, MiB, GiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Parallel streams: full GETs, or Range parts with --ranged.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// Split one GET of the blob into --streams Range requests.
    #[arg(long)]
    pub ranged: bool,
    /// Fetch this existing blob of --repo instead of pushing one.
    #[arg(long)]
    pub digest: Option<String>,
    #[arg(long, default_value = "bench/blob")]
    pub repo: String,
    /// Timed rounds, one after another.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Untimed full GETs from each target before the clock starts.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Hash what arrives and check it (after the clock stops for Range parts).
    #[arg(long)]
    pub verify: bool,
    /// Each --target is the blob's own URL on a static file server (e.g. nginx): GET it
    /// as is, without the registry API. --verify then needs --digest.
    #[arg(long)]
    pub plain: bool,
}

/// Where a stream reads the blob: the registry API, or a plain URL (`--plain`).
#[derive(Clone)]
struct Source {
    repo: String,
    digest: String,
    plain: bool,
}

impl Source {
    async fn get(
        &self,
        reg: &Registry,
        range: Option<(u64, u64)>,
        timeline: &Timeline,
        hash: bool,
    ) -> anyhow::Result<oci::Fetched> {
        if !self.plain {
            return oci::get_blob(reg, &self.repo, &self.digest, range, timeline, hash).await;
        }
        let url = reg.url("");
        oci::get_url(
            reg,
            &url,
            Access::Pull(&self.repo),
            &url,
            range,
            timeline,
            hash,
        )
        .await
    }

    async fn size(&self, reg: &Registry) -> anyhow::Result<u64> {
        if !self.plain {
            return oci::blob_size(reg, &self.repo, &self.digest).await;
        }
        let url = reg.url("");
        oci::url_size(reg, &url, Access::Pull(&self.repo), &url).await
    }
}

pub async fn run(cfg: &Config, targets: &Targets) -> anyhow::Result<Report> {
    check_repo(&cfg.repo)?;
    positive("--streams", cfg.streams)?;
    positive("--rounds", cfg.rounds)?;
    let setup = targets.client(0)?;
    let (blob, digest, size) = match (&cfg.digest, cfg.plain) {
        (d, true) => {
            if cfg.verify && (cfg.ranged || d.is_none()) {
                bail!("--verify with --plain needs --digest, and cannot check --ranged parts");
            }
            let digest = d.clone().unwrap_or_default();
            let size = source(cfg, &digest).size(&setup).await?;
            (None, digest, size)
        }
        (Some(d), false) => {
            if cfg.verify && cfg.ranged {
                bail!("--verify with --ranged needs a blob this run generates (not --digest)");
            }
            let size = oci::blob_size(&setup, &cfg.repo, d).await?;
            (None, d.clone(), size)
        }
        (None, false) => {
            let (seed, size) = (seed_or_clock(cfg.seed), cfg.size);
            let blob = tokio::task::spawn_blocking(move || Blob::generated(seed, size)).await?;
            oci::push_blob(&setup, &cfg.repo, &blob, UploadMode::PostPut, 0, None)
                .await
                .context("pushing the blob (untimed)")?;
            let digest = blob.digest.clone();
            (Some(blob), digest, size)
        }
    };
    if cfg.ranged && size < cfg.streams as u64 {
        bail!(
            "a blob of {size} bytes cannot be split into {} parts",
            cfg.streams
        );
    }
    let src = source(cfg, &digest);
    let untimed = Timeline::start();
    for i in 0..targets.urls().len() {
        let reg = targets.client(i)?;
        wait_for_blob(&reg, &src).await?;
        for _ in 0..cfg.warmup {
            src.get(&reg, None, &untimed, false)
                .await
                .context("warm-up GET")?;
        }
    }
    let facts = BTreeMap::from([
        ("repo".to_string(), cfg.repo.clone()),
        ("digest".to_string(), digest.clone()),
    ]);

    let clients: Vec<Registry> = (0..cfg.streams)
        .map(|i| targets.client(i))
        .collect::<Result<_, _>>()?;
    let parts = split(size, if cfg.ranged { cfg.streams } else { 1 });
    let mut measure = Measure::start(targets).await;
    let mut rec = Recorder::default();
    let mut received = Vec::new();
    for _ in 0..cfg.rounds {
        let started = Instant::now();
        let tasks = clients
            .iter()
            .enumerate()
            .map(|(i, reg)| {
                let (reg, src, timeline) = (reg.clone(), src.clone(), measure.timeline());
                let range = cfg.ranged.then(|| parts[i]);
                let verify = cfg.verify;
                tokio::spawn(async move {
                    let mut rec = Recorder::default();
                    let t = Instant::now();
                    match src.get(&reg, range, &timeline, verify).await {
                        Ok(got) => {
                            rec.record_bytes("stream", t.elapsed(), got.bytes);
                            timeline.op();
                            (rec, Some((range, got.digest)))
                        }
                        Err(e) => {
                            rec.error(&e.context(format!("stream from {}", reg.base)));
                            (rec, None)
                        }
                    }
                })
            })
            .collect::<Vec<_>>();
        let mut round = Recorder::default();
        for t in tasks {
            let (r, got) = t.await?;
            round.merge(r);
            received.extend(got);
        }
        if round.errors == 0 {
            rec.record_bytes("round", started.elapsed(), size);
        }
        rec.merge(round);
    }
    measure.stop();
    if cfg.verify {
        check(&mut rec, blob.as_ref(), &digest, received);
    }
    let counts = BTreeMap::from([
        ("blob_bytes".to_string(), size),
        ("streams".to_string(), rec.count("stream") as u64),
        ("rounds".to_string(), rec.count("round") as u64),
    ]);
    let outline = Outline {
        scenario: "blob-get",
        params: cfg,
        ops_unit: "streams",
        counts,
        facts,
    };
    Ok(measure.finish(rec, outline).await)
}

/// What one stream received: its range (none for a full GET) and the digest of its bytes.
type Received = (Option<(u64, u64)>, Option<String>);

/// `[start, end)` of `parts` nearly equal parts of `size` bytes.
fn split(size: u64, parts: usize) -> Vec<(u64, u64)> {
    let n = parts as u64;
    (0..n).map(|i| (size * i / n, size * (i + 1) / n)).collect()
}

/// Checks the digests of what arrived: a full body against the blob's digest, a part
/// against the same range generated again.
fn check(rec: &mut Recorder, blob: Option<&Blob>, digest: &str, received: Vec<Received>) {
    for (range, got) in received {
        let want = match (range, blob) {
            (None, _) => digest.to_string(),
            (Some((a, b)), Some(blob)) => {
                let mut h = Sha256::new();
                for c in blob.chunks(a, b) {
                    h.update(&c);
                }
                format!("sha256:{}", hex::encode(h.finalize()))
            }
            (Some(_), None) => continue,
        };
        if got.as_deref() != Some(want.as_str()) {
            rec.error(&anyhow::anyhow!(
                "{digest} {range:?}: received {got:?}, expected {want}"
            ));
        }
    }
}

fn source(cfg: &Config, digest: &str) -> Source {
    Source {
        repo: cfg.repo.clone(),
        digest: digest.to_string(),
        plain: cfg.plain,
    }
}

/// Waits until `reg` answers a HEAD of the blob (a region applies the link a moment later
/// on followers).
async fn wait_for_blob(reg: &Registry, src: &Source) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match src.size(reg).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("{} never had the blob", reg.base)))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_blob() {
        let check = |size: u64, n: usize| {
            let parts = split(size, n);
            assert_eq!(parts.len(), n);
            assert_eq!(parts[0].0, 0);
            assert_eq!(parts[n - 1].1, size);
            assert!(
                parts
                    .windows(2)
                    .all(|w| w[0].1 == w[1].0 && w[0].0 < w[0].1),
                "{parts:?}"
            );
        };
        check(10, 3);
        check(1 << 30, 4);
        check(5, 5);
        check(7, 1);
    }
}
