//! The permission matrix: every role and anonymous × pull, push, list, delete × a private
//! and a public namespace, and what a role may do in the management API.

use serde_json::{json, Value};
use shoal_tests::{basic, error_code, Registry};

use super::{expect, setup, Op, DENIED, PASSWORD, UNAUTHORIZED};

#[test]
fn every_role_against_pull_push_list_delete_on_private_and_public() {
    let s = setup();
    let user = |u: &str| Registry::with_auth(&s.node.url, Some(&basic(u, PASSWORD)));
    let anonymous = Registry::anonymous(&s.node.url);
    let all = [Op::Pull, Op::Push, Op::List, Op::Delete];
    for (name, who) in [
        ("owner", s.admin.http.clone()),
        ("adm", user("adm").http),
        ("dev", user("dev").http),
    ] {
        let who = Registry {
            base: s.node.url.clone(),
            http: who,
        };
        for ns in ["priv", "pub"] {
            for op in all {
                expect(&s, &who, name, ns, op, true, DENIED);
            }
        }
    }
    let reader = user("rdr");
    for ns in ["priv", "pub"] {
        for op in all {
            expect(
                &s,
                &reader,
                "rdr",
                ns,
                op,
                matches!(op, Op::Pull | Op::List),
                DENIED,
            );
        }
    }
    let nobody = user("nobody");
    let nsdev = user("nsdev");
    for op in all {
        let read = matches!(op, Op::Pull | Op::List);
        expect(&s, &nobody, "nobody", "priv", op, false, DENIED);
        expect(&s, &nobody, "nobody", "pub", op, read, DENIED);
        expect(&s, &anonymous, "anon", "priv", op, false, UNAUTHORIZED);
        expect(&s, &anonymous, "anon", "pub", op, read, UNAUTHORIZED);
        expect(&s, &nsdev, "nsdev", "priv", op, true, DENIED);
        expect(&s, &nsdev, "nsdev", "pub", op, read, DENIED);
    }

    // The catalogue: never anonymous; otherwise only namespaces the caller may list.
    let r = anonymous.get("/v2/_catalog");
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("registry:catalog:*"));
    assert_eq!(error_code(r), (401, "UNAUTHORIZED".to_string()));
    let listed = |who: &Registry| -> Value { who.get("/v2/_catalog").json().unwrap() };
    assert_eq!(
        listed(&s.admin)["repositories"],
        json!(["priv/app", "pub/app"])
    );
    assert_eq!(listed(&nobody)["repositories"], json!([]));
    assert_eq!(listed(&nsdev)["repositories"], json!(["priv/app"]));

    // A wrong password is 401 with the challenge, never a fall-back to anonymous.
    let wrong = Registry::with_auth(&s.node.url, Some(&basic("rdr", "not-the-password")));
    let r = wrong.get("/v2/pub/app/manifests/v1");
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(error_code(r), (401, "UNAUTHORIZED".to_string()));
    // Management calls need a role too.
    let (ok, _, err) = s
        .node
        .cli_as("rdr", PASSWORD, &["namespace", "create", "newns"]);
    assert!(!ok && err.contains("DENIED"), "{err}");
    let (ok, _, err) = s.node.cli_as(
        "dev",
        PASSWORD,
        &["user", "create", "x", "--password", PASSWORD],
    );
    assert!(!ok && err.contains("DENIED"), "{err}");
}
