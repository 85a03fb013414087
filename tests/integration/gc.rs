//! Garbage collection and upload purging against real nodes: what a run reclaims (checked on
//! disk and in the bucket, not only through Shoal), what it must never take (what a tag
//! reaches, children of a tagged index, referrers of a kept manifest, anything pushed or
//! used within the grace period), and abandoned uploads purged on both backends.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use shoal_tests::moto::{Moto, CREDENTIALS};
use shoal_tests::oci::{self, descriptor, noise};
use shoal_tests::{error_code, eventually, sha256, tempdir, Node, Origin, Registry};

/// A node that collects only when asked, with a one-second grace period.
fn node(dir: &Path, extra: &[&str]) -> Node {
    let mut args = vec![
        "--gc-interval",
        "off",
        "--gc-grace",
        "1s",
        "--retention-interval",
        "off",
    ];
    args.extend(extra);
    Node::start_with(dir, &args)
}

/// `shoal gc run` (waiting for the leader's run) or `--dry-run`; the JSON it printed.
pub fn gc(node: &Node, dry: bool) -> Value {
    let mut args = vec!["gc", "run", "--json"];
    if dry {
        args.push("--dry-run");
    }
    let (ok, out, err) = node.cli(&args);
    assert!(ok, "gc run: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Where the embedded origin of `node` keeps `digest`.
fn on_disk(node: &Node, digest: &str) -> bool {
    let hex = &digest["sha256:".len()..];
    node.data
        .join("origin/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .exists()
}

fn wait_past_grace() {
    std::thread::sleep(Duration::from_millis(2100));
}

fn pulls_whole(reg: &Registry, repo: &str, reference: &str) {
    let r = reg.get(&format!("/v2/{repo}/manifests/{reference}"));
    assert_eq!(r.status(), 200, "{repo}:{reference}");
    let m: Value = serde_json::from_slice(&r.bytes().unwrap()).unwrap();
    let mut blobs: Vec<&Value> = m["layers"].as_array().into_iter().flatten().collect();
    if m["config"].is_object() {
        blobs.push(&m["config"]);
    }
    for b in blobs {
        let d = b["digest"].as_str().unwrap();
        let bytes = reg.get(&format!("/v2/{repo}/blobs/{d}")).bytes().unwrap();
        assert_eq!(sha256(&bytes), d, "{repo}:{reference} blob {d}");
    }
}

#[test]
fn a_run_reclaims_what_nothing_reaches_and_keeps_the_rest() {
    let dir = tempdir();
    let node = node(&dir.path().join("node"), &[]);
    let reg = node.registry();
    reg.create_namespace("acme");
    let shared = noise(1, 300_000);
    let only_v2 = noise(2, 200_000);
    reg.push_image("acme/app", "v1", &shared);
    let (v2, _) = reg.push_image("acme/app", "v2", &only_v2);
    reg.push_image("acme/other", "v1", &shared);
    // Bytes the origin holds that no repository links: pushed, then unlinked.
    let orphan = reg.push_blob("acme/app", &noise(3, 100_000));
    let r = reg
        .http
        .delete(reg.url(&format!("/v2/acme/app/blobs/{orphan}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = reg
        .http
        .delete(reg.url("/v2/acme/app/manifests/v2"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "untag v2");

    // Within the grace period nothing goes.
    let report = gc(&node, true);
    assert_eq!(report["manifests_total"], 0, "{report}");
    assert!(report["protected"].as_u64().unwrap() > 0, "{report}");
    wait_past_grace();

    let report = gc(&node, true);
    assert_eq!(report["manifests_total"], 1, "{report}");
    assert_eq!(report["manifests"][0]["digest"], v2);
    let going: Vec<&str> = report["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap())
        .collect();
    assert!(
        going.contains(&sha256(&only_v2).as_str()) && going.contains(&orphan.as_str()),
        "{report}"
    );
    assert_eq!(report["blobs_total"], 2, "{report}");
    assert_eq!(
        report["bytes_total"].as_u64().unwrap(),
        (only_v2.len() + 100_000) as u64
    );
    // (Not read back by digest here: a pusher's read renews the manifest's lease.)
    assert!(on_disk(&node, &orphan), "a dry run changes nothing");

    let run = gc(&node, false);
    assert_eq!(run["phase"], "done", "{run}");
    assert_eq!(run["manifests"], 1);
    assert_eq!(run["blobs_deleted"], 2);
    assert_eq!(
        run["bytes_reclaimed"].as_u64().unwrap(),
        (only_v2.len() + 100_000) as u64
    );
    assert!(
        !on_disk(&node, &orphan) && !on_disk(&node, &sha256(&only_v2)),
        "bytes gone from disk"
    );
    assert!(on_disk(&node, &sha256(&shared)));
    assert_eq!(
        error_code(reg.get(&format!("/v2/acme/app/manifests/{v2}"))).0,
        404
    );
    pulls_whole(&reg, "acme/app", "v1");
    pulls_whole(&reg, "acme/other", "v1");
    // Stored bytes match what the origin holds (the namespace is alone on it).
    let usage: Value = reg.get("/api/v1/namespaces/acme/usage").json().unwrap();
    let mut on_origin = 0u64;
    for entry in walk(&node.data.join("origin/blobs")) {
        on_origin += std::fs::metadata(entry).unwrap().len();
    }
    let manifest_bytes: u64 = ["acme/app", "acme/other"]
        .iter()
        .map(|r| {
            reg.get(&format!("/v2/{r}/manifests/v1"))
                .bytes()
                .unwrap()
                .len() as u64
        })
        .sum();
    assert_eq!(
        usage["stored_bytes"].as_u64().unwrap(),
        on_origin + manifest_bytes
    );
    // A second run finds nothing, and the metrics say what the first did.
    let again = gc(&node, false);
    assert_eq!(
        (again["manifests"].as_u64(), again["blobs_deleted"].as_u64()),
        (Some(0), Some(0))
    );
    let metrics = reg.get("/metrics").text().unwrap();
    assert!(
        metrics.contains("shoal_gc_runs_total{result=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "shoal_gc_bytes_reclaimed_total {}",
        only_v2.len() + 100_000
    )));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Pushes `bytes` as manifest `reference` of `repo` with `media_type`; its digest.
fn put(reg: &Registry, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> String {
    let r = reg.put_manifest(repo, reference, media_type, bytes);
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    sha256(bytes)
}

/// A child image of `repo` with its own layer, pushed by digest; (digest, bytes).
fn child(reg: &Registry, repo: &str, seed: u64) -> (String, Vec<u8>) {
    let config = reg.push_blob(repo, format!("{{\"seed\":{seed}}}").as_bytes());
    let layer = noise(seed, 50_000);
    let l = reg.push_blob(repo, &layer);
    let m = oci::image_manifest(
        &config,
        format!("{{\"seed\":{seed}}}").len(),
        &[(&l, layer.len())],
        None,
    );
    let d = put(reg, repo, &sha256(&m), oci::OCI_MANIFEST, &m);
    (d, m)
}

/// A signature of `subject` (an artifact manifest with a subject); its digest.
fn signature(reg: &Registry, repo: &str, subject: &(String, Vec<u8>), media_type: &str) -> String {
    let empty = reg.push_blob(repo, b"{}");
    let sig = reg.push_blob(repo, format!("signature of {}", subject.0).as_bytes());
    let len = format!("signature of {}", subject.0).len();
    let m = oci::image_manifest(
        &empty,
        2,
        &[(&sig, len)],
        Some(descriptor(media_type, &subject.0, subject.1.len())),
    );
    put(reg, repo, &sha256(&m), oci::OCI_MANIFEST, &m)
}

/// Distribution #3004 never again: untagging and collecting never removes the children of
/// a tagged index, and referrers go with their subject, not before.
#[test]
fn children_of_a_tagged_index_stay_and_referrers_follow_their_subject() {
    let dir = tempdir();
    let node = node(&dir.path().join("node"), &[]);
    let reg = node.registry();
    reg.create_namespace("acme");
    let r = "acme/multi";
    let (arm, arm_m) = child(&reg, r, 11);
    let (amd, amd_m) = child(&reg, r, 12);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": oci::OCI_INDEX,
        "manifests": [descriptor(oci::OCI_MANIFEST, &arm, arm_m.len()), descriptor(oci::OCI_MANIFEST, &amd, amd_m.len())],
    }))
    .unwrap();
    let idx = put(&reg, r, "latest", oci::OCI_INDEX, &index);
    let idx_sig = signature(&reg, r, &(idx.clone(), index.clone()), oci::OCI_INDEX);
    let lonely = child(&reg, r, 13);
    let lonely_sig = signature(&reg, r, &lonely, oci::OCI_MANIFEST);
    wait_past_grace();
    let run = gc(&node, false);
    assert_eq!(
        run["manifests"], 2,
        "the untagged image and its signature: {run}"
    );
    for d in [&arm, &amd, &idx, &idx_sig] {
        assert_eq!(
            reg.get(&format!("/v2/{r}/manifests/{d}")).status(),
            200,
            "{d} stays"
        );
        pulls_whole(&reg, r, d);
    }
    for d in [&lonely.0, &lonely_sig] {
        assert_eq!(
            error_code(reg.get(&format!("/v2/{r}/manifests/{d}"))).0,
            404,
            "{d} goes"
        );
    }
    let referrers: Value = reg.get(&format!("/v2/{r}/referrers/{idx}")).json().unwrap();
    assert_eq!(referrers["manifests"][0]["digest"], idx_sig);

    let d = reg
        .http
        .delete(reg.url(&format!("/v2/{r}/manifests/latest")))
        .send()
        .unwrap();
    assert_eq!(d.status(), 202);
    wait_past_grace();
    let run = gc(&node, false);
    assert_eq!(
        run["manifests"], 4,
        "index, children and signature together: {run}"
    );
    assert_eq!(
        reg.get(&format!("/v2/{r}/tags/list"))
            .json::<Value>()
            .unwrap()["tags"],
        json!([])
    );
}

/// Quay #6318 never again: a blob whose upload got 201 is not collectable for the grace
/// period, so the manifest pushed after it finds it; a layer a pusher HEADs (docker's "layer
/// already exists") gets a fresh lease even when the link is old.
#[test]
fn what_a_push_just_used_is_never_collected_under_it() {
    let dir = tempdir();
    let node = Node::start_with(
        &dir.path().join("node"),
        &["--gc-interval", "off", "--gc-grace", "4s"],
    );
    let reg = node.registry();
    reg.create_namespace("acme");
    let config = reg.push_blob("acme/app", b"{}");
    let layer = noise(5, 100_000);
    let l = reg.push_blob("acme/app", &layer);
    let run = gc(&node, false);
    assert_eq!(run["blob_links"], 0, "{run}");
    assert!(run["protected"].as_u64().unwrap() >= 2, "{run}");
    let m = oci::image_manifest(&config, 2, &[(&l, layer.len())], None);
    put(&reg, "acme/app", "v1", oci::OCI_MANIFEST, &m);
    // An old, unreferenced link renewed by a pusher's HEAD.
    let old = reg.push_blob("acme/app", &noise(6, 10_000));
    std::thread::sleep(Duration::from_secs(5));
    let head = reg
        .http
        .head(reg.url(&format!("/v2/acme/app/blobs/{old}")))
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
    let run = gc(&node, false);
    assert_eq!(run["blob_links"], 0, "the HEAD renewed it: {run}");
    let m2 = oci::image_manifest(&config, 2, &[(&old, 10_000)], None);
    put(&reg, "acme/app", "v2", oci::OCI_MANIFEST, &m2);
    pulls_whole(&reg, "acme/app", "v2");
}

#[test]
fn a_run_reclaims_objects_in_the_bucket() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("gc-test");
    let dir = tempdir();
    let origin = Origin::start_args(
        &["--s3-endpoint", &moto.url, "--s3-bucket", "gc-test"],
        &dir.path().join("origin.log"),
        "gc-secret-0123456789",
        &CREDENTIALS,
    );
    let node = origin.node_with(
        &dir.path().join("node"),
        &["--gc-interval", "off", "--gc-grace", "1s"],
    );
    let reg = node.registry();
    reg.create_namespace("acme");
    reg.push_image("acme/app", "v1", &noise(7, 6 << 20));
    let gone = noise(8, 6 << 20);
    reg.push_image("acme/app", "v2", &gone);
    let key = format!("blobs/sha256/{}", &sha256(&gone)["sha256:".len()..]);
    assert!(
        moto.keys("gc-test", "blobs/")
            .iter()
            .any(|k| k.contains(&key[13..])),
        "pushed into the bucket"
    );
    reg.http
        .delete(reg.url("/v2/acme/app/manifests/v2"))
        .send()
        .unwrap();
    wait_past_grace();
    let run = gc(&node, false);
    assert_eq!(run["blobs_deleted"], 1, "{run}");
    let keys = moto.keys("gc-test", "blobs/");
    assert!(
        !keys.iter().any(|k| k.contains(&key[13..])),
        "gone from the bucket: {keys:?}"
    );
    assert_eq!(keys.len(), 2, "v1's config and layer stay: {keys:?}");
    pulls_whole(&reg, "acme/app", "v1");
}

/// Opens a session on `repo` and sends `bytes` into it; its location.
fn abandon(reg: &Registry, repo: &str, bytes: &[u8]) -> String {
    let r = reg
        .http
        .post(reg.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = reg
        .http
        .patch(reg.url(&loc))
        .header("Content-Type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    loc
}

#[test]
fn abandoned_uploads_are_purged_from_disk_and_bucket() {
    let dir = tempdir();
    let flags = [
        "--upload-max-age",
        "2s",
        "--max-open-uploads",
        "1",
        "--gc-interval",
        "off",
    ];
    let fs_node = Node::start_with(&dir.path().join("fs"), &flags);
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("uploads");
    let origin = Origin::start_args(
        &["--s3-endpoint", &moto.url, "--s3-bucket", "uploads"],
        &dir.path().join("origin.log"),
        "purge-secret-0123456789",
        &CREDENTIALS,
    );
    let s3_node = origin.node_with(&dir.path().join("s3"), &flags);
    for (name, node) in [("filesystem", &fs_node), ("s3", &s3_node)] {
        let reg = node.registry();
        reg.create_namespace("acme");
        let loc = abandon(&reg, "acme/app", &noise(9, 6 << 20));
        let uploads_left = || match name {
            "filesystem" => walk(&node.data.join("origin/uploads")).len(),
            _ => moto.keys("uploads", "uploads/").len(),
        };
        assert!(uploads_left() > 0, "{name}: the session holds bytes");
        eventually(&format!("{name}: the session is purged"), || {
            let r = reg.http.get(reg.url(&loc)).send().unwrap();
            r.status() == 404
        });
        let r = reg
            .http
            .patch(reg.url(&loc))
            .body(b"more".to_vec())
            .send()
            .unwrap();
        assert_eq!(error_code(r), (404, "BLOB_UPLOAD_UNKNOWN".into()), "{name}");
        assert_eq!(uploads_left(), 0, "{name}: nothing of it stays in storage");
        // The purged session no longer counts against its owner's one open session.
        abandon(&reg, "acme/app", b"again");
    }
}

/// The one interleaving the origin's deletion protocol exists for: a push finishing a
/// digest while the collector deletes its bytes. With a long pause between condemning and
/// deleting, the push lands inside the window: it is refused (503, retryable) rather than
/// linked to bytes about to vanish; pushed again after the run, it is linked and whole.
#[test]
fn a_push_of_a_digest_being_deleted_is_refused_then_succeeds() {
    let dir = tempdir();
    let node = Node::start_with(
        &dir.path().join("node"),
        &[
            "--gc-interval",
            "off",
            "--gc-grace",
            "1s",
            "--gc-pause",
            "3s",
        ],
    );
    let reg = node.registry();
    reg.create_namespace("acme");
    let bytes = noise(77, 500_000);
    let d = reg.push_blob("acme/app", &bytes);
    let r = reg
        .http
        .delete(reg.url(&format!("/v2/acme/app/blobs/{d}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "unlinked: only the origin holds it now");
    wait_past_grace();
    let r = reg.http.post(reg.url("/api/v1/gc")).send().unwrap();
    assert_eq!(r.status(), 202);
    eventually("the run reaches the origin", || {
        let s: Value = reg.get("/api/v1/gc").json().unwrap();
        s["running"]["phase"] == "origin"
    });
    std::thread::sleep(Duration::from_millis(500));
    let push = || {
        reg.http
            .post(reg.url(&format!("/v2/acme/app/blobs/uploads/?digest={d}")))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.clone())
            .send()
            .unwrap()
    };
    let r = push();
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(r),
        (503, "UNAVAILABLE".into()),
        "refused while condemned"
    );
    assert_eq!(
        error_code(reg.get(&format!("/v2/acme/app/blobs/{d}"))).0,
        404,
        "and not linked"
    );
    eventually("the run ends", || {
        let s: Value = reg.get("/api/v1/gc").json().unwrap();
        s["running"].is_null() && s["requested_at"].is_null()
    });
    assert_eq!(push().status(), 201, "pushed again once the run is over");
    let back = reg.get(&format!("/v2/acme/app/blobs/{d}")).bytes().unwrap();
    assert_eq!(back.as_ref(), bytes.as_slice());
    assert!(on_disk(&node, &d));
}
