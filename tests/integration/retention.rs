//! Retention policies and immutable tags against a real node: every condition with real
//! pushes and real pulls, AND within a rule and OR across rules, a preview that is exactly
//! what the run then deletes, immutable tags that survive every way of removing them, and
//! the collector reclaiming what retention left.

use std::time::Duration;

use serde_json::{json, Value};
use shoal_tests::oci::noise;
use shoal_tests::{error_code, tempdir, Node, Registry};

fn node(dir: &std::path::Path) -> Node {
    Node::start_with(
        dir,
        &[
            "--gc-interval",
            "off",
            "--gc-grace",
            "1s",
            "--retention-interval",
            "off",
            "--usage-interval",
            "1s",
        ],
    )
}

fn api(reg: &Registry, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reg
        .http
        .request(method.parse().unwrap(), reg.url(&format!("/api/v1{path}")));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn tags(reg: &Registry, repo: &str) -> Vec<String> {
    let v: Value = reg.get(&format!("/v2/{repo}/tags/list")).json().unwrap();
    v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn deleted(plan: &Value) -> Vec<String> {
    let mut out: Vec<String> = plan["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let repo = r["repository"].as_str().unwrap().to_string();
            r["delete"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |d| format!("{repo}:{}", d["tag"].as_str().unwrap()))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_policy_keeps_what_its_rules_say_and_a_preview_is_what_a_run_does() {
    let dir = tempdir();
    let node = node(&dir.path().join("node"));
    let reg = node.registry();
    reg.create_namespace("ci");
    // Pushed oldest first, a second apart, so "most recently pushed" has an order.
    let pushes = [
        ("ci/api", "v1.0"),
        ("ci/api", "0a1b2c3"),
        ("ci/api", "4d5e6f7"),
        ("ci/api", "v2.0-rc1"),
        ("ci/api", "8a9b0c1"),
        ("ci/api", "2d3e4f5"),
        ("ci/web", "6a7b8c9"),
        ("ci/web", "dev-build"),
        ("other/keep", "anything"),
    ];
    reg.create_namespace("other");
    for (i, (repo, tag)) in pushes.iter().enumerate() {
        reg.push_image(repo, tag, &noise(i as u64 + 100, 20_000));
        std::thread::sleep(Duration::from_millis(1100));
    }
    // A real pull of an old commit tag, recorded with the next usage batch.
    let anon_pull = reg.get("/v2/ci/api/manifests/0a1b2c3");
    assert_eq!(anon_pull.status(), 200);
    std::thread::sleep(Duration::from_millis(2500));

    // Releases always; the 2 newest commit tags of each repository pushed within 1h; and
    // anything pulled within 1h. Untouched: other namespaces.
    let policy = json!({
        "rules": [
            {"tags": ["v*"], "exclude": ["*-rc*"]},
            {"tags_regex": ["^[0-9a-f]{7}$"], "newest_pushed": 2, "pushed_within": "1h"},
            {"pulled_within": "1h"},
        ],
    });
    let (s, v) = api(&reg, "PUT", "/namespaces/ci/retention", Some(policy));
    assert_eq!(s, 200, "{v}");
    let (s, shown) = api(&reg, "GET", "/namespaces/ci/retention", None);
    assert_eq!(s, 200);
    assert_eq!(shown["rules"][1]["pushed_within"], "1h");
    let (s, preview) = api(&reg, "POST", "/namespaces/ci/retention/preview", None);
    assert_eq!(s, 200, "{preview}");
    assert_eq!(
        deleted(&preview),
        ["ci/api:4d5e6f7", "ci/api:v2.0-rc1", "ci/web:dev-build"],
        "{preview}"
    );
    assert!(
        preview["bytes_freed"].as_u64().unwrap() > 3 * 20_000,
        "{preview}"
    );
    assert_eq!(tags(&reg, "ci/api").len(), 6, "a preview changes nothing");
    let (s, run) = api(&reg, "POST", "/namespaces/ci/retention/run", None);
    assert_eq!(s, 200);
    assert_eq!(run, preview, "the run did exactly what the preview said");
    assert_eq!(
        tags(&reg, "ci/api"),
        ["0a1b2c3", "2d3e4f5", "8a9b0c1", "v1.0"]
    );
    assert_eq!(tags(&reg, "ci/web"), ["6a7b8c9"]);
    assert_eq!(tags(&reg, "other/keep"), ["anything"]);

    // The collector reclaims what retention left (the grace period has passed).
    std::thread::sleep(Duration::from_millis(1100));
    let (ok, out, err) = node.cli(&["gc", "run", "--json"]);
    assert!(ok, "{err}");
    let gc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(gc["manifests"], 3, "{gc}");
    assert!(
        gc["bytes_reclaimed"].as_u64().unwrap() >= 3 * 20_000,
        "{gc}"
    );

    // Without a policy a namespace keeps everything.
    assert_eq!(api(&reg, "DELETE", "/namespaces/ci/retention", None).0, 204);
    let (_, empty) = api(&reg, "POST", "/namespaces/ci/retention/run", None);
    assert_eq!(empty["tags"], 0);
    let (s, none) = api(&reg, "GET", "/namespaces/ci/retention", None);
    assert_eq!(
        (s, &none["errors"][0]["code"]),
        (404, &json!("NOT_FOUND")),
        "{none}"
    );
    let msg = none["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("keeps every tag"), "{msg}");
    // Deleting it again is 404 too: nothing was there.
    assert_eq!(api(&reg, "DELETE", "/namespaces/ci/retention", None).0, 404);
}

#[test]
fn bad_policies_are_refused_and_the_cli_shorthands_work() {
    let dir = tempdir();
    let node = node(&dir.path().join("node"));
    let reg = node.registry();
    reg.create_namespace("ci");
    for (policy, says) in [
        (json!({"rules": []}), "at least one keep rule"),
        (
            json!({"rules": [{"tags_regex": ["("]}]}),
            "not a regular expression",
        ),
        (
            json!({"rules": [{"untagged": true, "tags": ["v*"]}]}),
            "no tag patterns",
        ),
        (json!({"rules": [{"pushed_within": "soon"}]}), "duration"),
        (json!({"rules": [{"newest_pushed": 0}]}), "count of 0"),
        (json!({"rules": [{"nope": 1}]}), "unknown field"),
    ] {
        let (s, v) = api(
            &reg,
            "PUT",
            "/namespaces/ci/retention",
            Some(policy.clone()),
        );
        assert_eq!(s, 400, "{policy}: {v}");
        let msg = v["errors"][0]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{policy}: {msg}");
    }
    let (s, none) = api(&reg, "GET", "/namespaces/ci/retention", None);
    assert_eq!(s, 404, "nothing was stored: {none}");
    let (ok, _, err) = node.cli(&[
        "retention",
        "set",
        "ci",
        "--keep-latest",
        "3",
        "--keep-tags",
        "v*",
        "--keep-untagged-for",
        "2d",
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = node.cli(&["retention", "show", "ci", "--json"]);
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        shown["rules"],
        json!([{"newest_pushed": 3}, {"tags": ["v*"]}, {"untagged": true, "pushed_within": "2days"}])
    );
    // Anonymous and read-only callers cannot set one.
    let anon = Registry::anonymous(&node.url);
    let (s, _) = api(
        &anon,
        "PUT",
        "/namespaces/ci/retention",
        Some(json!({"rules": [{}]})),
    );
    assert_eq!(s, 401);
}

#[test]
fn immutable_tags_survive_pushes_deletes_and_retention() {
    let dir = tempdir();
    let node = node(&dir.path().join("node"));
    let reg = node.registry();
    reg.create_namespace("rel");
    let (ok, _, err) = node.cli(&[
        "namespace",
        "set",
        "rel",
        "--immutable-tags",
        "v*",
        "--immutable-exclude",
        "*-rc*",
    ]);
    assert!(ok, "{err}");
    let (v1, v1_bytes) = reg.push_image("rel/app", "v1", b"one");
    // The same digest again is fine (docker re-pushes).
    let ct = "application/vnd.oci.image.manifest.v1+json";
    assert_eq!(
        reg.put_manifest("rel/app", "v1", ct, &v1_bytes).status(),
        201
    );
    let (other, other_bytes) = reg.push_image("rel/app", "other", b"two");
    let r = reg.put_manifest("rel/app", "v1", ct, &other_bytes);
    let (status, body) = (r.status().as_u16(), r.text().unwrap());
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("DENIED") && body.contains("v*"),
        "names the rule: {body}"
    );
    for path in [
        "/v2/rel/app/manifests/v1".to_string(),
        format!("/v2/rel/app/manifests/{v1}"),
    ] {
        let r = reg.http.delete(reg.url(&path)).send().unwrap();
        assert_eq!(error_code(r), (403, "DENIED".into()), "{path}");
    }
    assert_eq!(
        api(&reg, "DELETE", "/repositories/rel%2Fapp/tags/v1", None).0,
        403
    );
    assert_eq!(api(&reg, "DELETE", "/repositories/rel%2Fapp", None).0, 403);
    // Excluded and other tags move and go freely.
    reg.push_image("rel/app", "v2-rc1", b"rc");
    assert_eq!(
        reg.put_manifest("rel/app", "v2-rc1", ct, &other_bytes)
            .status(),
        201
    );
    // Retention that keeps nothing but `latest` leaves the immutable tag.
    let policy = json!({"rules": [{"tags": ["latest"]}]});
    assert_eq!(
        api(&reg, "PUT", "/namespaces/rel/retention", Some(policy)).0,
        200
    );
    let (_, plan) = api(&reg, "POST", "/namespaces/rel/retention/run", None);
    assert_eq!(deleted(&plan), ["rel/app:other", "rel/app:v2-rc1"]);
    assert_eq!(tags(&reg, "rel/app"), ["v1"]);
    assert_eq!(
        reg.get(&format!("/v2/rel/app/manifests/{v1}")).status(),
        200
    );
    let _ = other;
    let ns: Value = api(&reg, "GET", "/namespaces/rel", None).1;
    assert_eq!(ns["immutable_tags"], json!(["v*"]));
    assert_eq!(ns["immutable_exclude"], json!(["*-rc*"]));
    // A description with a control character is refused, and nothing else in the same
    // request is applied; a good one is set with the CLI and removed with "".
    let (s, _) = api(
        &reg,
        "PATCH",
        "/namespaces/rel",
        Some(json!({"immutable_tags": [], "description": "bad\u{7}"})),
    );
    assert_eq!(s, 400);
    let ns: Value = api(&reg, "GET", "/namespaces/rel", None).1;
    assert_eq!(ns["immutable_tags"], json!(["v*"]), "nothing applied");
    let (ok, _, err) = node.cli(&["namespace", "set", "rel", "--description", "Releases"]);
    assert!(ok, "{err}");
    let ns: Value = api(&reg, "GET", "/namespaces/rel", None).1;
    assert_eq!(ns["description"], "Releases");
    let (s, _) = api(
        &reg,
        "PATCH",
        "/namespaces/rel",
        Some(json!({"description": ""})),
    );
    assert_eq!(s, 200);
    let ns: Value = api(&reg, "GET", "/namespaces/rel", None).1;
    assert_eq!(ns["description"], Value::Null);
    // Turning immutability off frees the tag.
    let (s, _) = api(
        &reg,
        "PATCH",
        "/namespaces/rel",
        Some(json!({"immutable_tags": []})),
    );
    assert_eq!(s, 200);
    let r = reg
        .http
        .delete(reg.url("/v2/rel/app/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
}

/// The leader runs every namespace's policy on its own every `--retention-interval`.
#[test]
fn the_leader_runs_policies_on_a_schedule() {
    let dir = tempdir();
    let node = Node::start_with(
        &dir.path().join("node"),
        &["--retention-interval", "1s", "--gc-interval", "off"],
    );
    let reg = node.registry();
    reg.create_namespace("ci");
    for (i, tag) in ["a", "b", "c"].iter().enumerate() {
        reg.push_image("ci/app", tag, &noise(200 + i as u64, 1000));
        std::thread::sleep(Duration::from_millis(1100));
    }
    let policy = json!({"rules": [{"newest_pushed": 1}]});
    assert_eq!(
        api(&reg, "PUT", "/namespaces/ci/retention", Some(policy)).0,
        200
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tags(&reg, "ci/app") != ["c"] {
        assert!(
            std::time::Instant::now() < deadline,
            "the schedule never ran: {:?}",
            tags(&reg, "ci/app")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
