//! ORAS (the `oras` Python client) against a real node: push a non-image artifact, push
//! referrers to it (one through the client's `subject` support, one hand-built with a real
//! `artifactType`), pull the artifact back, and list and filter them through the referrers API.
//! The client-side steps live in `oras_referrers.py` beside this file.

use std::process::Command;

use shoal_tests::{node_with_namespace, require_python_module, ADMIN_PASSWORD};

#[test]
fn oras_artifact_with_subject_shows_up_in_referrers() {
    if !require_python_module("oras") {
        return;
    }
    let (dir, node) = node_with_namespace("acme");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/integration/oras_referrers.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&node.addr)
        .arg("admin")
        .arg(ADMIN_PASSWORD)
        .current_dir(dir.path())
        .output()
        .expect("run python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "oras script failed:\n{text}\nnode log:\n{}",
        node.log_text()
    );
    assert!(text.trim_end().ends_with("OK"), "{text}");
}
