//! Shoal as the comparison runs it, with the real binaries and CLI, as an operator would:
//! - a single node with the embedded origin;
//! - a region: `shoal cluster init` makes the CA, `shoal cluster cert` a certificate per
//!   node, one `shoal-origin serve` holds the blobs (`SHOAL_ORIGIN_SECRET`), node 1 starts
//!   with `--bootstrap` and the others `--join` it once it leads, each with its own QUIC
//!   cluster port, until the leader lists every member as a voter.
//!
//! Every node starts with `SHOAL_ADMIN_PASSWORD` and the `bench` namespace is created
//! through the management API. The per-IP limits are off: /metrics is scraped anonymously
//! and a benchmark's request rate is not an attack.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use super::process::{free_tcp_port, free_udp_port, Fleet};

pub const NAMESPACE: &str = "bench";
pub const ADMIN: &str = "admin";

/// The `shoal` and `shoal-origin` binaries compared.
#[derive(Serialize, Debug, Clone)]
pub struct Binaries {
    pub shoal: PathBuf,
    pub origin: PathBuf,
}

impl Binaries {
    /// `shoal` next to this `shoal-bench` (the same target directory) unless given;
    /// `shoal-origin` next to `shoal` unless given.
    pub fn find(shoal: Option<&Path>, origin: Option<&Path>) -> anyhow::Result<Binaries> {
        let shoal = match shoal {
            Some(p) => p.to_path_buf(),
            None => std::env::current_exe()
                .context("where shoal-bench is")?
                .with_file_name("shoal"),
        };
        let origin = match origin {
            Some(p) => p.to_path_buf(),
            None => shoal.with_file_name("shoal-origin"),
        };
        for p in [&shoal, &origin] {
            if !p.is_file() {
                bail!(
                    "{} is missing: build it with `cargo build --release --workspace --bins`, \
                     or give --shoal / --shoal-origin",
                    p.display()
                );
            }
        }
        Ok(Binaries { shoal, origin })
    }

    /// Whether the binary looks like a debug build (its figures would mean little).
    pub fn is_debug(&self) -> bool {
        self.shoal.components().any(|c| c.as_os_str() == "debug")
    }
}

/// A running single node or region, as the report records it.
#[derive(Serialize, Debug, Clone)]
pub struct Topology {
    /// Node API URLs, node 1 first.
    pub urls: Vec<String>,
    /// Node pids, in the same order.
    pub pids: Vec<u32>,
    pub origin_url: Option<String>,
    pub origin_pid: Option<u32>,
    pub dir: PathBuf,
}

/// The admin's password and the origin's secret, made fresh for each comparison.
#[derive(Clone)]
pub struct Secrets {
    pub admin_password: String,
    pub origin_secret: String,
}

impl Secrets {
    pub fn fresh() -> Secrets {
        let r = || format!("{:016x}", crate::args::seed_or_clock(None));
        Secrets {
            admin_password: format!("bench-{}-{}", r(), r()),
            origin_secret: format!("origin-{}-{}", r(), r()),
        }
    }
}

/// A command for a Shoal binary that only its flags configure, not whatever `SHOAL_*`
/// variables the caller's shell holds.
fn scrubbed(binary: &Path) -> Command {
    let mut cmd = Command::new(binary);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SHOAL_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn node_command(bins: &Binaries, data: &Path, secrets: &Secrets) -> Command {
    let mut cmd = scrubbed(&bins.shoal);
    cmd.arg("serve")
        .arg("--data")
        .arg(data)
        .args([
            "--anonymous-rate-limit",
            "off",
            "--failed-login-limit",
            "off",
            "--shutdown-timeout",
            "1",
        ])
        .env("SHOAL_ADMIN_PASSWORD", &secrets.admin_password);
    cmd
}

/// A single node with the embedded origin, in `dir`.
pub async fn start_single(
    fleet: &mut Fleet,
    bins: &Binaries,
    dir: &Path,
    secrets: &Secrets,
    tls: Option<&crate::tls::ServerCert>,
) -> anyhow::Result<Topology> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let mut cmd = node_command(bins, &data, secrets);
    cmd.args(["--listen", "127.0.0.1:0"]);
    if let Some(t) = tls {
        cmd.arg("--tls-cert")
            .arg(&t.cert)
            .arg("--tls-key")
            .arg(&t.key);
    }
    let (pid, url) = fleet
        .spawn_listening("shoal", cmd, &dir.join("shoal.log"))
        .await?;
    create_namespace(&url, secrets).await?;
    Ok(Topology {
        urls: vec![url],
        pids: vec![pid],
        origin_url: None,
        origin_pid: None,
        dir: dir.to_path_buf(),
    })
}

