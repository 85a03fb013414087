//! Access control against a real node: the permission matrix (every role and anonymous ×
//! pull, push, list, delete × a private and a public namespace), credential limits (pull-only,
//! one namespace, revoked, expired), bad tokens (forged, foreign key, `alg: none`, another
//! repository's), a deleted namespace, the Docker token endpoint, and the first start's admin
//! password. Every denied case is checked for its status, its OCI code, and that nothing changed.

use std::os::unix::fs::PermissionsExt;

use base64::Engine;
use serde_json::{json, Value};
use shoal_tests::oci::noise;
use shoal_tests::{basic, error_code, sha256, tempdir, Node, Registry};

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

#[test]
fn every_role_against_pull_push_list_delete_on_private_and_public() {
    let s = setup();
    let user = |u: &str| Registry::with_auth(&s.node.url, Some(&basic(u, PASSWORD)));
    let anonymous = Registry::anonymous(&s.node.url);
    let all = [Op::Pull, Op::Push, Op::List, Op::Delete];
    for (name, who) in [
        ("owner", s.admin.http.clone()),
        ("adm", user("adm").http),
        ("dev", user("dev").http),
    ] {
        let who = Registry {
            base: s.node.url.clone(),
            http: who,
        };
        for ns in ["priv", "pub"] {
            for op in all {
                expect(&s, &who, name, ns, op, true, DENIED);
            }
        }
    }
    let reader = user("rdr");
    for ns in ["priv", "pub"] {
        for op in all {
            expect(
                &s,
                &reader,
                "rdr",
                ns,
                op,
                matches!(op, Op::Pull | Op::List),
                DENIED,
            );
        }
    }
    let nobody = user("nobody");
    let nsdev = user("nsdev");
    for op in all {
        let read = matches!(op, Op::Pull | Op::List);
        expect(&s, &nobody, "nobody", "priv", op, false, DENIED);
        expect(&s, &nobody, "nobody", "pub", op, read, DENIED);
        expect(&s, &anonymous, "anon", "priv", op, false, UNAUTHORIZED);
        expect(&s, &anonymous, "anon", "pub", op, read, UNAUTHORIZED);
        expect(&s, &nsdev, "nsdev", "priv", op, true, DENIED);
        expect(&s, &nsdev, "nsdev", "pub", op, read, DENIED);
    }

    // The catalogue: never anonymous; otherwise only namespaces the caller may list.
    let r = anonymous.get("/v2/_catalog");
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("registry:catalog:*"));
    assert_eq!(error_code(r), (401, "UNAUTHORIZED".to_string()));
    let listed = |who: &Registry| -> Value { who.get("/v2/_catalog").json().unwrap() };
    assert_eq!(
        listed(&s.admin)["repositories"],
        json!(["priv/app", "pub/app"])
    );
    assert_eq!(listed(&nobody)["repositories"], json!([]));
    assert_eq!(listed(&nsdev)["repositories"], json!(["priv/app"]));

    // A wrong password is 401 with the challenge, never a fall-back to anonymous.
    let wrong = Registry::with_auth(&s.node.url, Some(&basic("rdr", "not-the-password")));
    let r = wrong.get("/v2/pub/app/manifests/v1");
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(error_code(r), (401, "UNAUTHORIZED".to_string()));
    // Management calls need a role too.
    let (ok, _, err) = s
        .node
        .cli_as("rdr", PASSWORD, &["namespace", "create", "newns"]);
    assert!(!ok && err.contains("DENIED"), "{err}");
    let (ok, _, err) = s.node.cli_as(
        "dev",
        PASSWORD,
        &["user", "create", "x", "--password", PASSWORD],
    );
    assert!(!ok && err.contains("DENIED"), "{err}");
}

