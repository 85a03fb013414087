//! `console`: the web console's heaviest pages on a large catalogue (Shoal only). Setup
//! (untimed) tags one small image TAGS times in `NS/big` and pushes one image into each of
//! REPOS repositories spread over ten folders (`NS/team-3/repo-42`), then signs in through
//! the sign-in form as the given user. Measured: REQUESTS GETs of each page, one after
//! another, as a person clicking would load them: the repository page newest first, by
//! version and its last page, the namespace's top level, one folder, and a search.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;

use super::measure::{Measure, Outline};
use crate::args::seed_or_clock;
use crate::image::{Image, OCI_MANIFEST};
use crate::oci;
use crate::report::Report;
use crate::stats::Recorder;
use crate::target::{Registry, Targets};

#[derive(Args, Serialize, Clone, Debug)]
pub struct Config {
    /// An existing namespace to fill (the signed-in user pushes there).
    #[arg(long, default_value = "bench")]
    pub namespace: String,
    /// Tags of the one big repository.
    #[arg(long, default_value_t = 10_000)]
    pub tags: u32,
    /// Repositories in the namespace.
    #[arg(long, default_value_t = 1_000)]
    pub repos: u32,
    /// GETs of each page.
    #[arg(long, default_value_t = 30)]
    pub requests: u32,
    /// Manifest PUTs and pushes at once during setup.
    #[arg(long, default_value_t = 8)]
    pub setup_concurrency: usize,
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Runs `count` jobs `job(i)` with at most `width` at once.
async fn in_parallel<F, Fut>(count: u32, width: usize, job: F) -> anyhow::Result<()>
where
    F: Fn(u32) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use futures::StreamExt;
    let mut results = futures::stream::iter(0..count)
        .map(job)
        .buffer_unordered(width);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(())
}

/// Signs in through the console's form and returns the `Cookie` header for its session.
async fn sign_in(reg: &Registry) -> anyhow::Result<String> {
    let Some((user, password)) = reg.credentials() else {
        bail!("the console scenario signs in: give --username and --password");
    };
    let http = crate::tls::client()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page = http.get(reg.url("/ui/sign-in")).send().await?;
    let cookie_of = |resp: &reqwest::Response, name: &str| {
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.split(';').next())
            .map(str::to_string)
    };
    let csrf = cookie_of(&page, "shoal_csrf").context("the sign-in page set no CSRF cookie")?;
    let resp = http
        .post(reg.url("/ui/sign-in"))
        .header("Cookie", format!("shoal_csrf={csrf}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("login", user),
            ("password", password),
            ("next", "/ui/"),
        ])
        .send()
        .await?;
    let session = cookie_of(&resp, "shoal_session")
        .with_context(|| format!("signing in to the console failed: {}", resp.status()))?;
    Ok(format!("shoal_session={session}"))
}

pub async fn run(cfg: &Config, targets: &Targets) -> anyhow::Result<Report> {
    let reg = targets.client(0)?;
    let seed = seed_or_clock(cfg.seed);
    let ns = &cfg.namespace;
    let big = format!("{ns}/big");
    let image = Image::generate(seed, 1, 2048);
    oci::push_image(&reg, &big, "base", &image)
        .await
        .context("pushing the image (untimed)")?;
    in_parallel(cfg.tags, cfg.setup_concurrency, |i| {
        let (reg, big, manifest) = (reg.clone(), big.clone(), image.manifest.clone());
        async move {
            let tag = format!("1.{}.{}", i / 100, i % 100);
            oci::put_manifest(&reg, &big, &tag, OCI_MANIFEST, &manifest).await
        }
    })
    .await
    .context("tagging (untimed)")?;
    in_parallel(cfg.repos, cfg.setup_concurrency, |i| {
        let (reg, image) = (reg.clone(), &image);
        let repo = format!("{ns}/team-{}/repo-{i}", i % 10);
        async move { oci::push_image(&reg, &repo, "v1", image).await }
    })
    .await
    .context("pushing repositories (untimed)")?;
    let cookie = sign_in(&reg).await?;
    let http = crate::tls::client().build()?;
    let last_page = cfg.tags.div_ceil(50);
    let pages: [(&'static str, String); 6] = [
        ("repository newest first", format!("/ui/r/{big}")),
        ("repository by version", format!("/ui/r/{big}?sort=semver")),
        (
            "repository last page",
            format!("/ui/r/{big}?page={last_page}"),
        ),
        ("namespace top level", format!("/ui/n/{ns}")),
        ("namespace folder", format!("/ui/n/{ns}?path=team-3/")),
        ("namespace search", format!("/ui/n/{ns}?q=repo-99")),
    ];
    let facts = BTreeMap::from([
        ("namespace".to_string(), ns.clone()),
        ("repository".to_string(), big.clone()),
    ]);

    let measure = Measure::start(targets).await;
    let timeline = measure.timeline();
    let mut rec = Recorder::default();
    for (phase, path) in &pages {
        for _ in 0..cfg.requests {
            let started = Instant::now();
            let got = async {
                let resp = http
                    .get(reg.url(path))
                    .header("Cookie", &cookie)
                    .send()
                    .await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                if !status.is_success() {
                    bail!("GET {path}: {status}");
                }
                anyhow::Ok(body.len() as u64)
            }
            .await;
            match got {
                Ok(bytes) => {
                    rec.record_bytes(phase, started.elapsed(), bytes);
                    timeline.op();
                }
                Err(e) => rec.error(&e),
            }
        }
    }
    let counts = BTreeMap::from([
        ("tags".to_string(), u64::from(cfg.tags)),
        ("repositories".to_string(), u64::from(cfg.repos)),
    ]);
    let outline = Outline {
        scenario: "console",
        params: cfg,
        ops_unit: "page GETs",
        counts,
        facts,
    };
    Ok(measure.finish(rec, outline).await)
}
