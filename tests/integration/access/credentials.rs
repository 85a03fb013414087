//! Access credentials: limited by scope, namespace, revocation and expiry, never more than
//! their owner; and a pull secret used as an image pull secret.

use base64::Engine;
use serde_json::{json, Value};
use shoal_tests::{basic, Registry};

use super::{expect, setup, token_for, Op, DENIED, PASSWORD, UNAUTHORIZED};

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
