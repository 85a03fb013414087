//! The comparison's scenarios: untimed setup shared by every target, then rounds in which
//! the targets take turns (A, B, A, B, …), so a drift of the machine over the run (page
//! cache, thermal, the neighbour's build) spreads over all of them instead of favouring one.
//!
//! Each run is the library's own scenario (`scenarios::<name>::run`) with a `Config` built
//! here, so a comparison measures exactly what `shoal-bench <scenario>` measures. A run that
//! fails is recorded with its error and the comparison goes on: one peer's failure should
//! not throw away the others' figures.
//!
//! Targets ("subjects") by name: `shoal` (single node, embedded origin), `shoal-edge`
//! (node 1 of the region alone, serving from its cache), `shoal-region` (all three nodes,
//! clients spread over them), `distribution`, `distribution-proxy` (pull-through cache in
//! front of `distribution`), `nginx` (static files); for `https-get`, `shoal-https`,
//! `nginx-https` and `distribution-https`, the same servers listening with TLS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::peers::{blob_gets_logged, log_len};
use super::plan::{Plan, Which};
use super::ratios::figures;
use crate::args::{seed_or_clock, AuthMode, TargetArgs};
use crate::image::{Blob, Image};
use crate::oci::{self, UploadMode};
use crate::report::Report;
use crate::scenarios::{blob_get, manifest_rps, pull_storm, push, wait_visible};
use crate::target::Targets;

const REPO_BLOB: &str = "bench/blob";
const REPO_MANIFESTS: &str = "bench/manifests";
const REPO_PUSH: &str = "bench/push";
const REPO_STORM: &str = "bench/pull-storm";

/// One target of the comparison.
#[derive(Serialize, Debug, Clone)]
pub struct Subject {
    pub name: &'static str,
    pub urls: Vec<String>,
    /// Server processes watched for CPU and peak RSS.
    pub pids: Vec<u32>,
    #[serde(skip)]
    pub credentials: Option<(String, String)>,
    /// Where images go before a pull, when the pulls come from a pull-through proxy (which
    /// takes no pushes): its upstream.
    pub push_to: Option<String>,
    /// The upstream's log, whose blob GETs are this subject's origin fetches.
    pub origin_log: Option<PathBuf>,
}

impl Subject {
    fn targets_of(&self, urls: Vec<String>) -> anyhow::Result<Targets> {
        let (username, password) = self.credentials.clone().unzip();
        Targets::new(&TargetArgs {
            targets: urls,
            username,
            password,
            auth: AuthMode::Basic,
            pids: self.pids.clone(),
            ca_cert: None,
        })
    }

    pub fn targets(&self) -> anyhow::Result<Targets> {
        self.targets_of(self.urls.clone())
    }

    /// The targets with `path` appended (a file on a static server).
    fn targets_at(&self, path: &str) -> anyhow::Result<Targets> {
        self.targets_of(self.urls.iter().map(|u| format!("{u}{path}")).collect())
    }

    fn push_targets(&self) -> anyhow::Result<Targets> {
        let first = self.push_to.clone().unwrap_or_else(|| self.urls[0].clone());
        let mut t = self.clone();
        t.pids.clear();
        t.targets_of(vec![first])
    }
}

/// One scenario run on one target.
#[derive(Serialize, Debug, Clone)]
pub struct Run {
    pub scenario: String,
    pub target: String,
    pub round: usize,
    pub figures: BTreeMap<String, f64>,
    pub errors: u64,
    /// Why the run could not be made at all.
    pub error: Option<String>,
    pub report: Option<Report>,
}

impl Run {
    pub fn clean(&self) -> bool {
        self.error.is_none() && self.errors == 0
    }
}

pub struct Suite<'a> {
    pub plan: &'a Plan,
    pub subjects: &'a [Subject],
    /// The directory nginx serves.
    pub www: &'a Path,
}

