//! The OCI Distribution API over plain HTTP: every endpoint's happy path and its headers.

use reqwest::blocking::Body;
use serde_json::{json, Value};
use shoal_tests::oci::{self, descriptor, noise};
use shoal_tests::{error_code, node_with_namespace, sha256};

fn header(r: &reqwest::blocking::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn base_endpoint_answers_with_api_version() {
    let (_d, node) = node_with_namespace("acme");
    let r = node.registry().get("/v2/");
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "Docker-Distribution-Api-Version"),
        "registry/2.0"
    );
}

#[test]
fn chunked_upload_with_status_and_finalise() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let data = noise(1, 300_000);
    let digest = sha256(&data);
    let r = reg
        .http
        .post(reg.url("/v2/acme/app/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut location = header(&r, "Location");
    assert!(
        location.starts_with("/v2/acme/app/blobs/uploads/"),
        "{location}"
    );
    assert!(!header(&r, "Docker-Upload-UUID").is_empty());
    for (start, end) in [(0usize, 100_000usize), (100_000, 300_000)] {
        let r = reg
            .http
            .patch(reg.url(&location))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{}-{}", start, end - 1))
            .body(data[start..end].to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(header(&r, "Range"), format!("0-{}", end - 1));
        location = header(&r, "Location");
    }
    let r = reg.http.get(reg.url(&location)).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "Range"), "0-299999");
    let r = reg
        .http
        .put(reg.url(&format!("{location}?digest={digest}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "Docker-Content-Digest"), digest);
    assert_eq!(
        header(&r, "Location"),
        format!("/v2/acme/app/blobs/{digest}")
    );
    let r = reg.get(&format!("/v2/acme/app/blobs/{digest}"));
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Docker-Content-Digest"), digest);
    assert_eq!(r.bytes().unwrap().as_ref(), &data[..]);
    let r = reg
        .http
        .head(reg.url(&format!("/v2/acme/app/blobs/{digest}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Content-Length"), "300000");
}

#[test]
fn streamed_patch_and_put_with_body() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let data = noise(2, 2_000_000);
    let digest = sha256(&data);
    // Chunked transfer encoding, no Content-Range: the "streamed" upload of the spec.
    let r = reg
        .http
        .post(reg.url("/v2/acme/s/blobs/uploads/"))
        .send()
        .unwrap();
    let loc = header(&r, "Location");
    let body = Body::new(std::io::Cursor::new(data[..1_500_000].to_vec()));
    let r = reg.http.patch(reg.url(&loc)).body(body).send().unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "Range"), "0-1499999");
    // The rest arrives in the finalising PUT itself.
    let loc = header(&r, "Location");
    let r = reg
        .http
        .put(reg.url(&format!("{loc}?digest={digest}")))
        .body(data[1_500_000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        reg.get(&format!("/v2/acme/s/blobs/{digest}"))
            .bytes()
            .unwrap()
            .as_ref(),
        &data[..]
    );
}

#[test]
fn out_of_order_chunk_and_cancel() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let r = reg
        .http
        .post(reg.url("/v2/acme/o/blobs/uploads/"))
        .send()
        .unwrap();
    let loc = header(&r, "Location");
    let r = reg
        .http
        .patch(reg.url(&loc))
        .header("Content-Range", "0-3")
        .body("abcd")
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = reg
        .http
        .patch(reg.url(&loc))
        .header("Content-Range", "10-13")
        .body("efgh")
        .send()
        .unwrap();
    assert_eq!(error_code(r), (416, "RANGE_INVALID".into()));
    let r = reg.http.get(reg.url(&loc)).send().unwrap();
    assert_eq!(
        header(&r, "Range"),
        "0-3",
        "the rejected chunk added nothing"
    );
    let r = reg.http.delete(reg.url(&loc)).send().unwrap();
    assert_eq!(r.status(), 204);
    let r = reg.http.get(reg.url(&loc)).send().unwrap();
    assert_eq!(error_code(r), (404, "BLOB_UPLOAD_UNKNOWN".into()));
}

#[test]
fn range_requests_on_blobs() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let data = b"0123456789".to_vec();
    let d = reg.push_blob("acme/r", &data);
    let path = format!("/v2/acme/r/blobs/{d}");
    let get = |range: &str| {
        reg.http
            .get(reg.url(&path))
            .header("Range", range)
            .send()
            .unwrap()
    };
    let r = get("bytes=2-4");
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "Content-Range"), "bytes 2-4/10");
    assert_eq!(r.bytes().unwrap().as_ref(), b"234");
    let r = get("bytes=7-");
    assert_eq!(r.bytes().unwrap().as_ref(), b"789");
    let r = get("bytes=-2");
    assert_eq!(r.bytes().unwrap().as_ref(), b"89");
    let r = get("bytes=10-20");
    assert_eq!(error_code(r), (416, "RANGE_INVALID".into()));
    let r = get("bytes=0-1,3-4");
    assert_eq!(r.status(), 416);
}

