//! Access control against a real node, split by concept:
//! - `matrix`: every role and anonymous × pull, push, list, delete × a private and a public
//!   namespace;
//! - `credentials`: credential limits (pull-only, one namespace, revoked, expired) and pull
//!   secrets;
//! - `tokens`: the Docker token endpoint and bad tokens (forged, foreign key, `alg: none`,
//!   another repository's);
//! - `deletion`: a deleted namespace, a deleted user;
//! - `bootstrap`: the first start's admin password;
//! - `remembered`: the gate's remembered answers end with the change that ends them;
//! - `probe_identity`, `probe_uploads`, `probe_edge`: the holes an outside probe found
//!   (issue 19), each kept closed by a test that failed before its fix.
//!
//! Every denied case is checked for its status, its OCI code, and that nothing changed. This
//! file holds the node they share (`setup`) and the helpers that try an operation and check
//! its outcome.

mod bootstrap;
mod credentials;
mod deletion;
mod matrix;
mod probe_edge;
mod probe_identity;
mod probe_uploads;
mod remembered;
mod tokens;

use serde_json::Value;
use shoal_tests::oci::noise;
use shoal_tests::{error_code, sha256, tempdir, Node, Registry};

const PASSWORD: &str = "a-user-password-42";

struct Setup {
    _dir: tempfile::TempDir,
    node: Node,
    admin: Registry,
}

/// One node with a private namespace `priv` and a public one `pub`, an image `app:v1` in each,
/// and users holding each role.
fn setup() -> Setup {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    let admin = node.registry();
    for (ns, public) in [("priv", false), ("pub", true)] {
        let mut args = vec!["namespace", "create", ns];
        if public {
            args.push("--public");
        }
        let (ok, _, err) = node.cli(&args);
        assert!(ok, "{err}");
        admin.push_image(&format!("{ns}/app"), "v1", b"layer");
    }
    for (user, role, ns) in [
        ("adm", "admin", None),
        ("dev", "developer", None),
        ("rdr", "reader", None),
        ("nobody", "", None),
        ("nsdev", "developer", Some("priv")),
    ] {
        let (ok, _, err) = node.cli(&["user", "create", user, "--password", PASSWORD]);
        assert!(ok, "{err}");
        if !role.is_empty() {
            let mut args = vec!["role", "bind", user, "--role", role];
            if let Some(ns) = ns {
                args.extend(["--namespace", ns]);
            }
            let (ok, _, err) = node.cli(&args);
            assert!(ok, "{err}");
        }
    }
    Setup {
        _dir: dir,
        node,
        admin,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Pull,
    Push,
    List,
    Delete,
}

/// Runs `op` on `ns/app` as `who`; returns (status, OCI code). Checks as the admin that a
/// refused push or delete changed nothing.
fn attempt(s: &Setup, who: &Registry, op: Op, ns: &str, case: &str) -> (u16, String) {
    let repo = format!("{ns}/app");
    let tag = format!("del-{case}");
    if op == Op::Delete {
        let m = s
            .admin
            .get(&format!("/v2/{repo}/manifests/v1"))
            .bytes()
            .unwrap();
        let ct = "application/vnd.oci.image.manifest.v1+json";
        assert_eq!(s.admin.put_manifest(&repo, &tag, ct, &m).status(), 201);
    }
    let blob = [case.as_bytes(), ns.as_bytes(), &noise(1, 1000)].concat();
    let r = match op {
        Op::Pull => who.get(&format!("/v2/{repo}/manifests/v1")),
        Op::List => who.get(&format!("/v2/{repo}/tags/list")),
        Op::Push => who
            .http
            .post(who.url(&format!(
                "/v2/{repo}/blobs/uploads/?digest={}",
                sha256(&blob)
            )))
            .header("Content-Type", "application/octet-stream")
            .body(blob.clone())
            .send()
            .unwrap(),
        Op::Delete => who
            .http
            .delete(who.url(&format!("/v2/{repo}/manifests/{tag}")))
            .send()
            .unwrap(),
    };
    let (status, code) = error_code(r);
    if status >= 400 {
        match op {
            Op::Push => assert_eq!(
                s.admin
                    .get(&format!("/v2/{repo}/blobs/{}", sha256(&blob)))
                    .status(),
                404,
                "{case}: a refused push stored its blob"
            ),
            Op::Delete => assert_eq!(
                s.admin.get(&format!("/v2/{repo}/manifests/{tag}")).status(),
                200,
                "{case}: a refused delete removed the tag"
            ),
            _ => {}
        }
    }
    (status, code)
}

fn expect(
    s: &Setup,
    who: &Registry,
    name: &str,
    ns: &str,
    op: Op,
    allowed: bool,
    denied: (u16, &str),
) {
    let case = format!("{name}-{ns}-{op:?}").to_lowercase();
    let (status, code) = attempt(s, who, op, ns, &case);
    if allowed {
        assert!(
            status < 300,
            "{case}: expected success, got {status} {code}"
        );
    } else {
        assert_eq!((status, code.as_str()), denied, "{case}");
    }
}

const DENIED: (u16, &str) = (403, "DENIED");
const UNAUTHORIZED: (u16, &str) = (401, "UNAUTHORIZED");

/// A token from `/auth/token` for `scope`, with Basic credentials when given.
fn token_for(node: &Node, login: Option<(&str, &str)>, scope: &str) -> String {
    let http = reqwest::blocking::Client::new();
    let mut req = http
        .get(format!("{}/auth/token", node.url))
        .query(&[("service", "shoal"), ("scope", scope)]);
    if let Some((u, p)) = login {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    v["token"].as_str().unwrap().to_string()
}
