//! Upgrading a data directory: those in `tests/fixtures/v1-single` … `v5-single`, written
//! by the Shoal of metadata formats 1 to 5 (`make_v1.py` … `make_v5.py`), each with a
//! snapshot and a purged log, opened by this build: each migrates (its snapshot becomes a
//! file, its log's entries segment files; a plain snapshot file of format 4 or 5 is kept
//! and read as it is),
//! serves its images, keeps its users, credentials, visibility, usage (from format 2,
//! retention policies, immutable tags and upstreams; from format 3, the audit trail), and
//! takes new writes, which the audit trail records.

use std::path::Path;

use base64::Engine;
use serde_json::Value;
use shoal_tests::{basic, error_code, tempdir, Node, Registry};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_format_1_data_directory_upgrades_and_serves_everything() {
    upgrades_and_serves_everything("v1-single");
}

#[test]
fn a_format_2_data_directory_upgrades_and_serves_everything() {
    upgrades_and_serves_everything("v2-single");
}

#[test]
fn a_format_3_data_directory_upgrades_and_serves_everything() {
    upgrades_and_serves_everything("v3-single");
}

#[test]
fn a_format_4_data_directory_upgrades_and_serves_everything() {
    upgrades_and_serves_everything("v4-single");
}

#[test]
fn a_format_5_data_directory_upgrades_and_serves_everything() {
    upgrades_and_serves_everything("v5-single");
}

