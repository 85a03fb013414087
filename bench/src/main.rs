//! `shoal-bench`: load generator for Shoal and any other OCI registry. This file only
//! parses flags; the scenarios live in the library (`shoal_bench::scenarios`), which
//! returns a `Report` that is printed as a table and written as JSON and a plot on request,
//! and `compare` (`shoal_bench::compare`) runs them against Shoal and its peers side by side.
//!
//! Exit status: 0 when the run had no errors, 1 when it had some (the report is still
//! printed and written), 2 for a run that could not be set up or was interrupted.

use anyhow::bail;
use clap::{Parser, Subcommand};
use shoal_bench::args::{OutputArgs, TargetArgs};
use shoal_bench::compare;
use shoal_bench::scenarios::Scenario;
use shoal_bench::target::Targets;

#[derive(Parser)]
#[command(name = "shoal-bench", about = "Load generator for OCI registries")]
struct Cli {
    #[command(flatten)]
    targets: TargetArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Scenario(Scenario),
    /// Install (when missing) and start Distribution, nginx and Shoal on this machine, run
    /// the scenarios against each in alternating rounds, and print the ratios Shoal/peer.
    Compare(compare::Args),
    /// Start a fresh region per round, kill its leader under a write load, and measure how
    /// long until a write is acknowledged again.
    Failover(compare::failover::Args),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let run = async {
        cli.output.check()?;
        match &cli.command {
            Command::Scenario(scenario) => {
                let targets = Targets::new(&cli.targets)?;
                let report = scenario.run(&targets).await?;
                report.emit(&cli.output)?;
                anyhow::Ok(report.errors)
            }
            Command::Compare(args) => {
                if !cli.targets.targets.is_empty() || !cli.targets.pids.is_empty() {
                    bail!("compare starts its own targets: drop --target and --pid");
                }
                if cli.output.plot.is_some() {
                    bail!("compare writes --json only; plot a scenario on its own");
                }
                // Dropping the comparison stops every process it started, so an interrupt
                // only has to win the race.
                let comparison = tokio::select! {
                    c = compare::run(args) => c?,
                    s = interrupted() => bail!("{s}: every process started was stopped"),
                };
                comparison.emit(&cli.output)?;
                Ok(comparison.failed_runs as u64)
            }
            Command::Failover(args) => {
                let rounds = tokio::select! {
                    r = compare::failover::run(args) => r?,
                    s = interrupted() => bail!("{s}: every process started was stopped"),
                };
                if let Some(path) = &cli.output.json {
                    std::fs::write(path, serde_json::to_vec_pretty(&rounds)?)?;
                }
                Ok(0)
            }
        }
    };
    match run.await {
        Ok(0) => std::process::ExitCode::SUCCESS,
        Ok(errors) => {
            eprintln!("shoal-bench: the run had {errors} error(s)");
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("shoal-bench: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "interrupted",
        _ = term.recv() => "terminated",
    }
}
