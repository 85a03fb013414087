//! Regressions from the outside probe (issue 19), on who may act as whom: minting a way to act
//! as a principal that holds roles elsewhere, push credentials managing namespaces, tokens
//! of a namesake, timing of unknown logins, the cluster view and metrics.

use serde_json::{json, Value};
use shoal_tests::{basic, error_code, tempdir, Node, Registry};

use super::PASSWORD;

/// `method path` with `body` as `user`; (status, JSON body or null).
fn call(node: &Node, user: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let password = if user == "admin" {
        shoal_tests::ADMIN_PASSWORD
    } else {
        PASSWORD
    };
    let r = Registry::with_auth(&node.url, Some(&basic(user, password)));
    let mut req = r
        .http
        .request(method.parse().unwrap(), r.url(&format!("/api/v1{path}")));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// Two tenants, `alpha` and `beta`, each with its own admin; `dual` (a user of alpha) and
/// `bot` (a service account of alpha) also hold a role in beta; `both` administers both.
fn tenants() -> (tempfile::TempDir, Node) {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    for user in ["alpha-admin", "beta-admin", "both"] {
        node.cli_ok(&["user", "create", user, "--password", PASSWORD]);
    }
    node.cli_ok(&["organisation", "create", "alpha", "--owner", "alpha-admin"]);
    node.cli_ok(&["organisation", "create", "beta", "--owner", "beta-admin"]);
    for org in ["alpha", "beta"] {
        let bind = json!({"principal": "both", "role": "admin", "organisation": org});
        let owner = format!("{org}-admin");
        assert_eq!(
            call(&node, &owner, "POST", "/role-bindings", Some(bind)).0,
            201
        );
    }
    let (s, v) = call(
        &node,
        "alpha-admin",
        "POST",
        "/users",
        Some(json!({"name": "dual", "password": PASSWORD, "organisation": "alpha"})),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(
        &node,
        "alpha-admin",
        "POST",
        "/service-accounts",
        Some(json!({"name": "bot", "organisation": "alpha"})),
    );
    assert_eq!(s, 201, "{v}");
    for who in ["dual", "bot"] {
        let bind = json!({"principal": who, "role": "developer", "organisation": "beta"});
        let (s, v) = call(&node, "beta-admin", "POST", "/role-bindings", Some(bind));
        assert_eq!(s, 201, "{v}");
    }
    let ns = json!({"name": "beta-apps", "organisation": "beta"});
    assert_eq!(
        call(&node, "beta-admin", "POST", "/namespaces", Some(ns)).0,
        201
    );
    (dir, node)
}

/// Regression: an admin of organisation A minted a credential for a member of A who holds a
/// role in B, and the credential then acted in B. Minting (a credential, a pull secret's
/// fresh secret, a federated identity) now needs access management wherever the principal
/// holds a role.
#[test]
fn acting_as_a_principal_needs_access_wherever_it_holds_roles() {
    let (_d, node) = tenants();
    let mint = |as_user: &str, owner: &str| {
        let body =
            json!({"name": format!("by-{as_user}"), "scope": "containerRegistry", "owner": owner});
        call(&node, as_user, "POST", "/credentials", Some(body))
    };
    let (status, v) = mint("alpha-admin", "dual");
    assert_eq!(
        status, 403,
        "alpha's admin must not mint a key into beta: {v}"
    );
    assert_eq!(v["errors"][0]["code"], "DENIED");
    assert_eq!(
        mint("beta-admin", "dual").0,
        403,
        "beta does not manage alpha's user"
    );
    assert_eq!(mint("alpha-admin", "bot").0, 403);
    let (list, _) = call(&node, "admin", "GET", "/credentials", None);
    assert_eq!(list, 200);
    // Nothing was stored by the refusals.
    let (_, creds) = call(&node, "both", "GET", "/credentials", None);
    assert_eq!(creds["credentials"], json!([]), "{creds}");

    // Who manages access in both may, and the credential acts in beta.
    let (status, cred) = mint("both", "dual");
    assert_eq!(status, 201, "{cred}");
    let as_cred = Registry::with_auth(
        &node.url,
        Some(&basic(
            cred["username"].as_str().unwrap(),
            cred["password"].as_str().unwrap(),
        )),
    );
    as_cred.push_image("beta-apps/app", "v1", b"by dual's credential");

    // A pull secret hands out a fresh secret of the credential: the same rule.
    let (status, own) = call(
        &node,
        "dual",
        "POST",
        "/credentials",
        Some(json!({"name": "own", "scope": "containerRegistry:pull"})),
    );
    assert_eq!(status, 201, "{own}");
    let id = own["id"].as_str().unwrap();
    let secret = json!({"namespace": "default"});
    let (status, v) = call(
        &node,
        "alpha-admin",
        "POST",
        &format!("/credentials/{id}/pull-secret"),
        Some(secret.clone()),
    );
    assert_eq!(status, 403, "{v}");
    let own_login = basic(
        own["username"].as_str().unwrap(),
        own["password"].as_str().unwrap(),
    );
    assert_eq!(
        Registry::with_auth(&node.url, Some(&own_login))
            .get("/v2/beta-apps/app/manifests/v1")
            .status(),
        200,
        "the refused pull secret did not rotate the secret"
    );
    let (status, _) = call(
        &node,
        "dual",
        "POST",
        &format!("/credentials/{id}/pull-secret"),
        Some(secret),
    );
    assert_eq!(status, 201, "the owner makes its own pull secrets");

    // A federated identity acting as the service account: the same rule.
    let federation = |name: &str| {
        json!({
            "name": name,
            "issuer": "https://token.actions.githubusercontent.com",
            "audience": "shoal",
            "conditions": {"repository": "alpha/*"},
            "service_account": "bot",
            "scope": "containerRegistry",
        })
    };
    let (status, v) = call(
        &node,
        "alpha-admin",
        "POST",
        "/federations",
        Some(federation("gha")),
    );
    assert_eq!(status, 403, "{v}");
    let (status, v) = call(
        &node,
        "both",
        "POST",
        "/federations",
        Some(federation("gha")),
    );
    assert_eq!(status, 201, "{v}");
}

/// Regression: a `containerRegistry` credential (even one limited to a namespace) made its
/// namespace public, deleted it and its repositories, and created namespaces. A credential
/// is registry access only; deleting tags and manifests through `/v2` stays allowed.
#[test]
fn push_credentials_do_not_manage_namespaces() {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    let admin = node.registry();
    admin.create_namespace("team");
    admin.push_image("team/app", "v1", b"layer");
    admin.push_image("team/app", "v2", b"layer 2");
    for limited in [true, false] {
        let mut args = vec!["--name", "ci", "--scope", "containerRegistry"];
        if limited {
            args.extend(["--namespace", "team"]);
        }
        let (_, login, secret) = node.credential(&args);
        let cred = Registry::with_auth(&node.url, Some(&basic(&login, &secret)));
        let api = |method: &str, path: &str, body: Option<Value>| {
            let mut req = cred
                .http
                .request(method.parse().unwrap(), cred.url(&format!("/api/v1{path}")));
            if let Some(b) = body {
                req = req.json(&b);
            }
            error_code(req.send().unwrap())
        };
        let denied = (403, "DENIED".to_string());
        assert_eq!(
            api(
                "PATCH",
                "/namespaces/team",
                Some(json!({"visibility": "public"}))
            ),
            denied
        );
        assert_eq!(api("DELETE", "/namespaces/team", None), denied);
        assert_eq!(
            api("POST", "/namespaces", Some(json!({"name": "newns"}))),
            denied
        );
        assert_eq!(api("DELETE", "/repositories/team%2Fapp", None), denied);
        assert_eq!(
            api(
                "PATCH",
                "/repositories/team%2Fapp",
                Some(json!({"visibility": "public"}))
            ),
            denied
        );
        let ns: Value = admin.get("/api/v1/namespaces/team").json().unwrap();
        assert_eq!(ns["visibility"], "private", "limited={limited}");
        assert_eq!(admin.get("/api/v1/namespaces/newns").status(), 404);
        assert_eq!(admin.get("/v2/team/app/tags/list").status(), 200);
        // Registry access still deletes images, as docker and skopeo do.
        let tag = format!("del-{limited}");
        let m = admin.get("/v2/team/app/manifests/v1").bytes().unwrap();
        let ct = "application/vnd.oci.image.manifest.v1+json";
        assert_eq!(admin.put_manifest("team/app", &tag, ct, &m).status(), 201);
        let r = cred
            .http
            .delete(cred.url(&format!("/v2/team/app/manifests/{tag}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(
            api(
                "DELETE",
                &format!("/repositories/team%2Fapp/tags/{tag}"),
                None
            )
            .0,
            404
        );
    }
}

/// Regression: `sct` had one-second resolution, so a user deleted and made again within the
/// same second inherited the old user's tokens. Tokens now name the principal's uid.
#[test]
fn a_namesake_made_in_the_same_second_does_not_inherit_tokens() {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    let admin = node.registry();
    admin.create_namespace("team");
    admin.push_image("team/app", "v1", b"layer");
    let create = || {
        let (s, v) = call(
            &node,
            "admin",
            "POST",
            "/users",
            Some(json!({"name": "sam", "password": PASSWORD})),
        );
        assert_eq!(s, 201, "{v}");
        let bind = json!({"principal": "sam", "role": "reader", "namespace": "team"});
        assert_eq!(
            call(&node, "admin", "POST", "/role-bindings", Some(bind)).0,
            201
        );
        v["created_at"].as_str().unwrap().to_string()
    };
    let mut first = create();
    // Retry until the namesake is made within the same second as the one deleted: that is
    // the case a per-second creation time could not tell apart.
    for _ in 0..10 {
        let token = super::token_for(&node, Some(("sam", PASSWORD)), "repository:team/app:pull");
        let bearer = Registry::with_auth(&node.url, Some(&format!("Bearer {token}")));
        assert_eq!(bearer.get("/v2/team/app/manifests/v1").status(), 200);
        assert_eq!(call(&node, "admin", "DELETE", "/users/sam", None).0, 204);
        let again = create();
        let same_second = again == first;
        let (status, code) = error_code(bearer.get("/v2/team/app/manifests/v1"));
        assert_eq!(
            (status, code.as_str()),
            (401, "UNAUTHORIZED"),
            "same second: {same_second}"
        );
        if same_second {
            return;
        }
        first = again;
    }
    panic!("never re-created the user within the same second; the case was not exercised");
}

/// Reads counter `name` from `/metrics` (0 when absent).
fn counter(node: &Node, name: &str) -> f64 {
    let text = node.registry().get("/metrics").text().unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Regression: a wrong password for an existing user ran argon2 (~20 ms) while an unknown
/// login answered at once, so timing told which logins exist. Both run one check now; the
/// count of checks shows it without timing anything.
#[test]
fn unknown_logins_run_a_password_check_too() {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    let (ok, _, err) = node.cli(&["user", "create", "real", "--password", PASSWORD]);
    assert!(ok, "{err}");
    for login in ["real", "no-such-user", "shoal-notacredential"] {
        let before = counter(&node, "shoal_password_checks_total");
        let r = Registry::with_auth(&node.url, Some(&basic(login, "wrong password")));
        assert_eq!(
            error_code(r.get("/v2/")),
            (401, "UNAUTHORIZED".into()),
            "{login}"
        );
        let after = counter(&node, "shoal_password_checks_total");
        assert_eq!(after - before, 1.0, "{login}: one argon2 check");
    }
}

/// Regression: `/api/v1/cluster` answered anyone with every member's URL, the leader and
/// the term. It is for the cluster's admins; a joining node asks `/cluster/plane`, which
/// names only the node asked. `/metrics` can require credentials.
#[test]
fn the_cluster_view_and_metrics_are_not_for_everyone() {
    let dir = tempdir();
    let node = Node::start_with(&dir.path().join("node"), &["--metrics-auth"]);
    let (ok, _, err) = node.cli(&["user", "create", "outsider", "--password", PASSWORD]);
    assert!(ok, "{err}");
    let anon = Registry::anonymous(&node.url);
    let outsider = Registry::with_auth(&node.url, Some(&basic("outsider", PASSWORD)));
    let (status, code) = error_code(anon.get("/api/v1/cluster"));
    assert_eq!((status, code.as_str()), (401, "UNAUTHORIZED"));
    assert_eq!(error_code(outsider.get("/api/v1/cluster")).0, 403);
    let status: Value = node.registry().get("/api/v1/cluster").json().unwrap();
    assert_eq!(status["leader"], 1);
    let plane: Value = anon.get("/api/v1/cluster/plane").json().unwrap();
    assert_eq!(plane, json!({"node_id": 1, "cluster": ""}));

    let r = anon.get("/metrics");
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(
        outsider.get("/metrics").status(),
        403,
        "no role on the home organisation"
    );
    let (ok, _, err) = node.cli(&["role", "bind", "outsider", "--role", "reader"]);
    assert!(ok, "{err}");
    let r = outsider.get("/metrics");
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("shoal_http_requests_total"));
    // Health and readiness stay open.
    assert_eq!(anon.get("/healthz").status(), 200);
    assert_eq!(anon.get("/readyz").status(), 200);
}
