//! Organisations, projects and the region against a real node: roles bound on an
//! organisation, a project or a namespace reach exactly what they should, namespace names
//! are unique across organisations, a project holding namespaces is not deleted, and
//! namespaces carry the cluster's region. Every refusal is checked for its status, its OCI
//! code and that nothing changed.

use serde_json::{json, Value};
use shoal_tests::{basic, error_code, sha256, tempdir, Node, Registry};

const PASSWORD: &str = "tenant-password-42";

fn ok(node: &Node, who: (&str, &str), args: &[&str]) -> String {
    let (ok, out, err) = node.cli_as(who.0, who.1, args);
    assert!(ok, "{args:?} as {}: {out}{err}", who.0);
    out
}

fn refused(node: &Node, who: (&str, &str), args: &[&str], code: &str) {
    let (ok, out, err) = node.cli_as(who.0, who.1, args);
    assert!(!ok, "{args:?} as {} was accepted: {out}", who.0);
    assert!(err.contains(code), "{args:?} as {}: {err}", who.0);
}

fn as_user(node: &Node, user: &str) -> Registry {
    Registry::with_auth(&node.url, Some(&basic(user, PASSWORD)))
}

/// Tries a monolithic blob push to `repo`; returns (status, code) and checks as the admin of
/// `acme` that a refused push stored nothing.
fn push_blob(node: &Node, who: &Registry, repo: &str, case: &str) -> (u16, String) {
    let blob = format!("{case} into {repo}").into_bytes();
    let r = who
        .http
        .post(who.url(&format!(
            "/v2/{repo}/blobs/uploads/?digest={}",
            sha256(&blob)
        )))
        .header("Content-Type", "application/octet-stream")
        .body(blob.clone())
        .send()
        .unwrap();
    let (status, code) = error_code(r);
    if status >= 400 {
        let owner = as_user(node, "alice");
        assert_eq!(
            owner
                .get(&format!("/v2/{repo}/blobs/{}", sha256(&blob)))
                .status(),
            404,
            "{case}: a refused push stored its blob"
        );
    }
    (status, code)
}

