//! Tests of identity and access in the catalogue (`access`).

use super::*;
use crate::catalog::NamespaceRecord;
use crate::Command;
use crate::OrgRecord;

fn catalog() -> Catalog {
    let db = sled::Config::new().temporary(true).open().unwrap();
    Catalog::new(db.open_tree("catalog").unwrap())
}

fn apply(c: &Catalog, cmd: Command) -> Outcome {
    let mut batch = Batch::default();
    let out = c.plan(&cmd, &mut batch, &mut Vec::new()).unwrap();
    c.tree().apply_batch(batch.into_sled()).unwrap();
    out
}

fn principal(name: &str) -> Principal {
    Principal {
        name: name.into(),
        kind: PrincipalKind::User,
        organisation: "default".into(),
        password_hash: Some("$argon2id$x".into()),
        created_at: 1,
        uid: format!("uid-{name}"),
    }
}

fn key(kid: &str) -> SigningKey {
    SigningKey {
        kid: kid.into(),
        private_pem: String::new(),
        public_pem: String::new(),
        created_at: 1,
    }
}

pub(crate) fn credential(login: &str, owner: &str, namespace: Option<&str>) -> CredentialRecord {
    CredentialRecord {
        id: format!("id-{login}"),
        name: "n".into(),
        login: login.into(),
        secret_hash: "h".into(),
        owner: owner.into(),
        scope: CredentialScope::Pull,
        namespace: namespace.map(Into::into),
        expires_at: Some(10),
        revoked_at: None,
        created_at: 1,
    }
}

#[test]
fn identity_commands_check_their_preconditions() {
    let c = catalog();
    let bootstrap = |kid: &str| Command::Bootstrap {
        org: OrgRecord {
            name: "default".into(),
            description: None,
            home: false,
            created_at: 1,
        },
        admin: principal("admin"),
        key: key(kid),
    };
    assert_eq!(apply(&c, bootstrap("k1")), Outcome::Done);
    assert_eq!(
        apply(&c, bootstrap("k2")),
        Outcome::Rejected(Rejection::AlreadyInitialised)
    );
    assert_eq!(
        c.signing_keys().unwrap().len(),
        1,
        "the second bootstrap changed nothing"
    );
    assert_eq!(c.bindings_of("admin").unwrap()[0].role, Role::Owner);
    assert!(c
        .home_organisation()
        .unwrap()
        .is_some_and(|o| o.name == "default"));

    let create = |cred| Command::CreateCredential { credential: cred };
    assert_eq!(
        apply(&c, create(credential("l1", "ghost", None))),
        Outcome::Rejected(Rejection::PrincipalUnknown("ghost".into()))
    );
    assert_eq!(
        apply(&c, create(credential("l1", "admin", Some("ns")))),
        Outcome::Rejected(Rejection::NamespaceUnknown("ns".into()))
    );
    let ns = Command::CreateNamespace {
        record: NamespaceRecord::for_test("ns"),
    };
    assert_eq!(apply(&c, ns), Outcome::Done);
    assert_eq!(
        apply(&c, create(credential("l1", "admin", Some("ns")))),
        Outcome::Done
    );
    assert_eq!(
        apply(&c, create(credential("l1", "admin", None))),
        Outcome::Rejected(Rejection::CredentialExists("l1".into()))
    );
    let cred = c.credential_by_login("l1").unwrap().unwrap();
    assert!(cred.usable_at(9) && !cred.usable_at(10), "expiry");
    let revoke = |at| Command::RevokeCredential {
        id: cred.id.clone(),
        revoked_at: at,
    };
    assert_eq!(apply(&c, revoke(5)), Outcome::Done);
    assert_eq!(apply(&c, revoke(7)), Outcome::Done);
    let revoked = c.credential(&cred.id).unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(5), "the first revocation stands");
    assert!(!revoked.usable_at(1));
    let rotate = Command::RotateCredentialSecret {
        id: cred.id.clone(),
        secret_hash: "new".into(),
    };
    assert_eq!(
        apply(&c, rotate),
        Outcome::Rejected(Rejection::CredentialRevoked(cred.id.clone()))
    );

    assert_eq!(
        apply(
            &c,
            Command::CreatePrincipal {
                principal: principal("dev")
            }
        ),
        Outcome::Done
    );
    let bind = |scope| Command::Bind {
        binding: RoleBinding {
            principal: "dev".into(),
            scope,
            role: Role::Developer,
        },
    };
    assert_eq!(
        apply(&c, bind(RoleScope::Namespace("other".into()))),
        Outcome::Rejected(Rejection::ScopeUnknown("ns:other".into()))
    );
    assert_eq!(
        apply(&c, bind(RoleScope::Namespace("ns".into()))),
        Outcome::Done
    );
    assert_eq!(c.bindings_of("dev").unwrap().len(), 1);
    assert_eq!(
        apply(&c, Command::DeleteNamespace { name: "ns".into() }),
        Outcome::Done
    );
    assert!(
        c.bindings_of("dev").unwrap().is_empty(),
        "bindings go with the namespace"
    );
    assert_eq!(c.bindings_of("admin").unwrap().len(), 1);
}

