//! `shoal-bench compare`: Shoal side by side with CNCF Distribution and nginx on this
//! machine, from one command (issue 6, item 2). It installs the peers when missing, starts
//! every process it needs on loopback ports of its own in a scratch directory, runs the same
//! scenarios against each target in alternating rounds, stops everything, and prints the
//! medians and the ratios Shoal/peer next to the targets; `--json` holds all of it.
//!
//! Layout:
//! - `plan.rs`: the flags, the full and `--quick` presets, and which processes a plan needs;
//! - `install.rs`: finding docker-registry and nginx, apt-get when missing, versions;
//! - `process.rs`: the `Fleet` of child processes, which all stop when it drops;
//! - `peers.rs`: Distribution (plain and proxy) and nginx, their config files and start;
//! - `shoal.rs`: Shoal as a single node and as a 3-node region with a separate origin;
//! - `start.rs`: the binaries a plan needs, and every process started in order;
//! - `suite.rs`: the scenarios' setup and rounds against the targets;
//! - `ratios.rs`: the figures of a run and their medians; `goals.rs`: the targets
//!   and the ratios Shoal/peer against them; `summary.rs`: their table (all three pure);
//! - `failover.rs`: `shoal-bench failover`, a region's leader killed under writes, timed.
//!
//! The `Fleet` of processes is declared after the work directory so it drops first, on
//! success, error or interrupt alike: no process is still writing into a directory being
//! removed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;

use crate::args::OutputArgs;
use crate::host::Machine;

pub mod failover;
pub mod goals;
pub mod install;
pub mod peers;
pub mod plan;
pub mod process;
pub mod ratios;
pub mod shoal;
pub mod start;
pub mod suite;
pub mod summary;

use goals::Verdict;
pub use plan::Args;
use plan::Plan;
use process::Fleet;
use ratios::Median;
use start::Tools;
use suite::{Run, Subject, Suite};

/// Everything a comparison found, as `--json` writes it.
#[derive(Serialize, Debug)]
pub struct Comparison {
    /// The command line, exactly as given.
    pub command: Vec<String>,
    pub started_unix_s: u64,
    pub elapsed_s: f64,
    pub machine: Machine,
    pub kernel: String,
    /// Version lines of Distribution, nginx and Shoal.
    pub versions: BTreeMap<String, String>,
    pub plan: Plan,
    pub work_dir: PathBuf,
    /// Whether the work directory (configs, logs, stores) is still there.
    pub work_dir_kept: bool,
    pub binaries: Option<shoal::Binaries>,
    pub peers: BTreeMap<String, peers::Peer>,
    pub shoal: BTreeMap<String, shoal::Topology>,
    pub subjects: Vec<Subject>,
    /// Every round's run, with its full report.
    pub runs: Vec<Run>,
    pub medians: Vec<Median>,
    pub ratios: Vec<Verdict>,
    /// Runs that failed or had errors.
    pub failed_runs: usize,
}

pub async fn run(args: &Args) -> anyhow::Result<Comparison> {
    let (started, started_at) = (Instant::now(), SystemTime::now());
    let plan = Plan::resolve(args)?;
    if cfg!(debug_assertions) && !plan.quick {
        eprintln!("compare: warning: this shoal-bench is a debug build; figures need --release");
    }
    let tools = Tools::find(args, &plan)?;
    let (temp, work_dir) = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (None, std::fs::canonicalize(d)?)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("shoal-compare-")
                .tempdir()
                .context("making a work directory")?;
            let path = t.path().to_path_buf();
            (Some(t), path)
        }
    };
    eprintln!("compare: work directory {}", work_dir.display());

    // Each scenario gets a fleet of only the processes it measures, started for it and
    // stopped after it: an idle Raft region or proxy beside a request-rate run still takes
    // timer wake-ups and cache from a 2-core machine, and showed up in its latency tail.
    let mut runs = Vec::new();
    let mut started_up = start::Started::default();
    for which in plan.scenarios.clone() {
        let one = Plan {
            scenarios: vec![which],
            ..plan.clone()
        };
        let dir = work_dir.join(which.name());
        let www = dir.join("www");
        std::fs::create_dir_all(&www)?;
        // Declared after the work directory, so the processes stop before it is removed.
        let mut fleet = Fleet::default();
        let up = start::start(&mut fleet, &tools, one.needs(), &dir, &www).await?;
        let suite = Suite {
            plan: &one,
            subjects: &up.subjects,
            www: &www,
        };
        runs.extend(suite.run().await?);
        eprintln!("compare: {}: stopping its processes", which.name());
        drop(fleet);
        started_up.absorb(up, which.name());
    }

    let medians = ratios::medians(&runs);
    let verdicts = goals::verdicts(&medians);
    let kept = temp.is_none() || args.keep;
    if let (Some(t), true) = (temp, args.keep) {
        let _ = t.keep();
    }
    Ok(Comparison {
        command: std::env::args().collect(),
        started_unix_s: started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        elapsed_s: started.elapsed().as_secs_f64(),
        machine: Machine::this(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        versions: tools.versions(),
        plan,
        work_dir,
        work_dir_kept: kept,
        binaries: tools.shoal,
        peers: started_up.peers,
        shoal: started_up.shoal,
        subjects: started_up.subjects,
        failed_runs: runs.iter().filter(|r| !r.clean()).count(),
        runs,
        medians,
        ratios: verdicts,
    })
}

impl Comparison {
    /// Prints the summary and writes the JSON if asked.
    pub fn emit(&self, out: &OutputArgs) -> anyhow::Result<()> {
        let m = &self.machine;
        let mut head = vec![
            format!(
                "shoal-bench compare: {} round(s), targets alternating; medians of the clean rounds",
                self.plan.rounds
            ),
            format!(
                "machine: {} cores, {} memory, {}, Linux {}",
                m.cores,
                crate::args::show_bytes(m.memory_bytes),
                m.cpu_model,
                self.kernel
            ),
        ];
        for (k, v) in &self.versions {
            head.push(format!("{k}: {v}"));
        }
        print!(
            "{}",
            summary::render(&self.plan, &head, &self.medians, &self.ratios)
        );
        if self.failed_runs > 0 {
            println!("\n{} run(s) failed or had errors:", self.failed_runs);
            for r in self.runs.iter().filter(|r| !r.clean()) {
                let why = r.error.clone().unwrap_or_else(|| {
                    let report = r.report.as_ref();
                    report
                        .and_then(|x| x.error_messages.first().cloned())
                        .unwrap_or_default()
                });
                println!("  {} round {} on {}: {why}", r.scenario, r.round, r.target);
            }
        }
        if self.work_dir_kept {
            println!(
                "\nwork directory (configs, logs, stores): {}",
                self.work_dir.display()
            );
        }
        if let Some(path) = &out.json {
            let text = serde_json::to_string_pretty(self)?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}
