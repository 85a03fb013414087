//! The gate remembers its answers for a few seconds (`proxy::auth::decisions`): a change
//! to who may do what must end them at once, not when they age out. Each case asks the
//! same thing with the same header before and right after the change, so a remembered
//! answer would be given again if the change did not end it.

use shoal_tests::{basic, Registry};

use super::{setup, token_for, PASSWORD};

/// The status of `GET /v2/{repo}/manifests/v1` as `who`.
fn pull(who: &Registry, repo: &str) -> u16 {
    who.get(&format!("/v2/{repo}/manifests/v1"))
        .status()
        .as_u16()
}

#[test]
fn a_remembered_answer_ends_with_the_change_that_ends_it() {
    let s = setup();
    let (ok, _, err) = s
        .node
        .cli(&["user", "create", "bound", "--password", PASSWORD]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.node.cli(&["role", "bind", "bound", "--role", "reader"]);
    assert!(ok, "{err}");
    let (id, login, password) =
        s.node
            .credential(&["--name", "remembered", "--scope", "containerRegistry"]);
    let with_basic = Registry::with_auth(&s.node.url, Some(&basic(&login, &password)));
    let token = token_for(
        &s.node,
        Some((&login, &password)),
        "repository:priv/app:pull",
    );
    let with_token = Registry::with_auth(&s.node.url, Some(&format!("Bearer {token}")));
    let bound = Registry::with_auth(&s.node.url, Some(&basic("bound", PASSWORD)));
    let anonymous = Registry::with_auth(&s.node.url, None);

    // Asked twice each, so the second answer comes from memory.
    for _ in 0..2 {
        assert_eq!(pull(&with_basic, "priv/app"), 200);
        assert_eq!(pull(&with_token, "priv/app"), 200);
        assert_eq!(pull(&bound, "priv/app"), 200);
        assert_eq!(pull(&anonymous, "pub/app"), 200);
    }

    let (ok, _, err) = s.node.cli(&["credential", "revoke", &id]);
    assert!(ok, "{err}");
    assert_eq!(pull(&with_basic, "priv/app"), 401, "a revoked credential");
    assert_eq!(
        pull(&with_token, "priv/app"),
        401,
        "a revoked credential's token"
    );

    let (ok, _, err) = s.node.cli(&["role", "unbind", "bound"]);
    assert!(ok, "{err}");
    assert_eq!(
        pull(&bound, "priv/app"),
        403,
        "a user whose role was removed"
    );

    let (ok, _, err) = s
        .node
        .cli(&["namespace", "set", "pub", "--visibility", "private"]);
    assert!(ok, "{err}");
    assert_eq!(pull(&anonymous, "pub/app"), 401, "a namespace made private");
}