/// Rotates in a key made at `now` over keys made at `existing` (kid `k<time>`) and
/// expects the kids left, oldest first.
fn check_rotation(existing: &[i64], now: i64, retire_after: i64, expected: &[&str]) {
    let c = catalog();
    let made_at = |at: i64| SigningKey {
        kid: format!("k{at}"),
        created_at: at,
        ..key("")
    };
    for &at in existing {
        let cmd = Command::RotateSigningKey {
            key: made_at(at),
            retire_after: i64::MAX / 2,
        };
        assert_eq!(apply(&c, cmd), Outcome::Done);
    }
    let rotate = Command::RotateSigningKey {
        key: made_at(now),
        retire_after,
    };
    assert_eq!(apply(&c, rotate), Outcome::Done);
    let kids: Vec<String> = c
        .signing_keys()
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(
        kids, expected,
        "{existing:?} rotated at {now}, retiring after {retire_after}"
    );
}

#[test]
fn rotation_retires_only_keys_replaced_longer_ago_than_the_window() {
    // k0 was replaced at 100 and k100 at 200, both before the window [150, 300].
    check_rotation(&[0, 100, 200], 300, 150, &["k100", "k200", "k300"]);
    check_rotation(&[0, 100, 200], 300, 50, &["k200", "k300"]);
    // Replaced exactly `retire_after` ago: a token it signed may still be valid.
    check_rotation(&[0, 100, 200], 300, 200, &["k0", "k100", "k200", "k300"]);
    check_rotation(&[0, 100, 200], 300, 199, &["k100", "k200", "k300"]);
    check_rotation(&[], 300, 0, &["k300"]);
}

#[test]
fn rotation_never_retires_the_key_it_replaces() {
    // The newest key signed until now, so its tokens are all still in the window.
    check_rotation(&[0], 1000, 0, &["k0", "k1000"]);
    check_rotation(&[0, 10, 20], 1000, 0, &["k20", "k1000"]);
}

#[test]
fn a_key_rotated_in_the_same_second_still_signs_next() {
    // Regression: keys sort by creation time, so a key made in the same second as the
    // newest (or on a node whose clock is behind) once sorted before it by kid.
    let c = catalog();
    for (kid, at) in [("zzz", 50), ("aaa", 50), ("mmm", 10)] {
        let k = SigningKey {
            kid: kid.into(),
            ..key(kid)
        };
        let cmd = Command::RotateSigningKey {
            key: SigningKey {
                created_at: at,
                ..k
            },
            retire_after: 1000,
        };
        assert_eq!(apply(&c, cmd), Outcome::Done);
        assert_eq!(c.signing_keys().unwrap().last().unwrap().kid, kid);
    }
}

