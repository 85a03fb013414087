//! Blob bodies sent with sendfile: large blobs read from a local file (the embedded origin,
//! the edge cache's verified files) go from the page cache to the socket, and the connection
//! is closed after them with `Connection: close`. What is guarded: whole bodies and ranges
//! arrive byte-exact from both sources, a client reusing its connection pool across many
//! large GETs never hits a closed socket, small replies keep their connection, and a client
//! still reading a fill when it ends gets the rest from the verified file.

use sha2::{Digest as _, Sha256};
use shoal_tests::oci::noise;
use shoal_tests::region::SECRET;
use shoal_tests::{sha256, tempdir, Origin, Registry};

const MIB: usize = 1 << 20;

/// GETs `path` and returns the status, the `Connection` header and the body.
fn get(reg: &Registry, path: &str, range: Option<&str>) -> (u16, Option<String>, Vec<u8>) {
    let mut req = reg.http.get(reg.url(path));
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let connection = r
        .headers()
        .get("connection")
        .map(|v| v.to_str().unwrap().to_ascii_lowercase());
    (status, connection, r.bytes().unwrap().to_vec())
}

fn check_bodies(reg: &Registry, repo: &str, blob: &[u8], digest: &str) {
    let path = format!("/v2/{repo}/blobs/{digest}");
    // Sequential GETs on one pooled client: a regression test for a connection closed
    // without `Connection: close` (the next request hit a reset socket).
    for _ in 0..6 {
        let (status, connection, body) = get(reg, &path, None);
        assert_eq!(status, 200);
        assert_eq!(connection.as_deref(), Some("close"));
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&body))),
            digest
        );
    }
    let (start, end) = (5 * MIB + 123, 9 * MIB + 77);
    let (status, _, body) = get(reg, &path, Some(&format!("bytes={start}-{end}")));
    assert_eq!(status, 206);
    assert_eq!(body, &blob[start..=end], "a range from the middle");
    let (status, _, body) = get(reg, &path, Some(&format!("bytes={}-", blob.len() - 10)));
    assert_eq!(status, 206);
    assert_eq!(body, &blob[blob.len() - 10..], "the last bytes");
    // A small reply keeps its connection.
    let (status, connection, _) = get(reg, &format!("/v2/{repo}/tags/list"), None);
    assert_eq!(status, 200);
    assert_ne!(connection.as_deref(), Some("close"));
}

#[test]
fn large_blobs_from_the_embedded_origin_arrive_whole() {
    let (_dir, node) = shoal_tests::node_with_namespace("acme");
    let reg = node.registry();
    let blob = noise(41, 12 * MIB + 3);
    let digest = reg.push_blob("acme/big", &blob);
    check_bodies(&reg, "acme/big", &blob, &digest);
}

/// A node in front of a separate origin (so blobs reach it through cache fills), with
/// namespace `acme`.
fn cache_node() -> (tempfile::TempDir, Origin, shoal_tests::Node) {
    let dir = tempdir();
    let origin = Origin::start(&dir.path().join("origin"), SECRET);
    let node = origin.node(&dir.path().join("node"));
    node.registry().create_namespace("acme");
    (dir, origin, node)
}

/// Waits until the node's cache holds the verified file of its fill.
fn fill_committed(node: &shoal_tests::Node) {
    shoal_tests::eventually("the fill is committed to the cache", || {
        shoal_tests::metric(node, "shoal_cache_entries") >= 1.0
    });
}

#[test]
fn large_blobs_from_the_edge_cache_arrive_whole() {
    let (_dir, _origin, node) = cache_node();
    let reg = node.registry();
    let blob = noise(42, 10 * MIB + 5);
    let digest = reg.push_blob("acme/big", &blob);
    // The first GET fills the cache (streamed from the fill); the rest are cache hits.
    let (status, _, body) = get(&reg, &format!("/v2/acme/big/blobs/{digest}"), None);
    assert_eq!((status, sha256(&body)), (200, digest.clone()));
    // The fill's file is committed just after its last byte went out: a GET in between
    // still joins the fill, which is not sent with sendfile. On a loaded machine that
    // window is long enough to hit, so wait until the cache holds the verified file.
    fill_committed(&node);
    check_bodies(&reg, "acme/big", &blob, &digest);
}

/// A client still reading a cold blob when its fill ends gets the rest from the verified
/// file with sendfile instead of through user space: the body stays byte-exact, the reply
/// announced `Connection: close`, and the node counts the handover.
#[test]
fn a_slow_reader_of_a_fill_gets_the_rest_from_the_verified_file() {
    use std::io::Read;
    let (_dir, _origin, node) = cache_node();
    let reg = node.registry();
    let blob = noise(43, 48 * MIB + 7);
    let digest = reg.push_blob("acme/big", &blob);
    let handovers = || shoal_tests::metric(&node, "shoal_cache_fill_handovers_total");
    assert_eq!(handovers(), 0.0);
    // A cold GET whose client takes its first MiB, then nothing until the fill was
    // verified and taken into the cache (the fill does not wait for its readers).
    let mut resp = reg
        .http
        .get(reg.url(&format!("/v2/acme/big/blobs/{digest}")))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("connection")
            .map(|v| v.to_str().unwrap()),
        Some("close")
    );
    let mut body = vec![0u8; MIB];
    resp.read_exact(&mut body).unwrap();
    fill_committed(&node);
    resp.read_to_end(&mut body).unwrap();
    assert_eq!(body.len(), blob.len());
    assert!(body == blob, "the body switched to the file is byte-exact");
    assert_eq!(handovers(), 1.0, "the rest went out from the file");
    // Later reads are cache hits, sent from the file from the start.
    check_bodies(&reg, "acme/big", &blob, &digest);
    assert_eq!(handovers(), 1.0);
}
