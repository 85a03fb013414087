//! The targets and the verdicts against them, without IO: Shoal's medians divided
//! by the best peer's, each next to its goal.
//!
//! The targets live in one table, `CHECKS`, each naming the figure, which Shoal targets and
//! which peers it compares, which way is better, and the goal with its wording from the
//! issue. A goal is on the ratio ("≥ 30× Distribution") or on Shoal's own figure
//! ("p99 ≤ 3 ms"); either way the ratio to the peer is reported, so every scenario has one.

use serde::Serialize;

use super::ratios::Median;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    /// The goal bounds Shoal/peer.
    Ratio,
    /// The goal bounds Shoal's own figure.
    Value,
}

#[derive(Debug, Clone, Copy)]
struct Goal {
    on: On,
    /// `true`: at least `bound`; `false`: at most.
    at_least: bool,
    bound: f64,
    text: &'static str,
}

struct Check {
    scenario: &'static str,
    figure: &'static str,
    label: &'static str,
    shoals: &'static [&'static str],
    /// The best of these is the peer (the highest or lowest, as `better` says).
    peers: &'static [&'static str],
    better: Better,
    goal: Option<Goal>,
}

const fn goal(on: On, at_least: bool, bound: f64, text: &'static str) -> Option<Goal> {
    Some(Goal {
        on,
        at_least,
        bound,
        text,
    })
}

const SHOALS: &[&str] = &["shoal", "shoal-edge"];

/// The targets, one line each: issue 6's, raised where issue 16 raised them (manifest
/// GETs, push, the storm, the cold pull, HTTPS).
const CHECKS: &[Check] = &[
    Check {
        scenario: "blob-get",
        figure: "mb_per_s",
        label: "MB/s",
        shoals: SHOALS,
        peers: &["nginx", "distribution"],
        better: Better::Higher,
        goal: goal(On::Ratio, true, 1.0, "≥ 1.0× max(nginx, Distribution)"),
    },
    Check {
        scenario: "blob-get",
        figure: "cpu_s_per_gib",
        label: "CPU s/GiB",
        shoals: SHOALS,
        peers: &["nginx"],
        better: Better::Lower,
        goal: goal(On::Ratio, false, 1.5, "≤ 1.5× nginx's CPU s/GiB"),
    },
    Check {
        scenario: "manifest-rps",
        figure: "ops_per_s",
        label: "requests/s",
        shoals: &["shoal"],
        peers: &["distribution"],
        better: Better::Higher,
        goal: goal(On::Ratio, true, 30.0, "≥ 30× Distribution"),
    },
    Check {
        scenario: "manifest-rps",
        figure: "p99_ms",
        label: "p99 ms",
        shoals: &["shoal"],
        peers: &["distribution"],
        better: Better::Lower,
        goal: goal(On::Value, false, 3.0, "p99 ≤ 3 ms at 64 connections"),
    },
    Check {
        scenario: "push",
        figure: "mb_per_s",
        label: "MB/s",
        shoals: &["shoal"],
        peers: &["distribution"],
        better: Better::Higher,
        goal: goal(On::Ratio, true, 4.0, "≥ 4× Distribution"),
    },
    Check {
        scenario: "pull-storm",
        figure: "origin_fetches_per_blob",
        label: "origin fetches/blob",
        shoals: &["shoal-region"],
        peers: &["distribution-proxy"],
        better: Better::Lower,
        goal: goal(On::Value, false, 1.0, "one origin fetch per blob"),
    },
    Check {
        scenario: "pull-storm",
        figure: "storm_over_one",
        label: "storm / one pull",
        shoals: &["shoal-region"],
        peers: &["distribution-proxy"],
        better: Better::Lower,
        goal: goal(On::Value, false, 1.3, "storm ≤ 1.3× one cold pull"),
    },
    Check {
        scenario: "pull-storm",
        figure: "elapsed_s",
        label: "storm time s",
        shoals: &["shoal-region"],
        peers: &["distribution-proxy"],
        better: Better::Lower,
        // Three times as fast is a third of the time.
        goal: goal(
            On::Ratio,
            false,
            1.0 / 3.0,
            "≥ 3× faster than Distribution's proxy",
        ),
    },
    Check {
        scenario: "cold-pull",
        figure: "elapsed_s",
        label: "cold pull time s",
        shoals: &["shoal-region"],
        peers: &["distribution-proxy"],
        better: Better::Lower,
        goal: goal(
            On::Ratio,
            false,
            1.0,
            "at least as fast as Distribution's proxy",
        ),
    },
    Check {
        scenario: "concurrent-pulls",
        figure: "server_rss_mib",
        label: "peak RSS MiB",
        shoals: SHOALS,
        peers: &["nginx"],
        better: Better::Lower,
        goal: goal(On::Value, false, 150.0, "node RSS ≤ 150 MiB"),
    },
    Check {
        scenario: "https-get",
        figure: "mb_per_s",
        label: "MB/s",
        shoals: &["shoal-https"],
        peers: &["nginx-https", "distribution-https"],
        better: Better::Higher,
        goal: goal(
            On::Ratio,
            true,
            1.5,
            "≥ 1.5× max(nginx, Distribution) over HTTPS",
        ),
    },
    Check {
        scenario: "https-get",
        figure: "mb_per_s",
        label: "MB/s vs plain HTTP",
        shoals: &["shoal-https"],
        peers: &["shoal"],
        better: Better::Higher,
        // Within 1.25× of plain HTTP's time is at least 1/1.25 = 0.8× its speed.
        goal: goal(
            On::Ratio,
            true,
            0.8,
            "within 1.25× of Shoal's plain-HTTP time",
        ),
    },
    Check {
        scenario: "concurrent-pulls",
        figure: "mb_per_s",
        label: "MB/s",
        shoals: SHOALS,
        peers: &["nginx"],
        better: Better::Higher,
        goal: None,
    },
];

