//! The management API against its OpenAPI document (`proxy/src/api/openapi.json`): a real
//! node serves a document that names every route of the dispatcher, and the real
//! `schemathesis` CLI, driven by that document alone, finds nothing the node answers outside
//! it: no 5xx, no undocumented status, header or content type, no body off its schema, no
//! invalid input accepted and no valid input refused, 405 with `Allow` for other methods.
//!
//! The document's examples name what the test creates first (namespace `acme-apps` with the
//! image `acme-apps/api:v1.2.0`, service account `ci-deployer`, user `alice`), so the
//! examples phase reaches real objects instead of 404s.

use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};
use shoal_tests::{basic, require_tool, tempdir, Node, Registry, ADMIN_PASSWORD};

/// Every (method, path) `api::Api::dispatch` answers, as the document spells the path.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/openapi.json"),
    ("get", "/me"),
    ("get", "/organisations"),
    ("post", "/organisations"),
    ("get", "/organisations/{org}"),
    ("delete", "/organisations/{org}"),
    ("get", "/organisations/{org}/projects"),
    ("post", "/organisations/{org}/projects"),
    ("delete", "/organisations/{org}/projects/{project}"),
    ("get", "/namespaces"),
    ("post", "/namespaces"),
    ("get", "/namespaces/{ns}"),
    ("patch", "/namespaces/{ns}"),
    ("delete", "/namespaces/{ns}"),
    ("get", "/namespaces/{ns}/usage"),
    ("get", "/namespaces/{ns}/repositories"),
    ("get", "/repositories/{repo}"),
    ("patch", "/repositories/{repo}"),
    ("delete", "/repositories/{repo}"),
    ("get", "/repositories/{repo}/tags"),
    ("delete", "/repositories/{repo}/tags/{tag}"),
    ("get", "/credentials"),
    ("post", "/credentials"),
    ("delete", "/credentials/{id}"),
    ("post", "/credentials/{id}/pull-secret"),
    ("get", "/users"),
    ("post", "/users"),
    ("delete", "/users/{name}"),
    ("get", "/service-accounts"),
    ("post", "/service-accounts"),
    ("delete", "/service-accounts/{name}"),
    ("get", "/role-bindings"),
    ("post", "/role-bindings"),
    ("delete", "/role-bindings"),
    ("get", "/federations"),
    ("post", "/federations"),
    ("delete", "/federations/{name}"),
    ("get", "/signing-keys"),
    ("post", "/signing-keys"),
    ("get", "/cluster"),
    ("get", "/cluster/plane"),
    ("get", "/gc"),
    ("post", "/gc"),
    ("get", "/audit"),
    ("get", "/namespaces/{ns}/retention"),
    ("put", "/namespaces/{ns}/retention"),
    ("delete", "/namespaces/{ns}/retention"),
    ("post", "/namespaces/{ns}/retention/preview"),
    ("post", "/namespaces/{ns}/retention/run"),
    ("delete", "/cluster/members/{id}"),
    ("get", "/upstreams"),
    ("post", "/upstreams"),
    ("get", "/upstreams/{name}"),
    ("delete", "/upstreams/{name}"),
];

/// Test cases per operation and phase: about 40 s on two cores, with room under load.
const MAX_EXAMPLES: &str = "50";

#[test]
fn the_management_api_keeps_to_its_openapi_document() {
    let dir = tempdir();
    // The fuzzer signs in wrongly and anonymously on purpose, far more often than the edge
    // lets a client (edge.rs tests those limits); with them on it would read 429s.
    let node = Node::start_with(
        &dir.path().join("node"),
        &[
            "--anonymous-rate-limit",
            "off",
            "--failed-login-limit",
            "off",
        ],
    );
    let admin = node.registry();
    let r = Registry::anonymous(&node.url).get("/api/v1/openapi.json");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(doc["servers"][0]["url"], "/api/v1");
    assert_eq!(
        doc["components"]["schemas"]["Region"]["enum"],
        json!(["local"]),
        "the served document names this node's region"
    );
    for (method, path) in ROUTES {
        assert!(
            doc["paths"][path][method]["responses"].is_object(),
            "{method} {path} is not in the document"
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|ops| ops.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "the document has routes ROUTES lacks"
    );

    if !require_tool("schemathesis") {
        return;
    }
    seed_the_examples(&admin);
    // Every check, except that valid-looking data may be refused by three operations, for
    // what JSON Schema cannot say: whether a regular expression compiles (and that an
    // untagged rule names no tags) for a retention policy (tested in `retention.rs`); a
    // tag TTL over a day for an upstream (`mirror.rs`); that a federated identity's
    // `service_account` names a service account, not a user (the stateful phase links a
    // user it created; `federation.rs`). Each answers 400 naming what is wrong. And a
    // namespace just created has no retention policy: its `retention` answers 404 until one
    // is set (as ECR's lifecycle policies do; `retention.rs`), which the stateful phase's
    // "created resource not found" would read as the namespace missing. The opposite
    // choice, 200 with no rules, fails its "deleted resource still available" after a
    // DELETE. (A `--checks` flag would override this file.)
    std::fs::write(
        dir.path().join("schemathesis.toml"),
        "[checks]\nenabled = true\n\n[[operations]]\ninclude-operation-id = \"setRetention\"\nchecks.positive_data_acceptance.enabled = false\n\n[[operations]]\ninclude-operation-id = \"createUpstream\"\nchecks.positive_data_acceptance.enabled = false\n\n[[operations]]\ninclude-operation-id = \"createFederation\"\nchecks.positive_data_acceptance.enabled = false\n\n[[operations]]\ninclude-operation-id = \"getRetention\"\nchecks.ensure_resource_availability.enabled = false\n\n[[operations]]\ninclude-operation-id = \"deleteRetention\"\nchecks.ensure_resource_availability.enabled = false\n",
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new("schemathesis")
        .args(["run", &format!("{}/api/v1/openapi.json", node.url)])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--request-timeout", "30"])
        .args(["--no-color", "--output-truncate", "false"])
        .args([
            "--header",
            &format!("Authorization: {}", basic("admin", ADMIN_PASSWORD)),
        ])
        // Its example database and replay cassettes go with the test's directory.
        .current_dir(dir.path())
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found the node off its document (reproduce with the seed it prints):\n{text}"
    );
    eprintln!(
        "schemathesis passed in {:.0?}:\n{}",
        started.elapsed(),
        text.lines()
            .skip_while(|l| !l.contains("SUMMARY"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Creates what the document's examples name.
fn seed_the_examples(admin: &Registry) {
    admin.create_namespace("acme-apps");
    admin.push_image("acme-apps/api", "v1.2.0", b"a layer of the example image");
    // The upstream `hub` (never contacted: no pull goes through it here).
    admin.create_namespace("hub-mirror");
    let r = admin
        .http
        .post(admin.url("/api/v1/upstreams"))
        .json(&json!({"name": "hub", "url": "https://registry-1.docker.io", "namespace": "hub-mirror"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "upstream: {}", r.text().unwrap());
    for (path, body) in [
        ("/api/v1/service-accounts", json!({"name": "ci-deployer"})),
        (
            "/api/v1/users",
            json!({"name": "alice", "password": "correct-horse-battery"}),
        ),
    ] {
        let r = admin.http.post(admin.url(path)).json(&body).send().unwrap();
        assert_eq!(r.status(), 201, "{path}: {}", r.text().unwrap());
    }
}
