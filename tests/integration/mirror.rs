//! Pull-through mirrors against real upstream registries: CNCF Distribution behind nginx
//! (which logs every request, and answers 429 or 503 when told), and a second Shoal node with
//! token auth and a private namespace. Real clients: containerd through `ctr --hosts-dir`
//! (the `?ns=` way in), skopeo and docker through `HOST/NAMESPACE/...`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_tests::oci::{self, noise, write_layout};
use shoal_tests::region::Region;
use shoal_tests::upstream::{Trouble, Upstream};
use shoal_tests::{
    basic, error_code, metric, node_with_namespace, require_containerd, run_tool, sha256, tempdir,
    Node, Registry,
};

/// The tag TTL the mirrors here get: long enough that two requests in a row fall within it.
const TTL: Duration = Duration::from_secs(4);

fn header(r: &reqwest::blocking::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A node mirroring `up` into namespace `ns` (public), through the CLI.
fn mirror_node(dir: &std::path::Path, up: &Upstream, ns: &str, extra: &[&str]) -> Node {
    let mut args = vec!["--upstream-timeout", "2s"];
    args.extend(extra);
    let node = Node::start_with(dir, &args);
    let ttl = format!("{}s", TTL.as_secs());
    bind_upstream(&node, up, ns, &["--tag-ttl", &ttl]);
    node
}

/// A 3-node region in `dir` whose public namespace `mirror` mirrors `up`.
fn mirror_region(dir: &std::path::Path, up: &Upstream) -> Region {
    let region = Region::start(&dir.join("region"), 3, 3);
    bind_upstream(region.node(1), up, "mirror", &[]);
    region
}

/// `shoal upstream create dist --url UP --namespace NS --public EXTRA…` through `node`.
fn bind_upstream(node: &Node, up: &Upstream, ns: &str, extra: &[&str]) {
    let mut args = vec![
        "upstream",
        "create",
        "dist",
        "--url",
        &up.url,
        "--namespace",
        ns,
        "--public",
    ];
    args.extend(extra);
    let (ok, out, err) = node.cli(&args);
    assert!(ok, "upstream create: {out}{err}");
}

/// Pushes a blob to Distribution, which takes no monolithic `POST ?digest=`: a session,
/// then one `PUT` with the bytes.
fn push_blob(src: &Registry, repo: &str, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    let r = src
        .http
        .post(src.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "open an upload upstream");
    let location = header(&r, "Location");
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = if location.starts_with("http") {
        format!("{location}{sep}digest={d}")
    } else {
        src.url(&format!("{location}{sep}digest={d}"))
    };
    let r = src
        .http
        .put(url)
        .header("Content-Type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "push a blob upstream: {}",
        r.text().unwrap()
    );
    d
}

/// Pushes an image of `layers` to `repo:tag` on the upstream itself (not through nginx);
/// returns (manifest digest, manifest bytes, layer digests).
fn push_upstream(
    up: &Upstream,
    repo: &str,
    tag: &str,
    layers: &[Vec<u8>],
) -> (String, Vec<u8>, Vec<String>) {
    let src = Registry::anonymous(&up.direct);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"tag":"{tag}"}}"#
    );
    let c = push_blob(&src, repo, config.as_bytes());
    let digests: Vec<String> = layers.iter().map(|l| push_blob(&src, repo, l)).collect();
    let refs: Vec<(&str, usize)> = digests
        .iter()
        .zip(layers)
        .map(|(d, l)| (d.as_str(), l.len()))
        .collect();
    let m = oci::image_manifest(&c, config.len(), &refs, None);
    let r = src.put_manifest(repo, tag, oci::OCI_MANIFEST, &m);
    assert_eq!(
        r.status(),
        201,
        "push to the upstream: {}",
        r.text().unwrap()
    );
    (sha256(&m), m, digests)
}

fn get_ok(reg: &Registry, path: &str) -> reqwest::blocking::Response {
    let r = reg.get(path);
    assert_eq!(r.status(), 200, "GET {path}");
    r
}