/// One Shoal figure set against its peer and the goal.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Verdict {
    pub scenario: String,
    pub figure: String,
    pub label: String,
    pub shoal: String,
    pub shoal_value: f64,
    /// What the figure is compared with, e.g. `max(nginx, distribution)`.
    pub against: String,
    /// The peer that was best, and its figure.
    pub peer: Option<String>,
    pub peer_value: Option<f64>,
    /// Shoal / peer.
    pub ratio: Option<f64>,
    pub higher_is_better: bool,
    pub goal: Option<String>,
    pub met: Option<bool>,
}

/// Every check the medians allow.
pub fn verdicts(medians: &[Median]) -> Vec<Verdict> {
    let value = |scenario: &str, target: &str, figure: &str| {
        medians
            .iter()
            .find(|m| m.scenario == scenario && m.target == target)
            .and_then(|m| m.figures.get(figure))
            .copied()
    };
    let mut out = Vec::new();
    for c in CHECKS {
        let peers: Vec<(&str, f64)> = c
            .peers
            .iter()
            .filter_map(|p| Some((*p, value(c.scenario, p, c.figure)?)))
            .collect();
        let best = peers.iter().copied().reduce(|a, b| {
            let b_wins = match c.better {
                Better::Higher => b.1 > a.1,
                Better::Lower => b.1 < a.1,
            };
            if b_wins {
                b
            } else {
                a
            }
        });
        let against = match c.peers {
            [one] => one.to_string(),
            many => format!(
                "{}({})",
                if c.better == Better::Higher {
                    "max"
                } else {
                    "min"
                },
                many.join(", ")
            ),
        };
        for shoal in c.shoals {
            let Some(v) = value(c.scenario, shoal, c.figure) else {
                continue;
            };
            let ratio = best.filter(|(_, p)| *p > 0.0).map(|(_, p)| v / p);
            let met = c.goal.and_then(|g| {
                let x = match g.on {
                    On::Ratio => ratio?,
                    On::Value => v,
                };
                Some(if g.at_least {
                    x >= g.bound
                } else {
                    x <= g.bound
                })
            });
            out.push(Verdict {
                scenario: c.scenario.into(),
                figure: c.figure.into(),
                label: c.label.into(),
                shoal: shoal.to_string(),
                shoal_value: v,
                against: against.clone(),
                peer: best.map(|(p, _)| p.to_string()),
                peer_value: best.map(|(_, p)| p),
                ratio,
                higher_is_better: c.better == Better::Higher,
                goal: c.goal.map(|g| g.text.to_string()),
                met,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn median_of(scenario: &str, target: &str, figs: &[(&str, f64)]) -> Median {
        Median {
            scenario: scenario.into(),
            target: target.into(),
            rounds: 1,
            failed: 0,
            figures: figs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    fn find<'a>(v: &'a [Verdict], scenario: &str, figure: &str, shoal: &str) -> &'a Verdict {
        v.iter()
            .find(|x| x.scenario == scenario && x.figure == figure && x.shoal == shoal)
            .unwrap_or_else(|| panic!("no verdict {scenario} {figure} {shoal}: {v:#?}"))
    }

    #[test]
    fn ratios_take_the_best_peer_and_judge_the_goal() {
        let ms = [
            median_of(
                "blob-get",
                "shoal",
                &[("mb_per_s", 3000.0), ("cpu_s_per_gib", 0.3)],
            ),
            median_of(
                "blob-get",
                "nginx",
                &[("mb_per_s", 2500.0), ("cpu_s_per_gib", 0.25)],
            ),
            median_of("blob-get", "distribution", &[("mb_per_s", 1000.0)]),
            median_of(
                "manifest-rps",
                "shoal",
                &[("ops_per_s", 40000.0), ("p99_ms", 7.0)],
            ),
            median_of(
                "manifest-rps",
                "distribution",
                &[("ops_per_s", 2500.0), ("p99_ms", 70.0)],
            ),
            median_of(
                "pull-storm",
                "shoal-region",
                &[("origin_fetches_per_blob", 1.0)],
            ),
            median_of(
                "pull-storm",
                "distribution-proxy",
                &[("origin_fetches_per_blob", 0.0)],
            ),
        ];
        let v = verdicts(&ms);
        let get = find(&v, "blob-get", "mb_per_s", "shoal");
        assert_eq!(get.peer.as_deref(), Some("nginx"), "the faster peer");
        assert_eq!(get.against, "max(nginx, distribution)");
        assert_eq!(get.ratio, Some(1.2));
        assert_eq!(get.met, Some(true));
        let cpu = find(&v, "blob-get", "cpu_s_per_gib", "shoal");
        assert!((cpu.ratio.unwrap() - 1.2).abs() < 1e-9);
        assert_eq!(cpu.met, Some(true), "1.2× is within 1.5×");
        let rps = find(&v, "manifest-rps", "ops_per_s", "shoal");
        assert_eq!((rps.ratio, rps.met), (Some(16.0), Some(false)));
        let p99 = find(&v, "manifest-rps", "p99_ms", "shoal");
        assert_eq!(
            p99.ratio,
            Some(0.1),
            "a ratio even where the goal is absolute"
        );
        assert_eq!(p99.met, Some(false), "7 ms is over 3 ms");
        let fetches = find(&v, "pull-storm", "origin_fetches_per_blob", "shoal-region");
        assert_eq!(
            (fetches.ratio, fetches.met),
            (None, Some(true)),
            "no ratio to 0"
        );
        assert!(
            !v.iter().any(|x| x.shoal == "shoal-edge"),
            "targets that did not run have no verdicts"
        );
    }

    /// HTTPS is judged twice: against the peers over TLS, and against Shoal's own plain
    /// HTTP (within 1.25× of its time is at least 0.8× its speed).
    #[test]
    fn https_is_judged_against_the_peers_and_against_plain_http() {
        let ms = [
            median_of("https-get", "shoal-https", &[("mb_per_s", 1600.0)]),
            median_of("https-get", "nginx-https", &[("mb_per_s", 1000.0)]),
            median_of("https-get", "distribution-https", &[("mb_per_s", 600.0)]),
            median_of("https-get", "shoal", &[("mb_per_s", 3000.0)]),
        ];
        let v = verdicts(&ms);
        let https: Vec<_> = v.iter().filter(|x| x.scenario == "https-get").collect();
        assert_eq!(https.len(), 2, "{https:#?}");
        assert_eq!(https[0].peer.as_deref(), Some("nginx-https"));
        assert_eq!((https[0].ratio, https[0].met), (Some(1.6), Some(true)));
        assert_eq!(https[1].peer.as_deref(), Some("shoal"));
        assert!((https[1].ratio.unwrap() - 1600.0 / 3000.0).abs() < 1e-9);
        assert_eq!(
            https[1].met,
            Some(false),
            "0.53× plain speed is 1.9× its time"
        );
    }
}
