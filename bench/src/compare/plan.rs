//! The flags of `shoal-bench compare` and the plan they resolve to: which scenarios, at
//! which sizes, and therefore which peers and Shoal topologies must run.
//!
//! Every size flag is optional so that an explicit value wins over both presets: the full
//! preset is sized for the 2-core, 24 GiB machine the targets were set on, and
//! `--quick` shrinks everything to a seconds-long smoke (CI runs it) that still exercises
//! every scenario against every peer, with verified bodies.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args as ClapArgs, ValueEnum};
use serde::Serialize;

use crate::args::{parse_size, show_bytes};

#[derive(ClapArgs, Clone, Debug, Default)]
pub struct Args {
    /// Seconds-long smoke: tiny sizes, two rounds, verified bodies (what CI runs).
    #[arg(long)]
    pub quick: bool,
    /// Rounds of every scenario; targets alternate within a round (A, B, A, B, …)
    /// [default: 3, or 2 with --quick].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Run only these scenarios (repeatable; default: all).
    #[arg(long, value_enum)]
    pub only: Vec<Which>,
    /// Scratch directory for every store, config and log (kept afterwards). Default: a
    /// temporary directory, removed at the end unless --keep.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Keep the temporary work directory (its logs and configs) after the run.
    #[arg(long)]
    pub keep: bool,
    /// The `shoal` binary [default: the one next to this shoal-bench].
    #[arg(long, value_name = "PATH")]
    pub shoal: Option<PathBuf>,
    /// The `shoal-origin` binary [default: the one next to --shoal].
    #[arg(long, value_name = "PATH")]
    pub shoal_origin: Option<PathBuf>,
    /// Fail instead of installing a missing docker-registry or nginx with apt-get.
    #[arg(long)]
    pub no_install: bool,
    /// blob-get and concurrent-pulls: size of the blob [default: 1GiB; quick 4MiB].
    #[arg(long, value_parser = parse_size)]
    pub blob_size: Option<u64>,
    /// blob-get: parallel full GETs of the blob [default: 1].
    #[arg(long)]
    pub blob_streams: Option<usize>,
    /// manifest-rps: connections [default: 64; quick 8].
    #[arg(long)]
    pub rps_concurrency: Option<usize>,
    /// manifest-rps: seconds of load per round and target [default: 10; quick 0.5].
    #[arg(long)]
    pub rps_seconds: Option<f64>,
    /// push: size of the one layer pushed per round and target [default: 1GiB; quick 4MiB].
    #[arg(long, value_parser = parse_size)]
    pub push_size: Option<u64>,
    /// pull-storm: simulated nodes pulling at once [default: 50; quick 8].
    #[arg(long)]
    pub storm_clients: Option<usize>,
    /// pull-storm: size of the image's one cold layer [default: 256MiB; quick 2MiB].
    #[arg(long, value_parser = parse_size)]
    pub storm_size: Option<u64>,
    /// concurrent-pulls: concurrent warm GETs of the blob [default: 64; quick 8].
    #[arg(long)]
    pub rss_streams: Option<usize>,
}

/// The comparison's scenarios.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Which {
    /// Warm blob GET: Shoal (single node and an edge node's cache) vs nginx vs Distribution.
    BlobGet,
    /// Manifest GETs by tag: Shoal vs Distribution.
    ManifestRps,
    /// One large monolithic-equivalent push: Shoal vs Distribution.
    Push,
    /// One cold pull, then N clients on one cold blob: Shoal region vs Distribution's proxy.
    PullStorm,
    /// Many concurrent warm GETs of the blob, for the server's peak RSS: Shoal vs nginx.
    ConcurrentPulls,
    /// Warm blob GET over HTTPS: Shoal vs nginx and Distribution with TLS, and Shoal's own
    /// plain-HTTP GET beside them.
    HttpsGet,
}

