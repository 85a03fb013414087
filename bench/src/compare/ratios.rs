//! From reports to comparable numbers, without IO: the named figures of one run (from its
//! `Report`, plus counts made outside it), and their medians over the rounds. `goals.rs`
//! sets the medians against each other and against the targets.
//!
//! Medians use the clean rounds only: a round with errors says something, but not how
//! fast. The median rather than the mean, because one disturbed round on a shared 2-core
//! machine should not move the figure.

use std::collections::BTreeMap;

use serde::Serialize;

use super::suite::Run;
use crate::report::Report;

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

/// The figures compared, by name, from one run's report. `logged_origin_fetches` is a
/// count made outside the report (a Distribution proxy's upstream log).
pub fn figures(
    r: &Report,
    main_phase: &str,
    logged_origin_fetches: Option<u64>,
) -> BTreeMap<String, f64> {
    let mut f = BTreeMap::new();
    let mut put = |k: &str, v: f64| {
        f.insert(k.to_string(), v);
    };
    put("mb_per_s", r.throughput.mb_per_s);
    put("ops_per_s", r.throughput.ops_per_s);
    put("elapsed_s", r.elapsed_s);
    if let Some(p) = r.phases.iter().find(|p| p.name == main_phase) {
        put("p50_ms", p.latency.p50_ms);
        put("p99_ms", p.latency.p99_ms);
    }
    let cpu: Option<f64> = r.servers.iter().map(|s| s.cpu_seconds).sum();
    if let Some(cpu) = cpu.filter(|_| !r.servers.is_empty()) {
        put("cpu_s", cpu);
        if r.throughput.bytes > 0 {
            put("cpu_s_per_gib", cpu / (r.throughput.bytes as f64 / GIB));
        }
    }
    let rss: Option<u64> = r.servers.iter().map(|s| s.peak_rss_bytes).sum();
    if let Some(rss) = rss.filter(|_| !r.servers.is_empty()) {
        put("server_rss_mib", rss as f64 / MIB);
    }
    let fetches = logged_origin_fetches
        .map(|n| n as f64)
        .or(r.shoal.as_ref().map(|s| s.origin_fetches));
    if let Some(n) = fetches {
        put("origin_fetches", n);
        if let Some(&blobs) = r.counts.get("distinct_blobs").filter(|b| **b > 0) {
            put("origin_fetches_per_blob", n / blobs as f64);
        }
    }
    f
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// One scenario's figures on one target, the medians of its clean rounds.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Median {
    pub scenario: String,
    pub target: String,
    /// Rounds the medians are made of.
    pub rounds: usize,
    /// Rounds left out because they had errors or could not run.
    pub failed: usize,
    pub figures: BTreeMap<String, f64>,
}

/// Medians per (scenario, target), in the order the runs first name them; then the
/// figures made of two scenarios (`storm_over_one`: a storm's time over one cold pull's).
pub fn medians(runs: &[Run]) -> Vec<Median> {
    let mut out: Vec<Median> = Vec::new();
    for run in runs {
        if !out
            .iter()
            .any(|m| m.scenario == run.scenario && m.target == run.target)
        {
            let mine: Vec<&Run> = runs
                .iter()
                .filter(|r| r.scenario == run.scenario && r.target == run.target)
                .collect();
            let clean: Vec<&&Run> = mine.iter().filter(|r| r.clean()).collect();
            let mut figures = BTreeMap::new();
            for key in clean.iter().flat_map(|r| r.figures.keys()) {
                if figures.contains_key(key) {
                    continue;
                }
                let values: Vec<f64> = clean
                    .iter()
                    .filter_map(|r| r.figures.get(key))
                    .copied()
                    .collect();
                if let Some(m) = median(&values) {
                    figures.insert(key.clone(), m);
                }
            }
            out.push(Median {
                scenario: run.scenario.clone(),
                target: run.target.clone(),
                rounds: clean.len(),
                failed: mine.len() - clean.len(),
                figures,
            });
        }
    }
    let one: Vec<(String, f64)> = out
        .iter()
        .filter(|m| m.scenario == "cold-pull")
        .filter_map(|m| Some((m.target.clone(), *m.figures.get("elapsed_s")?)))
        .collect();
    for m in out.iter_mut().filter(|m| m.scenario == "pull-storm") {
        let single = one.iter().find(|(t, _)| *t == m.target).map(|(_, s)| *s);
        if let (Some(storm), Some(single)) = (m.figures.get("elapsed_s"), single) {
            if single > 0.0 {
                m.figures.insert("storm_over_one".into(), storm / single);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: &str, target: &str, figs: &[(&str, f64)], clean: bool) -> Run {
        Run {
            scenario: scenario.into(),
            target: target.into(),
            round: 1,
            figures: figs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            errors: u64::from(!clean),
            error: None,
            report: None,
        }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        let check = |v: &[f64], want: Option<f64>| assert_eq!(median(v), want, "{v:?}");
        check(&[], None);
        check(&[3.0], Some(3.0));
        check(&[5.0, 1.0, 3.0], Some(3.0));
        check(&[4.0, 1.0, 3.0, 2.0], Some(2.5));
        check(&[f64::NAN, 2.0], Some(2.0));
    }

    #[test]
    fn medians_use_clean_rounds_and_derive_the_storm_ratio() {
        let runs = vec![
            run("cold-pull", "shoal-region", &[("elapsed_s", 2.0)], true),
            run("pull-storm", "shoal-region", &[("elapsed_s", 2.0)], true),
            run("pull-storm", "shoal-region", &[("elapsed_s", 2.5)], true),
            run("pull-storm", "shoal-region", &[("elapsed_s", 99.0)], false),
            run(
                "pull-storm",
                "distribution-proxy",
                &[("elapsed_s", 9.0)],
                true,
            ),
        ];
        let m = medians(&runs);
        assert_eq!(m.len(), 3);
        let storm = &m[1];
        assert_eq!((storm.rounds, storm.failed), (2, 1));
        assert_eq!(storm.figures["elapsed_s"], 2.25);
        assert_eq!(storm.figures["storm_over_one"], 1.125);
        assert!(
            !m[2].figures.contains_key("storm_over_one"),
            "no single pull to divide by"
        );
    }
}
