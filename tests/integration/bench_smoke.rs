//! `shoal-bench` keeps working: every scenario runs for about a second with tiny sizes
//! against real nodes, and is judged by its exit status and the figures of its JSON report
//! (counts, errors, Shoal's cache and origin deltas), never by how long anything took:
//! benchmarks measure, tests assert behaviour.
//!
//! One node fronts a separate origin, so a cold pull storm must miss the cache and read
//! the origin exactly once per distinct blob; two plain nodes (embedded origin) take the
//! metadata and push scenarios, pushes spread over both. `compare --quick` starts its own
//! Shoal, Distribution and nginx and is judged by its exit status and its JSON.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use shoal_tests::region::SECRET;
use shoal_tests::{bin, require_tool, tempdir, Node, Origin, ADMIN_PASSWORD};

/// Runs `shoal-bench <args> --target …` as the admin with `--json`, asserts it exited 0,
/// and returns the report.
fn bench(targets: &[&Node], args: &[&str], json: &Path) -> Value {
    let mut cmd = Command::new(bin("shoal-bench"));
    cmd.args(args)
        .arg("--json")
        .arg(json)
        .env("SHOAL_USERNAME", "admin")
        .env("SHOAL_PASSWORD", ADMIN_PASSWORD);
    for node in targets {
        cmd.args(["--target", &node.url]);
    }
    let out = cmd.output().expect("run shoal-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "shoal-bench {args:?} exited with {}:\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("errors       0"), "the table: {stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_sane(&report, args[0], targets.len());
    report
}

/// What every report holds, whatever the scenario.
fn assert_sane(r: &Value, scenario: &str, targets: usize) {
    assert_eq!(r["scenario"], scenario, "{r:#}");
    assert_eq!(r["errors"], 0, "errors: {:#}", r["error_messages"]);
    assert_eq!(r["targets"].as_array().unwrap().len(), targets);
    assert!(r["elapsed_s"].as_f64().unwrap() > 0.0);
    assert!(r["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(r["machine"]["memory_bytes"].as_u64().unwrap() > 0);
    assert!(r["params"].is_object());
    assert!(
        r["throughput"]["ops"].as_u64().unwrap() > 0,
        "{:#}",
        r["throughput"]
    );
    assert!(!r["timeline"]["ops"].as_array().unwrap().is_empty());
    let phases = r["phases"].as_array().unwrap();
    assert!(!phases.is_empty(), "no phases: {r:#}");
    for p in phases {
        let f = |k: &str| p[k].as_f64().unwrap_or_else(|| panic!("{k} in {p}"));
        assert!(p["count"].as_u64().unwrap() > 0, "{p}");
        assert!(
            f("min_ms") <= f("p50_ms")
                && f("p50_ms") <= f("p95_ms")
                && f("p95_ms") <= f("p99_ms")
                && f("p99_ms") <= f("max_ms"),
            "percentiles out of order: {p}"
        );
    }
}

fn phase_count(r: &Value, name: &str) -> u64 {
    r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no phase {name}: {:#}", r["phases"]))["count"]
        .as_u64()
        .unwrap()
}

fn assert_plot(path: &Path, magic: &[u8]) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() > 1000,
        "{} is only {} bytes",
        path.display(),
        bytes.len()
    );
    assert!(
        bytes.windows(magic.len()).take(64).any(|w| w == magic),
        "{} does not look like its format",
        path.display()
    );
}

/// Guards the pull-storm figures on a caching node: a cold storm misses and reads the
/// origin once per distinct blob; the same image again (`--reuse`) is served warm.
#[test]
fn pull_storm_and_blob_get_on_a_caching_node() {
    let dir = tempdir();
    let origin = Origin::start(&dir.path().join("origin"), SECRET);
    let node = origin.node(&dir.path().join("node"));
    node.registry().create_namespace("bench");
    let out = |name: &str| dir.path().join(name);

    let svg = out("storm.svg");
    let cold = bench(
        &[&node],
        &[
            "pull-storm",
            "--clients",
            "4",
            "--layers",
            "2",
            "--layer-size",
            "256KiB",
            "--verify",
            "--plot",
            svg.to_str().unwrap(),
        ],
        &out("cold.json"),
    );
    assert_eq!(cold["counts"]["images"], 4);
    assert_eq!(cold["counts"]["distinct_blobs"], 3, "config and two layers");
    assert_eq!(phase_count(&cold, "image"), 4);
    assert_eq!(phase_count(&cold, "manifest"), 4);
    assert_eq!(phase_count(&cold, "blob"), 12);
    let image_bytes = cold["counts"]["image_bytes"].as_u64().unwrap();
    assert_eq!(
        cold["throughput"]["bytes"].as_u64().unwrap(),
        4 * image_bytes
    );
    let shoal = &cold["shoal"];
    assert_eq!(shoal["nodes"], 1, "{cold:#}");
    assert!(shoal["cache_misses"].as_f64().unwrap() > 0.0, "{shoal}");
    assert_eq!(
        shoal["origin_fetches"], 3.0,
        "one origin fetch per distinct blob: {shoal}"
    );
    assert_eq!(
        shoal["origin_bytes"].as_f64().unwrap(),
        image_bytes as f64,
        "{shoal}"
    );
    assert_plot(&svg, b"<svg");

    let tag = cold["facts"]["tag"].as_str().unwrap();
    let warm = bench(
        &[&node],
        &["pull-storm", "--reuse", tag, "--clients", "2"],
        &out("warm.json"),
    );
    assert_eq!(warm["counts"]["images"], 2);
    let shoal = &warm["shoal"];
    assert_eq!(
        shoal["origin_fetches"], 0.0,
        "served without the origin: {shoal}"
    );
    // A read that came right after the cold storm may still join its fill (a miss that
    // reads no origin) if the cache file was not renamed into place yet.
    let reads = shoal["cache_hits"].as_f64().unwrap() + shoal["cache_misses"].as_f64().unwrap();
    assert_eq!(reads, 6.0, "three blobs for each of two clients: {shoal}");

    let png = out("blob.png");
    let pid = node.pid().to_string();
    let streams = bench(
        &[&node],
        &[
            "blob-get",
            "--size",
            "2MiB",
            "--streams",
            "2",
            "--rounds",
            "2",
            "--verify",
            "--pid",
            &pid,
            "--plot",
            png.to_str().unwrap(),
        ],
        &out("streams.json"),
    );
    assert_eq!(streams["counts"]["streams"], 4);
    assert_eq!(streams["throughput"]["bytes"], 4 * 2 * 1024 * 1024);
    let server = &streams["servers"][0];
    assert_eq!(server["pid"], node.pid());
    assert!(server["peak_rss_bytes"].as_u64().unwrap() > 0, "{server}");
    assert!(server["cpu_seconds"].as_f64().unwrap() >= 0.0, "{server}");
    assert!(server["cpu_seconds_per_gib"].is_number(), "{server}");
    assert_plot(&png, b"PNG");

    let ranged = bench(
        &[&node],
        &[
            "blob-get",
            "--size",
            "1MiB",
            "--streams",
            "3",
            "--ranged",
            "--verify",
        ],
        &out("ranged.json"),
    );
    assert_eq!(ranged["counts"]["streams"], 3);
    assert_eq!(phase_count(&ranged, "round"), 1);
    assert_eq!(
        ranged["throughput"]["bytes"],
        1024 * 1024,
        "the parts add up to the blob"
    );
}

/// Guards the metadata and push scenarios, the token flow, and pushes spread over targets.
#[test]
fn manifest_push_and_tag_scenarios_on_plain_nodes() {
    let dir = tempdir();
    let a = Node::start(&dir.path().join("a"));
    let b = Node::start(&dir.path().join("b"));
    for n in [&a, &b] {
        n.registry().create_namespace("bench");
    }
    let out = |name: &str| dir.path().join(name);

    let rps = bench(
        &[&a],
        &["manifest-rps", "--concurrency", "2", "--seconds", "1"],
        &out("rps.json"),
    );
    assert!(rps["counts"]["requests"].as_u64().unwrap() > 0);
    assert_eq!(rps["counts"]["requests"], rps["throughput"]["ops"]);

    // Docker's flow: anonymous first, then a token from the realm the 401 names.
    bench(
        &[&a],
        &[
            "manifest-rps",
            "--auth",
            "token",
            "--concurrency",
            "1",
            "--seconds",
            "0.3",
        ],
        &out("token.json"),
    );
    assert!(a
        .wait_for_log("path=/auth/token status=200")
        .contains("path=/auth/token status=200"));

    for mode in ["monolithic", "post-put", "chunked"] {
        let push = bench(
            &[&a, &b],
            &[
                "push",
                "--pushers",
                "4",
                "--layers",
                "2",
                "--layer-size",
                "300KiB",
                "--mode",
                mode,
                "--chunk-size",
                "128KiB",
            ],
            &out(&format!("push-{mode}.json")),
        );
        assert_eq!(push["counts"]["images"], 4, "{mode}");
        assert_eq!(
            phase_count(&push, "blob"),
            12,
            "{mode}: two layers and a config each"
        );
        assert!(
            push["counts"].get("monolithic_fallbacks").is_none(),
            "Shoal takes a monolithic POST"
        );
        let prefix = push["facts"]["tag_prefix"].as_str().unwrap();
        for (i, node) in [&a, &b].iter().enumerate() {
            let tags: Value = node
                .registry()
                .get("/v2/bench/push/tags/list?n=1000")
                .json()
                .unwrap();
            let mine = tags["tags"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t.as_str().unwrap().starts_with(prefix))
                .count();
            assert_eq!(
                mine, 2,
                "{mode}: pushers alternate between the targets (node {i})"
            );
        }
    }

    let blob = bench(
        &[&b],
        &["blob", "--size", "1MiB", "--gets", "2"],
        &out("blob.json"),
    );
    assert_eq!(phase_count(&blob, "push"), 1);
    assert_eq!(phase_count(&blob, "get"), 2);

    let c = Node::start_with(
        &dir.path().join("c"),
        &["--gc-grace", "1s", "--gc-interval", "off"],
    );
    c.registry().create_namespace("bench");
    let gc = bench(
        &[&c],
        &[
            "gc",
            "--repos",
            "2",
            "--manifests",
            "4",
            "--blobs",
            "1",
            "--seconds",
            "2",
            "--clients",
            "2",
        ],
        &out("gc.json"),
    );
    assert_eq!(gc["counts"]["manifests_filled"], 8);
    assert_eq!(
        gc["counts"]["gc_manifests"], 4,
        "half untagged: {:#}",
        gc["counts"]
    );
    assert!(gc["facts"]["gc_pulls_per_s"].is_string());

    // The console scenario signs in through the form and loads each page it measures.
    let console = bench(
        &[&c],
        &[
            "console",
            "--tags",
            "120",
            "--repos",
            "12",
            "--requests",
            "2",
        ],
        &out("console.json"),
    );
    assert_eq!(console["counts"]["tags"], 120);
    assert_eq!(phase_count(&console, "repository last page"), 2);
    assert_eq!(phase_count(&console, "namespace search"), 2);

    let tags = bench(&[&a], &["tag-push", "--count", "5"], &out("tags.json"));
    assert_eq!(tags["counts"]["tags"], 5);
    assert!(
        tags["shoal"]["nodes"] == 1,
        "a plain node still reports its metrics"
    );
}

/// Guards `shoal-bench compare --quick` (issue 6's side-by-side run): it starts Distribution
/// (plain and proxy), nginx, a Shoal node and a Shoal region itself, runs every scenario
/// against them in alternating rounds, stops them all, and writes a ratio for each scenario.
#[test]
fn compare_quick_runs_every_scenario_beside_distribution_and_nginx() {
    let found = [require_tool("docker-registry"), require_tool("nginx")];
    if found.contains(&false) {
        return;
    }
    let dir = tempdir();
    let json = dir.path().join("compare.json");
    let out = Command::new(bin("shoal-bench"))
        .args(["compare", "--quick", "--no-install", "--work-dir"])
        .arg(dir.path().join("work"))
        .arg("--json")
        .arg(&json)
        .env_remove("SHOAL_USERNAME")
        .env_remove("SHOAL_PASSWORD")
        .output()
        .expect("run shoal-bench compare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "shoal-bench compare exited with {}:\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ratios Shoal/peer"), "the table: {stdout}");
    let c: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(c["failed_runs"], 0, "{stdout}");
    assert!(
        c["command"].as_array().unwrap().len() > 2,
        "{}",
        c["command"]
    );
    assert!(c["versions"]["distribution"].is_string() && c["versions"]["nginx"].is_string());
    let ratios = c["ratios"].as_array().unwrap();
    for scenario in [
        "blob-get",
        "manifest-rps",
        "push",
        "pull-storm",
        "concurrent-pulls",
        "https-get",
    ] {
        assert!(
            ratios
                .iter()
                .any(|r| r["scenario"] == scenario && r["ratio"].as_f64().is_some()),
            "no ratio for {scenario}: {ratios:#?}"
        );
    }
    let rounds = c["plan"]["rounds"].as_u64().unwrap();
    for m in c["medians"].as_array().unwrap() {
        assert_eq!(m["rounds"], rounds, "every round ran on every target: {m}");
    }
    for s in c["subjects"].as_array().unwrap() {
        for pid in s["pids"].as_array().unwrap() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(
                stat.is_empty() || stat.contains(") Z"),
                "{} process {pid} still runs after compare exited: {stat}",
                s["name"]
            );
        }
    }
}