#[test]
fn the_last_owner_of_an_organisation_stays() {
    let c = crate::catalog::tests::catalog();
    for p in ["admin", "other"] {
        let cmd = Command::CreatePrincipal {
            principal: principal(p),
        };
        assert_eq!(apply(&c, cmd), Outcome::Done);
    }
    let org = RoleScope::Organisation("default".into());
    let bind = |who: &str, role| Command::Bind {
        binding: RoleBinding {
            principal: who.into(),
            scope: org.clone(),
            role,
        },
    };
    let unbind = |who: &str| Command::Unbind {
        principal: who.into(),
        scope: org.clone(),
    };
    let last = Outcome::Rejected(Rejection::LastOwner("default".into()));
    assert_eq!(apply(&c, bind("admin", Role::Owner)), Outcome::Done);
    assert_eq!(apply(&c, unbind("admin")), last);
    assert_eq!(
        apply(&c, bind("admin", Role::Reader)),
        last,
        "no demotion either"
    );
    assert_eq!(c.bindings_of("admin").unwrap()[0].role, Role::Owner);
    assert_eq!(apply(&c, bind("other", Role::Owner)), Outcome::Done);
    assert_eq!(apply(&c, bind("admin", Role::Reader)), Outcome::Done);
    assert_eq!(apply(&c, unbind("other")), last);
    assert_eq!(apply(&c, bind("admin", Role::Owner)), Outcome::Done);
    assert_eq!(apply(&c, unbind("other")), Outcome::Done);
}

#[test]
fn deleting_a_principal_takes_what_acts_for_it_and_never_the_last_owner() {
    let c = crate::catalog::tests::catalog();
    for p in ["admin", "bob"] {
        let cmd = Command::CreatePrincipal {
            principal: principal(p),
        };
        assert_eq!(apply(&c, cmd), Outcome::Done);
    }
    let ci = Principal {
        kind: PrincipalKind::ServiceAccount,
        password_hash: None,
        ..principal("ci")
    };
    assert_eq!(
        apply(&c, Command::CreatePrincipal { principal: ci }),
        Outcome::Done
    );
    let org = RoleScope::Organisation("default".into());
    for (who, role) in [("admin", Role::Owner), ("bob", Role::Developer)] {
        let cmd = Command::Bind {
            binding: RoleBinding {
                principal: who.into(),
                scope: org.clone(),
                role,
            },
        };
        assert_eq!(apply(&c, cmd), Outcome::Done);
    }
    for (login, owner) in [("lb", "bob"), ("la", "admin")] {
        let cmd = Command::CreateCredential {
            credential: credential(login, owner, None),
        };
        assert_eq!(apply(&c, cmd), Outcome::Done);
    }
    let gh = crate::federation::tests::federation("gh", "ci", None);
    assert_eq!(apply(&c, gh), Outcome::Done);
    let delete = |name: &str| Command::DeletePrincipal {
        name: name.into(),
        organisation: "default".into(),
        kind: if name == "ci" {
            PrincipalKind::ServiceAccount
        } else {
            PrincipalKind::User
        },
    };

    assert_eq!(apply(&c, delete("bob")), Outcome::Done);
    assert!(c.principal("bob").unwrap().is_none());
    assert!(c.bindings_of("bob").unwrap().is_empty());
    assert!(c.credential_by_login("lb").unwrap().is_none());
    assert!(
        c.credential_by_login("la").unwrap().is_some(),
        "others' stay"
    );
    assert_eq!(
        apply(&c, delete("bob")),
        Outcome::Rejected(Rejection::PrincipalUnknown("bob".into()))
    );

    let as_user = Command::DeletePrincipal {
        name: "ci".into(),
        organisation: "default".into(),
        kind: PrincipalKind::User,
    };
    assert_eq!(
        apply(&c, as_user),
        Outcome::Rejected(Rejection::PrincipalUnknown("ci".into())),
        "not the principal the proposer saw"
    );
    assert_eq!(apply(&c, delete("ci")), Outcome::Done);
    assert_eq!(c.federation("gh").unwrap(), None, "its federations go too");

    crate::catalog::tests::check(
        &c,
        delete("admin"),
        Outcome::Rejected(Rejection::LastOwner("default".into())),
    );
    // A name made again later starts with nothing of the old one.
    let again = Command::CreatePrincipal {
        principal: principal("bob"),
    };
    assert_eq!(apply(&c, again), Outcome::Done);
    assert!(c.bindings_of("bob").unwrap().is_empty());
}