#[test]
fn roles_reach_their_organisation_project_or_namespace_and_no_further() {
    let dir = tempdir();
    let node = Node::start_with(&dir.path().join("node"), &["--region", "nl-01"]);
    let admin = ("admin", shoal_tests::ADMIN_PASSWORD);
    let alice = ("alice", PASSWORD);

    // The cluster admin makes organisation acme for alice; alice runs it from there.
    ok(
        &node,
        admin,
        &["user", "create", "alice", "--password", PASSWORD],
    );
    ok(
        &node,
        admin,
        &["organisation", "create", "acme", "--owner", "alice"],
    );
    ok(
        &node,
        alice,
        &["project", "create", "web", "--organisation", "acme"],
    );
    for (user, role, scope) in [
        (
            "bob",
            "developer",
            vec!["--organisation", "acme", "--project", "web"],
        ),
        ("carol", "reader", vec!["--organisation", "acme"]),
        ("dave", "developer", vec!["--namespace", "acme-ops"]),
    ] {
        ok(
            &node,
            alice,
            &[
                "user",
                "create",
                user,
                "--password",
                PASSWORD,
                "--organisation",
                "acme",
            ],
        );
        if user == "dave" {
            continue; // bound once acme-ops exists
        }
        let mut args = vec!["role", "bind", user, "--role", role];
        args.extend(scope);
        ok(&node, alice, &args);
    }
    let out = ok(
        &node,
        alice,
        &[
            "namespace",
            "create",
            "acme-web",
            "--organisation",
            "acme",
            "--project",
            "web",
            "--json",
        ],
    );
    let ns: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ns["region"], "nl-01");
    assert_eq!(ns["project"], "web");
    ok(
        &node,
        alice,
        &["namespace", "create", "acme-ops", "--organisation", "acme"],
    );
    ok(
        &node,
        alice,
        &[
            "role",
            "bind",
            "dave",
            "--role",
            "developer",
            "--namespace",
            "acme-ops",
        ],
    );

    // Namespace names are unique across organisations; the region is the cluster's.
    refused(
        &node,
        admin,
        &["namespace", "create", "acme-web"],
        "NAMESPACE_EXISTS",
    );
    refused(
        &node,
        alice,
        &[
            "namespace",
            "create",
            "x",
            "--organisation",
            "acme",
            "--region",
            "de-01",
        ],
        "BAD_REQUEST",
    );

    // Pushes: bob in project web only; dave in acme-ops only; carol reads everywhere in
    // acme; the cluster admin holds no role inside acme.
    let bob = as_user(&node, "bob");
    let carol = as_user(&node, "carol");
    let dave = as_user(&node, "dave");
    let admin_reg = node.registry();
    assert_eq!(push_blob(&node, &bob, "acme-web/app", "bob").0, 201);
    assert_eq!(
        push_blob(&node, &bob, "acme-ops/app", "bob"),
        (403, "DENIED".into())
    );
    assert_eq!(push_blob(&node, &dave, "acme-ops/app", "dave").0, 201);
    assert_eq!(
        push_blob(&node, &dave, "acme-web/app", "dave"),
        (403, "DENIED".into())
    );
    assert_eq!(
        push_blob(&node, &carol, "acme-web/app", "carol"),
        (403, "DENIED".into())
    );
    assert_eq!(
        push_blob(&node, &admin_reg, "acme-web/app", "admin"),
        (403, "DENIED".into())
    );
    let (digest, _) = as_user(&node, "alice").push_image("acme-web/app", "v1", b"acme layer");
    assert_eq!(carol.get("/v2/acme-web/app/manifests/v1").status(), 200);
    assert_eq!(bob.get("/v2/acme-web/app/manifests/v1").status(), 200);
    assert_eq!(
        error_code(dave.get("/v2/acme-web/app/manifests/v1")),
        (403, "DENIED".into())
    );
    assert_eq!(
        error_code(admin_reg.get(&format!("/v2/acme-web/app/manifests/{digest}"))),
        (403, "DENIED".into())
    );

    // Creating namespaces: bob in his project, not at organisation level nor elsewhere.
    ok(
        &node,
        ("bob", PASSWORD),
        &[
            "namespace",
            "create",
            "acme-web-2",
            "--organisation",
            "acme",
            "--project",
            "web",
        ],
    );
    refused(
        &node,
        ("bob", PASSWORD),
        &["namespace", "create", "acme-x", "--organisation", "acme"],
        "DENIED",
    );
    refused(
        &node,
        ("bob", PASSWORD),
        &["namespace", "create", "acme-y"],
        "DENIED",
    );
    refused(
        &node,
        ("carol", PASSWORD),
        &["namespace", "delete", "acme-web-2"],
        "DENIED",
    );
    // Only alice (an admin of acme) manages its people and projects; not the cluster admin,
    // not a developer.
    refused(
        &node,
        ("bob", PASSWORD),
        &[
            "role",
            "bind",
            "bob",
            "--role",
            "owner",
            "--organisation",
            "acme",
        ],
        "DENIED",
    );
    refused(
        &node,
        admin,
        &[
            "role",
            "bind",
            "admin",
            "--role",
            "owner",
            "--organisation",
            "acme",
        ],
        "DENIED",
    );
    refused(
        &node,
        ("bob", PASSWORD),
        &["project", "create", "api", "--organisation", "acme"],
        "DENIED",
    );
    refused(
        &node,
        ("carol", PASSWORD),
        &["organisation", "create", "carols"],
        "DENIED",
    );

    // Who sees what: acme's people see acme (and carol all its namespaces); the default
    // organisation's developers see neither.
    ok(
        &node,
        admin,
        &["user", "create", "eve", "--password", PASSWORD],
    );
    ok(
        &node,
        admin,
        &["role", "bind", "eve", "--role", "developer"],
    );
    let list = |who: &str, path: &str| -> Value { as_user(&node, who).get(path).json().unwrap() };
    let names = |v: &Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&list("carol", "/api/v1/namespaces"), "namespaces"),
        ["acme-ops", "acme-web", "acme-web-2"]
    );
    assert_eq!(
        names(&list("bob", "/api/v1/namespaces"), "namespaces"),
        ["acme-web", "acme-web-2"]
    );
    assert!(names(&list("eve", "/api/v1/namespaces"), "namespaces").is_empty());
    assert!(
        !names(&list("eve", "/api/v1/organisations"), "organisations")
            .contains(&"acme".to_string())
    );
    assert_eq!(
        error_code(as_user(&node, "eve").get("/api/v1/organisations/acme")),
        (404, "NOT_FOUND".into())
    );
    let v: Value = as_user(&node, "eve").get("/v2/_catalog").json().unwrap();
    assert_eq!(
        v["repositories"],
        json!([]),
        "the catalogue hides other organisations"
    );
    assert_eq!(
        names(
            &list("bob", "/api/v1/organisations/acme/projects"),
            "projects"
        ),
        ["web"]
    );

    // A project holding namespaces stays; once empty it goes, with the roles bound on it.
    refused(
        &node,
        alice,
        &["project", "delete", "web", "--organisation", "acme"],
        "CONFLICT",
    );
    for ns in ["acme-web", "acme-web-2"] {
        ok(&node, alice, &["namespace", "delete", ns]);
    }
    ok(
        &node,
        alice,
        &["project", "delete", "web", "--organisation", "acme"],
    );
    let v: Value = as_user(&node, "alice")
        .get("/api/v1/role-bindings")
        .json()
        .unwrap();
    assert!(
        !v["role_bindings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["principal"] == "bob"),
        "bob's project role went with the project: {v}"
    );
    assert_eq!(push_blob(&node, &bob, "acme-ops/app", "bob-after").0, 403);
}

