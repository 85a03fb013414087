//! The management API and CLI on a real node for what people browse and run: repositories
//! with tag counts and sizes, one repository inspected, tags and repositories deleted,
//! a repository's own visibility against its namespace's, usage per namespace, `shoal login`,
//! and signing key rotation.

use serde_json::{json, Value};
use shoal_tests::oci::noise;
use shoal_tests::{basic, error_code, tempdir, Node, Registry, ADMIN_PASSWORD};

const PASSWORD: &str = "manager-password-42";

fn json_of(node: &Node, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&node.cli_ok(&all)).unwrap()
}

#[test]
fn repositories_are_listed_inspected_and_deleted() {
    let dir = tempdir();
    let node = Node::start_with(&dir.path().join("node"), &["--usage-interval", "200ms"]);
    let admin = node.registry();
    node.cli_ok(&["namespace", "create", "acme"]);
    let layer = noise(5, 300_000);
    let (d1, m1) = admin.push_image("acme/team/api", "v1", &layer);
    let (d2, _) = admin.push_image("acme/team/api", "v2", &noise(6, 1000));
    admin.push_image("acme/web", "latest", b"web layer");

    let list = json_of(&node, &["repository", "list", "acme"]);
    let repos = list["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 2, "{list}");
    let api = &repos[0];
    assert_eq!(api["name"], "acme/team/api");
    assert_eq!(api["tags"], 2);
    assert_eq!(api["manifests"], 2);
    assert!(api["size"].as_u64().unwrap() > 300_000, "{api}");
    assert!(api["last_push"].is_string());
    assert_eq!(api["visibility"], "inherit");
    // The table form names the columns.
    let table = node.cli_ok(&["repository", "list", "acme"]);
    assert!(
        table.contains("NAME") && table.contains("acme/web"),
        "{table}"
    );

    let show = json_of(&node, &["repository", "show", "acme/team/api"]);
    assert_eq!(
        show["tag_list"],
        json!([{"name": "v1", "digest": d1}, {"name": "v2", "digest": d2}])
    );
    let first = show["manifest_list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["digest"] == d1.as_str())
        .unwrap()
        .clone();
    assert_eq!(first["manifest_size"], m1.len());
    assert!(first["size"].as_u64().unwrap() >= layer.len() as u64 + m1.len() as u64);
    assert_eq!(first["tags"], json!(["v1"]));
    let tags = json_of(&node, &["tag", "list", "acme/team/api"]);
    assert_eq!(tags["tags"].as_array().unwrap().len(), 2);

    // A reader may look but not delete; nothing changes.
    node.cli_ok(&["user", "create", "rdr", "--password", PASSWORD]);
    node.cli_ok(&["role", "bind", "rdr", "--role", "reader"]);
    let (ok, _, err) = node.cli_as("rdr", PASSWORD, &["tag", "delete", "acme/team/api", "v1"]);
    assert!(!ok && err.contains("DENIED"), "{err}");
    let (ok, _, err) = node.cli_as("rdr", PASSWORD, &["repository", "delete", "acme/web"]);
    assert!(!ok && err.contains("DENIED"), "{err}");
    assert_eq!(admin.get("/v2/acme/web/manifests/latest").status(), 200);
    let anonymous = Registry::anonymous(&node.url);
    assert_eq!(
        error_code(anonymous.get("/api/v1/namespaces/acme/repositories")),
        (401, "UNAUTHORIZED".into())
    );
    assert_eq!(
        error_code(admin.get("/api/v1/repositories/acme%2Fnope")),
        (404, "NAME_UNKNOWN".into())
    );
    assert_eq!(
        error_code(admin.get("/api/v1/repositories/acme%2F..%2Fetc")),
        (400, "NAME_INVALID".into())
    );

    // Deleting a tag leaves its manifest by digest; deleting a repository takes it all.
    node.cli_ok(&["tag", "delete", "acme/team/api", "v1"]);
    assert_eq!(
        error_code(admin.get("/v2/acme/team/api/manifests/v1")),
        (404, "MANIFEST_UNKNOWN".into())
    );
    assert_eq!(
        admin
            .get(&format!("/v2/acme/team/api/manifests/{d1}"))
            .status(),
        200
    );
    node.cli_ok(&["repository", "delete", "acme/team/api"]);
    assert_eq!(
        error_code(admin.get("/v2/acme/team/api/tags/list")),
        (404, "NAME_UNKNOWN".into())
    );
    let config_digest = shoal_tests::sha256(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    assert_eq!(
        error_code(admin.get(&format!("/v2/acme/team/api/blobs/{config_digest}"))),
        (404, "NAME_UNKNOWN".into())
    );
    assert_eq!(
        admin.get("/v2/acme/web/manifests/latest").status(),
        200,
        "another repository is untouched"
    );
    let v: Value = admin.get("/v2/_catalog").json().unwrap();
    assert_eq!(v["repositories"], json!(["acme/web"]));

    // Usage: pulls and pushes reach the catalogue within a few intervals. Three manifest
    // pulls above and three here; three pushes.
    for _ in 0..3 {
        assert_eq!(admin.get("/v2/acme/web/manifests/latest").status(), 200);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let usage = loop {
        let u = json_of(&node, &["namespace", "usage", "acme"]);
        if u["pulls"].as_u64() >= Some(6) || std::time::Instant::now() > deadline {
            break u;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(usage["pulls"], 6, "{usage}");
    assert_eq!(usage["pushes"], 3, "{usage}");
    assert!(usage["bytes_served"].as_u64().unwrap() > 0, "{usage}");
    assert_eq!(usage["repositories"], 1);
    assert!(usage["stored_bytes"].as_u64().unwrap() > 0, "{usage}");

    // Bytes served count what was delivered: a blob pull cut off after its first bytes
    // adds nothing, a whole one adds its size.
    let big = shoal_tests::oci::noise(5, 48 << 20);
    let big_digest = admin.push_blob("acme/web", &big);
    let small = b"a small blob, served whole".to_vec();
    let small_digest = admin.push_blob("acme/web", &small);
    let served = |u: &Value| u["bytes_served"].as_u64().unwrap();
    let wait_for = |want: &dyn Fn(&Value) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let u = json_of(&node, &["namespace", "usage", "acme"]);
            if want(&u) || std::time::Instant::now() > deadline {
                break u;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let before = served(&wait_for(&|u| u["pushes"] == 3));
    {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(&node.addr).unwrap();
        write!(
            tcp,
            "GET /v2/acme/web/blobs/{big_digest} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\r\n",
            node.addr,
            shoal_tests::basic("admin", shoal_tests::ADMIN_PASSWORD)
        )
        .unwrap();
        let mut first = [0u8; 4096];
        tcp.read_exact(&mut first).unwrap();
        assert!(first.starts_with(b"HTTP/1.1 200"));
        // Closed with most of the body unread.
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        admin
            .get(&format!("/v2/acme/web/blobs/{small_digest}"))
            .bytes()
            .unwrap(),
        small
    );
    let after = served(&wait_for(&|u| served(u) > before));
    assert_eq!(
        after - before,
        small.len() as u64,
        "only the whole pull counts (before {before}, after {after})"
    );
}

#[test]
fn a_repository_can_be_more_or_less_public_than_its_namespace() {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    let admin = node.registry();
    node.cli_ok(&["namespace", "create", "priv"]);
    node.cli_ok(&["namespace", "create", "pub", "--public"]);
    for repo in ["priv/open", "priv/closed", "pub/open", "pub/closed"] {
        admin.push_image(repo, "v1", repo.as_bytes());
    }
    node.cli_ok(&["repository", "set", "priv/open", "--visibility", "public"]);
    node.cli_ok(&["repository", "set", "pub/closed", "--visibility", "private"]);
    let anonymous = Registry::anonymous(&node.url);
    let pull = |repo: &str| error_code(anonymous.get(&format!("/v2/{repo}/manifests/v1")));
    assert_eq!(pull("priv/open").0, 200);
    assert_eq!(pull("priv/closed"), (401, "UNAUTHORIZED".into()));
    assert_eq!(pull("pub/open").0, 200);
    assert_eq!(pull("pub/closed"), (401, "UNAUTHORIZED".into()));
    // The token endpoint agrees.
    let grant = |repo: &str| -> Value {
        let v: Value = anonymous
            .get(&format!("/auth/token?scope=repository:{repo}:pull"))
            .json()
            .unwrap();
        let p = v["token"]
            .as_str()
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap()
            .to_string();
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap();
        serde_json::from_slice::<Value>(&raw).unwrap()["access"].clone()
    };
    assert_eq!(grant("priv/open")[0]["actions"], json!(["pull"]));
    assert_eq!(grant("pub/closed"), json!([]));
    // Anonymous callers still list nothing.
    assert_eq!(
        error_code(anonymous.get("/v2/_catalog")),
        (401, "UNAUTHORIZED".into())
    );
    let show = json_of(&node, &["repository", "show", "priv/open"]);
    assert_eq!(show["visibility"], "public");
    assert_eq!(show["effective_visibility"], "public");
    node.cli_ok(&["repository", "set", "priv/open", "--visibility", "inherit"]);
    assert_eq!(pull("priv/open"), (401, "UNAUTHORIZED".into()));
    let r = admin
        .http
        .patch(admin.url("/api/v1/repositories/priv%2Fopen"))
        .json(&json!({"visibility": "everyone"}))
        .send()
        .unwrap();
    assert_eq!(error_code(r), (400, "BAD_REQUEST".into()));
}

#[test]
fn shoal_login_saves_a_login_and_signing_keys_rotate() {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    let config = dir.path().join("config");
    let shoal = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(shoal_tests::shoal_bin())
            .args(args)
            .args(["--server", &node.url])
            .env("SHOAL_CONFIG_DIR", &config)
            .env_remove("SHOAL_USERNAME")
            .env_remove("SHOAL_PASSWORD")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = shoal(&["namespace", "list"], "");
    assert!(!ok && out.contains("UNAUTHORIZED"), "{out}");
    let (ok, out) = shoal(&["login", "-u", "admin", "--password-stdin"], "wrong\n");
    assert!(!ok && out.contains("UNAUTHORIZED"), "{out}");
    assert!(
        !config.join("logins.json").exists(),
        "a failed login saved nothing"
    );
    let (ok, out) = shoal(
        &["login", "-u", "admin", "--password-stdin"],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    assert!(ok, "{out}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(config.join("logins.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (ok, out) = shoal(&["namespace", "create", "saved"], "");
    assert!(ok, "{out}");
    let (ok, out) = shoal(&["whoami", "--json"], "");
    assert!(ok, "{out}");
    let me: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(me["principal"], "admin");
    assert_eq!(me["runs_cluster"], true);

    // Rotation: a token from before keeps working; new tokens carry the new key.
    let admin = node.registry();
    admin.push_image("saved/app", "v1", b"rotation layer");
    let token_of = |who: &Registry| -> String {
        let v: Value = who
            .get("/auth/token?scope=repository:saved/app:pull")
            .json()
            .unwrap();
        v["token"].as_str().unwrap().to_string()
    };
    let kid_of = |t: &str| -> String {
        use base64::Engine;
        let h = t.split('.').next().unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .unwrap();
        serde_json::from_slice::<Value>(&raw).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = token_of(&admin);
    let (ok, out) = shoal(&["signing-key", "rotate", "--json"], "");
    assert!(ok, "{out}");
    let rotated: Value = serde_json::from_str(out.trim()).unwrap();
    let after = token_of(&admin);
    assert_ne!(kid_of(&before), kid_of(&after));
    assert_eq!(kid_of(&after), rotated["kid"].as_str().unwrap());
    for t in [&before, &after] {
        let r = Registry::with_auth(&node.url, Some(&format!("Bearer {t}")));
        assert_eq!(r.get("/v2/saved/app/manifests/v1").status(), 200);
    }
    let (ok, out) = shoal(&["signing-key", "list", "--json"], "");
    assert!(ok, "{out}");
    let keys: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(keys["signing_keys"].as_array().unwrap().len(), 2, "{keys}");
    assert!(!out.contains("PRIVATE"), "no key material is shown");
    // Only the cluster's admins rotate.
    assert!(
        node.cli(&["user", "create", "dev", "--password", PASSWORD])
            .0
    );
    assert!(node.cli(&["role", "bind", "dev", "--role", "developer"]).0);
    let dev = Registry::with_auth(&node.url, Some(&basic("dev", PASSWORD)));
    let r = dev
        .http
        .post(dev.url("/api/v1/signing-keys"))
        .send()
        .unwrap();
    assert_eq!(error_code(r), (403, "DENIED".into()));

    let (ok, out) = shoal(&["logout"], "");
    assert!(ok && out.contains("removed"), "{out}");
    let (ok, out) = shoal(&["namespace", "list"], "");
    assert!(!ok && out.contains("UNAUTHORIZED"), "{out}");
}