#[test]
fn credentials_are_limited_by_scope_namespace_revocation_and_expiry() {
    let s = setup();
    let as_cred = |login: &str, password: &str| {
        Registry::with_auth(&s.node.url, Some(&basic(login, password)))
    };

    let (_, login, password) =
        s.node
            .credential(&["--name", "deploy", "--scope", "containerRegistry:pull"]);
    let pull_only = as_cred(&login, &password);
    expect(&s, &pull_only, "pullonly", "priv", Op::Pull, true, DENIED);
    expect(&s, &pull_only, "pullonly", "priv", Op::Push, false, DENIED);
    expect(
        &s,
        &pull_only,
        "pullonly",
        "priv",
        Op::Delete,
        false,
        DENIED,
    );

    let (_, login, password) = s.node.credential(&[
        "--name",
        "a-only",
        "--scope",
        "containerRegistry",
        "--namespace",
        "priv",
    ]);
    let only_priv = as_cred(&login, &password);
    expect(&s, &only_priv, "onlypriv", "priv", Op::Push, true, DENIED);
    expect(&s, &only_priv, "onlypriv", "pub", Op::Push, false, DENIED);
    // The credential of a reader cannot do more than the reader.
    let (_, login, password) = s.node.credential_as(
        "rdr",
        PASSWORD,
        &["--name", "mine", "--scope", "containerRegistry"],
    );
    expect(
        &s,
        &as_cred(&login, &password),
        "rdrcred",
        "priv",
        Op::Push,
        false,
        DENIED,
    );
    // A credential cannot mint credentials.
    let (ok, _, err) = s.node.cli_as(
        &login,
        &password,
        &[
            "credential",
            "create",
            "--name",
            "x",
            "--scope",
            "containerRegistry",
        ],
    );
    assert!(!ok && err.contains("DENIED"), "{err}");

    let (id, login, password) =
        s.node
            .credential(&["--name", "revoked", "--scope", "containerRegistry"]);
    let revoked = as_cred(&login, &password);
    let token = token_for(
        &s.node,
        Some((&login, &password)),
        "repository:priv/app:pull",
    );
    expect(&s, &revoked, "beforerevoke", "priv", Op::Pull, true, DENIED);
    let (ok, _, err) = s.node.cli(&["credential", "revoke", &id]);
    assert!(ok, "{err}");
    expect(
        &s,
        &revoked,
        "revoked",
        "priv",
        Op::Pull,
        false,
        UNAUTHORIZED,
    );
    let with_token = Registry::with_auth(&s.node.url, Some(&format!("Bearer {token}")));
    expect(
        &s,
        &with_token,
        "revokedtoken",
        "priv",
        Op::Pull,
        false,
        UNAUTHORIZED,
    );

    let (_, login, password) = s.node.credential(&[
        "--name",
        "short",
        "--scope",
        "containerRegistry",
        "--expires",
        "1s",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    expect(
        &s,
        &as_cred(&login, &password),
        "expired",
        "priv",
        Op::Pull,
        false,
        UNAUTHORIZED,
    );

    // Bad input to the credential API is refused with the right code and stores nothing.
    for bad in [
        vec!["--name", "x", "--scope", "everything"],
        vec![
            "--name",
            "x",
            "--scope",
            "containerRegistry",
            "--expires",
            "soon",
        ],
        vec![
            "--name",
            "x",
            "--scope",
            "containerRegistry",
            "--namespace",
            "../etc",
        ],
        vec![
            "--name",
            "x",
            "--scope",
            "containerRegistry",
            "--namespace",
            "nosuchns",
        ],
    ] {
        let mut args = vec!["credential", "create"];
        args.extend(&bad);
        let (ok, _, err) = s.node.cli(&args);
        assert!(
            !ok && (err.contains("BAD_REQUEST")
                || err.contains("NAME_INVALID")
                || err.contains("NAME_UNKNOWN")),
            "{bad:?}: {err}"
        );
    }
    let (ok, out, _) = s.node.cli(&["credential", "list", "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["credentials"].as_array().unwrap().len(), 5, "{v}");
}

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

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn tokens_grant_only_what_was_asked_and_allowed_and_bad_tokens_fail() {
    let s = setup();
    let admin = Some(("admin", shoal_tests::ADMIN_PASSWORD));
    let bearer = |t: &str| Registry::with_auth(&s.node.url, Some(&format!("Bearer {t}")));

    // The token flow a client follows: challenge, token, retry.
    let anon = Registry::anonymous(&s.node.url);
    let r = anon.get("/v2/priv/app/manifests/v1");
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer realm=\"http://")
            && challenge.contains("/auth/token\"")
            && challenge.contains("scope=\"repository:priv/app:pull\""),
        "{challenge}"
    );
    let pull = token_for(&s.node, admin, "repository:priv/app:pull");
    expect(
        &s,
        &bearer(&pull),
        "tokenpull",
        "priv",
        Op::Pull,
        true,
        DENIED,
    );
    // Not asked for: push. Allowed to the admin, so 401 with an insufficient_scope
    // challenge naming the scope to fetch.
    let r = bearer(&pull)
        .http
        .post(format!("{}/v2/priv/app/blobs/uploads/", s.node.url))
        .send()
        .unwrap();
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"repository:priv/app:pull,push\""),
        "{challenge}"
    );
    assert_eq!(error_code(r), (401, "UNAUTHORIZED".to_string()));
    // A token for one repository used on another.
    s.admin.push_image("priv/other", "v1", b"other layer");
    let r = bearer(&pull).get("/v2/priv/other/manifests/v1");
    assert_eq!(error_code(r), (401, "UNAUTHORIZED".to_string()));

    // The reader asks for push and gets a token without it; pushing with it is denied.
    let rdr = token_for(
        &s.node,
        Some(("rdr", PASSWORD)),
        "repository:priv/app:pull,push",
    );
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(rdr.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "priv/app", "actions": ["pull"]}])
    );
    expect(
        &s,
        &bearer(&rdr),
        "rdrtoken",
        "priv",
        Op::Push,
        false,
        DENIED,
    );
    // Anonymous tokens carry public pulls only.
    let anon_token = token_for(
        &s.node,
        None,
        "repository:pub/app:pull repository:priv/app:pull",
    );
    expect(
        &s,
        &bearer(&anon_token),
        "anontoken",
        "pub",
        Op::Pull,
        true,
        UNAUTHORIZED,
    );
    expect(
        &s,
        &bearer(&anon_token),
        "anontoken",
        "priv",
        Op::Pull,
        false,
        UNAUTHORIZED,
    );
    // Wrong credentials at the token endpoint are 401.
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/auth/token?service=shoal", s.node.url))
        .basic_auth("admin", Some("wrong"))
        .send()
        .unwrap();
    assert_eq!(error_code(r), (401, "UNAUTHORIZED".to_string()));

    // Forged tokens: a changed payload, a foreign key under the real key id, alg none, HS256.
    let (header, rest) = pull.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let mut widened = claims.clone();
    widened["sub"] = json!("user:admin");
    widened["access"] =
        json!([{"type": "repository", "name": "priv/app", "actions": ["pull", "push", "delete"]}]);
    let payload = b64(widened.to_string().as_bytes());
    let kid: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    let foreign = {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = kid["kid"].as_str().map(str::to_string);
        let mut c = widened.clone();
        c["exp"] = json!(chrono_now() + 300);
        jsonwebtoken::encode(&h, &c, &key).unwrap()
    };
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &widened,
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    let none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    let expired = {
        let mut c = widened.clone();
        c["exp"] = json!(chrono_now() - 3600);
        format!("{header}.{}.{signature}", b64(c.to_string().as_bytes()))
    };
    for (name, t) in [
        ("changed payload", format!("{header}.{payload}.{signature}")),
        ("foreign key", foreign),
        ("alg none", none),
        ("hs256", hs256),
        ("expired", expired),
        ("garbage", "not.a.token".to_string()),
    ] {
        let case = name.replace(' ', "");
        for op in [Op::Pull, Op::Push] {
            let (status, code) = attempt(
                &s,
                &bearer(&t),
                op,
                "priv",
                &format!("{case}{op:?}").to_lowercase(),
            );
            assert_eq!((status, code.as_str()), UNAUTHORIZED, "{name} {op:?}");
        }
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn a_deleted_namespace_takes_its_repositories_and_bindings_along() {
    let s = setup();
    let (id, login, secret) = s.node.credential(&[
        "--name",
        "only-priv",
        "--scope",
        "containerRegistry",
        "--namespace",
        "priv",
    ]);
    let restricted = Registry::with_auth(&s.node.url, Some(&basic(&login, &secret)));
    assert_eq!(restricted.get("/v2/priv/app/manifests/v1").status(), 200);
    let (ok, _, err) = s.node.cli(&["namespace", "delete", "priv"]);
    assert!(ok, "{err}");
    let (status, code) = error_code(s.admin.get("/v2/priv/app/manifests/v1"));
    assert_eq!((status, code.as_str()), (404, "NAME_UNKNOWN"));
    let nsdev = Registry::with_auth(&s.node.url, Some(&basic("nsdev", PASSWORD)));
    let (status, code) = error_code(nsdev.get("/v2/priv/app/manifests/v1"));
    assert_eq!(
        (status, code.as_str()),
        DENIED,
        "the namespace binding went with it"
    );
    let (ok, out, _) = s.node.cli(&["role", "list", "--json"]);
    assert!(ok && !out.contains("\"priv\""), "{out}");
    let catalog: Value = s.admin.get("/v2/_catalog").json().unwrap();
    assert_eq!(catalog["repositories"], json!(["pub/app"]));
    let (ok, out, _) = s.node.cli(&["credential", "list", "--json"]);
    assert!(
        ok && !out.contains(&id),
        "the restricted credential went with it: {out}"
    );
    // Re-creating the name starts empty, and the old credential stays gone.
    let (ok, _, err) = s.node.cli(&["namespace", "create", "priv"]);
    assert!(ok, "{err}");
    assert_eq!(error_code(s.admin.get("/v2/priv/app/tags/list")).0, 404);
    s.admin.push_image("priv/app", "v0", b"revived?");
    let (status, code) = error_code(restricted.get("/v2/priv/app/manifests/v0"));
    assert_eq!((status, code.as_str()), (401, "UNAUTHORIZED"));
    // Making a namespace public opens anonymous pulls and nothing else.
    let anon = Registry::anonymous(&s.node.url);
    s.admin.push_image("priv/app", "v1", b"again");
    expect(
        &s,
        &anon,
        "beforepublic",
        "priv",
        Op::Pull,
        false,
        UNAUTHORIZED,
    );
    let (ok, _, err) = s
        .node
        .cli(&["namespace", "set", "priv", "--visibility", "public"]);
    assert!(ok, "{err}");
    expect(
        &s,
        &anon,
        "afterpublic",
        "priv",
        Op::Pull,
        true,
        UNAUTHORIZED,
    );
    expect(
        &s,
        &anon,
        "afterpublic",
        "priv",
        Op::Push,
        false,
        UNAUTHORIZED,
    );
}

#[test]
fn first_start_generates_the_admin_password_once() {
    let dir = tempdir();
    let data = dir.path().join("node");
    let node = Node::start_env(&data, &[], &[("SHOAL_ADMIN_PASSWORD", "")]);
    let file = data.join("initial-admin-password");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(password.len() >= 20);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let admin = Registry::with_auth(&node.url, Some(&basic("admin", &password)));
    assert_eq!(admin.get("/v2/").status(), 200);
    let stdout = std::fs::read_to_string(data.with_extension("stdout")).unwrap();
    assert!(
        stdout.contains(&password),
        "the password is printed once: {stdout}"
    );
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(!log.contains(&password), "the password is not logged");
    drop(node);
    let node = Node::start_env(
        &data,
        &[],
        &[("SHOAL_ADMIN_PASSWORD", "ignored-on-restart")],
    );
    let admin = Registry::with_auth(&node.url, Some(&basic("admin", &password)));
    assert_eq!(
        admin.get("/v2/").status(),
        200,
        "a restart keeps the first password"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    let stdout = std::fs::read_to_string(data.with_extension("stdout")).unwrap();
    assert_eq!(
        stdout.matches(&password).count(),
        1,
        "printed on the first start only"
    );
}

#[test]
fn a_pull_secret_works_as_an_image_pull_secret() {
    if !shoal_tests::require_tool("skopeo") {
        return;
    }
    let s = setup();
    let (id, login, old) = s.node.credential(&[
        "--name",
        "Prod Cluster",
        "--scope",
        "containerRegistry:pull",
    ]);
    let (ok, out, err) = s
        .node
        .cli(&["pull-secret", "--credential", &id, "--namespace", "apps"]);
    assert!(ok, "{err}");
    let secret: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(
        secret["metadata"],
        json!({"name": "shoal-prod-cluster", "namespace": "apps"})
    );
    let config = base64::engine::general_purpose::STANDARD
        .decode(secret["data"][".dockerconfigjson"].as_str().unwrap())
        .unwrap();
    let config: Value = serde_json::from_slice(&config).unwrap();
    let entry = &config["auths"][&s.node.addr];
    assert_eq!(entry["username"], login.as_str());
    // The same file is what containerd and skopeo read as an auth file.
    let authfile = s._dir.path().join("auth.json");
    std::fs::write(&authfile, config.to_string()).unwrap();
    let image = format!("docker://{}/priv/app:v1", s.node.addr);
    let (ok, out) = shoal_tests::run_tool(
        "skopeo",
        &[
            "inspect",
            "--authfile",
            authfile.to_str().unwrap(),
            "--tls-verify=false",
            &image,
        ],
        &[],
    );
    assert!(ok, "skopeo with the pull secret: {out}");
    expect(
        &s,
        &Registry::with_auth(&s.node.url, Some(&basic(&login, &old))),
        "oldsecret",
        "priv",
        Op::Pull,
        false,
        UNAUTHORIZED,
    );
    let (ok, _, err) = s.node.cli(&[
        "pull-secret",
        "--credential",
        &id,
        "--namespace",
        "Not_A_Label",
    ]);
    assert!(!ok && err.contains("BAD_REQUEST"), "{err}");
    let (ok, _, err) = s.node.cli(&[
        "pull-secret",
        "--credential",
        "cred-nosuch",
        "--namespace",
        "apps",
    ]);
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");
}

#[test]
fn a_deleted_user_can_do_nothing_any_more_and_the_last_owner_stays() {
    let s = setup();
    let (_, login, secret) = s.node.credential_as(
        "dev",
        PASSWORD,
        &["--name", "laptop", "--scope", "containerRegistry"],
    );
    let token = token_for(&s.node, Some(("dev", PASSWORD)), "repository:priv/app:pull");
    let with = |auth: String| Registry::with_auth(&s.node.url, Some(&auth));
    let by_password = with(basic("dev", PASSWORD));
    let by_credential = with(basic(&login, &secret));
    let by_token = with(format!("Bearer {token}"));
    for who in [&by_password, &by_credential, &by_token] {
        assert_eq!(who.get("/v2/priv/app/manifests/v1").status(), 200);
    }

    // A developer may not delete users; neither may anyone delete one that is not there.
    let (ok, _, err) = s.node.cli_as("dev", PASSWORD, &["user", "delete", "rdr"]);
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");
    let (ok, _, err) = s.node.cli(&["user", "delete", "ghost"]);
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");
    let (ok, _, err) = s.node.cli(&["service-account", "delete", "dev"]);
    assert!(
        !ok && err.contains("NOT_FOUND"),
        "a user is not a service account: {err}"
    );

    let (ok, _, err) = s.node.cli(&["user", "delete", "dev"]);
    assert!(ok, "{err}");
    for (how, who) in [
        ("password", &by_password),
        ("credential", &by_credential),
        ("token issued before", &by_token),
    ] {
        let (status, code) = error_code(who.get("/v2/priv/app/manifests/v1"));
        assert_eq!((status, code.as_str()), (401, "UNAUTHORIZED"), "{how}");
    }
    let (ok, out, _) = s.node.cli(&["role", "list", "--json"]);
    assert!(ok && !out.contains("\"dev\""), "its bindings went: {out}");
    let (ok, out, _) = s.node.cli(&["credential", "list", "--json"]);
    assert!(ok && !out.contains(&login), "its credentials went: {out}");

    // A namesake made later is someone else: the old token does not act for it, and it
    // starts without the old one's roles. (Creation times are in seconds: step past this one.)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (ok, _, err) = s
        .node
        .cli(&["user", "create", "dev", "--password", PASSWORD]);
    assert!(ok, "{err}");
    let (status, code) = error_code(by_token.get("/v2/priv/app/manifests/v1"));
    assert_eq!(
        (status, code.as_str()),
        (401, "UNAUTHORIZED"),
        "old token, new dev"
    );
    let (status, code) = error_code(by_password.get("/v2/priv/app/manifests/v1"));
    assert_eq!((status, code.as_str()), DENIED, "the new dev holds no role");

    // The organisation's only Owner cannot be deleted, by anyone.
    let (ok, _, err) = s.node.cli_as("adm", PASSWORD, &["user", "delete", "admin"]);
    assert!(!ok && err.contains("CONFLICT"), "{err}");
    assert_eq!(s.admin.get("/v2/").status(), 200);
}
