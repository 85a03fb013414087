//! The deploy kit's dashboard and alerts (`deploy/grafana/shoal.json`,
//! `deploy/prometheus/alerts.yml`) name only metrics a node exposes, and cover what an
//! operator watches: requests and latency, the cache, bytes by source, the origin and
//! upstreams, Raft, garbage collection and disks.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use shoal_tests::{admin_creds, require_python_module, tempdir, words_with_prefix, Node};

fn deploy(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every `shoal_…` name in `text`, with a histogram's `_bucket`/`_sum`/`_count` taken off.
fn metric_names(text: &str) -> BTreeSet<String> {
    words_with_prefix(text, "shoal_", |b| b.is_ascii_alphanumeric() || b == b'_')
        .into_iter()
        .map(|name| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            base.to_string()
        })
        .collect()
}

/// What `/metrics` of a fresh node declares (`# TYPE` lines).
fn exposed(node: &Node) -> BTreeSet<String> {
    let (user, password) = admin_creds()
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .unwrap();
    let text = reqwest::blocking::Client::new()
        .get(format!("{}/metrics", node.url))
        .basic_auth(user, Some(password))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn dashboards_and_alerts_name_only_exposed_metrics() {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    let exposed = exposed(&node);
    let dashboard = deploy("grafana/shoal.json");
    let alerts = deploy("prometheus/alerts.yml");
    let board: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let exprs: Vec<String> = board["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 20, "{exprs:?}");
    for (file, text) in [
        ("grafana/shoal.json", &dashboard),
        ("prometheus/alerts.yml", &alerts),
    ] {
        let named = metric_names(text);
        assert!(!named.is_empty());
        let unknown: Vec<&String> = named.difference(&exposed).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics /metrics does not expose: {unknown:?}"
        );
    }
    // What the dashboard must show.
    let shown = metric_names(&exprs.join("\n"));
    for needed in [
        "shoal_http_requests_total",
        "shoal_http_request_duration_seconds",
        "shoal_cache_hits_total",
        "shoal_blob_bytes_total",
        "shoal_cache_fills_in_flight",
        "shoal_origin_fetch_errors_total",
        "shoal_upstream_requests_total",
        "shoal_raft_term",
        "shoal_raft_replication_lag_entries",
        "shoal_gc_bytes_reclaimed_total",
        "shoal_disk_free_bytes",
    ] {
        assert!(shown.contains(needed), "the dashboard shows no {needed}");
    }
    // The alerts file is YAML Prometheus reads: groups of rules, each with an expression.
    if require_python_module("yaml") {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/alerts.yml");
        let out = Command::new("python3")
            .arg("-c")
            .arg(
                "import sys, yaml\n\
                 d = yaml.safe_load(open(sys.argv[1]))\n\
                 rules = [r for g in d['groups'] for r in g['rules']]\n\
                 assert all(r['expr'] and r['alert'] and r['labels']['severity'] for r in rules)\n\
                 print(' '.join(r['alert'] for r in rules))",
            )
            .arg(&path)
            .output()
            .unwrap();
        let names = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for alert in [
            "ShoalNoLeader",
            "ShoalRegionBelowQuorum",
            "ShoalFewerVotersThanWanted",
            "ShoalOriginUnreachable",
            "ShoalCacheDigestMismatch",
            "ShoalDiskNearlyFull",
        ] {
            assert!(
                names.split(' ').any(|n| n.trim() == alert),
                "no alert {alert}: {names}"
            );
        }
    }
}

#[test]
fn metric_names_are_read_out_of_queries() {
    let names = metric_names(
        "histogram_quantile(0.9, rate(shoal_http_request_duration_seconds_bucket[5m])) / my_shoal_x + shoal_raft_term",
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        ["shoal_http_request_duration_seconds", "shoal_raft_term"]
    );
}