fn upgrades_and_serves_everything(name: &str) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap())
            .unwrap();
    let dir = tempdir();
    let data = dir.path().join("data");
    copy_dir(&fixture.join("data"), &data);
    let node = Node::start(&data);
    let admin = Registry::with_auth(
        &node.url,
        Some(&basic(
            "admin",
            expected["admin_password"].as_str().unwrap(),
        )),
    );
    let files = |dir: &str| -> Vec<String> {
        std::fs::read_dir(data.join("meta").join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    if name == "v4-single" || name == "v5-single" {
        // A plain snapshot file of format 4 or 5 is kept as it is, and read as it is.
        let snapshots = files("snapshots");
        assert!(
            snapshots.len() == 1 && snapshots[0].starts_with("40-"),
            "{snapshots:?}"
        );
    } else {
        // The snapshot the old format kept inside the database is now a file beside it.
        assert_eq!(files("snapshots"), ["migrated.snap"]);
    }
    // The log's entries behind the snapshot left sled for a segment file; the writes
    // checked below that came after the snapshot are served from them.
    let segments = files("raft-log");
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert!(
        std::fs::metadata(data.join("meta/raft-log").join(&segments[0]))
            .unwrap()
            .len()
            > 0
    );
    // The images, byte for byte, with their blobs.
    let b64 = base64::engine::general_purpose::STANDARD;
    for (reference, image) in expected["images"].as_object().unwrap() {
        let (repo, tag) = reference.split_once(':').unwrap();
        let r = admin.get(&format!("/v2/{repo}/manifests/{tag}"));
        assert_eq!(r.status(), 200, "{reference}");
        assert_eq!(
            r.headers()["docker-content-digest"],
            image["digest"].as_str().unwrap()
        );
        let bytes = r.bytes().unwrap();
        assert_eq!(
            bytes.as_ref(),
            b64.decode(image["bytes"].as_str().unwrap()).unwrap()
        );
        let manifest: Value = serde_json::from_slice(&bytes).unwrap();
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            let digest = layer["digest"].as_str().unwrap();
            let blob = admin
                .get(&format!("/v2/{repo}/blobs/{digest}"))
                .bytes()
                .unwrap();
            assert_eq!(shoal_tests::sha256(&blob), digest);
        }
    }
    for (repo, tags) in expected["tags"].as_object().unwrap() {
        let list: Value = admin.get(&format!("/v2/{repo}/tags/list")).json().unwrap();
        assert_eq!(&list["tags"], tags, "{repo}");
    }
    let referrer = &expected["referrer"];
    let index: Value = admin
        .get(&format!(
            "/v2/{}/referrers/{}",
            referrer["repo"].as_str().unwrap(),
            referrer["subject"].as_str().unwrap()
        ))
        .json()
        .unwrap();
    assert_eq!(index["manifests"][0]["digest"], referrer["digest"]);
    let deleted = &expected["deleted"];
    let r = admin.get(&format!(
        "/v2/{}/manifests/{}",
        deleted["repo"].as_str().unwrap(),
        deleted["manifest"].as_str().unwrap()
    ));
    assert_eq!(error_code(r).0, 404, "what was deleted stays deleted");

    // Who may sign in, and what they may do, is unchanged.
    for (user, password) in expected["users"].as_object().unwrap() {
        let r = Registry::with_auth(&node.url, Some(&basic(user, password.as_str().unwrap())));
        assert_eq!(r.get("/api/v1/me").status(), 200, "{user}");
    }
    let cred = &expected["credential"];
    let deploy = Registry::with_auth(
        &node.url,
        Some(&basic(
            cred["username"].as_str().unwrap(),
            cred["password"].as_str().unwrap(),
        )),
    );
    assert_eq!(deploy.get("/v2/team/multi/manifests/latest").status(), 200);
    assert_eq!(
        error_code(deploy.get("/v2/shop/site/tags/list")).0,
        403,
        "restricted to team"
    );
    let anon = Registry::anonymous(&node.url);
    assert_eq!(
        anon.get("/v2/team/multi/manifests/latest").status(),
        200,
        "team is public"
    );
    assert_eq!(
        anon.get("/v2/team/app/manifests/v1").status(),
        401,
        "its app repository is private"
    );
    let usage: Value = admin.get("/api/v1/namespaces/team/usage").json().unwrap();
    assert!(usage["pulls"].as_u64().unwrap() >= expected["pulls"]["team"].as_u64().unwrap());
    let revoked = expected["revoked_credential"].as_str().unwrap();
    let creds: Value = admin.get("/api/v1/credentials").json().unwrap();
    let revoked_now = creds["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == revoked)
        .unwrap();
    assert!(!revoked_now["revoked_at"].is_null());

    // What format 2 added.
    if let Some(policies) = expected["retention"].as_object() {
        for (ns, policy) in policies {
            let got: Value = admin
                .get(&format!("/api/v1/namespaces/{ns}/retention"))
                .json()
                .unwrap();
            assert_eq!(
                got["rules"].as_array().unwrap().len(),
                policy["rules"].as_array().unwrap().len(),
                "{ns}"
            );
        }
        for (ns, patterns) in expected["immutable"].as_object().unwrap() {
            let got: Value = admin
                .get(&format!("/api/v1/namespaces/{ns}"))
                .json()
                .unwrap();
            assert_eq!(&got["immutable_tags"], patterns, "{ns}");
        }
        let up = &expected["upstream"];
        let got: Value = admin
            .get(&format!(
                "/api/v1/upstreams/{}",
                up["name"].as_str().unwrap()
            ))
            .json()
            .unwrap();
        assert_eq!(got["namespace"], up["namespace"]);
        assert_eq!(got["host"], up["host"]);
    }
    // What format 3 added: the audit trail written before the upgrade.
    if let Some(namespaces) = expected["audit"].as_array() {
        let trail: Value = admin
            .get("/api/v1/audit?action=namespace.create")
            .json()
            .unwrap();
        let mut got: Vec<&Value> = trail["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["namespace"])
            .collect();
        got.sort_by_key(|n| n.as_str());
        assert_eq!(got, namespaces.iter().collect::<Vec<_>>(), "{trail}");
        assert!(!namespaces.is_empty());
    }

    // And it takes new writes, through every path, and keeps them across a restart.
    admin.push_image("team/app", "v2", b"pushed after the upgrade");
    let (ok, _, err) = node.cli_as(
        "admin",
        expected["admin_password"].as_str().unwrap(),
        &["namespace", "create", "after"],
    );
    assert!(ok, "{err}");
    let _ = node.stop_with("TERM");
    let node = Node::start(&data);
    let admin = Registry::with_auth(
        &node.url,
        Some(&basic(
            "admin",
            expected["admin_password"].as_str().unwrap(),
        )),
    );
    assert_eq!(admin.get("/v2/team/app/manifests/v2").status(), 200);
    assert_eq!(admin.get("/api/v1/namespaces/after").status(), 200);
    // Writes after the upgrade are in the audit trail, with their time and client.
    let trail: Value = admin
        .get("/api/v1/audit?action=namespace.create")
        .json()
        .unwrap();
    let after = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["namespace"] == "after")
        .unwrap_or_else(|| panic!("{trail}"));
    assert_eq!(after["actor"], "admin");
    assert_eq!(after["from"], "127.0.0.1");
    assert!(after["at"].as_str().unwrap() > "2026");
}
