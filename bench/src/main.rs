//! `shoal-bench`: load generator for Shoal and any other OCI registry. This file only
//! parses flags; the scenarios live in the library (`shoal_bench::scenarios`), which
//! returns a `Report` that is printed as a table and written as JSON and a plot on request.
//!
//! Exit status: 0 when the run had no errors, 1 when it had some (the report is still
//! printed and written), 2 for a run that could not be set up.

use clap::Parser;
use shoal_bench::args::{OutputArgs, TargetArgs};
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
    scenario: Scenario,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let run = async {
        cli.output.check()?;
        let targets = Targets::new(&cli.targets)?;
        let report = cli.scenario.run(&targets).await?;
        report.emit(&cli.output)?;
        anyhow::Ok(report.errors)
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
