//! The audit trail: "who deleted this tag" answered by any node of a region, only to the
//! admins of the organisation concerned; failed sign-ins, tokens and pulls in a node's
//! `--audit-log`; events gone after `--audit-retention`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_tests::region::Region;
use shoal_tests::{basic, error_code, tempdir, Node, Registry, ADMIN_PASSWORD};

fn admin_call(url: &str, method: reqwest::Method, path: &str, body: Value) {
    let r = reqwest::blocking::Client::new()
        .request(method.clone(), format!("{url}/api/v1{path}"))
        .header("Authorization", basic("admin", ADMIN_PASSWORD))
        .json(&body)
        .send()
        .unwrap();
    assert!(
        r.status().is_success(),
        "{method} {path}: {}",
        r.text().unwrap()
    );
}

fn user(url: &str, name: &str, password: &str, role: &str, at: Value) {
    admin_call(
        url,
        reqwest::Method::POST,
        "/users",
        json!({"name": name, "password": password}),
    );
    let mut binding = json!({"principal": name, "role": role});
    for (k, v) in at.as_object().unwrap() {
        binding[k] = v.clone();
    }
    admin_call(url, reqwest::Method::POST, "/role-bindings", binding);
}

fn audit(url: &str, who: (&str, &str), query: &str) -> reqwest::blocking::Response {
    Registry::with_auth(url, Some(&basic(who.0, who.1))).get(&format!("/api/v1/audit?{query}"))
}

fn events(url: &str, who: (&str, &str), query: &str) -> Vec<Value> {
    let r = audit(url, who, query);
    assert_eq!(r.status(), 200);
    let page: Value = r.json().unwrap();
    page["events"].as_array().unwrap().clone()
}

