//! The flags every scenario shares, and the value parsers the scenarios' own flags use.
//!
//! Shared flags are `global`, so they may stand before or after the scenario's name
//! (`shoal-bench pull-storm --target URL`). A global flag cannot be `required` in clap, so
//! `TargetArgs::check` says what is missing before anything runs, as it also checks the
//! plot's file type: a long run must not end in an error about its output.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, ValueEnum};
use serde::Serialize;

/// Where to send load, as whom, and which server processes to watch.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Targets")]
pub struct TargetArgs {
    /// Registry base URL, e.g. http://127.0.0.1:5000. Repeat it for a multi-node region:
    /// clients are spread over the targets round-robin.
    #[arg(long = "target", global = true, value_name = "URL")]
    pub targets: Vec<String>,
    /// User name for Basic credentials or the token realm (none: anonymous).
    #[arg(long, global = true, env = "SHOAL_USERNAME")]
    pub username: Option<String>,
    /// Password of --username.
    #[arg(long, global = true, env = "SHOAL_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// How credentials are used: `basic` sends them on every /v2 request (Shoal takes that)
    /// and still follows a Bearer challenge; `token` is Docker's flow: anonymous first, and
    /// the credentials go only to the token realm a 401 names.
    #[arg(long, global = true, value_enum, default_value_t = AuthMode::Basic)]
    pub auth: AuthMode,
    /// A server process on this machine whose peak RSS (VmHWM) and CPU time to report.
    /// Repeatable.
    #[arg(long = "pid", global = true, value_name = "PID")]
    pub pids: Vec<u32>,
    /// A PEM certificate (or bundle) to trust for https:// targets, beside the system's
    /// roots: a registry with a self-signed or private-CA certificate.
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_cert: Option<std::path::PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    #[default]
    Basic,
    Token,
}

impl TargetArgs {
    /// Targets given as URLs (trailing slashes dropped), for a library caller.
    pub fn new(urls: &[&str]) -> TargetArgs {
        TargetArgs {
            targets: urls.iter().map(|u| u.to_string()).collect(),
            ..TargetArgs::default()
        }
    }

    pub fn check(&self) -> anyhow::Result<()> {
        if self.targets.is_empty() {
            bail!("give at least one --target URL");
        }
        for t in &self.targets {
            if !(t.starts_with("http://") || t.starts_with("https://")) {
                bail!("--target {t:?} must be an http:// or https:// URL");
            }
        }
        if self.username.is_some() != self.password.is_some() {
            bail!("give both --username and --password (or SHOAL_USERNAME and SHOAL_PASSWORD), or neither");
        }
        Ok(())
    }
}

/// What to write besides the table on stdout.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Write every figure of the run as JSON to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw the latency distribution and throughput over time to FILE (.svg or .png).
    #[arg(long, global = true, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

impl OutputArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(p) = &self.plot {
            crate::plot::Format::of(p)?;
        }
        Ok(())
    }
}

/// A byte count: a number with an optional `KiB`, `MiB` or `GiB` suffix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("", 1),
    ]
    .iter()
    .find_map(|(suffix, m)| s.strip_suffix(suffix).map(|n| (n, *m)))
    .expect("the empty suffix always matches");
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad size {s:?}: a number with KiB, MiB or GiB, e.g. 64MiB"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// A seed for generated data: the one given, else one from the clock, so that two runs
/// push different images (a storm on a fresh image is cold) unless told otherwise.
pub fn seed_or_clock(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32)
    })
}

/// A human figure of a byte count (`1.5 GiB`).
pub fn show_bytes(n: u64) -> String {
    let units = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in units {
        if n >= size {
            return format!("{:.1} {unit}", n as f64 / size as f64);
        }
    }
    format!("{n} B")
}

/// Reads a positive count flag that clap parsed as `usize`.
pub fn positive(what: &str, n: usize) -> anyhow::Result<usize> {
    if n == 0 {
        bail!("{what} must be at least 1");
    }
    Ok(n)
}

/// The path of a repository checked the way registries do (lowercase, `/`-separated parts).
pub fn check_repo(repo: &str) -> anyhow::Result<()> {
    let ok = !repo.is_empty()
        && repo.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        });
    if !ok {
        bail!("{repo:?} is not a repository name (lowercase parts separated by /)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let check = |s: &str, want: Option<u64>| assert_eq!(parse_size(s).ok(), want, "{s:?}");
        check("1GiB", Some(1 << 30));
        check("3 MiB", Some(3 << 20));
        check("256KiB", Some(256 << 10));
        check("100", Some(100));
        check("1GB", None);
        check("", None);
        check("99999999999GiB", None);
    }

    #[test]
    fn repos() {
        let check = |r: &str, ok: bool| assert_eq!(check_repo(r).is_ok(), ok, "{r:?}");
        check("bench/pull-storm", true);
        check("a", true);
        check("Bench/x", false);
        check("bench//x", false);
        check("", false);
    }

    #[test]
    fn target_checks() {
        assert!(TargetArgs::default().check().is_err());
        assert!(TargetArgs::new(&["127.0.0.1:5000"]).check().is_err());
        assert!(TargetArgs::new(&["http://127.0.0.1:5000"]).check().is_ok());
        let mut half = TargetArgs::new(&["http://x"]);
        half.username = Some("admin".into());
        assert!(half.check().is_err());
    }
}
