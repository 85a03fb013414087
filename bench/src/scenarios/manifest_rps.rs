//! `manifest-rps`: C clients, each with one connection of its own, GET one manifest by tag
//! back to back for T seconds, with containerd's Accept header. This is the metadata path
//! alone (Shoal answers from its local replica), so the figure is requests per second and
//! the latency tail at that concurrency. Requests go through `lean` connections (set up
//! and signed in through the normal client first), so the generator's CPU share stays small
//! next to the server's on a machine they share.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;

use super::measure::{Measure, Outline};
use super::wait_visible;
use crate::args::{check_repo, positive, seed_or_clock};
use crate::image::Image;
use crate::lean::Connection;
use crate::oci;
use crate::report::Report;
use crate::stats::{gather, Recorder, Timeline};
use crate::target::{Access, Targets};

#[derive(Args, Serialize, Clone, Debug)]
pub struct Config {
    /// Clients sending at once, each on its own connection.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[arg(long, default_value = "bench/manifests")]
    pub repo: String,
    /// GET this existing tag of --repo instead of pushing a small image first.
    #[arg(long, value_name = "TAG")]
    pub reuse: Option<String>,
    #[arg(long)]
    pub seed: Option<u64>,
}

pub async fn run(cfg: &Config, targets: &Targets) -> anyhow::Result<Report> {
    check_repo(&cfg.repo)?;
    positive("--concurrency", cfg.concurrency)?;
    if !(cfg.seconds > 0.0 && cfg.seconds.is_finite()) {
        bail!("--seconds must be a positive number");
    }
    let tag = match &cfg.reuse {
        Some(tag) => tag.clone(),
        None => {
            let seed = seed_or_clock(cfg.seed);
            let image = Image::generate(seed, 1, 1024);
            let tag = format!("rps-{seed:016x}");
            oci::push_image(&targets.client(0)?, &cfg.repo, &tag, &image)
                .await
                .context("pushing the image (untimed)")?;
            tag
        }
    };
    wait_visible(targets, &cfg.repo, &tag).await?;
    let facts = BTreeMap::from([
        ("repo".to_string(), cfg.repo.clone()),
        ("tag".to_string(), tag.clone()),
    ]);

    let clients = connect(targets, cfg.concurrency, &cfg.repo, &tag).await?;
    let measure = Measure::start(targets).await;
    let rec = get_for(clients, cfg.seconds, measure.timeline()).await;
    let counts = BTreeMap::from([("requests".to_string(), rec.count("manifest") as u64)]);
    let outline = Outline {
        scenario: "manifest-rps",
        params: cfg,
        ops_unit: "requests",
        counts,
        facts,
    };
    Ok(measure.finish(rec, outline).await)
}

/// `concurrency` lean connections to GET `repo:tag`, each signed in first.
pub async fn connect(
    targets: &Targets,
    concurrency: usize,
    repo: &str,
    tag: &str,
) -> anyhow::Result<Vec<Connection>> {
    let mut clients = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let reg = targets.client(i)?;
        let url = reg.url(&format!("/v2/{repo}/manifests/{tag}"));
        let auth = reg.authorization(&url, Access::Pull(repo)).await?;
        let conn = Connection::open(&url, oci::MANIFEST_ACCEPT, auth.as_deref())
            .await
            .with_context(|| format!("connecting client {i}"))?;
        clients.push(conn);
    }
    Ok(clients)
}

/// Each connection GETs its manifest back to back for `seconds` (phase `manifest`).
pub async fn get_for(clients: Vec<Connection>, seconds: f64, timeline: Arc<Timeline>) -> Recorder {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let tasks = clients
        .into_iter()
        .map(|mut conn| {
            let timeline = timeline.clone();
            tokio::spawn(async move {
                let mut rec = Recorder::default();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    match conn.get().await {
                        Ok(_) => {
                            rec.record("manifest", started.elapsed());
                            timeline.op();
                        }
                        Err(e) => {
                            rec.error(&e);
                            // A failing target must not turn the run into a busy loop.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                rec
            })
        })
        .collect();
    gather(tasks).await
}
