//! The comparison as people read it: one table per scenario with each target's medians,
//! then the ratios Shoal/peer with the goal beside each. Pure text from the
//! medians and verdicts, so it is tested without running anything.

use std::fmt::Write as _;

use super::goals::Verdict;
use super::plan::{Plan, Which};
use super::ratios::Median;
use crate::args::show_bytes;

/// The columns of each scenario's table: (figure, heading).
fn columns(scenario: &str) -> &'static [(&'static str, &'static str)] {
    match scenario {
        "blob-get" | "concurrent-pulls" => &[
            ("mb_per_s", "MB/s"),
            ("p50_ms", "p50 ms"),
            ("p99_ms", "p99 ms"),
            ("cpu_s_per_gib", "CPU s/GiB"),
            ("server_rss_mib", "RSS MiB"),
        ],
        "manifest-rps" => &[
            ("ops_per_s", "req/s"),
            ("p50_ms", "p50 ms"),
            ("p99_ms", "p99 ms"),
            ("cpu_s", "CPU s"),
            ("server_rss_mib", "RSS MiB"),
        ],
        "push" => &[
            ("mb_per_s", "MB/s"),
            ("elapsed_s", "time s"),
            ("cpu_s_per_gib", "CPU s/GiB"),
            ("server_rss_mib", "RSS MiB"),
        ],
        "cold-pull" => &[
            ("elapsed_s", "time s"),
            ("mb_per_s", "MB/s"),
            ("origin_fetches", "origin GETs"),
        ],
        "pull-storm" => &[
            ("elapsed_s", "time s"),
            ("mb_per_s", "MB/s"),
            ("p99_ms", "p99 image ms"),
            ("origin_fetches", "origin GETs"),
            ("origin_fetches_per_blob", "GETs/blob"),
            ("storm_over_one", "storm/one"),
        ],
        _ => &[("mb_per_s", "MB/s"), ("elapsed_s", "time s")],
    }
}

fn title(plan: &Plan, scenario: &str) -> String {
    let which = match scenario {
        "blob-get" => Which::BlobGet,
        "manifest-rps" => Which::ManifestRps,
        "push" => Which::Push,
        "concurrent-pulls" => Which::ConcurrentPulls,
        "https-get" => Which::HttpsGet,
        "cold-pull" => {
            return format!(
                "cold-pull: one client pulls a fresh image of one {} layer",
                show_bytes(plan.storm_size)
            )
        }
        _ => Which::PullStorm,
    };
    format!("{scenario}: {}", plan.describe(which))
}

/// A figure with as many decimals as its size deserves.
fn num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "-".into()
    } else if a >= 100.0 || v == v.trunc() && a < 1e6 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn render(plan: &Plan, head: &[String], medians: &[Median], verdicts: &[Verdict]) -> String {
    let mut s = String::new();
    for line in head {
        let _ = writeln!(s, "{line}");
    }
    let mut seen: Vec<&str> = Vec::new();
    for m in medians {
        if seen.contains(&m.scenario.as_str()) {
            continue;
        }
        seen.push(&m.scenario);
        let cols = columns(&m.scenario);
        let _ = writeln!(s, "\n{}", title(plan, &m.scenario));
        let _ = write!(s, "  {:<20}", "target");
        for (_, h) in cols {
            let _ = write!(s, " {h:>12}");
        }
        let _ = writeln!(s, " {:>7}", "rounds");
        for t in medians.iter().filter(|x| x.scenario == m.scenario) {
            let _ = write!(s, "  {:<20}", t.target);
            for (k, _) in cols {
                let v = t.figures.get(*k).map_or("-".into(), |v| num(*v));
                let _ = write!(s, " {v:>12}");
            }
            let failed = if t.failed > 0 {
                format!(" ({} failed)", t.failed)
            } else {
                String::new()
            };
            let _ = writeln!(s, " {:>7}{failed}", t.rounds);
        }
    }
    let _ = writeln!(
        s,
        "\nratios Shoal/peer (medians; goals from issues 6 and 16)\n  {:<17} {:<20} {:<13} {:>9}  {:<19} {:>9} {:>8}  {:<34} met",
        "scenario", "figure", "shoal", "value", "peer", "value", "ratio", "goal"
    );
    for v in verdicts {
        let peer = v.peer.as_deref().map_or(format!("({})", v.against), |p| {
            if v.against.contains('(') {
                format!("{p} (best)")
            } else {
                p.to_string()
            }
        });
        let ratio = v.ratio.map_or("-".into(), |r| format!("{}×", num2(r)));
        let met = match v.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        let _ = writeln!(
            s,
            "  {:<17} {:<20} {:<13} {:>9}  {:<19} {:>9} {:>8}  {:<34} {met}",
            v.scenario,
            v.label,
            v.shoal,
            num(v.shoal_value),
            peer,
            v.peer_value.map_or("-".into(), num),
            ratio,
            v.goal.as_deref().unwrap_or("(for context)"),
        );
    }
    s
}

/// A ratio with two decimals whatever its size (1.00× reads better than 1×).
fn num2(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::plan::Args;

    #[test]
    fn numbers_keep_their_meaning() {
        let check = |v: f64, want: &str| assert_eq!(num(v), want, "{v}");
        check(2345.67, "2346");
        check(42.0, "42");
        check(12.34, "12.3");
        check(1.234, "1.23");
        check(0.004, "0.00");
        check(f64::NAN, "-");
    }

    #[test]
    fn tables_and_ratios() {
        let plan = Plan::resolve(&Args {
            quick: true,
            ..Args::default()
        })
        .unwrap();
        let m = |target: &str, mbps: f64| Median {
            scenario: "blob-get".into(),
            target: target.into(),
            rounds: 2,
            failed: usize::from(target == "distribution"),
            figures: [("mb_per_s".to_string(), mbps)].into(),
        };
        let medians = vec![
            m("shoal", 3000.0),
            m("nginx", 2500.0),
            m("distribution", 900.0),
        ];
        let verdicts = crate::compare::goals::verdicts(&medians);
        let text = render(&plan, &["head line".into()], &medians, &verdicts);
        for want in [
            "head line",
            "blob-get: warm GET of one 4.0 MiB blob, 1 stream(s)",
            "shoal",
            "3000",
            "(1 failed)",
            "nginx (best)",
            "1.20×",
            "≥ 1.0× max(nginx, Distribution)",
            "yes",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
    }
}
