//! Bad input: every malformed request gets the right OCI error and status, and nothing is
//! stored. Path tricks go over a raw socket because HTTP clients normalise `..` away.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use shoal_tests::oci::{self, descriptor};
use shoal_tests::{error_code, node_with_namespace, sha256};

/// Sends raw bytes, returns the status code and the whole response text.
fn raw(addr: &str, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn raw_get(addr: &str, path: &str) -> (u16, String) {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn invalid_names_are_name_invalid() {
    let (_d, node) = node_with_namespace("acme");
    let long = format!("acme/{}", "a".repeat(600));
    for path in [
        "/v2/../etc/manifests/latest".to_string(),
        "/v2/acme/../../x/manifests/latest".into(),
        "/v2/acme/%2e%2e/x/blobs/uploads/".into(),
        "/v2/Acme/app/manifests/latest".into(),
        "/v2/acme//app/manifests/latest".into(),
        "/v2/acme/app-/manifests/latest".into(),
        format!("/v2/{long}/manifests/latest"),
    ] {
        let (status, text) = raw_get(&node.addr, &path);
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains("NAME_INVALID"), "{path}: {text}");
    }
}

#[test]
fn push_into_unknown_namespace_says_create_it() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let r = reg
        .http
        .post(reg.url("/v2/ghost/app/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let body = r.text().unwrap();
    assert!(
        body.contains("NAME_UNKNOWN") && body.contains("shoal namespace create ghost"),
        "{body}"
    );
    let m = oci::image_manifest(&sha256(b"c"), 1, &[], None);
    let r = reg.put_manifest("ghost/app", "v1", oci::OCI_MANIFEST, &m);
    assert_eq!(error_code(r), (404, "NAME_UNKNOWN".into()));
}

#[test]
fn invalid_digests_and_references() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    reg.push_blob("acme/x", b"present");
    for d in [
        "sha256:xyz",
        "sha256:ABCDEF",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "nodigest",
    ] {
        let r = reg.get(&format!("/v2/acme/x/blobs/{d}"));
        assert_eq!(error_code(r), (400, "DIGEST_INVALID".into()), "{d}");
        let r = reg
            .http
            .post(reg.url(&format!("/v2/acme/x/blobs/uploads/?digest={d}")))
            .body("x")
            .send()
            .unwrap();
        assert_eq!(error_code(r), (400, "DIGEST_INVALID".into()), "{d}");
    }
    let r = reg.put_manifest("acme/x", "-bad-tag", oci::OCI_MANIFEST, b"{}");
    assert_eq!(
        error_code(r),
        (400, "TAG_INVALID".into()),
        "a PUT names the bad tag"
    );
    let r = reg.get("/v2/acme/x/tags/list?n=many");
    assert_eq!(error_code(r), (400, "PAGINATION_NUMBER_INVALID".into()));
    let r = reg
        .http
        .post(reg.url("/v2/acme/x/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(error_code(r), (405, "UNSUPPORTED".into()));
}

#[test]
fn wrong_digest_on_finalise_stores_nothing() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let claimed = sha256(b"what the client claims");
    let r = reg
        .http
        .post(reg.url(&format!("/v2/acme/w/blobs/uploads/?digest={claimed}")))
        .body("what the client sent")
        .send()
        .unwrap();
    assert_eq!(error_code(r), (400, "DIGEST_INVALID".into()));
    // Chunked path: the session is dropped too.
    let r = reg
        .http
        .post(reg.url("/v2/acme/w/blobs/uploads/"))
        .send()
        .unwrap();
    let loc = r.headers()["Location"].to_str().unwrap().to_string();
    reg.http
        .patch(reg.url(&loc))
        .body("what the client sent")
        .send()
        .unwrap();
    let r = reg
        .http
        .put(reg.url(&format!("{loc}?digest={claimed}")))
        .send()
        .unwrap();
    assert_eq!(error_code(r), (400, "DIGEST_INVALID".into()));
    let r = reg.http.put(reg.url(&loc)).send().unwrap();
    assert_eq!(
        error_code(r),
        (400, "DIGEST_INVALID".into()),
        "PUT without ?digest="
    );
    for d in [claimed, sha256(b"what the client sent")] {
        assert_eq!(error_code(reg.get(&format!("/v2/acme/w/blobs/{d}"))).0, 404);
    }
    let stored = walk(&node.data.join("origin/blobs"));
    assert!(stored.is_empty(), "origin holds {stored:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn truncated_uploads_count_nothing() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let r = reg
        .http
        .post(reg.url("/v2/acme/t/blobs/uploads/"))
        .send()
        .unwrap();
    let loc = r.headers()["Location"].to_str().unwrap().to_string();
    // Announce 1000 bytes, send 400, hang up.
    let mut req = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
    )
    .into_bytes();
    req.extend_from_slice(&[7u8; 400]);
    let (status, _) = raw(&node.addr, &req);
    assert_ne!(status, 202, "a truncated chunk is not accepted");
    let r = reg.http.get(reg.url(&loc)).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["Range"],
        "0-0",
        "nothing of the truncated chunk counts"
    );
    // A truncated monolithic upload stores no blob.
    let full = vec![9u8; 1000];
    let d = sha256(&full);
    let mut req = format!(
        "POST /v2/acme/t/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    )
    .into_bytes();
    req.extend_from_slice(&full[..300]);
    raw(&node.addr, &req);
    assert_eq!(error_code(reg.get(&format!("/v2/acme/t/blobs/{d}"))).0, 404);
    // Content-Range that disagrees with the body.
    let r = reg
        .http
        .patch(reg.url(&loc))
        .header("Content-Range", "0-99")
        .body(vec![1u8; 50])
        .send()
        .unwrap();
    assert_eq!(error_code(r), (400, "SIZE_INVALID".into()));
    let r = reg
        .http
        .patch(reg.url(&loc))
        .header("Content-Range", "bogus")
        .body("x")
        .send()
        .unwrap();
    assert_eq!(error_code(r), (416, "RANGE_INVALID".into()));
    let r = reg.http.get(reg.url(&loc)).send().unwrap();
    assert_eq!(r.headers()["Range"], "0-0");
}

#[test]
fn unknown_upload_ids() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    for id in [
        "not-a-uuid",
        "00000000-0000-4000-8000-000000000000",
        "..%2F..%2Fetc",
    ] {
        let path = format!("/v2/acme/u/blobs/uploads/{id}");
        assert_eq!(
            error_code(reg.http.get(reg.url(&path)).send().unwrap()),
            (404, "BLOB_UPLOAD_UNKNOWN".into()),
            "{id}"
        );
        let r = reg.http.patch(reg.url(&path)).body("x").send().unwrap();
        assert_eq!(error_code(r), (404, "BLOB_UPLOAD_UNKNOWN".into()), "{id}");
        let r = reg
            .http
            .put(reg.url(&format!("{path}?digest={}", sha256(b"x"))))
            .send()
            .unwrap();
        assert_eq!(error_code(r), (404, "BLOB_UPLOAD_UNKNOWN".into()), "{id}");
        let r = reg.http.delete(reg.url(&path)).send().unwrap();
        assert_eq!(error_code(r), (404, "BLOB_UPLOAD_UNKNOWN".into()), "{id}");
    }
}

#[test]
fn bad_manifests_are_rejected_and_nothing_is_tagged() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let config = reg.push_blob("acme/m", b"{}");
    let layer = reg.push_blob("acme/m", b"layer");
    let good = oci::image_manifest(&config, 2, &[(&layer, 5)], None);
    let missing = oci::image_manifest(&config, 2, &[(&sha256(b"never pushed"), 3)], None);
    let index_missing_child = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": oci::OCI_INDEX,
        "manifests": [descriptor(oci::OCI_MANIFEST, &sha256(b"no such manifest"), 10)],
    }))
    .unwrap();
    let unknown_type = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.example.unknown+json",
        "config": descriptor(oci::OCI_CONFIG, &config, 2), "layers": [],
    }))
    .unwrap();
    let schema1 =
        serde_json::to_vec(&json!({"schemaVersion": 1, "name": "acme/m", "fsLayers": []})).unwrap();
    // Regressions (issue 19): a repeated key was checked on one copy and stored with the
    // other; descriptor sizes were not checked at all.
    let good_text = String::from_utf8(good.clone()).unwrap();
    let duplicate_layers = good_text
        .replacen("\"layers\"", "\"layers\": [],\n  \"layers\"", 1)
        .into_bytes();
    let sized = |config_size: Value, layer_size: Value| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": oci::OCI_MANIFEST,
            "config": {"mediaType": oci::OCI_CONFIG, "digest": config, "size": config_size},
            "layers": [{"mediaType": oci::OCI_LAYER_TAR, "digest": layer, "size": layer_size}],
        }))
        .unwrap()
    };
    let child = oci::image_manifest(&config, 2, &[], None);
    let index_of = |size: Value| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": oci::OCI_INDEX,
            "manifests": [{"mediaType": oci::OCI_MANIFEST, "digest": sha256(&child), "size": size}],
        }))
        .unwrap()
    };
    let r = reg.put_manifest("acme/m", &sha256(&child), oci::OCI_MANIFEST, &child);
    assert_eq!(r.status(), 201);
    let mut oversized = good.clone();
    oversized.truncate(oversized.len() - 1);
    oversized.extend(std::iter::repeat_n(b' ', 4 * 1024 * 1024));
    oversized.push(b'}');
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            oci::OCI_MANIFEST,
            b"{\"schemaVersion\": 2,".to_vec(),
            400,
            "MANIFEST_INVALID",
        ),
        (
            "not an object",
            oci::OCI_MANIFEST,
            b"[]".to_vec(),
            400,
            "MANIFEST_INVALID",
        ),
        (
            "content type mismatch",
            oci::DOCKER_MANIFEST,
            good.clone(),
            400,
            "MANIFEST_INVALID",
        ),
        (
            "unknown media type",
            "application/vnd.example.unknown+json",
            unknown_type,
            400,
            "MANIFEST_INVALID",
        ),
        (
            "schema 1",
            "application/vnd.docker.distribution.manifest.v1+json",
            schema1,
            400,
            "MANIFEST_INVALID",
        ),
        (
            "missing blob",
            oci::OCI_MANIFEST,
            missing,
            400,
            "MANIFEST_BLOB_UNKNOWN",
        ),
        (
            "missing child",
            oci::OCI_INDEX,
            index_missing_child,
            400,
            "MANIFEST_BLOB_UNKNOWN",
        ),
        (
            "oversized",
            oci::OCI_MANIFEST,
            oversized,
            413,
            "SIZE_INVALID",
        ),
        (
            "a key twice",
            oci::OCI_MANIFEST,
            duplicate_layers,
            400,
            "MANIFEST_INVALID",
        ),
        (
            "negative size",
            oci::OCI_MANIFEST,
            sized(json!(2), json!(-5)),
            400,
            "MANIFEST_INVALID",
        ),
        (
            "fractional size",
            oci::OCI_MANIFEST,
            sized(json!(2.5), json!(5)),
            400,
            "MANIFEST_INVALID",
        ),
        (
            "size past 2^63",
            oci::OCI_MANIFEST,
            sized(json!(2), json!(9_223_372_036_854_775_808u64)),
            400,
            "MANIFEST_INVALID",
        ),
        (
            "size as text",
            oci::OCI_MANIFEST,
            sized(json!("2"), json!(5)),
            400,
            "MANIFEST_INVALID",
        ),
        (
            "no size",
            oci::OCI_MANIFEST,
            sized(Value::Null, json!(5)),
            400,
            "MANIFEST_INVALID",
        ),
        (
            "a layer's size is not its blob's",
            oci::OCI_MANIFEST,
            sized(json!(2), json!(6)),
            400,
            "MANIFEST_BLOB_UNKNOWN",
        ),
        (
            "a child's size is not its manifest's",
            oci::OCI_INDEX,
            index_of(json!(child.len() + 1)),
            400,
            "MANIFEST_BLOB_UNKNOWN",
        ),
        (
            "a child's size is negative",
            oci::OCI_INDEX,
            index_of(json!(-1)),
            400,
            "MANIFEST_INVALID",
        ),
    ];
    for (what, ct, body, status, code) in cases {
        let r = reg.put_manifest("acme/m", "bad", ct, &body);
        assert_eq!(error_code(r), (status, code.to_string()), "{what}");
        assert_eq!(
            error_code(reg.get("/v2/acme/m/manifests/bad")).0,
            404,
            "{what}: tag must not exist"
        );
        assert_eq!(
            error_code(reg.get(&format!("/v2/acme/m/manifests/{}", sha256(&body)))).0,
            404,
            "{what}"
        );
    }
    let wrong = sha256(b"some other manifest");
    let r = reg.put_manifest("acme/m", &wrong, oci::OCI_MANIFEST, &good);
    assert_eq!(error_code(r), (400, "DIGEST_INVALID".into()));
    assert_eq!(
        reg.put_manifest("acme/m", "good", oci::OCI_MANIFEST, &good)
            .status(),
        201
    );
}