impl Suite<'_> {
    fn subject(&self, name: &str) -> Option<&Subject> {
        self.subjects.iter().find(|s| s.name == name)
    }

    fn present(&self, names: &[&str]) -> Vec<&Subject> {
        names.iter().filter_map(|n| self.subject(n)).collect()
    }

    /// Every scenario of the plan, in its order; the runs made.
    pub async fn run(&self) -> anyhow::Result<Vec<Run>> {
        let mut runs = Vec::new();
        let mut blob = None;
        for which in &self.plan.scenarios {
            eprintln!("compare: {}: {}", which.name(), self.plan.describe(*which));
            match which {
                Which::BlobGet | Which::ConcurrentPulls | Which::HttpsGet => {
                    if blob.is_none() {
                        blob = Some(self.share_blob().await?);
                    }
                    let (digest, file) = blob.as_ref().expect("made above");
                    self.blob_gets(*which, digest, file, &mut runs).await;
                }
                Which::ManifestRps => self.manifest_rps(&mut runs).await,
                Which::Push => self.push(&mut runs).await,
                Which::PullStorm => self.pull_storm(&mut runs).await,
            }
        }
        Ok(runs)
    }

    /// Generates the blob of blob-get and concurrent-pulls, pushes it to every registry
    /// that reads it and writes it as nginx's file; returns its digest and file path.
    async fn share_blob(&self) -> anyhow::Result<(String, String)> {
        let (seed, size) = (seed_or_clock(None), self.plan.blob_size);
        let blob = tokio::task::spawn_blocking(move || Blob::generated(seed, size)).await?;
        let registries = [
            "shoal",
            "shoal-edge",
            "shoal-https",
            "distribution",
            "distribution-https",
        ];
        for s in self.present(&registries) {
            let reg = s.push_targets()?.client(0)?;
            oci::push_blob(&reg, REPO_BLOB, &blob, UploadMode::PostPut, 0, None)
                .await
                .with_context(|| format!("pushing the shared blob to {}", s.name))?;
        }
        let file = format!("/blob-{}", blob.digest.trim_start_matches("sha256:"));
        if !self.present(&["nginx", "nginx-https"]).is_empty() {
            let path = self.www.join(&file[1..]);
            let b = blob.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                use std::io::Write as _;
                let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
                for c in b.chunks(0, b.size) {
                    f.write_all(&c)?;
                }
                f.flush()
            })
            .await?
            .context("writing nginx's copy of the blob")?;
        }
        Ok((blob.digest, file))
    }

    async fn blob_gets(&self, which: Which, digest: &str, file: &str, runs: &mut Vec<Run>) {
        let (names, streams): (&[&str], usize) = match which {
            Which::BlobGet => (
                &["shoal", "shoal-edge", "nginx", "distribution"],
                self.plan.blob_streams,
            ),
            Which::HttpsGet => (
                &["shoal", "shoal-https", "nginx-https", "distribution-https"],
                self.plan.blob_streams,
            ),
            _ => (&["shoal", "shoal-edge", "nginx"], self.plan.rss_streams),
        };
        for round in 1..=self.plan.rounds {
            for s in self.present(names) {
                let plain = s.name.starts_with("nginx");
                let cfg = blob_get::Config {
                    size: self.plan.blob_size,
                    streams,
                    ranged: false,
                    digest: Some(digest.to_string()),
                    repo: REPO_BLOB.into(),
                    rounds: 1,
                    warmup: 1,
                    seed: None,
                    verify: self.plan.verify,
                    plain,
                };
                let result = async {
                    let targets = if plain {
                        s.targets_at(file)?
                    } else {
                        s.targets()?
                    };
                    blob_get::run(&cfg, &targets).await
                }
                .await;
                record(runs, which.name(), s, round, result, "stream", None);
            }
        }
    }

    async fn manifest_rps(&self, runs: &mut Vec<Run>) {
        let cfg = manifest_rps::Config {
            concurrency: self.plan.rps_concurrency,
            seconds: self.plan.rps_seconds,
            repo: REPO_MANIFESTS.into(),
            reuse: None,
            seed: None,
        };
        for round in 1..=self.plan.rounds {
            for s in self.present(&["shoal", "distribution"]) {
                let result = async { manifest_rps::run(&cfg, &s.targets()?).await }.await;
                record(runs, "manifest-rps", s, round, result, "manifest", None);
            }
        }
    }

    async fn push(&self, runs: &mut Vec<Run>) {
        for round in 1..=self.plan.rounds {
            for s in self.present(&["shoal", "distribution"]) {
                // Distribution answers a monolithic POST with 202 and wants the body again
                // in a PUT, so its fastest single-request-body form is POST then PUT.
                let mode = if s.name == "distribution" {
                    UploadMode::PostPut
                } else {
                    UploadMode::Monolithic
                };
                let cfg = push::Config {
                    pushers: 1,
                    layers: 1,
                    layer_size: self.plan.push_size,
                    mode,
                    chunk_size: 8 << 20,
                    layer_parallelism: 1,
                    repo: REPO_PUSH.into(),
                    seed: None,
                };
                let result = async { push::run(&cfg, &s.targets()?).await }.await;
                record(runs, "push", s, round, result, "image", None);
            }
        }
    }

    /// Per round: one cold pull on each target, then the storm on each; each on a fresh
    /// image pushed just before (untimed), so nothing of it is cached anywhere.
    async fn pull_storm(&self, runs: &mut Vec<Run>) {
        let phases = [("cold-pull", 1), ("pull-storm", self.plan.storm_clients)];
        for round in 1..=self.plan.rounds {
            for (scenario, clients) in phases {
                for s in self.present(&["shoal-region", "distribution-proxy"]) {
                    let mut logged = None;
                    let result = self.one_pull(s, clients, &mut logged).await;
                    record(runs, scenario, s, round, result, "image", logged);
                }
            }
        }
    }

    async fn one_pull(
        &self,
        s: &Subject,
        clients: usize,
        logged: &mut Option<u64>,
    ) -> anyhow::Result<Report> {
        let seed = seed_or_clock(None);
        let size = self.plan.storm_size;
        let image = tokio::task::spawn_blocking(move || Image::generate(seed, 1, size)).await?;
        let tag = format!("cold-{seed:016x}");
        oci::push_image(&s.push_targets()?.client(0)?, REPO_STORM, &tag, &image)
            .await
            .context("pushing the image to pull (untimed)")?;
        let targets = s.targets()?;
        wait_visible(&targets, REPO_STORM, &tag).await?;
        let from = s.origin_log.as_deref().map(log_len);
        let cfg = pull_storm::Config {
            clients,
            layers: 1,
            layer_size: size,
            layer_parallelism: 3,
            repo: REPO_STORM.into(),
            reuse: Some(tag),
            seed: None,
            verify: self.plan.verify,
            push_to: None,
            pull_repo: None,
        };
        let report = pull_storm::run(&cfg, &targets).await?;
        if let (Some(log), Some(from)) = (&s.origin_log, from) {
            let digests: Vec<String> = image.blobs().map(|b| b.digest.clone()).collect();
            *logged = Some(settled_count(log, from, &digests).await);
        }
        Ok(report)
    }
}