#[test]
fn who_deleted_a_tag_is_answered_by_every_node_to_its_organisations_admins_only() {
    let dir = tempdir();
    let region = Region::start(dir.path(), 2, 2);
    let (one, two) = (region.node(1).url.clone(), region.node(2).url.clone());
    let admin = Registry::with_auth(&one, Some(&basic("admin", ADMIN_PASSWORD)));
    admin.create_namespace("team");
    user(
        &one,
        "alice",
        "alice-password-1",
        "developer",
        json!({"namespace": "team"}),
    );
    user(
        &one,
        "bob",
        "bob-password-12",
        "developer",
        json!({"namespace": "team"}),
    );
    user(
        &one,
        "rita",
        "rita-password-1",
        "reader",
        json!({"namespace": "team"}),
    );
    admin_call(
        &one,
        reqwest::Method::POST,
        "/organisations",
        json!({"name": "other", "owner": "admin"}),
    );
    user(
        &one,
        "olga",
        "olga-password-1",
        "admin",
        json!({"organisation": "other"}),
    );

    // alice pushes through node 1; bob deletes the tag through node 2.
    let alice = Registry::with_auth(&one, Some(&basic("alice", "alice-password-1")));
    let (digest, _) = alice.push_image("team/app", "v1", b"audited layer");
    let bob = Registry::with_auth(&two, Some(&basic("bob", "bob-password-12")));
    let r = bob
        .http
        .delete(bob.url("/v2/team/app/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);

    // Any node answers, from its replica: node 1 for the delete made through node 2.
    let admin_login = ("admin", ADMIN_PASSWORD);
    let deadline = Instant::now() + Duration::from_secs(10);
    let deleted = loop {
        let found = events(&one, admin_login, "repository=team/app&action=tag.delete");
        if let Some(e) = found.first() {
            break e.clone();
        }
        assert!(Instant::now() < deadline, "node 1 never showed the delete");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(deleted["actor"], "bob");
    assert_eq!(deleted["tag"], "v1");
    assert_eq!(deleted["from"], "127.0.0.1");
    assert_eq!(deleted["result"], "ok");
    assert!(!deleted["request_id"].as_str().unwrap().is_empty());
    let pushed = events(&two, admin_login, "actor=alice&action=manifest");
    let push = pushed
        .iter()
        .find(|e| e["action"] == "manifest.push" && e["tag"] == "v1")
        .expect("alice's push of team/app:v1");
    assert_eq!(push["repository"], "team/app");
    assert_eq!(push["digest"], digest.as_str());
    // The namespace, the users and their roles were recorded as the admin's.
    let setup = events(&two, admin_login, "actor=admin");
    for action in [
        "namespace.create",
        "principal.create",
        "role.bind",
        "organisation.create",
    ] {
        assert!(
            setup.iter().any(|e| e["action"] == action),
            "{action} in {setup:?}"
        );
    }

    // The CLI asks the same question.
    let (ok, out, err) = region.node(2).cli(&[
        "audit",
        "list",
        "--repository",
        "team/app",
        "--action",
        "tag",
        "--since",
        "1h",
    ]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("tag.delete"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("bob") && line.contains("team/app v1"),
        "{line}"
    );

    // Who may not ask: a reader, the pusher herself (a developer), an admin of another
    // organisation sees only that organisation's events, and nobody anonymous.
    for (who, pw) in [("rita", "rita-password-1"), ("alice", "alice-password-1")] {
        assert_eq!(
            error_code(audit(&one, (who, pw), "")),
            (403, "DENIED".into()),
            "{who}"
        );
    }
    let olga = events(&one, ("olga", "olga-password-1"), "");
    assert!(
        olga.iter().all(|e| e["organisation"] == "other"),
        "olga sees only her organisation's events: {olga:?}"
    );
    assert!(olga.iter().all(|e| e["repository"].is_null()));
    assert_eq!(Registry::anonymous(&one).get("/api/v1/audit").status(), 401);

    // Garbage in gets a clear 400.
    for bad in [
        "since=yesterday",
        "since=24h",
        "limit=0",
        "limit=5000",
        "cursor=nope",
    ] {
        assert_eq!(error_code(audit(&one, admin_login, bad)).0, 400, "{bad}");
    }
    // Pages join up: one event per page walks the same events as one big page.
    let all = events(&one, admin_login, "limit=1000");
    let mut walked = Vec::new();
    let mut query = "limit=1".to_string();
    loop {
        let page: Value = audit(&one, admin_login, &query).json().unwrap();
        walked.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["index"].clone()),
        );
        match page["next"].as_str() {
            Some(c) => query = format!("limit=1&cursor={c}"),
            None => break,
        }
        assert!(walked.len() <= all.len(), "pages never end");
    }
    let all: Vec<Value> = all.iter().map(|e| e["index"].clone()).collect();
    assert_eq!(walked, all);
}

#[test]
fn failed_sign_ins_tokens_and_pulls_go_to_the_nodes_audit_log() {
    let dir = tempdir();
    let log = dir.path().join("audit.jsonl");
    let node = Node::start_with(
        &dir.path().join("data"),
        &["--audit-log", log.to_str().unwrap(), "--audit-pulls"],
    );
    let admin = Registry::with_auth(&node.url, Some(&basic("admin", ADMIN_PASSWORD)));
    admin.create_namespace("team");
    admin.push_image("team/app", "v1", b"pulled layer");
    let http = reqwest::blocking::Client::new();
    let token = |user: &str, pw: &str| {
        http.get(format!(
            "{}/auth/token?service=shoal&scope=repository:team/app:pull",
            node.url
        ))
        .header("Authorization", basic(user, pw))
        .send()
        .unwrap()
        .status()
    };
    assert_eq!(token("mallory", "guess-1"), 401);
    assert_eq!(token("admin", ADMIN_PASSWORD), 200);
    assert_eq!(admin.get("/v2/team/app/manifests/v1").status(), 200);

    let deadline = Instant::now() + Duration::from_secs(10);
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.iter().any(|l| l["action"] == "pull") {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "no pull in the audit log: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let of = |action: &str| {
        lines
            .iter()
            .find(|l| l["action"] == action)
            .unwrap_or_else(|| panic!("{action} in {lines:?}"))
    };
    let failed = of("signin.failed");
    assert_eq!(failed["login"], "mallory");
    assert_eq!(failed["from"], "127.0.0.1");
    assert!(failed["result"].as_str().unwrap().contains("invalid"));
    let issued = of("token.issue");
    assert_eq!(issued["actor"], "admin");
    assert_eq!(issued["access"][0], "repository:team/app:pull");
    let pull = of("pull");
    assert_eq!(pull["repository"], "team/app");
    assert_eq!(pull["reference"], "v1");
    assert!(pull["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(shoal_tests::metric(&node, "shoal_audit_events_written_total") >= 3.0);
}

#[test]
fn events_older_than_the_retention_are_removed() {
    let dir = tempdir();
    let node = Node::start_with(&dir.path().join("data"), &["--audit-retention", "2s"]);
    let admin = Registry::with_auth(&node.url, Some(&basic("admin", ADMIN_PASSWORD)));
    admin.create_namespace("brief");
    let login = ("admin", ADMIN_PASSWORD);
    let created = events(&node.url, login, "action=namespace.create");
    assert!(created.iter().any(|e| e["namespace"] == "brief"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !events(&node.url, login, "action=namespace.create").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the event outlived its retention"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