#[test]
fn namespace_names_follow_the_rules() {
    let (_d, node) = node_with_namespace("acme");
    for bad in ["Upper", "with space", "a/b", "-lead", "", &"x".repeat(256)] {
        let (ok, _, err) = node.cli(&["namespace", "create", "--", bad]);
        assert!(!ok, "{bad:?} was accepted");
        assert!(err.contains("NAME_INVALID"), "{bad:?}: {err}");
    }
    let (ok, _, err) = node.cli(&["namespace", "create", "acme"]);
    assert!(!ok && err.contains("NAMESPACE_EXISTS"), "{err}");
    let (ok, out, _) = node.cli(&[
        "namespace",
        "create",
        &"x".repeat(255),
        "--description",
        "long one",
    ]);
    assert!(ok, "{out}");
    let reg = node.registry();
    let r = reg
        .http
        .post(reg.url("/api/v1/namespaces"))
        .body("{\"name\":\"plain\"}")
        .send()
        .unwrap();
    assert_eq!(
        error_code(r),
        (415, "UNSUPPORTED".into()),
        "JSON bodies need a JSON content type"
    );
}

/// Guards the drain before error replies: a client still sending a large body must read
/// the OCI error, not hit a broken pipe because the node answered and closed early.
#[test]
fn error_reaches_a_client_still_sending_its_body() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let oversized = vec![b' '; (4 << 20) + 4096];
    let unknown = "/v2/acme/e/blobs/uploads/00000000-0000-4000-8000-000000000000";
    for _ in 0..40 {
        let r = reg.put_manifest(
            "acme/e",
            "v1",
            "application/vnd.oci.image.manifest.v1+json",
            &oversized,
        );
        assert_eq!(error_code(r), (413, "SIZE_INVALID".into()));
        let r = reg
            .http
            .patch(reg.url(unknown))
            .body(vec![0u8; 8 << 20])
            .send()
            .expect("the client gets an answer, not a broken pipe");
        assert_eq!(error_code(r), (404, "BLOB_UPLOAD_UNKNOWN".into()));
    }
}