#[test]
fn cross_repository_mount() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let d = reg.push_blob("acme/a", b"shared layer");
    let r = reg
        .http
        .post(reg.url(&format!("/v2/acme/b/blobs/uploads/?mount={d}&from=acme/a")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "Location"), format!("/v2/acme/b/blobs/{d}"));
    assert_eq!(
        reg.get(&format!("/v2/acme/b/blobs/{d}"))
            .bytes()
            .unwrap()
            .as_ref(),
        b"shared layer"
    );
    // Not mountable (source lacks it): a normal upload session instead.
    let other = sha256(b"nowhere");
    let r = reg
        .http
        .post(reg.url(&format!(
            "/v2/acme/b/blobs/uploads/?mount={other}&from=acme/a"
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(header(&r, "Location").contains("/blobs/uploads/"));
}

#[test]
fn blobs_are_not_readable_from_another_repository() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let d = reg.push_blob("acme/private", b"secret");
    reg.push_blob("acme/other", b"something else");
    let r = reg.get(&format!("/v2/acme/other/blobs/{d}"));
    assert_eq!(error_code(r), (404, "BLOB_UNKNOWN".into()));
}

#[test]
fn manifests_by_tag_and_digest_are_byte_identical() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let (digest, bytes) = reg.push_image("acme/web", "v1", b"layer one");
    for reference in ["v1", digest.as_str()] {
        let r = reg.get(&format!("/v2/acme/web/manifests/{reference}"));
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "Content-Type"), oci::OCI_MANIFEST);
        assert_eq!(header(&r, "Docker-Content-Digest"), digest);
        assert_eq!(header(&r, "ETag"), format!("\"{digest}\""));
        assert_eq!(r.bytes().unwrap().as_ref(), &bytes[..]);
        let r = reg
            .http
            .head(reg.url(&format!("/v2/acme/web/manifests/{reference}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "Content-Length"), bytes.len().to_string());
    }
    // Docker schema 2 manifest pushed by digest, then a manifest list and an OCI index over both.
    let config = reg.push_blob("acme/web", b"{\"os\":\"linux\"}");
    let layer = reg.push_blob("acme/web", b"docker layer");
    let docker = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": oci::DOCKER_MANIFEST,
        "config": descriptor("application/vnd.docker.container.image.v1+json", &config, 14),
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", &layer, 12)],
    }))
    .unwrap();
    let docker_digest = sha256(&docker);
    let r = reg.put_manifest("acme/web", &docker_digest, oci::DOCKER_MANIFEST, &docker);
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "Docker-Content-Digest"), docker_digest);
    for (mt, list_type) in [
        (oci::DOCKER_LIST, oci::DOCKER_MANIFEST),
        (oci::OCI_INDEX, oci::OCI_MANIFEST),
    ] {
        let list = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": mt,
            "manifests": [
                {"mediaType": list_type, "digest": if list_type == oci::DOCKER_MANIFEST { &docker_digest } else { &digest },
                 "size": if list_type == oci::DOCKER_MANIFEST { docker.len() } else { bytes.len() },
                 "platform": {"architecture": "amd64", "os": "linux"}},
            ],
        }))
        .unwrap();
        let r = reg.put_manifest("acme/web", "multi", mt, &list);
        assert_eq!(r.status(), 201, "{mt}");
        let r = reg.get("/v2/acme/web/manifests/multi");
        assert_eq!(header(&r, "Content-Type"), mt);
        assert_eq!(r.bytes().unwrap().as_ref(), &list[..]);
    }
}