impl Which {
    pub const ALL: [Which; 6] = [
        Which::BlobGet,
        Which::ManifestRps,
        Which::Push,
        Which::PullStorm,
        Which::ConcurrentPulls,
        Which::HttpsGet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Which::BlobGet => "blob-get",
            Which::ManifestRps => "manifest-rps",
            Which::Push => "push",
            Which::PullStorm => "pull-storm",
            Which::ConcurrentPulls => "concurrent-pulls",
            Which::HttpsGet => "https-get",
        }
    }
}

/// What a comparison runs, every size resolved.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Plan {
    pub quick: bool,
    pub rounds: usize,
    pub scenarios: Vec<Which>,
    pub blob_size: u64,
    pub blob_streams: usize,
    pub rps_concurrency: usize,
    pub rps_seconds: f64,
    pub push_size: u64,
    pub storm_clients: usize,
    pub storm_size: u64,
    pub rss_streams: usize,
    /// Hash every body received (on in `--quick`, where correctness is the point).
    pub verify: bool,
}

impl Plan {
    pub fn resolve(a: &Args) -> anyhow::Result<Plan> {
        let q = a.quick;
        let pick = |given: Option<u64>, full: u64, quick: u64| {
            given.unwrap_or(if q { quick } else { full })
        };
        let count = |given: Option<usize>, full: usize, quick: usize| {
            given.unwrap_or(if q { quick } else { full })
        };
        let mut scenarios = if a.only.is_empty() {
            Which::ALL.to_vec()
        } else {
            a.only.clone()
        };
        scenarios.sort();
        scenarios.dedup();
        let plan = Plan {
            quick: q,
            rounds: count(a.rounds, 3, 2),
            scenarios,
            blob_size: pick(a.blob_size, 1 << 30, 4 << 20),
            blob_streams: count(a.blob_streams, 1, 1),
            rps_concurrency: count(a.rps_concurrency, 64, 8),
            rps_seconds: a.rps_seconds.unwrap_or(if q { 0.5 } else { 10.0 }),
            push_size: pick(a.push_size, 1 << 30, 4 << 20),
            storm_clients: count(a.storm_clients, 50, 8),
            storm_size: pick(a.storm_size, 256 << 20, 2 << 20),
            rss_streams: count(a.rss_streams, 64, 8),
            verify: q,
        };
        for (what, n) in [
            ("--rounds", plan.rounds),
            ("--blob-streams", plan.blob_streams),
            ("--rps-concurrency", plan.rps_concurrency),
            ("--storm-clients", plan.storm_clients),
            ("--rss-streams", plan.rss_streams),
        ] {
            if n == 0 {
                bail!("{what} must be at least 1");
            }
        }
        for (what, n) in [
            ("--blob-size", plan.blob_size),
            ("--push-size", plan.push_size),
            ("--storm-size", plan.storm_size),
        ] {
            if n == 0 {
                bail!("{what} must be at least 1 byte");
            }
        }
        if !(plan.rps_seconds > 0.0 && plan.rps_seconds.is_finite()) {
            bail!("--rps-seconds must be a positive number");
        }
        Ok(plan)
    }

    pub fn runs(&self, which: Which) -> bool {
        self.scenarios.contains(&which)
    }

    /// What must be started for the chosen scenarios.
    pub fn needs(&self) -> Needs {
        let any = |ws: &[Which]| ws.iter().any(|w| self.runs(*w));
        use Which::*;
        Needs {
            distribution: any(&[BlobGet, ManifestRps, Push, PullStorm]),
            distribution_proxy: any(&[PullStorm]),
            nginx: any(&[BlobGet, ConcurrentPulls]),
            shoal: any(&[BlobGet, ManifestRps, Push, ConcurrentPulls, HttpsGet]),
            shoal_region: any(&[BlobGet, PullStorm, ConcurrentPulls]),
            https: any(&[HttpsGet]),
        }
    }

