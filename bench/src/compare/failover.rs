//! `shoal-bench failover`: how long a region takes no writes when its leader dies.
//!
//! Each round starts a fresh region of `--nodes` voters with its own origin (as `compare`
//! does), keeps a writer on each follower busy creating namespaces (the smallest write that
//! commits through Raft), kills the leader with SIGKILL, and measures from the kill to:
//! - the first write acknowledged that was sent after the kill (what a client sees);
//! - the moment a surviving node reports a new leader.
//!
//! A fresh region per round keeps the rounds independent: the killed node's restart and
//! catch-up are not part of what is measured.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::process::Fleet;
use super::shoal::{start_region, Binaries, Secrets, ADMIN};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// How many times to kill a leader (a fresh region each time).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Voters in the region.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// The `shoal` binary (default: next to shoal-bench).
    #[arg(long)]
    pub shoal: Option<PathBuf>,
    /// The `shoal-origin` binary (default: next to `shoal`).
    #[arg(long)]
    pub shoal_origin: Option<PathBuf>,
    /// Where the regions' data goes (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// One round's figures, in milliseconds after the kill.
#[derive(Debug, serde::Serialize)]
pub struct Round {
    pub killed: u64,
    pub first_write_ms: f64,
    pub new_leader_ms: f64,
    pub new_leader: u64,
    pub failed_writes: usize,
}

/// What a writer saw: when each write was sent and answered, and whether it was acknowledged.
type Outcomes = Arc<Mutex<Vec<(Instant, Instant, bool)>>>;

pub async fn run(args: &Args) -> anyhow::Result<Vec<Round>> {
    if args.nodes < 3 {
        bail!("a region needs at least 3 voters to survive its leader");
    }
    let bins = Binaries::find(args.shoal.as_deref(), args.shoal_origin.as_deref())?;
    if bins.is_debug() {
        eprintln!("failover: {} is a debug build", bins.shoal.display());
    }
    let temp = tempfile::tempdir()?;
    let base = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let dir = base.join(format!("round-{round}"));
        std::fs::create_dir_all(&dir)?;
        let r = one_round(&bins, &dir, args.nodes)
            .await
            .with_context(|| format!("round {round}"))?;
        println!(
            "round {round}: killed leader {}; first write acknowledged {:.0} ms after the kill; node {} led after {:.0} ms; {} writes failed meanwhile",
            r.killed, r.first_write_ms, r.new_leader, r.new_leader_ms, r.failed_writes
        );
        rounds.push(r);
    }
    let mut firsts: Vec<f64> = rounds.iter().map(|r| r.first_write_ms).collect();
    firsts.sort_by(f64::total_cmp);
    println!(
        "failover over {} rounds: first write after the kill, median {:.0} ms, max {:.0} ms",
        rounds.len(),
        firsts[firsts.len() / 2],
        firsts.last().copied().unwrap_or_default()
    );
    Ok(rounds)
}

async fn one_round(bins: &Binaries, dir: &std::path::Path, n: usize) -> anyhow::Result<Round> {
    let secrets = Secrets::fresh();
    let mut fleet = Fleet::default();
    let region = start_region(&mut fleet, bins, dir, n, &secrets).await?;
    let http = crate::tls::client()
        .timeout(Duration::from_secs(5))
        .build()?;
    let leader = cluster(&http, &region.urls[0], &secrets)
        .await?
        .get("leader")
        .and_then(|l| l.as_u64())
        .context("no leader after start")?;
    let outcomes: Outcomes = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    // Writers go through the followers, which forward to whoever leads.
    for (i, url) in region.urls.iter().enumerate() {
        if i as u64 + 1 == leader {
            continue;
        }
        let (http, url, secrets) = (http.clone(), url.clone(), secrets.clone());
        let (outcomes, stop) = (outcomes.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut k = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                k += 1;
                let sent = Instant::now();
                let ok = http
                    .post(format!("{url}/api/v1/namespaces"))
                    .basic_auth(ADMIN, Some(&secrets.admin_password))
                    .json(&serde_json::json!({ "name": format!("fo-{i}-{k}") }))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 201);
                outcomes.lock().unwrap().push((sent, Instant::now(), ok));
                if !ok {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let victim = region.pids[leader as usize - 1];
    let killed = Instant::now();
    // SAFETY: kill(2) on a process this round started.
    unsafe {
        libc::kill(victim as libc::pid_t, libc::SIGKILL);
    }
    let survivors: Vec<&String> = (1..=n as u64)
        .filter(|&id| id != leader)
        .map(|id| &region.urls[id as usize - 1])
        .collect();
    let (new_leader, new_leader_ms) = loop {
        let mut found = None;
        for url in &survivors {
            if let Ok(s) = cluster(&http, url, &secrets).await {
                if let Some(l) = s.get("leader").and_then(|l| l.as_u64()) {
                    if l != leader {
                        found = Some(l);
                    }
                }
            }
        }
        if let Some(l) = found {
            break (l, killed.elapsed().as_secs_f64() * 1e3);
        }
        if killed.elapsed() > Duration::from_secs(30) {
            bail!("no new leader within 30 s of killing node {leader}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let first_write_ms = loop {
        let first = outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|(sent, _, ok)| *ok && *sent >= killed)
            .map(|(_, done, _)| done.duration_since(killed).as_secs_f64() * 1e3)
            .reduce(f64::min);
        if let Some(ms) = first {
            break ms;
        }
        if killed.elapsed() > Duration::from_secs(30) {
            bail!("no write acknowledged within 30 s of killing node {leader}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let failed_writes = outcomes
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, done, ok)| !ok && *done >= killed)
        .count();
    drop(fleet);
    Ok(Round {
        killed: leader,
        first_write_ms,
        new_leader_ms,
        new_leader,
        failed_writes,
    })
}

async fn cluster(
    http: &reqwest::Client,
    url: &str,
    secrets: &Secrets,
) -> anyhow::Result<serde_json::Value> {
    Ok(http
        .get(format!("{url}/api/v1/cluster"))
        .basic_auth(ADMIN, Some(&secrets.admin_password))
        .timeout(Duration::from_millis(500))
        .send()
        .await?
        .json()
        .await?)
}
