//! A separate `shoal-origin` process: upload sessions live there, so one upload can be driven
//! through several nodes; node↔origin traffic needs the shared secret; an origin outage
//! answers 503 for blobs while manifests keep being served; the S3 backend behind the
//! service, against a real S3-compatible server (moto).

use std::time::{Duration, Instant};

use shoal_tests::moto::Moto;
use shoal_tests::oci::{noise, write_layout};
use shoal_tests::{error_code, require_tool, sha256, skopeo_copy, tempdir, Origin};

const SECRET: &str = "region-secret-0123456789";

/// One upload driven through the three nodes of a region: opened on node 1, continued on
/// node 2, finished on node 3. The session lives in the origin and its binding in the
/// replicated catalogue, so every node knows whose it is: another principal with push on the
/// namespace gets `BLOB_UPLOAD_UNKNOWN` on every node.
#[test]
fn one_upload_through_three_nodes() {
    let dir = tempdir();
    let region = shoal_tests::region::Region::start(dir.path(), 3, 3);
    let (a, b, c) = (
        region.node(1).registry(),
        region.node(2).registry(),
        region.node(3).registry(),
    );
    a.create_namespace("acme");
    let (ok, _, err) = region.node(1).cli(&[
        "user",
        "create",
        "mallory",
        "--password",
        "mallory-password-1",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = region.node(1).cli(&[
        "role",
        "bind",
        "mallory",
        "--role",
        "developer",
        "--namespace",
        "acme",
    ]);
    assert!(ok, "{err}");
    let data = noise(21, 3_000_000);
    let digest = sha256(&data);
    let r = a
        .http
        .post(a.url("/v2/acme/lb/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["Location"].to_str().unwrap().to_string();
    let r = b
        .http
        .patch(b.url(&loc))
        .header("Content-Range", "0-1999999")
        .body(data[..2_000_000].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "PATCH through node b");
    let loc = r.headers()["Location"].to_str().unwrap().to_string();
    for id in 1..=3 {
        let mallory = shoal_tests::Registry::with_auth(
            &region.node(id).url,
            Some(&shoal_tests::basic("mallory", "mallory-password-1")),
        );
        let r = mallory.http.get(mallory.url(&loc)).send().unwrap();
        assert_eq!(
            error_code(r),
            (404, "BLOB_UPLOAD_UNKNOWN".into()),
            "node {id}"
        );
        let r = mallory
            .http
            .patch(mallory.url(&loc))
            .body(b"not yours".to_vec())
            .send()
            .unwrap();
        assert_eq!(error_code(r).0, 404, "node {id}");
    }
    let r = c.http.get(c.url(&loc)).send().unwrap();
    assert_eq!(
        r.headers()["Range"],
        "0-1999999",
        "node c sees the bytes node b received"
    );
    let r = c
        .http
        .put(c.url(&format!("{loc}?digest={digest}")))
        .body(data[2_000_000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "PUT through node c: {:?}", r.text());
    assert_eq!(
        c.get(&format!("/v2/acme/lb/blobs/{digest}"))
            .bytes()
            .unwrap()
            .as_ref(),
        &data[..]
    );
    let stored = dir
        .path()
        .join("origin/blobs/sha256")
        .join(&digest["sha256:".len().."sha256:".len() + 2])
        .join(&digest["sha256:".len()..]);
    assert_eq!(
        std::fs::read(stored).unwrap(),
        data,
        "the blob lives in the origin"
    );
    assert!(
        !dir.path().join("node-1/origin").exists(),
        "nodes keep no blob store of their own"
    );
}

#[test]
fn callers_without_the_secret_get_nothing() {
    let dir = tempdir();
    let origin = Origin::start(&dir.path().join("origin"), SECRET);
    let http = reqwest::blocking::Client::new();
    for auth in [None, Some("Bearer wrong-secret-wrong-secret")] {
        let mut req = http.get(format!("{}/v1/blobs", origin.url));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.text().unwrap(), "");
    }
    let r = http
        .post(format!("{}/v1/uploads", origin.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let wrong = Origin::with_secret(&origin, "not-the-region-secret");
    let node = wrong.node(&dir.path().join("n"));
    let reg = node.registry();
    reg.create_namespace("acme");
    let r = reg
        .http
        .post(reg.url("/v2/acme/x/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(error_code(r), (503, "UNAVAILABLE".into()));
}

#[test]
fn origin_outage_keeps_manifests_and_fails_blobs_fast() {
    let dir = tempdir();
    let mut origin = Origin::start(&dir.path().join("origin"), SECRET);
    let node = origin.node(&dir.path().join("n"));
    let reg = node.registry();
    reg.create_namespace("acme");
    let (digest, bytes) = reg.push_image("acme/out", "v1", b"layer behind the origin");
    origin.kill();
    let r = reg.get("/v2/acme/out/manifests/v1");
    assert_eq!(r.status(), 200, "manifests come from the metadata");
    assert_eq!(r.bytes().unwrap().as_ref(), &bytes[..]);
    assert_eq!(
        reg.get(&format!("/v2/acme/out/manifests/{digest}"))
            .status(),
        200
    );
    let layer = sha256(b"layer behind the origin");
    let started = Instant::now();
    let r = reg.get(&format!("/v2/acme/out/blobs/{layer}"));
    let (status, code) = error_code(r);
    assert_eq!((status, code.as_str()), (503, "UNAVAILABLE"));
    // Generous bound: this guards against hanging, it is not a latency target.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "an origin outage must not hang clients"
    );
    let r = reg
        .http
        .post(reg.url("/v2/acme/out/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(error_code(r).0, 503);
}

/// A moto S3 server on a free port, killed on drop.
#[test]
fn skopeo_through_a_node_backed_by_an_s3_origin() {
    let Some(moto) = Moto::start() else { return };
    if !require_tool("skopeo") {
        return;
    }
    moto.create_bucket("shoal-blobs");
    let dir = tempdir();
    let origin = Origin::start_args(
        &["--s3-endpoint", &moto.url, "--s3-bucket", "shoal-blobs"],
        &dir.path().join("origin.log"),
        SECRET,
        &shoal_tests::moto::CREDENTIALS,
    );
    let node = origin.node(&dir.path().join("n"));
    node.registry().create_namespace("acme");
    let src = dir.path().join("src");
    let layers = vec![
        vec![("s3.txt", b"stored in a bucket\n".to_vec())],
        vec![("big.bin", noise(31, 6 << 20))],
    ];
    let digest = write_layout(&src, "v1", &layers);
    let dest = format!("docker://{}/acme/s3img:v1", node.addr);
    let (ok, out) = skopeo_copy(&format!("oci:{}:v1", src.display()), &dest);
    assert!(
        ok,
        "skopeo copy in: {out}\norigin log:\n{}",
        std::fs::read_to_string(&origin.log).unwrap_or_default()
    );
    let back = dir.path().join("back");
    let (ok, out) = skopeo_copy(&dest, &format!("oci:{}:v1", back.display()));
    assert!(ok, "skopeo copy out: {out}");
    let manifest =
        std::fs::read(back.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap();
    assert_eq!(sha256(&manifest), digest);
    for entry in std::fs::read_dir(src.join("blobs/sha256")).unwrap() {
        let e = entry.unwrap();
        let copied = std::fs::read(back.join("blobs/sha256").join(e.file_name())).unwrap();
        assert_eq!(
            copied,
            std::fs::read(e.path()).unwrap(),
            "blob {:?} round-trips",
            e.file_name()
        );
    }
}
