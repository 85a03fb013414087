//! Behaviours the official OCI distribution-spec conformance suites check, kept here as
//! regression tests so that a fix stays fixed without the Go suite in CI.

use serde_json::{json, Value};
use shoal_tests::oci;
use shoal_tests::{error_code, node_with_namespace, sha256};

/// The suites read a manifest by a reference that is not a valid tag and expect 404
/// `MANIFEST_UNKNOWN`, as for any manifest that does not exist; only a `PUT` says `TAG_INVALID`.
#[test]
fn reading_an_invalid_tag_is_manifest_unknown() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    reg.push_image("acme/app", "v1", b"layer");
    for path in [
        "/v2/acme/app/manifests/.INVALID_MANIFEST_NAME",
        "/v2/acme/app/manifests/-bad",
    ] {
        let r = reg.get(path);
        assert_eq!(
            error_code(r),
            (404, "MANIFEST_UNKNOWN".into()),
            "GET {path}"
        );
        let r = reg.http.head(reg.url(path)).send().unwrap();
        assert_eq!(r.status(), 404, "HEAD {path}");
        let r = reg.http.delete(reg.url(path)).send().unwrap();
        assert_eq!(
            error_code(r),
            (404, "MANIFEST_UNKNOWN".into()),
            "DELETE {path}"
        );
    }
    let r = reg.get("/v2/acme/nothing-here/manifests/.INVALID_MANIFEST_NAME");
    assert_eq!(error_code(r), (404, "NAME_UNKNOWN".into()));
    let m = oci::image_manifest(&sha256(b"c"), 1, &[], None);
    let r = reg.put_manifest("acme/app", ".INVALID_MANIFEST_NAME", oci::OCI_MANIFEST, &m);
    assert_eq!(error_code(r), (400, "TAG_INVALID".into()));
}

/// A registry with the referrers API never answers it with 404, which tells clients to fall
/// back to the tag schema: a repository that does not exist yet has no referrers.
#[test]
fn referrers_of_a_repository_that_does_not_exist_are_an_empty_index() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let subject = sha256(b"nothing");
    let r = reg.get(&format!("/v2/acme/never-pushed/referrers/{subject}"));
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        oci::OCI_INDEX
    );
    let v: Value = r.json().unwrap();
    assert_eq!(v["schemaVersion"], json!(2));
    assert_eq!(v["mediaType"], json!(oci::OCI_INDEX));
    assert_eq!(v["manifests"], json!([]));

    // Anonymous callers learn nothing about names they may not pull.
    let anon = shoal_tests::Registry::anonymous(&node.url);
    let r = anon.get(&format!("/v2/acme/never-pushed/referrers/{subject}"));
    assert_eq!(r.status(), 401);
    let r = anon.get(&format!("/v2/ghost/never-pushed/referrers/{subject}"));
    assert_eq!(r.status(), 401);
}
