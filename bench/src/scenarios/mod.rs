//! The scenarios, one file each, and the command enum that names them.
//!
//! Each scenario is `run(&Config, &Targets) -> Report`: its flags are a clap `Args` struct
//! that is also plain data, so a comparison builds the same `Config` in code and runs it
//! against each registry in turn. Setup (generating and pushing data) happens before
//! `Measure::start`; everything after it is the load being measured.
//!
//! - `pull_storm`: N simulated Kubernetes nodes pulling one image at once;
//! - `manifest_rps`: manifest GETs by tag at a fixed concurrency for a fixed time;
//! - `push`: M concurrent CI pushes of fresh images;
//! - `blob_get`: one large blob in parallel full GETs or in Range parts;
//! - `blob` and `tag_push`: the first two scenarios, kept with their flags;
//! - `gc`: a large catalogue collected while pulls and pushes go on;
//! - `console`: the console's repository and namespace pages on 10 000 tags and 1 000
//!   repositories;
//! - `catalog`: the metadata at scale: a catalogue of many tags filled through manifest
//!   PUTs, then its listings, manifest GETs and what it takes on disk.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Subcommand;

use crate::oci;
use crate::report::Report;
use crate::target::Targets;

pub mod blob;
pub mod blob_get;
pub mod catalog;
pub mod console;
pub mod gc;
pub mod manifest_rps;
pub mod measure;
pub mod pull_storm;
pub mod push;
pub mod tag_push;

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// N simulated Kubernetes nodes pull one image at once, the way containerd does.
    PullStorm(pull_storm::Config),
    /// Manifest GETs by tag at concurrency C for T seconds.
    ManifestRps(manifest_rps::Config),
    /// M concurrent CI pushes of fresh images (monolithic, post-put or chunked uploads).
    Push(push::Config),
    /// One large blob fetched by K parallel streams, or as K Range parts of one GET.
    BlobGet(blob_get::Config),
    /// Push one blob of SIZE bytes with a streamed upload, then GET it back GETS times.
    Blob(blob::Config),
    /// Re-tag one small image COUNT times and report manifest PUT latency percentiles.
    TagPush(tag_push::Config),
    /// A large catalogue, a garbage collection run on it, and pull/push throughput idle and
    /// while it runs (Shoal only; needs a cluster admin's credentials).
    Gc(gc::Config),
    /// The web console's repository and namespace pages on a large catalogue (Shoal only;
    /// signs in with --username/--password).
    Console(console::Config),
    /// The metadata at scale: TAGS tags over REPOS repositories filled by manifest PUTs,
    /// then listing pages, manifest GETs, and the metadata's disk and snapshot size.
    Catalog(catalog::Config),
}

impl Scenario {
    pub async fn run(&self, targets: &Targets) -> anyhow::Result<Report> {
        match self {
            Scenario::PullStorm(c) => pull_storm::run(c, targets).await,
            Scenario::ManifestRps(c) => manifest_rps::run(c, targets).await,
            Scenario::Push(c) => push::run(c, targets).await,
            Scenario::BlobGet(c) => blob_get::run(c, targets).await,
            Scenario::Blob(c) => blob::run(c, targets).await,
            Scenario::TagPush(c) => tag_push::run(c, targets).await,
            Scenario::Gc(c) => gc::run(c, targets).await,
            Scenario::Console(c) => console::run(c, targets).await,
            Scenario::Catalog(c) => catalog::run(c, targets).await,
        }
    }
}

/// How long setup waits for every target to see what was pushed through the first one (a
/// follower applies the push a moment after the leader).
const VISIBLE_WITHIN: Duration = Duration::from_secs(30);

/// Waits until every target answers a HEAD of `repo:tag` (untimed; a HEAD reads no blob,
/// so a cold storm stays cold).
pub async fn wait_visible(targets: &Targets, repo: &str, tag: &str) -> anyhow::Result<()> {
    for i in 0..targets.urls().len() {
        let reg = targets.client(i)?;
        let deadline = Instant::now() + VISIBLE_WITHIN;
        while !oci::manifest_exists(&reg, repo, tag).await? {
            if Instant::now() > deadline {
                bail!(
                    "{}: {repo}:{tag} did not appear within {VISIBLE_WITHIN:?}",
                    reg.base
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
