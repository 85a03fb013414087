//! skopeo against a real node: copy a multi-layer OCI image in and back out byte-identical,
//! inspect, list tags, delete.

use std::path::Path;

use serde_json::Value;
use shoal_tests::oci::{noise, write_layout};
use shoal_tests::{admin_creds, node_with_namespace, require_tool, run_tool, skopeo_copy};

/// `skopeo SUBCOMMAND --creds admin:… REST…`
fn skopeo(args: &[&str]) -> (bool, String) {
    let creds = admin_creds();
    let mut all = vec![args[0], "--creds", &creds];
    all.extend(&args[1..]);
    run_tool("skopeo", &all, &[])
}

fn blob_files(layout: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn skopeo_copy_inspect_list_delete() {
    if !require_tool("skopeo") {
        return;
    }
    let (dir, node) = node_with_namespace("acme");
    let src = dir.path().join("src");
    let layers = vec![
        vec![("hello.txt", b"hello from layer one\n".to_vec())],
        vec![("data.bin", noise(7, 3 << 20))],
        vec![
            ("more.txt", b"third layer\n".to_vec()),
            ("x.bin", noise(8, 100_000)),
        ],
    ];
    let digest = write_layout(&src, "v1", &layers);
    let dest = format!("docker://{}/acme/team/img:v1", node.addr);
    let (ok, out) = skopeo_copy(&format!("oci:{}:v1", src.display()), &dest);
    assert!(ok, "skopeo copy in: {out}");

    let (ok, out) = skopeo(&["inspect", "--tls-verify=false", &dest]);
    assert!(ok, "skopeo inspect: {out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], Value::String(digest.clone()));
    assert_eq!(v["Layers"].as_array().unwrap().len(), 3);

    let (ok, out) = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/acme/team/img", node.addr),
    ]);
    assert!(ok, "skopeo list-tags: {out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Tags"], serde_json::json!(["v1"]));

    let back = dir.path().join("back");
    let (ok, out) = skopeo_copy(&dest, &format!("oci:{}:v1", back.display()));
    assert!(ok, "skopeo copy out: {out}");
    assert_eq!(
        blob_files(&back),
        blob_files(&src),
        "every blob comes back byte-identical"
    );

    let by_digest = format!("docker://{}/acme/team/img@{digest}", node.addr);
    let (ok, out) = skopeo(&["delete", "--tls-verify=false", &by_digest]);
    assert!(ok, "skopeo delete: {out}");
    let (ok, _) = skopeo(&["inspect", "--tls-verify=false", &dest]);
    assert!(!ok, "the image is gone after delete");
}
