//! Regressions from the outside probe (issue 19), on upload sessions: a session belongs to
//! the repository it was opened in and to the principal that opened it, across a restart;
//! a principal holds a bounded number open.

use reqwest::blocking::Response;
use shoal_tests::{basic, error_code, sha256, tempdir, Node, Registry};

use super::{token_for, PASSWORD};

fn header(r: &Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Opens a session on `repo`; its `Location`.
fn open(who: &Registry, repo: &str) -> String {
    let r = who
        .http
        .post(who.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    header(&r, "Location")
}

fn patch(who: &Registry, location: &str, bytes: &[u8]) -> Response {
    who.http
        .patch(who.url(location))
        .header("Content-Type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .unwrap()
}

/// Every way to touch session `location` as `who`, with what each answered.
fn touch_all(who: &Registry, location: &str) -> Vec<(String, (u16, String))> {
    let digest = sha256(b"theirs");
    let sep = if location.contains('?') { '&' } else { '?' };
    vec![
        (
            "GET".into(),
            error_code(who.http.get(who.url(location)).send().unwrap()),
        ),
        (
            "PATCH".into(),
            error_code(patch(who, location, b"evil bytes")),
        ),
        (
            "PUT".into(),
            error_code(
                who.http
                    .put(who.url(&format!("{location}{sep}digest={digest}")))
                    .header("Content-Type", "application/octet-stream")
                    .body(b"theirs".to_vec())
                    .send()
                    .unwrap(),
            ),
        ),
        (
            "DELETE".into(),
            error_code(who.http.delete(who.url(location)).send().unwrap()),
        ),
    ]
}

fn unknown() -> (u16, String) {
    (404, "BLOB_UPLOAD_UNKNOWN".into())
}

/// Regression: anyone with push somewhere who learned a session's UUID could read its
/// status, append to it, cancel it, or finish it into their own repository. Now only the
/// principal that opened it, on the repository it was opened in, reaches it (through any of
/// its credentials or tokens, after a restart too); everyone else gets exactly the answer
/// for an id that never existed.
#[test]
fn an_upload_session_belongs_to_its_repository_and_its_opener() {
    let dir = tempdir();
    let data = dir.path().join("node");
    let node = Node::start(&data);
    let admin = node.registry();
    for ns in ["team", "evil"] {
        admin.create_namespace(ns);
    }
    for (user, namespaces) in [
        ("uploader", &["team"][..]),
        ("mallory", &["team", "evil"][..]),
    ] {
        node.cli_ok(&["user", "create", user, "--password", PASSWORD]);
        for ns in namespaces {
            node.cli_ok(&[
                "role",
                "bind",
                user,
                "--role",
                "developer",
                "--namespace",
                ns,
            ]);
        }
    }
    let uploader = Registry::with_auth(&node.url, Some(&basic("uploader", PASSWORD)));
    let mallory = Registry::with_auth(&node.url, Some(&basic("mallory", PASSWORD)));
    let location = open(&uploader, "team/app");
    let id = location.rsplit('/').next().unwrap().to_string();
    assert_eq!(patch(&uploader, &location, b"first part, ").status(), 202);

    let never = "/v2/team/app/blobs/uploads/6f9619ff-8b86-d011-b42d-00c04fc964ff";
    let foreign_paths = [
        location.clone(),
        format!("/v2/evil/app/blobs/uploads/{id}"),
        format!("/v2/team/other/blobs/uploads/{id}"),
    ];
    for path in &foreign_paths {
        for (method, answer) in touch_all(&mallory, path) {
            assert_eq!(answer, unknown(), "mallory {method} {path}");
        }
    }
    for (method, answer) in touch_all(&mallory, never) {
        assert_eq!(
            answer,
            unknown(),
            "an id that never existed answers the same: {method}"
        );
    }
    // The opener, on another repository, does not reach it either.
    let r = uploader
        .http
        .get(uploader.url(&format!("/v2/team/other/blobs/uploads/{id}")))
        .send()
        .unwrap();
    assert_eq!(error_code(r), unknown());

    // Its credential and a fresh token continue it (clients renew tokens mid-push).
    let (_, login, secret) = node.credential_as(
        "uploader",
        PASSWORD,
        &["--name", "ci", "--scope", "containerRegistry"],
    );
    let as_cred = Registry::with_auth(&node.url, Some(&basic(&login, &secret)));
    let r = patch(&as_cred, &location, b"second part");
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "Range"), "0-22");
    let token = token_for(
        &node,
        Some(("uploader", PASSWORD)),
        "repository:team/app:pull,push",
    );
    let bearer = Registry::with_auth(&node.url, Some(&format!("Bearer {token}")));
    let r = bearer.http.get(bearer.url(&location)).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "Range"), "0-22");

    // The binding is replicated metadata: it holds across a restart.
    let _ = node.stop_with("TERM");
    let node = Node::start(&data);
    let uploader = Registry::with_auth(&node.url, Some(&basic("uploader", PASSWORD)));
    let mallory = Registry::with_auth(&node.url, Some(&basic("mallory", PASSWORD)));
    for (method, answer) in touch_all(&mallory, &location) {
        assert_eq!(answer, unknown(), "after a restart: mallory {method}");
    }
    let content = b"first part, second part";
    let digest = sha256(content);
    let r = uploader
        .http
        .put(uploader.url(&format!("{location}?digest={digest}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    let got = uploader
        .get(&format!("/v2/team/app/blobs/{digest}"))
        .bytes()
        .unwrap();
    assert_eq!(got.as_ref(), content, "nobody else's bytes got in");
    assert_eq!(
        error_code(uploader.http.get(uploader.url(&location)).send().unwrap()),
        unknown(),
        "a finished session is gone"
    );
}

/// Regression: a client could open any number of sessions. A principal (all its
/// credentials together) holds at most `--max-open-uploads`; cancelling frees one.
#[test]
fn open_upload_sessions_are_bounded_per_principal() {
    let dir = tempdir();
    let node = Node::start_with(&dir.path().join("node"), &["--max-open-uploads", "3"]);
    let admin = node.registry();
    admin.create_namespace("team");
    let (_, login, secret) = node.credential(&["--name", "ci", "--scope", "containerRegistry"]);
    let as_cred = Registry::with_auth(&node.url, Some(&basic(&login, &secret)));
    let mut open_ones: Vec<String> = (0..2).map(|_| open(&admin, "team/app")).collect();
    open_ones.push(open(&as_cred, "team/other"));
    for who in [&admin, &as_cred] {
        let r = who
            .http
            .post(who.url("/v2/team/app/blobs/uploads/"))
            .send()
            .unwrap();
        assert!(r.headers().get("location").is_none());
        assert_eq!(error_code(r), (429, "TOOMANYREQUESTS".into()));
    }
    // A monolithic upload opens no lasting session and still works.
    admin.push_blob("team/app", b"monolithic");
    let r = admin
        .http
        .delete(admin.url(&open_ones.pop().unwrap()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    open(&admin, "team/app");
    // Another principal has its own allowance.
    let (ok, _, err) = node.cli(&["user", "create", "dev", "--password", PASSWORD]);
    assert!(ok, "{err}");
    let (ok, _, err) = node.cli(&["role", "bind", "dev", "--role", "developer"]);
    assert!(ok, "{err}");
    open(
        &Registry::with_auth(&node.url, Some(&basic("dev", PASSWORD))),
        "team/app",
    );
}