/// A region of `n` voters and a separate origin, in `dir`.
pub async fn start_region(
    fleet: &mut Fleet,
    bins: &Binaries,
    dir: &Path,
    n: usize,
    secrets: &Secrets,
) -> anyhow::Result<Topology> {
    let ca = dir.join("ca");
    cli(
        bins,
        &["cluster", "init", "--dir", &ca.display().to_string()],
    )?;
    for id in 1..=n {
        let id = id.to_string();
        cli(
            bins,
            &[
                "cluster",
                "cert",
                "--dir",
                &ca.display().to_string(),
                "--node-id",
                &id,
            ],
        )?;
    }
    let mut origin = scrubbed(&bins.origin);
    origin
        .args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(dir.join("origin"))
        .env("SHOAL_ORIGIN_SECRET", &secrets.origin_secret);
    let (origin_pid, origin_url) = fleet
        .spawn_listening("shoal-origin", origin, &dir.join("origin.log"))
        .await?;

    let mut urls: Vec<String> = Vec::new();
    let mut pids = Vec::new();
    for id in 1..=n {
        let api = free_tcp_port()?;
        let cluster = free_udp_port()?;
        let data = dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&data)?;
        let mut cmd = node_command(bins, &data, secrets);
        cmd.args(["--origin", &origin_url])
            .args(["--node-id", &id.to_string()])
            .args(["--listen", &format!("127.0.0.1:{api}")])
            .args(["--cluster-listen", &format!("127.0.0.1:{cluster}")])
            .arg("--cluster-tls")
            .arg(ca.join(format!("node-{id}")))
            .args(["--voters", &n.to_string()])
            .env("SHOAL_ORIGIN_SECRET", &secrets.origin_secret);
        match urls.first() {
            None => cmd.arg("--bootstrap"),
            Some(first) => cmd.args(["--join", first.as_str()]),
        };
        let log = dir.join(format!("node-{id}.log"));
        let (pid, url) = fleet
            .spawn_listening(&format!("shoal node {id}"), cmd, &log)
            .await?;
        if id == 1 {
            wait_cluster(&url, secrets, "node 1 leads the new region", |s| {
                s["leader"] == 1
            })
            .await?;
        }
        urls.push(url);
        pids.push(pid);
    }
    wait_cluster(&urls[0], secrets, &format!("{n} voters"), |s| {
        let members = s["members"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        s["leader"] == s["node_id"]
            && members.len() == n
            && members.iter().all(|m| m["voter"] == true)
    })
    .await?;
    create_namespace(&urls[0], secrets).await?;
    Ok(Topology {
        urls,
        pids,
        origin_url: Some(origin_url),
        origin_pid: Some(origin_pid),
        dir: dir.to_path_buf(),
    })
}

/// Runs `shoal <args>` to completion.
fn cli(bins: &Binaries, args: &[&str]) -> anyhow::Result<()> {
    let out = scrubbed(&bins.shoal)
        .args(args)
        .output()
        .with_context(|| format!("running shoal {args:?}"))?;
    if !out.status.success() {
        bail!(
            "shoal {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Polls `GET /api/v1/cluster` on `url` (as the admin) until `pred` holds.
async fn wait_cluster(
    url: &str,
    secrets: &Secrets,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<()> {
    let http = crate::tls::client().build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: serde_json::Value = match http
            .get(format!("{url}/api/v1/cluster"))
            .basic_auth(ADMIN, Some(&secrets.admin_password))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        if pred(&status) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the region never reached {what}; {url} says {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST /api/v1/namespaces {"name": "bench"}` as the admin.
async fn create_namespace(url: &str, secrets: &Secrets) -> anyhow::Result<()> {
    let resp = crate::tls::client()
        .build()?
        .post(format!("{url}/api/v1/namespaces"))
        .basic_auth(ADMIN, Some(&secrets.admin_password))
        .json(&serde_json::json!({ "name": NAMESPACE }))
        .send()
        .await
        .with_context(|| format!("creating namespace {NAMESPACE} on {url}"))?;
    if resp.status() != 201 {
        bail!(
            "creating namespace {NAMESPACE} on {url}: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(())
}
