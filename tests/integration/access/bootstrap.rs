//! The first start of a new cluster: the admin password, generated once, kept private.

use shoal_tests::{basic, tempdir, Node, Registry};
use std::os::unix::fs::PermissionsExt;

#[test]
fn first_start_generates_the_admin_password_once() {
    let dir = tempdir();
    let data = dir.path().join("node");
    let node = Node::start_env(&data, &[], &[("SHOAL_ADMIN_PASSWORD", "")]);
    let file = data.join("initial-admin-password");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(password.len() >= 20);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let admin = Registry::with_auth(&node.url, Some(&basic("admin", &password)));
    assert_eq!(admin.get("/v2/").status(), 200);
    let stdout = std::fs::read_to_string(data.with_extension("stdout")).unwrap();
    assert!(
        stdout.contains(&password),
        "the password is printed once: {stdout}"
    );
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(!log.contains(&password), "the password is not logged");
    drop(node);
    let node = Node::start_env(
        &data,
        &[],
        &[("SHOAL_ADMIN_PASSWORD", "ignored-on-restart")],
    );
    let admin = Registry::with_auth(&node.url, Some(&basic("admin", &password)));
    assert_eq!(
        admin.get("/v2/").status(),
        200,
        "a restart keeps the first password"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    let stdout = std::fs::read_to_string(data.with_extension("stdout")).unwrap();
    assert_eq!(
        stdout.matches(&password).count(),
        1,
        "printed on the first start only"
    );
}