#[test]
fn blob_bodies_announced_as_something_else_are_refused() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let blob = b"{\"not\": \"a layer\"}".to_vec();
    let d = sha256(&blob);
    let r = reg
        .http
        .post(reg.url(&format!("/v2/acme/ct/blobs/uploads/?digest={d}")))
        .header("Content-Type", "application/json")
        .body(blob.clone())
        .send()
        .unwrap();
    assert_eq!(error_code(r), (415, "UNSUPPORTED".into()));
    let r = reg
        .http
        .post(reg.url("/v2/acme/ct/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let r = reg
        .http
        .patch(reg.url(&location))
        .header("Content-Type", "text/plain")
        .body(blob.clone())
        .send()
        .unwrap();
    assert_eq!(error_code(r), (415, "UNSUPPORTED".into()));
    let r = reg.http.get(reg.url(&location)).send().unwrap();
    assert_eq!(
        r.headers()["range"],
        "0-0",
        "the refused PATCH appended nothing"
    );
    assert_eq!(
        error_code(reg.get(&format!("/v2/acme/ct/blobs/{d}"))).0,
        404,
        "nothing was stored"
    );
    // The same bytes as application/octet-stream go in.
    let r = reg
        .http
        .put(reg.url(&format!("{location}?digest={d}")))
        .header("Content-Type", "application/octet-stream")
        .body(blob)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
}
