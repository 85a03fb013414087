//! containerd (through `ctr`, against the containerd that the Docker engine runs) pulls an
//! image from a real node, unpacks it, and pushes it back under another name.

use shoal_tests::oci::{noise, write_layout};
use shoal_tests::{admin_creds, ctr, node_with_namespace, require_containerd, skopeo_copy};

#[test]
fn containerd_pull_unpack_and_push() {
    if !require_containerd() {
        return;
    }
    let (dir, node) = node_with_namespace("acme");
    let src = dir.path().join("src");
    let layers = vec![
        vec![("a.txt", b"containerd layer\n".to_vec())],
        vec![("b.bin", noise(11, 200_000))],
    ];
    let digest = write_layout(&src, "v1", &layers);
    let image = format!("{}/acme/ctr:v1", node.addr);
    let (ok, out) = skopeo_copy(
        &format!("oci:{}:v1", src.display()),
        &format!("docker://{image}"),
    );
    assert!(ok, "skopeo copy: {out}");

    // A namespace of our own inside containerd, unique per run, removed at the end.
    let ns = format!("shoal-test-{}", std::process::id());
    let user = admin_creds();
    let (ok, out) = ctr(
        &ns,
        &["images", "pull", "--plain-http", "--user", &user, &image],
    );
    assert!(ok, "ctr pull: {out}\nnode log:\n{}", node.log_text());
    let (ok, out) = ctr(&ns, &["images", "ls"]);
    assert!(
        ok && out.contains(&digest),
        "pulled digest {digest} not listed:\n{out}"
    );

    let copy = format!("{}/acme/ctr-copy:v1", node.addr);
    let (ok, out) = ctr(&ns, &["images", "tag", &image, &copy]);
    assert!(ok, "ctr tag: {out}");
    let (ok, out) = ctr(
        &ns,
        &["images", "push", "--plain-http", "--user", &user, &copy],
    );
    assert!(ok, "ctr push: {out}\nnode log:\n{}", node.log_text());
    let r = node.registry().get("/v2/acme/ctr-copy/manifests/v1");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["Docker-Content-Digest"].to_str().unwrap(),
        digest
    );

    ctr(&ns, &["images", "rm", &image, &copy]);
    ctr(&ns, &["content", "prune", "references"]);
    ctr(&ns, &["namespaces", "rm", &ns]);
}
