//! Workload identity federation against a real node and a local OIDC issuer
//! (`shoal_tests::issuer`): a CI job exchanges its OIDC token for registry access (OAuth
//! token exchange, Docker's Basic `oidc` login, skopeo), and every token that should not
//! get in does not: wrong audience, unmatched conditions, expired or not yet valid, a key the
//! issuer does not publish, `alg: none`, HMAC, an untrusted issuer, a namespace the service
//! account has no role in, a removed federated identity. Each refusal is checked for its
//! status, its OCI code, and that nothing was stored.

use base64::Engine;
use serde_json::{json, Value};
use shoal_tests::issuer::{Issuer, IssuerKey};
use shoal_tests::oci::{noise, write_layout};
use shoal_tests::{basic, error_code, require_tool, run_tool, sha256, tempdir, Node, Registry};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The claims GitHub Actions puts in a job's token, for `acme/api` on `main`.
fn claims(issuer: &Issuer) -> Value {
    let t = now();
    json!({
        "iss": issuer.url, "aud": "shoal", "sub": "repo:acme/api:ref:refs/heads/main",
        "repository": "acme/api", "ref": "refs/heads/main", "run_attempt": "1",
        "iat": t, "nbf": t, "exp": t + 600,
    })
}

fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

/// `POST /auth/token` with an RFC 8693 token exchange form.
fn exchange(node: &Node, oidc: &str, scope: &str) -> reqwest::blocking::Response {
    let form = form_encode(&[
        ("grant_type", EXCHANGE),
        ("subject_token", oidc),
        ("subject_token_type", ID_TOKEN),
        ("scope", scope),
    ]);
    reqwest::blocking::Client::new()
        .post(format!("{}/auth/token", node.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .unwrap()
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn bearer(node: &Node, token: &str) -> Registry {
    Registry::with_auth(&node.url, Some(&format!("Bearer {token}")))
}

/// The claims of a registry token (its payload, unverified: the node verifies).
fn payload(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(p)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    node: Node,
    issuer: Issuer,
    key: IssuerKey,
}

/// A node with namespaces `builds` (service account `ci-bot` is a Developer there) and
/// `other`, and federated identity `gh` trusting `acme/*` on `main` from the local issuer.
fn setup() -> Setup {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    let key = IssuerKey::generate("key-1");
    let issuer = Issuer::start(&[&key]);
    for args in [
        vec!["namespace", "create", "builds"],
        vec!["namespace", "create", "other"],
        vec!["service-account", "create", "ci-bot"],
        vec![
            "role",
            "bind",
            "ci-bot",
            "--role",
            "developer",
            "--namespace",
            "builds",
        ],
        vec![
            "federation",
            "create",
            "gh",
            "--issuer",
            &issuer.url,
            "--audience",
            "shoal",
            "--condition",
            "repository=acme/*",
            "--condition",
            "ref=refs/heads/main",
            "--service-account",
            "ci-bot",
            "--scope",
            "containerRegistry",
        ],
    ] {
        let (ok, out, err) = node.cli(&args);
        assert!(ok, "{args:?}: {out}{err}");
    }
    Setup {
        _dir: dir,
        node,
        issuer,
        key,
    }
}

#[test]
fn a_ci_job_pushes_with_its_oidc_token() {
    let s = setup();
    let jwt = s.key.sign(&claims(&s.issuer));

    // OAuth token exchange: the registry token holds what was asked and allowed.
    let r = exchange(&s.node, &jwt, "repository:builds/app:pull,push");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["token_type"], "Bearer");
    let token = v["access_token"].as_str().unwrap().to_string();
    let claims_out = payload(&token);
    assert_eq!(claims_out["sub"], "federation:gh");
    assert_eq!(
        claims_out["access"][0]["actions"],
        json!(["pull", "push"]),
        "{claims_out}"
    );
    let ci = bearer(&s.node, &token);
    let (digest, _) = ci.push_image("builds/app", "v1", b"built by ci");
    let admin = s.node.registry();
    assert_eq!(
        admin.get("/v2/builds/app/manifests/v1").status(),
        200,
        "{digest}"
    );

    // Docker's flow: Basic `oidc` + the OIDC token at the token endpoint, and on /v2.
    let r = Registry::with_auth(&s.node.url, Some(&basic("oidc", &jwt)))
        .get("/auth/token?service=shoal&scope=repository:builds/app:pull");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    let pull_token = v["token"].as_str().unwrap();
    assert_eq!(
        bearer(&s.node, pull_token)
            .get("/v2/builds/app/manifests/v1")
            .status(),
        200
    );
    let direct = Registry::with_auth(&s.node.url, Some(&basic("oidc", &jwt)));
    assert_eq!(direct.get("/v2/builds/app/tags/list").status(), 200);

    // A real client: skopeo with the OIDC token as its password.
    if require_tool("skopeo") {
        let layout = s._dir.path().join("layout");
        write_layout(&layout, "v1", &[vec![("f.bin", noise(3, 200_000))]]);
        let creds = format!("oidc:{jwt}");
        let dest = format!("docker://{}/builds/skopeo:v1", s.node.addr);
        let (ok, out) = run_tool(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &creds,
                &format!("oci:{}:v1", layout.display()),
                &dest,
            ],
            &[],
        );
        assert!(ok, "skopeo copy with an OIDC token: {out}");
        assert_eq!(admin.get("/v2/builds/skopeo/manifests/v1").status(), 200);
    }

    // The service account's roles still bound it: no role on `other`, nothing stored there.
    let blob = b"ci writing elsewhere";
    let r = direct
        .http
        .post(direct.url(&format!(
            "/v2/other/app/blobs/uploads/?digest={}",
            sha256(blob)
        )))
        .header("Content-Type", "application/octet-stream")
        .body(blob.to_vec())
        .send()
        .unwrap();
    assert_eq!(error_code(r), (403, "DENIED".into()));
    let v: Value = admin.get("/v2/_catalog").json().unwrap();
    assert!(
        !v["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("other/")),
        "{v}"
    );
    let r = exchange(&s.node, &jwt, "repository:other/app:pull,push");
    let v: Value = r.json().unwrap();
    assert_eq!(
        payload(v["access_token"].as_str().unwrap())["access"],
        json!([]),
        "nothing granted on a namespace without a role"
    );

    // The JWKS was fetched once for all of the above.
    assert_eq!(s.issuer.jwks_fetches(), 1);

    // A registry token never outlives the OIDC token it came from.
    let short = s
        .key
        .sign(&with(claims(&s.issuer), json!({"exp": now() + 40})));
    let v: Value = exchange(&s.node, &short, "").json().unwrap();
    assert!(v["expires_in"].as_i64().unwrap() <= 40, "{v}");

    // Removing the federated identity stops its tokens at once.
    let (ok, _, err) = s.node.cli(&["federation", "delete", "gh"]);
    assert!(ok, "{err}");
    assert_eq!(
        error_code(ci.get("/v2/builds/app/manifests/v1")),
        (401, "UNAUTHORIZED".into())
    );
    assert_eq!(
        error_code(direct.get("/v2/builds/app/manifests/v1")),
        (401, "UNAUTHORIZED".into())
    );
}

#[test]
fn tokens_that_should_not_get_in_do_not() {
    let s = setup();
    let base = claims(&s.issuer);
    let stranger = IssuerKey::generate("key-1");
    let header_none = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"alg":"none","typ":"JWT","kid":"key-1"}"#);
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(base.to_string());
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &base,
        &jsonwebtoken::EncodingKey::from_secret(s.key.jwk["x"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong audience",
            s.key
                .sign(&with(base.clone(), json!({"aud": "someone-else"}))),
        ),
        (
            "another repository",
            s.key
                .sign(&with(base.clone(), json!({"repository": "evil/acme"}))),
        ),
        (
            "another branch",
            s.key
                .sign(&with(base.clone(), json!({"ref": "refs/heads/feature"}))),
        ),
        (
            "expired",
            s.key.sign(&with(
                base.clone(),
                json!({"exp": now() - 120, "iat": now() - 900}),
            )),
        ),
        (
            "not yet valid",
            s.key.sign(&with(base.clone(), json!({"nbf": now() + 600}))),
        ),
        ("a key the issuer does not publish", stranger.sign(&base)),
        ("alg none", format!("{header_none}.{body}.")),
        ("HMAC with the public key as secret", hs256),
        (
            "an untrusted issuer",
            s.key
                .sign(&with(base.clone(), json!({"iss": "http://127.0.0.1:9"}))),
        ),
        ("garbage", "not.a.jwt".into()),
    ];
    let blob = b"must not be stored";
    for (case, jwt) in &cases {
        let r = exchange(&s.node, jwt, "repository:builds/app:pull,push");
        assert_eq!(
            error_code(r),
            (401, "UNAUTHORIZED".into()),
            "exchange: {case}"
        );
        let r = Registry::with_auth(&s.node.url, Some(&basic("oidc", jwt)))
            .http
            .post(format!(
                "{}/v2/builds/app/blobs/uploads/?digest={}",
                s.node.url,
                sha256(blob)
            ))
            .header("Content-Type", "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .unwrap();
        assert_eq!(error_code(r), (401, "UNAUTHORIZED".into()), "basic: {case}");
    }
    assert_eq!(
        s.node
            .registry()
            .get(&format!("/v2/builds/app/blobs/{}", sha256(blob)))
            .status(),
        404,
        "a refused token stored a blob"
    );

    // Malformed exchanges are client errors, not denials.
    let good = s.key.sign(&base);
    let form = form_encode(&[
        ("grant_type", EXCHANGE),
        ("subject_token", &good),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:saml2",
        ),
    ]);
    let post = |ct: &str, body: String| {
        reqwest::blocking::Client::new()
            .post(format!("{}/auth/token", s.node.url))
            .header("Content-Type", ct)
            .body(body)
            .send()
            .unwrap()
    };
    assert_eq!(
        error_code(post("application/x-www-form-urlencoded", form)),
        (400, "BAD_REQUEST".into())
    );
    assert_eq!(
        error_code(post(
            "application/json",
            json!({"subject_token": good}).to_string()
        )),
        (415, "UNSUPPORTED".into())
    );
    assert_eq!(
        error_code(post(
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials".into()
        )),
        (400, "BAD_REQUEST".into())
    );
}

#[test]
fn a_new_issuer_key_is_picked_up_and_unknown_keys_do_not_hammer_the_issuer() {
    let s = setup();
    assert_eq!(
        exchange(&s.node, &s.key.sign(&claims(&s.issuer)), "").status(),
        200
    );
    let fresh = IssuerKey::generate("key-2");
    s.issuer.publish(&fresh);
    // Right after a fetch, an unknown key id is refused from the cache, however often.
    for _ in 0..5 {
        let r = exchange(&s.node, &fresh.sign(&claims(&s.issuer)), "");
        assert_eq!(error_code(r), (401, "UNAUTHORIZED".into()));
    }
    assert_eq!(s.issuer.jwks_fetches(), 1);
    // Once the refetch gap (10 s) has passed, the rotation is picked up.
    std::thread::sleep(std::time::Duration::from_secs(11));
    assert_eq!(
        exchange(&s.node, &fresh.sign(&claims(&s.issuer)), "").status(),
        200
    );
    assert_eq!(s.issuer.jwks_fetches(), 2);
}

#[test]
fn federated_identities_are_checked_when_created() {
    let s = setup();
    let (ok, _, err) = s
        .node
        .cli(&["user", "create", "alice", "--password", "alice-password-1"]);
    assert!(ok, "{err}");
    let admin = s.node.registry();
    let create = |who: &Registry, body: Value| {
        who.http
            .post(who.url("/api/v1/federations"))
            .json(&body)
            .send()
            .unwrap()
    };
    let good = json!({
        "name": "gl", "issuer": "https://gitlab.example.com", "audience": "shoal",
        "conditions": {"project_path": "acme/*"}, "service_account": "ci-bot",
        "scope": "containerRegistry:pull",
    });
    for (case, change, expected) in [
        (
            "no conditions",
            json!({"conditions": {}}),
            (400, "BAD_REQUEST"),
        ),
        (
            "plain http off loopback",
            json!({"issuer": "http://gitlab.example.com"}),
            (400, "BAD_REQUEST"),
        ),
        (
            "a user",
            json!({"service_account": "alice"}),
            (400, "BAD_REQUEST"),
        ),
        (
            "no such account",
            json!({"service_account": "ghost"}),
            (404, "NOT_FOUND"),
        ),
        (
            "a bad scope",
            json!({"scope": "everything"}),
            (400, "BAD_REQUEST"),
        ),
        (
            "a bad name",
            json!({"name": "Bad Name"}),
            (400, "NAME_INVALID"),
        ),
        ("an existing name", json!({"name": "gh"}), (409, "CONFLICT")),
    ] {
        let (status, code) = error_code(create(&admin, with(good.clone(), change)));
        assert_eq!((status, code.as_str()), expected, "{case}");
    }
    let alice = Registry::with_auth(&s.node.url, Some(&basic("alice", "alice-password-1")));
    assert_eq!(
        error_code(create(&alice, good.clone())),
        (403, "DENIED".into()),
        "only admins trust issuers"
    );
    let v: Value = admin.get("/api/v1/federations").json().unwrap();
    assert_eq!(v["federations"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(create(&admin, good).status(), 201);
}

#[test]
fn docker_logs_in_as_oidc_and_pushes() {
    if !shoal_tests::require_docker() {
        return;
    }
    let s = setup();
    let jwt = s.key.sign(&claims(&s.issuer));
    let docker = |args: &[&str]| run_tool("docker", args, &[("DOCKER_BUILDKIT", "0")]);
    let ctx = s._dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("built.txt"), "built by a CI job\n").unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY built.txt /\n").unwrap();
    let image = format!("{}/builds/docker:v1", s.node.addr);
    let (ok, out) = docker(&["login", &s.node.addr, "-u", "oidc", "-p", &jwt]);
    assert!(ok, "docker login -u oidc: {out}");
    let (ok, out) = docker(&["build", "-q", "-t", &image, ctx.to_str().unwrap()]);
    assert!(ok, "docker build: {out}");
    let (ok, out) = docker(&["push", &image]);
    assert!(ok, "docker push as a CI job: {out}");
    assert_eq!(
        s.node
            .registry()
            .get("/v2/builds/docker/manifests/v1")
            .status(),
        200
    );
    let elsewhere = format!("{}/other/docker:v1", s.node.addr);
    docker(&["tag", &image, &elsewhere]);
    let (ok, out) = docker(&["push", &elsewhere]);
    assert!(!ok && out.contains("denied"), "{out}");
    docker(&["logout", &s.node.addr]);
    docker(&["rmi", &image, &elsewhere]);
}