/// Manifest GETs are answered from memory while the catalogue is unchanged: a tag moved,
/// a manifest deleted or a tag deleted must show at once on the next read, never the
/// remembered answer (guards `Registry::served`).
#[test]
fn a_remembered_manifest_ends_with_the_write_that_ends_it() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let (first, first_bytes) = reg.push_image("acme/memo", "v1", b"first layer");
    let read = |reference: &str| {
        let r = reg.get(&format!("/v2/acme/memo/manifests/{reference}"));
        let status = r.status().as_u16();
        let digest = header(&r, "Docker-Content-Digest");
        (status, digest, r.bytes().unwrap().to_vec())
    };
    for _ in 0..3 {
        assert_eq!(read("v1"), (200, first.clone(), first_bytes.clone()));
        assert_eq!(read(&first), (200, first.clone(), first_bytes.clone()));
    }
    // The tag moves to another manifest.
    let (second, second_bytes) = reg.push_image("acme/memo", "v1", b"second layer");
    assert_eq!(read("v1"), (200, second.clone(), second_bytes.clone()));
    // The first manifest, remembered by digest, is deleted.
    assert_eq!(read(&first), (200, first.clone(), first_bytes.clone()));
    let r = reg
        .http
        .delete(reg.url(&format!("/v2/acme/memo/manifests/{first}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        error_code(reg.get(&format!("/v2/acme/memo/manifests/{first}"))),
        (404, "MANIFEST_UNKNOWN".into())
    );
    let head = reg
        .http
        .head(reg.url(&format!("/v2/acme/memo/manifests/{first}")))
        .send()
        .unwrap();
    assert_eq!(head.status(), 404);
    // The tag, remembered, is deleted.
    assert_eq!(read("v1").0, 200);
    let r = reg
        .http
        .delete(reg.url("/v2/acme/memo/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        error_code(reg.get("/v2/acme/memo/manifests/v1")),
        (404, "MANIFEST_UNKNOWN".into())
    );
    assert_eq!(read(&second), (200, second.clone(), second_bytes));
}

#[test]
fn tags_and_catalog_paginate_with_link() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let (digest, bytes) = reg.push_image("acme/p", "a", b"x");
    for tag in ["b", "c", "d", "e"] {
        assert_eq!(
            reg.put_manifest("acme/p", tag, oci::OCI_MANIFEST, &bytes)
                .status(),
            201
        );
    }
    let _ = digest;
    let r = reg.get("/v2/acme/p/tags/list");
    let v: Value = r.json().unwrap();
    assert_eq!(
        v,
        json!({"name": "acme/p", "tags": ["a", "b", "c", "d", "e"]})
    );
    let mut seen = Vec::new();
    let mut next = Some("/v2/acme/p/tags/list?n=2".to_string());
    while let Some(path) = next.take() {
        let r = reg.get(&path);
        assert_eq!(r.status(), 200);
        let link = header(&r, "Link");
        let v: Value = r.json().unwrap();
        let tags: Vec<String> = serde_json::from_value(v["tags"].clone()).unwrap();
        assert!(tags.len() <= 2);
        seen.extend(tags);
        if !link.is_empty() {
            assert!(link.ends_with("; rel=\"next\""), "{link}");
            next = Some(link[1..link.find('>').unwrap()].to_string());
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let v: Value = reg.get("/v2/acme/p/tags/list?n=0").json().unwrap();
    assert_eq!(v["tags"], json!([]));
    reg.push_image("acme/q", "v1", b"y");
    reg.push_image("acme/q/deep", "v1", b"z");
    let v: Value = reg.get("/v2/_catalog").json().unwrap();
    assert_eq!(
        v["repositories"],
        json!(["acme/p", "acme/q", "acme/q/deep"])
    );
    let r = reg.get("/v2/_catalog?n=1&last=acme/p");
    assert!(header(&r, "Link").contains("last=acme%2Fq"));
    let v: Value = r.json().unwrap();
    assert_eq!(v["repositories"], json!(["acme/q"]));
}

#[test]
fn deletes_of_tags_manifests_and_blobs() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let (digest, bytes) = reg.push_image("acme/del", "v1", b"layer");
    assert_eq!(
        reg.put_manifest("acme/del", "v2", oci::OCI_MANIFEST, &bytes)
            .status(),
        201
    );
    let r = reg
        .http
        .delete(reg.url("/v2/acme/del/manifests/v1"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        error_code(reg.get("/v2/acme/del/manifests/v1")),
        (404, "MANIFEST_UNKNOWN".into())
    );
    assert_eq!(
        reg.get(&format!("/v2/acme/del/manifests/{digest}"))
            .status(),
        200,
        "only the tag went"
    );
    let r = reg
        .http
        .delete(reg.url(&format!("/v2/acme/del/manifests/{digest}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        error_code(reg.get(&format!("/v2/acme/del/manifests/{digest}"))),
        (404, "MANIFEST_UNKNOWN".into())
    );
    assert_eq!(
        error_code(reg.get("/v2/acme/del/manifests/v2")),
        (404, "MANIFEST_UNKNOWN".into()),
        "tags of a deleted manifest go with it"
    );
    let layer = sha256(b"layer");
    let r = reg
        .http
        .delete(reg.url(&format!("/v2/acme/del/blobs/{layer}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        error_code(reg.get(&format!("/v2/acme/del/blobs/{layer}"))),
        (404, "BLOB_UNKNOWN".into())
    );
    let r = reg
        .http
        .delete(reg.url(&format!("/v2/acme/del/blobs/{layer}")))
        .send()
        .unwrap();
    assert_eq!(error_code(r), (404, "BLOB_UNKNOWN".into()));
}

#[test]
fn referrers_list_and_filter_by_artifact_type() {
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let (subject, subject_bytes) = reg.push_image("acme/ref", "v1", b"base");
    let empty = reg.push_blob("acme/ref", b"{}");
    let sig = reg.push_blob("acme/ref", b"signature bytes");
    let mut manifest: Value = serde_json::from_slice(&oci::image_manifest(
        &empty,
        2,
        &[(&sig, 15)],
        Some(descriptor(oci::OCI_MANIFEST, &subject, subject_bytes.len())),
    ))
    .unwrap();
    manifest["artifactType"] = json!("application/vnd.example.signature");
    manifest["annotations"] = json!({"org.example.signed-by": "ci"});
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let referrer = sha256(&bytes);
    let r = reg.put_manifest("acme/ref", &referrer, oci::OCI_MANIFEST, &bytes);
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "OCI-Subject"), subject);

    let r = reg.get(&format!("/v2/acme/ref/referrers/{subject}"));
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "Content-Type"), oci::OCI_INDEX);
    assert!(header(&r, "OCI-Filters-Applied").is_empty());
    let v: Value = r.json().unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    let d = &v["manifests"][0];
    assert_eq!(d["digest"], json!(referrer));
    assert_eq!(
        d["artifactType"],
        json!("application/vnd.example.signature")
    );
    assert_eq!(d["size"], json!(bytes.len()));
    assert_eq!(d["annotations"]["org.example.signed-by"], json!("ci"));

    let r = reg.get(&format!(
        "/v2/acme/ref/referrers/{subject}?artifactType=application/vnd.example.signature"
    ));
    assert_eq!(header(&r, "OCI-Filters-Applied"), "artifactType");
    assert_eq!(
        r.json::<Value>().unwrap()["manifests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = reg.get(&format!(
        "/v2/acme/ref/referrers/{subject}?artifactType=application/x-other"
    ));
    assert_eq!(r.json::<Value>().unwrap()["manifests"], json!([]));
    let none = sha256(b"no referrers");
    let v: Value = reg
        .get(&format!("/v2/acme/ref/referrers/{none}"))
        .json()
        .unwrap();
    assert_eq!(v["manifests"], json!([]));
}

#[test]
fn sha512_blobs_and_manifests() {
    use sha2::{Digest as _, Sha512};
    let (_d, node) = node_with_namespace("acme");
    let reg = node.registry();
    let data = noise(3, 100_000);
    let d512 = format!("sha512:{}", hex::encode(Sha512::digest(&data)));
    let r = reg
        .http
        .post(reg.url(&format!("/v2/acme/x/blobs/uploads/?digest={d512}")))
        .body(data.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = reg.get(&format!("/v2/acme/x/blobs/{d512}"));
    assert_eq!(header(&r, "Docker-Content-Digest"), d512);
    assert_eq!(r.bytes().unwrap().as_ref(), &data[..]);
    let config = reg.push_blob("acme/x", b"{}");
    let m = oci::image_manifest(&config, 2, &[(&d512, data.len())], None);
    let m512 = format!("sha512:{}", hex::encode(Sha512::digest(&m)));
    let r = reg.put_manifest("acme/x", &m512, oci::OCI_MANIFEST, &m);
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "Docker-Content-Digest"), m512);
    assert_eq!(
        reg.get(&format!("/v2/acme/x/manifests/{m512}"))
            .bytes()
            .unwrap()
            .as_ref(),
        &m[..]
    );
}
