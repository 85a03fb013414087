//! The Kubernetes manifests in `deploy/kubernetes/`: valid against the Kubernetes schemas
//! (checked offline by `kubernetes-validate`, strict, for the oldest version they need and
//! the newest it knows), and every `--flag` and `SHOAL_*` variable they use is one the
//! binaries name in their `--help`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use shoal_tests::{bin, require_tool, run_tool, tempdir, words_with_prefix};

fn manifests() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn validate(files: &[PathBuf], version: Option<&str>) -> (bool, String) {
    let mut args: Vec<String> = vec!["--strict".into(), "--quiet".into()];
    if let Some(v) = version {
        args.extend(["-k".into(), v.into()]);
    }
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_tool("kubernetes-validate", &args, &[])
}

fn help(program: &str, args: &[&str]) -> String {
    let out = Command::new(bin(program)).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?} --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_kubernetes_manifests_validate_and_name_only_real_flags() {
    let files = manifests();
    assert!(files.len() >= 3, "{files:?}");
    let text: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    for kind in ["StatefulSet", "PodDisruptionBudget", "Deployment"] {
        assert!(text.contains(&format!("kind: {kind}")), "no {kind}");
    }
    assert!(text.contains("path: /readyz") && text.contains("path: /healthz"));

    // Every flag and variable is one the binaries know.
    let known = format!(
        "{}\n{}",
        help("shoal", &["serve", "--help"]),
        help("shoal-origin", &["serve", "--help"])
    );
    // (`---` separates YAML documents: a flag starts with a letter.)
    let flags: BTreeSet<String> = words_with_prefix(&text, "--", |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
    })
    .into_iter()
    .filter(|f| f.as_bytes()[2].is_ascii_lowercase())
    .collect();
    let vars = words_with_prefix(&text, "SHOAL_", |b| {
        b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'
    });
    assert!(flags.contains("--node-ordinal") || vars.contains("SHOAL_NODE_ORDINAL"));
    for name in flags.iter().chain(vars.iter()) {
        assert!(
            known.contains(name.as_str()),
            "{name} is in the manifests but not in --help"
        );
    }

    if !require_tool("kubernetes-validate") {
        return;
    }
    // The oldest Kubernetes they need (the pod-index label), and the newest it knows.
    for version in [Some("1.28.0"), None] {
        let (ok, out) = validate(&files, version);
        assert!(ok, "kubernetes-validate {version:?}:\n{out}");
    }
    // The check can fail: a StatefulSet without its selector is refused.
    let dir = tempdir();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec:\n  serviceName: x\n  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i, bogus: 1}]}}\n",
    )
    .unwrap();
    let (ok, out) = validate(&[broken], None);
    assert!(!ok, "a broken StatefulSet passed: {out}");
}

/// Pods of the StatefulSet become a region by their ordinal alone: pod 0 bootstraps it
/// (ignoring the `--join` every pod is given), pod 1 joins as node 2; a restarted pod 0
/// comes back as the same member rather than starting a region of its own.
#[test]
fn pods_become_a_region_by_their_ordinal() {
    let dir = tempdir();
    let mut region = shoal_tests::region::Region::prepare(dir.path(), 2, 3, &[]);
    region.by_ordinal = true;
    region.start_node(1);
    region.wait_for(|s| s["leader"] == 1, "pod 0 leads the new region as node 1");
    region.start_node(2);
    let status = region.wait_members(2);
    let mut ids: Vec<u64> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 2], "{status:#}");
    region.kill(1);
    region.start_node(1);
    let status = region.wait_for(|s| s["leader"].is_u64(), "the region has a leader again");
    assert_eq!(status["members"].as_array().unwrap().len(), 2, "{status:#}");
}