/// The upstream's count of blob GETs once it stops growing: the proxy's fill of its own
/// store may finish, and be logged, a moment after the last client has its bytes.
async fn settled_count(log: &Path, from: u64, digests: &[String]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = blob_gets_logged(log, from, digests);
    let mut since = Instant::now();
    while Instant::now() < deadline && since.elapsed() < Duration::from_millis(750) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let now = blob_gets_logged(log, from, digests);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    last
}

fn record(
    runs: &mut Vec<Run>,
    scenario: &str,
    s: &Subject,
    round: usize,
    result: anyhow::Result<Report>,
    main_phase: &str,
    logged: Option<u64>,
) {
    let run = match result {
        Ok(report) => Run {
            scenario: scenario.into(),
            target: s.name.into(),
            round,
            figures: figures(&report, main_phase, logged),
            errors: report.errors,
            error: None,
            report: Some(report),
        },
        Err(e) => Run {
            scenario: scenario.into(),
            target: s.name.into(),
            round,
            figures: BTreeMap::new(),
            errors: 1,
            error: Some(format!("{e:#}")),
            report: None,
        },
    };
    eprintln!("compare:   round {round} {:<18} {}", s.name, progress(&run));
    runs.push(run);
}

/// The figures worth seeing while a long comparison runs.
fn progress(run: &Run) -> String {
    if let Some(e) = &run.error {
        return format!("failed: {e}");
    }
    let f = |k: &str| run.figures.get(k).copied().unwrap_or(f64::NAN);
    let main = match run.scenario.as_str() {
        "manifest-rps" => format!(
            "{:.0} requests/s, p99 {:.2} ms",
            f("ops_per_s"),
            f("p99_ms")
        ),
        "cold-pull" | "pull-storm" => format!(
            "{:.2} s, {:.0} origin fetches",
            f("elapsed_s"),
            f("origin_fetches")
        ),
        "concurrent-pulls" => format!(
            "{:.0} MB/s, peak RSS {:.0} MiB",
            f("mb_per_s"),
            f("server_rss_mib")
        ),
        _ => format!("{:.0} MB/s", f("mb_per_s")),
    };
    if run.errors > 0 {
        format!("{main} ({} errors)", run.errors)
    } else {
        main
    }
}
