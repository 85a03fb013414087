//! Deleting what access hangs on: a namespace takes its repositories, bindings and restricted
//! credentials along; a user takes its credentials, bindings and tokens; the last Owner stays.

use serde_json::{json, Value};
use shoal_tests::{basic, error_code, Registry};

use super::{expect, setup, token_for, Op, DENIED, PASSWORD, UNAUTHORIZED};

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