    /// One line per scenario saying what it does at these sizes.
    pub fn describe(&self, which: Which) -> String {
        let b = show_bytes;
        match which {
            Which::BlobGet => format!(
                "warm GET of one {} blob, {} stream(s)",
                b(self.blob_size),
                self.blob_streams
            ),
            Which::ManifestRps => format!(
                "manifest GETs by tag, {} connections for {} s",
                self.rps_concurrency, self.rps_seconds
            ),
            Which::Push => format!(
                "push of one {} layer (Shoal monolithic, Distribution POST then PUT)",
                b(self.push_size)
            ),
            Which::PullStorm => format!(
                "one cold pull, then {} clients on one cold {} layer",
                self.storm_clients,
                b(self.storm_size)
            ),
            Which::ConcurrentPulls => format!(
                "{} concurrent warm GETs of the {} blob",
                self.rss_streams,
                b(self.blob_size)
            ),
            Which::HttpsGet => format!(
                "warm GET of one {} blob over HTTPS (TLS in user space), {} stream(s)",
                b(self.blob_size),
                self.blob_streams
            ),
        }
    }
}

/// The processes a plan needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub distribution: bool,
    pub distribution_proxy: bool,
    pub nginx: bool,
    pub shoal: bool,
    pub shoal_region: bool,
    /// nginx, Distribution and a Shoal node with TLS, on a self-signed certificate.
    pub https: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: Args, want: impl Fn(&Plan) -> bool) {
        let plan = Plan::resolve(&args).unwrap();
        assert!(want(&plan), "{args:?} resolved to {plan:?}");
    }

    #[test]
    fn presets_and_explicit_flags() {
        check(Args::default(), |p| {
            p.rounds == 3
                && p.blob_size == 1 << 30
                && p.rps_concurrency == 64
                && p.storm_clients == 50
                && p.storm_size == 256 << 20
                && p.rss_streams == 64
                && !p.verify
                && p.scenarios == Which::ALL
        });
        let quick = Args {
            quick: true,
            ..Args::default()
        };
        check(quick.clone(), |p| {
            p.rounds == 2 && p.blob_size == 4 << 20 && p.rps_seconds == 0.5 && p.verify
        });
        check(
            Args {
                rounds: Some(1),
                storm_clients: Some(3),
                ..quick
            },
            |p| p.rounds == 1 && p.storm_clients == 3 && p.blob_size == 4 << 20,
        );
        check(
            Args {
                only: vec![Which::Push, Which::BlobGet, Which::Push],
                ..Args::default()
            },
            |p| p.scenarios == [Which::BlobGet, Which::Push],
        );
    }

    #[test]
    fn nonsense_is_refused() {
        let bad = |a: Args| assert!(Plan::resolve(&a).is_err(), "{a:?}");
        bad(Args {
            rounds: Some(0),
            ..Args::default()
        });
        bad(Args {
            push_size: Some(0),
            ..Args::default()
        });
        bad(Args {
            rps_seconds: Some(f64::NAN),
            ..Args::default()
        });
    }

    #[test]
    fn only_what_the_scenarios_need_is_started() {
        let needs = |only: Vec<Which>| {
            Plan::resolve(&Args {
                only,
                ..Args::default()
            })
            .unwrap()
            .needs()
        };
        let n = needs(vec![Which::ManifestRps]);
        assert!(n.shoal && n.distribution);
        assert!(!(n.nginx || n.shoal_region || n.distribution_proxy));
        let n = needs(vec![Which::PullStorm]);
        assert!(n.shoal_region && n.distribution && n.distribution_proxy);
        assert!(!(n.shoal || n.nginx));
        let n = needs(vec![Which::HttpsGet]);
        assert!(n.https && n.shoal);
        assert!(!(n.nginx || n.shoal_region || n.distribution || n.distribution_proxy));
        let n = needs(vec![]);
        assert!(n.shoal && n.shoal_region && n.nginx && n.distribution && n.distribution_proxy);
        assert!(n.https);
    }
}