#[test]
fn a_mirror_serves_the_upstream_and_keeps_serving_when_it_fails() {
    let dir = tempdir();
    let Some(mut up) = Upstream::start(&dir.path().join("upstream")) else {
        return;
    };
    let layer = noise(1, 3 << 20);
    let (digest, manifest, layers) = push_upstream(&up, "team/app", "v1", &[layer]);
    let node = mirror_node(&dir.path().join("node"), &up, "mirror", &[]);
    let anon = Registry::anonymous(&node.url);

    // HOST/NAMESPACE/path:tag, the Harbor and ECR way; anonymous on a public mirror.
    let r = get_ok(&anon, "/v2/mirror/team/app/manifests/v1");
    assert_eq!(header(&r, "Docker-Content-Digest"), digest);
    assert_eq!(r.bytes().unwrap().to_vec(), manifest);
    for _ in 0..2 {
        let r = get_ok(&anon, &format!("/v2/mirror/team/app/blobs/{}", layers[0]));
        assert_eq!(sha256(&r.bytes().unwrap()), layers[0]);
    }
    assert_eq!(
        up.count("GET", &format!("/blobs/{}", layers[0])),
        1,
        "{:?}",
        up.requests()
    );
    // The blob is kept in the origin (once the fill that fetched it has stored it, just
    // after its last byte went out): the embedded origin's own directory holds it.
    let hex = layers[0].trim_start_matches("sha256:");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !walk(&node.data.join("origin"))
        .iter()
        .any(|p| p.ends_with(hex))
    {
        assert!(
            Instant::now() < deadline,
            "the mirrored blob is not in the origin"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // containerd's way: `?ns=<registry host>`, percent-encoded, HEAD first.
    let ns = up.host.replace(':', "%3A");
    let r = anon
        .http
        .head(anon.url(&format!("/v2/team/app/manifests/v1?ns={ns}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Docker-Content-Digest"), digest);
    let r = get_ok(&anon, &format!("/v2/team/app/blobs/{}?ns={ns}", layers[0]));
    assert_eq!(sha256(&r.bytes().unwrap()), layers[0]);
    let started = Instant::now();
    let (status, code) = error_code(anon.get("/v2/team/app/manifests/v1?ns=elsewhere.example"));
    assert_eq!((status, code.as_str()), (404, "NAME_UNKNOWN"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "an unknown ns must be refused at once"
    );

    // Read-only: a push (even the admin's) is refused, saying why.
    let admin = node.registry();
    let r = admin
        .http
        .post(admin.url("/v2/mirror/team/app/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("mirrors upstream dist"));
    let (status, code) = error_code(
        admin
            .http
            .delete(admin.url("/v2/mirror/team/app/manifests/v1"))
            .send()
            .unwrap(),
    );
    assert_eq!((status, code.as_str()), (403, "DENIED"));
    // The mirror's default retention policy: keep what was pulled within 30 days.
    let policy: Value = admin
        .get("/api/v1/namespaces/mirror/retention")
        .json()
        .unwrap();
    assert_eq!(policy["rules"][0]["pulled_within"], "30days", "{policy}");

    // Tag freshness: the upstream moves v1; within the TTL the old digest is served, after
    // it the new one, found by a HEAD; an unchanged tag is only HEADed again.
    std::thread::sleep(TTL);
    get_ok(&anon, "/v2/mirror/team/app/manifests/v1");
    let (digest2, _, _) = push_upstream(&up, "team/app", "v1", &[noise(2, 1000)]);
    let r = get_ok(&anon, "/v2/mirror/team/app/manifests/v1");
    assert_eq!(
        header(&r, "Docker-Content-Digest"),
        digest,
        "within the TTL"
    );
    let heads = up.count("HEAD", "/manifests/v1");
    std::thread::sleep(TTL);
    let r = get_ok(&anon, "/v2/mirror/team/app/manifests/v1");
    assert_eq!(
        header(&r, "Docker-Content-Digest"),
        digest2,
        "after the TTL"
    );
    assert_eq!(up.count("HEAD", "/manifests/v1"), heads + 1);
    let gets = up.count("GET", "/manifests/v1");
    std::thread::sleep(TTL);
    get_ok(&anon, "/v2/mirror/team/app/manifests/v1");
    assert_eq!(up.count("HEAD", "/manifests/v1"), heads + 2);
    assert_eq!(
        up.count("GET", "/manifests/v1"),
        gets,
        "an unchanged tag is not fetched again"
    );

    // Trouble. A tag pushed upstream but never pulled through the mirror:
    push_upstream(&up, "team/app", "fresh", &[noise(3, 1000)]);
    std::thread::sleep(TTL);
    up.set_trouble(Trouble::RateLimited);
    let r = get_ok(&anon, "/v2/mirror/team/app/manifests/v1");
    assert_eq!(
        header(&r, "Docker-Content-Digest"),
        digest2,
        "served stale on 429"
    );
    assert!(metric(&node, "shoal_upstream_stale_serves_total") >= 1.0);
    let r = anon.get("/v2/mirror/team/app/manifests/fresh");
    let retry = header(&r, "Retry-After");
    assert_eq!(error_code(r), (429, "TOOMANYREQUESTS".into()));
    assert!(
        retry.parse::<u64>().is_ok_and(|s| s >= 1),
        "Retry-After {retry:?}"
    );
    assert!(metric(&node, "shoal_upstream_rate_limited_total") >= 1.0);

    std::thread::sleep(Duration::from_secs(3)); // the upstream's Retry-After runs out
    up.set_trouble(Trouble::Down);
    get_ok(&anon, "/v2/mirror/team/app/manifests/v1");
    assert_eq!(
        error_code(anon.get("/v2/mirror/team/app/manifests/fresh")),
        (503, "UNAVAILABLE".into())
    );
    let r = get_ok(&anon, &format!("/v2/mirror/team/app/blobs/{}", layers[0]));
    assert_eq!(
        sha256(&r.bytes().unwrap()),
        layers[0],
        "cached blobs are served while it is down"
    );

    up.kill();
    let r = get_ok(&anon, "/v2/mirror/team/app/manifests/v1");
    assert_eq!(
        header(&r, "Docker-Content-Digest"),
        digest2,
        "served stale with the upstream gone"
    );
    let started = Instant::now();
    assert_eq!(
        error_code(anon.get("/v2/mirror/team/app/manifests/fresh")),
        (503, "UNAVAILABLE".into())
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a dead upstream must fail fast"
    );
    get_ok(&anon, &format!("/v2/mirror/team/app/blobs/{}", layers[0]));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn an_index_is_fetched_with_the_child_asked_for_and_no_other() {
    let dir = tempdir();
    let Some(up) = Upstream::start(&dir.path().join("upstream")) else {
        return;
    };
    let (amd, amd_bytes, amd_layers) = push_upstream(&up, "team/multi", "amd64", &[noise(4, 5000)]);
    let (arm, arm_bytes, arm_layers) = push_upstream(&up, "team/multi", "arm64", &[noise(5, 5000)]);
    let platform = |d: &str, n: usize, arch: &str| json!({"mediaType": oci::OCI_MANIFEST, "digest": d, "size": n, "platform": {"os": "linux", "architecture": arch}});
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_INDEX,
        "manifests": [platform(&amd, amd_bytes.len(), "amd64"), platform(&arm, arm_bytes.len(), "arm64")],
    }))
    .unwrap();
    let src = Registry::anonymous(&up.direct);
    assert_eq!(
        src.put_manifest("team/multi", "latest", oci::OCI_INDEX, &index)
            .status(),
        201
    );

    let node = mirror_node(&dir.path().join("node"), &up, "mirror", &[]);
    let anon = Registry::anonymous(&node.url);
    let r = get_ok(&anon, "/v2/mirror/team/multi/manifests/latest");
    assert_eq!(r.bytes().unwrap().to_vec(), index);
    let r = get_ok(&anon, &format!("/v2/mirror/team/multi/manifests/{amd}"));
    assert_eq!(r.bytes().unwrap().to_vec(), amd_bytes);
    let r = get_ok(
        &anon,
        &format!("/v2/mirror/team/multi/blobs/{}", amd_layers[0]),
    );
    assert_eq!(sha256(&r.bytes().unwrap()), amd_layers[0]);
    assert_eq!(
        up.count("GET", &format!("/manifests/{arm}")),
        0,
        "the other child is fetched only when asked for"
    );
    assert_eq!(up.count("GET", &format!("/blobs/{}", arm_layers[0])), 0);
    // A digest the upstream does not have is MANIFEST_UNKNOWN; a blob no mirrored manifest
    // lists is BLOB_UNKNOWN (a mirror does not fetch what no manifest here names).
    let missing = sha256(b"nothing");
    assert_eq!(
        error_code(anon.get(&format!("/v2/mirror/team/multi/manifests/{missing}"))),
        (404, "MANIFEST_UNKNOWN".into())
    );
    assert_eq!(
        error_code(anon.get(&format!("/v2/mirror/team/multi/blobs/{}", arm_layers[0]))),
        (404, "BLOB_UNKNOWN".into())
    );
    // Now asked for, the other child comes too.
    get_ok(&anon, &format!("/v2/mirror/team/multi/manifests/{arm}"));
    get_ok(
        &anon,
        &format!("/v2/mirror/team/multi/blobs/{}", arm_layers[0]),
    );
}

#[test]
fn a_private_shoal_upstream_with_token_auth_and_a_private_mirror() {
    let dir = tempdir();
    // The upstream: a Shoal node with a private namespace, reached with a pull credential
    // through its token flow.
    let upstream = Node::start(&dir.path().join("upstream"));
    upstream.registry().create_namespace("vendor");
    let layer = noise(6, 200_000);
    let (digest, _) = upstream.registry().push_image("vendor/tool", "v1", &layer);
    let (_, login, secret) =
        upstream.credential(&["--name", "mirror", "--scope", "containerRegistry:pull"]);

    let node = Node::start_with(&dir.path().join("node"), &["--upstream-timeout", "2s"]);
    let admin = node.registry();
    admin.create_namespace("vendor-mirror");
    let r = admin
        .http
        .post(admin.url("/api/v1/upstreams"))
        .json(&json!({"name": "vendor", "url": upstream.url, "namespace": "vendor-mirror", "username": login, "password": secret}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let shown: Value = r.json().unwrap();
    assert_eq!(shown["has_password"], true);
    assert!(
        !shown.to_string().contains(&secret),
        "the API returned the password: {shown}"
    );
    let listed = admin.get("/api/v1/upstreams").text().unwrap();
    assert!(listed.contains("vendor-mirror") && !listed.contains(&secret));

    // The mirror namespace is private: anonymous is refused, a pull-only credential pulls.
    let anon = Registry::anonymous(&node.url);
    assert_eq!(
        anon.get("/v2/vendor-mirror/vendor/tool/manifests/v1")
            .status(),
        401
    );
    let (_, puller, puller_secret) =
        node.credential(&["--name", "k8s", "--scope", "containerRegistry:pull"]);
    let reader = Registry::with_auth(&node.url, Some(&basic(&puller, &puller_secret)));
    let r = get_ok(&reader, "/v2/vendor-mirror/vendor/tool/manifests/v1");
    assert_eq!(header(&r, "Docker-Content-Digest"), digest);
    let m: Value = serde_json::from_slice(&r.bytes().unwrap()).unwrap();
    let l = m["layers"][0]["digest"].as_str().unwrap();
    let r = get_ok(&reader, &format!("/v2/vendor-mirror/vendor/tool/blobs/{l}"));
    assert_eq!(r.bytes().unwrap().to_vec(), layer);
    // …and cannot push there (nor could it anywhere), the admin neither: read-only.
    assert_eq!(
        admin
            .http
            .post(admin.url("/v2/vendor-mirror/vendor/tool/blobs/uploads/"))
            .send()
            .unwrap()
            .status(),
        403
    );
    assert!(metric(&node, "shoal_upstream_tokens_fetched_total") >= 1.0);
    assert!(
        !node.log_text().contains(&secret),
        "the node logged the upstream password"
    );

    // Wrong credentials upstream: a clear error, fast, nothing stored.
    admin.create_namespace("wrong");
    let r = admin
        .http
        .post(admin.url("/api/v1/upstreams"))
        .json(&json!({"name": "wrong", "url": upstream.url, "namespace": "wrong", "host": "wrong.example", "username": login, "password": "not-it", "default_retention": false}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let (status, code) = error_code(admin.get("/v2/wrong/vendor/tool/manifests/v1"));
    assert_eq!((status, code.as_str()), (503, "UNAVAILABLE"));
    assert_eq!(
        admin.get("/api/v1/namespaces/wrong/retention").status(),
        404,
        "without the default retention the namespace has no policy"
    );
    // Bad bindings are refused with the reason.
    for bad in [
        json!({"name": "x", "url": "ftp://h", "namespace": "wrong2"}),
        json!({"name": "x", "url": "https://u:p@h", "namespace": "wrong2"}),
        json!({"name": "x", "url": upstream.url, "namespace": "vendor-mirror"}),
        json!({"name": "x", "url": upstream.url, "namespace": "nowhere"}),
    ] {
        let r = admin
            .http
            .post(admin.url("/api/v1/upstreams"))
            .json(&bad)
            .send()
            .unwrap();
        assert!(
            matches!(r.status().as_u16(), 400 | 404 | 409),
            "{bad}: {}",
            r.status()
        );
    }
    // Deleting the binding leaves the content, now an ordinary namespace.
    assert_eq!(
        admin
            .http
            .delete(admin.url("/api/v1/upstreams/vendor"))
            .send()
            .unwrap()
            .status(),
        204
    );
    get_ok(&reader, "/v2/vendor-mirror/vendor/tool/manifests/v1");
}

#[test]
fn an_upstream_asking_for_basic_credentials_gets_them() {
    let dir = tempdir();
    let Some(up) = Upstream::start_with(&dir.path().join("upstream"), Some(("bot", "s3cret")))
    else {
        return;
    };
    let (digest, _, layers) = push_upstream(&up, "team/app", "v1", &[noise(30, 10_000)]);
    let node = Node::start_with(&dir.path().join("node"), &["--upstream-timeout", "2s"]);
    let admin = node.registry();
    for (ns, host, password) in [
        ("basic", up.host.as_str(), "s3cret"),
        ("nopass", "nopass.example", "wrong"),
    ] {
        admin.create_namespace(ns);
        let body = json!({"name": ns, "url": up.url, "namespace": ns, "host": host, "username": "bot", "password": password});
        let r = admin
            .http
            .post(admin.url("/api/v1/upstreams"))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = get_ok(&admin, "/v2/basic/team/app/manifests/v1");
    assert_eq!(header(&r, "Docker-Content-Digest"), digest);
    let r = get_ok(&admin, &format!("/v2/basic/team/app/blobs/{}", layers[0]));
    assert_eq!(sha256(&r.bytes().unwrap()), layers[0]);
    // Sent only after the upstream asked: the first request of each kind went without.
    let statuses: Vec<String> = up.requests();
    assert!(statuses.iter().any(|l| l.contains(" 401 ")), "{statuses:?}");
    let (status, code) = error_code(admin.get("/v2/nopass/team/app/manifests/v1"));
    assert_eq!((status, code.as_str()), (503, "UNAVAILABLE"));
}

#[test]
fn a_region_fetches_each_upstream_blob_once_for_a_storm() {
    let dir = tempdir();
    let Some(up) = Upstream::start(&dir.path().join("upstream")) else {
        return;
    };
    let layers: Vec<Vec<u8>> = (0..3).map(|i| noise(10 + i, 4 << 20)).collect();
    let (digest, _, blob_digests) = push_upstream(&up, "team/big", "v1", &layers);
    let region = mirror_region(dir.path(), &up);
    let urls: Vec<String> = region.running().map(|(_, n)| n.url.clone()).collect();
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let url = urls[i % urls.len()].clone();
            let (digest, blobs) = (digest.clone(), blob_digests.clone());
            std::thread::spawn(move || {
                let reg = Registry::anonymous(&url);
                let r = reg.get("/v2/mirror/team/big/manifests/v1");
                assert_eq!(r.status(), 200, "{url}");
                assert_eq!(header(&r, "Docker-Content-Digest"), digest);
                for b in &blobs {
                    let r = reg.get(&format!("/v2/mirror/team/big/blobs/{b}"));
                    assert_eq!(r.status(), 200, "{url} {b}");
                    assert_eq!(&sha256(&r.bytes().unwrap()), b, "{url}");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    for b in &blob_digests {
        assert_eq!(
            up.count("GET", &format!("/blobs/{b}")),
            1,
            "GETs of {b}: {:?}",
            up.requests()
        );
    }
    // After the storm the blobs are ordinary content: in the shared origin (stored just
    // after their last byte went out).
    let deadline = Instant::now() + Duration::from_secs(10);
    for b in &blob_digests {
        let hex = b.trim_start_matches("sha256:");
        while !walk(&region.dir.join("origin"))
            .iter()
            .any(|p| p.ends_with(hex))
        {
            assert!(Instant::now() < deadline, "{b} is not in the origin");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A cold mirror pull through one node is fetched from the upstream by that node, whichever
/// node is the blob's home (the home lends it the fetch): one hop, not two, and still one
/// upstream GET per blob; a later pull through another node comes from the node lent it.
#[test]
fn a_cold_mirror_pull_is_fetched_by_the_node_asked() {
    let dir = tempdir();
    let Some(up) = Upstream::start(&dir.path().join("upstream")) else {
        return;
    };
    // Six blobs: the chance that node 2 is the home of all of them is 1 in 729.
    let layers: Vec<Vec<u8>> = (0..6)
        .map(|i| noise(30 + i, (1 << 20) + i as usize))
        .collect();
    let (_, _, blobs) = push_upstream(&up, "team/app", "v1", &layers);
    let region = mirror_region(dir.path(), &up);
    let asked = region.node(2);
    let reg = Registry::anonymous(&asked.url);
    assert_eq!(reg.get("/v2/mirror/team/app/manifests/v1").status(), 200);
    for b in &blobs {
        let r = reg.get(&format!("/v2/mirror/team/app/blobs/{b}"));
        assert_eq!(r.status(), 200);
        assert_eq!(&sha256(&r.bytes().unwrap()), b);
    }
    let total: usize = layers.iter().map(Vec::len).sum();
    let from_upstream = metric(asked, "shoal_blob_bytes_total{source=\"upstream\"}");
    assert!(
        from_upstream >= total as f64,
        "node 2 fetched {from_upstream} of the {total} layer bytes from the upstream itself"
    );
    assert_eq!(
        metric(asked, "shoal_blob_bytes_total{source=\"peer\"}"),
        0.0
    );
    // Another node's pull of the same blobs asks no second upstream GET.
    let other = Registry::anonymous(&region.node(3).url);
    for b in &blobs {
        let r = other.get(&format!("/v2/mirror/team/app/blobs/{b}"));
        assert_eq!(r.status(), 200);
        assert_eq!(&sha256(&r.bytes().unwrap()), b);
        assert_eq!(up.count("GET", &format!("/blobs/{b}")), 1, "{b}");
    }
}

#[test]
fn containerd_skopeo_and_docker_pull_through_the_mirror() {
    if !require_containerd() {
        return;
    }
    let dir = tempdir();
    let Some(up) = Upstream::start(&dir.path().join("upstream")) else {
        return;
    };
    let src = dir.path().join("src");
    let layers = vec![
        vec![("hello.txt", b"from the upstream\n".to_vec())],
        vec![("data.bin", noise(21, 300_000))],
    ];
    let digest = write_layout(&src, "v1", &layers);
    let direct = up.direct.trim_start_matches("http://");
    let (ok, out) = run_tool(
        "skopeo",
        &[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", src.display()),
            &format!("docker://{direct}/team/ctr:v1"),
        ],
        &[],
    );
    assert!(ok, "skopeo copy to the upstream: {out}");
    let node = mirror_node(&dir.path().join("node"), &up, "mirror", &[]);

    // containerd names the upstream; hosts.toml makes Shoal its mirror, and containerd adds
    // `?ns=<upstream host>` to every request it sends there.
    let hosts = dir.path().join("hosts");
    std::fs::create_dir_all(hosts.join(&up.host)).unwrap();
    std::fs::write(
        hosts.join(&up.host).join("hosts.toml"),
        format!(
            "server = \"{}\"\n\n[host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            up.url, node.url
        ),
    )
    .unwrap();
    let image = format!("{}/team/ctr:v1", up.host);
    let ns = format!("shoal-mirror-{}", std::process::id());
    let ctr = |args: &[&str]| shoal_tests::ctr(&ns, args);
    let hosts_dir = hosts.display().to_string();
    let (ok, out) = ctr(&["images", "pull", "--hosts-dir", &hosts_dir, &image]);
    assert!(ok, "ctr pull: {out}\nnode log:\n{}", node.log_text());
    let (ok, listed) = ctr(&["images", "ls"]);
    assert!(ok && listed.contains(&digest), "{listed}");
    // Everything containerd fetched came through Shoal: the upstream saw only the mirror
    // (and the harness's own readiness check of `/v2/`).
    let seen: Vec<String> = up
        .requests()
        .into_iter()
        .filter(|l| !l.starts_with("GET /v2/ "))
        .collect();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|l| l.contains("shoal/")),
        "containerd went around the mirror: {seen:?}"
    );
    ctr(&["images", "rm", &image]);
    ctr(&["content", "prune", "references"]);
    ctr(&["namespaces", "rm", &ns]);

    // skopeo and docker through HOST/NAMESPACE/path.
    let via = format!("{}/mirror/team/ctr:v1", node.addr);
    let out_dir = dir.path().join("copied");
    let (ok, out) = run_tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{via}"),
            &format!("oci:{}:v1", out_dir.display()),
        ],
        &[],
    );
    assert!(ok, "skopeo copy from the mirror: {out}");
    let (ok, out) = run_tool("docker", &["pull", &via], &[]);
    assert!(ok, "docker pull: {out}\nnode log:\n{}", node.log_text());
    let (ok, out) = run_tool(
        "docker",
        &[
            "image",
            "inspect",
            "--format",
            "{{index .RepoDigests 0}}",
            &via,
        ],
        &[],
    );
    assert!(ok && out.trim().ends_with(&digest), "{out}");
    run_tool("docker", &["rmi", &via], &[]);
}

/// Whether a namespace mirrors an upstream is remembered while the catalogue is unchanged:
/// binding a namespace a client has just pushed to must refuse its next push at once
/// (guards `Mirrors::binding`'s memory).
#[test]
fn binding_a_namespace_to_an_upstream_ends_its_pushes_at_once() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    // Each push asks whether `acme` mirrors anything: "no" is now remembered.
    reg.push_image("acme/app", "v1", b"layer");
    reg.push_image("acme/app", "v2", b"layer two");
    let (ok, out, err) = node.cli(&[
        "upstream",
        "create",
        "dist",
        "--url",
        "http://127.0.0.1:9",
        "--namespace",
        "acme",
    ]);
    assert!(ok, "upstream create: {out}{err}");
    let r = reg
        .http
        .post(reg.url("/v2/acme/app/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(error_code(r), (403, "DENIED".into()));
}