#[test]
fn an_organisation_is_deleted_only_when_empty_and_takes_its_people_along() {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    let admin = ("admin", shoal_tests::ADMIN_PASSWORD);
    let bob = ("bob", PASSWORD);
    ok(&node, admin, &["organisation", "create", "acme"]);
    ok(
        &node,
        admin,
        &[
            "user",
            "create",
            "bob",
            "--password",
            PASSWORD,
            "--organisation",
            "acme",
        ],
    );
    ok(
        &node,
        admin,
        &[
            "role",
            "bind",
            "bob",
            "--role",
            "developer",
            "--organisation",
            "acme",
        ],
    );
    ok(
        &node,
        admin,
        &["namespace", "create", "acme-ns", "--organisation", "acme"],
    );
    assert_eq!(as_user(&node, "bob").get("/v2/").status(), 200);

    refused(&node, bob, &["organisation", "delete", "acme"], "DENIED");
    refused(
        &node,
        admin,
        &["organisation", "delete", "acme"],
        "CONFLICT",
    );
    refused(
        &node,
        admin,
        &["organisation", "delete", "default"],
        "CONFLICT",
    );
    refused(
        &node,
        admin,
        &["organisation", "delete", "nope"],
        "NOT_FOUND",
    );
    assert_eq!(
        as_user(&node, "bob").get("/v2/").status(),
        200,
        "nothing changed"
    );

    ok(&node, admin, &["namespace", "delete", "acme-ns"]);
    ok(&node, admin, &["organisation", "delete", "acme"]);
    refused(&node, admin, &["organisation", "show", "acme"], "NOT_FOUND");
    let (status, code) = error_code(as_user(&node, "bob").get("/v2/"));
    assert_eq!(
        (status, code.as_str()),
        (401, "UNAUTHORIZED"),
        "bob went with acme"
    );
    let roles = ok(&node, admin, &["role", "list", "--json"]);
    assert!(!roles.contains("acme"), "{roles}");
    // The name is free again, and starts with nobody in it.
    ok(&node, admin, &["organisation", "create", "acme"]);
    let users: Value =
        serde_json::from_str(&ok(&node, admin, &["user", "list", "--json"])).unwrap();
    assert!(!users.to_string().contains("\"bob\""), "{users}");
}

#[test]
fn a_tenant_admin_cannot_delete_someone_holding_roles_elsewhere() {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    let admin = ("admin", shoal_tests::ADMIN_PASSWORD);
    let olga = ("olga", PASSWORD);
    ok(
        &node,
        admin,
        &["user", "create", "olga", "--password", PASSWORD],
    );
    ok(
        &node,
        admin,
        &["organisation", "create", "acme", "--owner", "olga"],
    );
    ok(
        &node,
        olga,
        &[
            "user",
            "create",
            "carl",
            "--password",
            PASSWORD,
            "--organisation",
            "acme",
        ],
    );
    // carl also reads in the home organisation, which olga does not run.
    ok(&node, admin, &["role", "bind", "carl", "--role", "reader"]);
    refused(&node, olga, &["user", "delete", "carl"], "DENIED");
    assert_eq!(
        as_user(&node, "carl").get("/v2/").status(),
        200,
        "carl is still there"
    );
    refused(&node, admin, &["user", "delete", "carl"], "NOT_FOUND");
    ok(&node, admin, &["role", "unbind", "carl"]);
    ok(&node, olga, &["user", "delete", "carl"]);
    assert_eq!(as_user(&node, "carl").get("/v2/").status(), 401);
}
