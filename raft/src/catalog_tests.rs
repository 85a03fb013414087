//! Tests of the catalogue's commands and reads, and the helpers the other catalogue
//! modules' tests share (`catalog`, `check`).

use std::collections::BTreeMap;

use crate::catalog::*;
use crate::keys::{self, key};
use crate::{Command, ManifestRecord, Outcome, Rejection};
use crate::{Principal, PrincipalKind, Role, RoleBinding, RoleScope};

/// A catalogue holding the organisation `default`.
pub(crate) fn catalog() -> Catalog {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let c = Catalog::new(db.open_tree("catalog").unwrap());
    let org = crate::OrgRecord {
        name: "default".into(),
        description: None,
        home: true,
        created_at: 1,
    };
    c.tree()
        .insert(key(keys::ORGANISATION, &["default"]), encode(&org))
        .unwrap();
    c
}

pub(crate) fn manifest(digest: &str, blobs: &[&str], subject: Option<&str>) -> ManifestRecord {
    ManifestRecord {
        digest: digest.into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        bytes: b"{}".to_vec(),
        blobs: blobs.iter().map(|s| s.to_string()).collect(),
        manifests: vec![],
        subject: subject.map(Into::into),
        artifact_type: None,
        annotations: None,
        pushed_at: 0,
    }
}

pub(crate) fn ns(name: &str) -> Command {
    Command::CreateNamespace {
        record: NamespaceRecord::for_test(name),
    }
}

/// Every key and value, keys spelt with `\0` so a failed comparison reads.
pub(crate) fn contents(c: &Catalog) -> BTreeMap<String, Vec<u8>> {
    c.tree()
        .iter()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            let k = String::from_utf8_lossy(&k).replace('\0', "\\0");
            (k, v.to_vec())
        })
        .collect()
}

/// Applies `cmd` and expects `expected`; a rejected command must change nothing.
pub(crate) fn check(c: &Catalog, cmd: Command, expected: Outcome) {
    let before = contents(c);
    assert_eq!(c.apply(&cmd).unwrap(), expected, "{cmd:?}");
    if matches!(expected, Outcome::Rejected(_)) {
        assert_eq!(contents(c), before, "rejected, yet changed: {cmd:?}");
    }
}

/// The digests `cmd` would unlink from the current state, sorted and deduplicated.
pub(crate) fn unlinking(c: &Catalog, cmd: &Command) -> Vec<String> {
    let mut unlinked = Vec::new();
    c.plan(cmd, &mut crate::batch::Batch::default(), &mut unlinked)
        .unwrap();
    unlinked.sort();
    unlinked.dedup();
    unlinked
}

pub(crate) fn principal(name: &str, kind: PrincipalKind) -> Command {
    Command::CreatePrincipal {
        principal: Principal {
            name: name.into(),
            kind,
            organisation: "default".into(),
            password_hash: None,
            created_at: 1,
            uid: format!("uid-{name}"),
        },
    }
}

pub(crate) fn organisation(name: &str, owner: &str) -> Command {
    Command::CreateOrganisation {
        org: crate::OrgRecord {
            name: name.into(),
            description: None,
            home: false,
            created_at: 2,
        },
        owner: owner.into(),
    }
}

pub(crate) fn project(organisation: &str, name: &str) -> Command {
    Command::CreateProject {
        project: crate::ProjectRecord {
            organisation: organisation.into(),
            name: name.into(),
            description: None,
            created_at: 3,
        },
    }
}

/// A namespace of `organisation`, in `project` when set.
pub(crate) fn ns_in(name: &str, organisation: &str, project: Option<&str>) -> Command {
    Command::CreateNamespace {
        record: NamespaceRecord {
            organisation: organisation.into(),
            project: project.map(Into::into),
            ..NamespaceRecord::for_test(name)
        },
    }
}

pub(crate) fn bind(principal: &str, scope: RoleScope) -> Command {
    Command::Bind {
        binding: RoleBinding {
            principal: principal.into(),
            scope,
            role: Role::Developer,
        },
    }
}

pub(crate) fn link(repo: &str, digest: &str, size: u64) -> Command {
    Command::LinkBlob {
        repo: repo.into(),
        digest: digest.into(),
        size,
        upload: None,
        at: 0,
    }
}

/// Pushes `digest` (linking `blobs`, with `subject`) and tags it `tag`.
pub(crate) fn push(
    repo: &str,
    digest: &str,
    blobs: &[&str],
    subject: Option<&str>,
    tag: Option<&str>,
) -> Command {
    Command::PutManifest {
        repo: repo.into(),
        manifest: manifest(digest, blobs, subject),
        tag: tag.map(Into::into),
    }
}

/// Fills `repo` with one of everything a repository holds: a blob link, a manifest, a
/// tag, a referrer and its own visibility.
pub(crate) fn fill(c: &Catalog, repo: &str) {
    let blob = format!("sha256:{repo}-blob");
    let image = format!("sha256:{repo}-image");
    for cmd in [
        link(repo, &blob, 4),
        push(repo, &image, &[&blob], None, Some("v1")),
        push(repo, &format!("sha256:{repo}-sig"), &[], Some(&image), None),
        Command::SetRepositoryVisibility {
            repo: repo.into(),
            visibility: Some(Visibility::Public),
        },
    ] {
        check(c, cmd, Outcome::Done);
    }
}

#[test]
fn commands_check_their_preconditions() {
    let c = catalog();
    let link = Command::LinkBlob {
        repo: "acme/api".into(),
        digest: "sha256:b1".into(),
        size: 7,
        upload: None,
        at: 0,
    };
    check(
        &c,
        link.clone(),
        Outcome::Rejected(Rejection::NamespaceUnknown("acme".into())),
    );
    check(&c, ns("acme"), Outcome::Done);
    check(
        &c,
        ns("acme"),
        Outcome::Rejected(Rejection::NamespaceExists("acme".into())),
    );
    check(&c, link.clone(), Outcome::Done);
    check(&c, link, Outcome::Done);
    assert_eq!(c.blob_size("acme/api", "sha256:b1").unwrap(), Some(7));
    assert_eq!(c.blob_size("acme/other", "sha256:b1").unwrap(), None);

    let put = |d: &str, blobs: &[&str], tag: Option<&str>| Command::PutManifest {
        repo: "acme/api".into(),
        manifest: manifest(d, blobs, None),
        tag: tag.map(Into::into),
    };
    check(
        &c,
        put("sha256:m1", &["sha256:b1", "sha256:b2"], Some("v1")),
        Outcome::Rejected(Rejection::ReferencedBlobUnknown("sha256:b2".into())),
    );
    assert_eq!(
        c.tag("acme/api", "v1").unwrap(),
        None,
        "rejected put stores nothing"
    );
    check(
        &c,
        put("sha256:m1", &["sha256:b1"], Some("v1")),
        Outcome::Done,
    );
    check(
        &c,
        put("sha256:m1", &["sha256:b1"], Some("latest")),
        Outcome::Done,
    );
    assert_eq!(c.tags("acme/api", None, None).unwrap(), ["latest", "v1"]);
    check(
        &c,
        Command::DeleteManifest {
            repo: "acme/api".into(),
            digest: "sha256:m1".into(),
        },
        Outcome::Done,
    );
    assert!(
        c.tags("acme/api", None, None).unwrap().is_empty(),
        "tags go with the manifest"
    );
    check(
        &c,
        Command::DeleteTag {
            repo: "acme/api".into(),
            tag: "v1".into(),
        },
        Outcome::Rejected(Rejection::TagUnknown("v1".into())),
    );
}

#[test]
fn pagination_and_referrers() {
    let c = catalog();
    check(&c, ns("a"), Outcome::Done);
    for repo in ["a/x", "a/x/y", "a/z"] {
        for tag in ["t1", "t2", "t3"] {
            check(
                &c,
                Command::PutManifest {
                    repo: repo.into(),
                    manifest: manifest(&format!("sha256:{tag}"), &[], None),
                    tag: Some(tag.into()),
                },
                Outcome::Done,
            );
        }
    }
    assert_eq!(c.repositories(None, None).unwrap(), ["a/x", "a/x/y", "a/z"]);
    assert_eq!(c.repositories(Some("a/x"), Some(1)).unwrap(), ["a/x/y"]);
    assert_eq!(c.tags("a/x", Some("t1"), Some(1)).unwrap(), ["t2"]);
    assert_eq!(
        c.tags("a/x", Some("t3"), None).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(c.tags("a/x", None, Some(0)).unwrap(), Vec::<String>::new());

    let referrer = Command::PutManifest {
        repo: "a/x".into(),
        manifest: manifest("sha256:sig", &[], Some("sha256:t1")),
        tag: None,
    };
    check(&c, referrer, Outcome::Done);
    let refs = c.referrers("a/x", "sha256:t1").unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, "sha256:sig");
    assert!(c.referrers("a/x/y", "sha256:t1").unwrap().is_empty());
}

#[test]
fn a_namespace_needs_a_known_organisation_and_a_project_of_that_organisation() {
    let c = catalog();
    check(&c, principal("alice", PrincipalKind::User), Outcome::Done);
    check(&c, organisation("acme", "alice"), Outcome::Done);
    check(&c, project("acme", "api"), Outcome::Done);
    let cases = [
        (
            ns_in("n1", "ghost", None),
            Rejection::OrganisationUnknown("ghost".into()),
        ),
        (
            ns_in("n1", "ghost", Some("api")),
            Rejection::OrganisationUnknown("ghost".into()),
        ),
        (
            ns_in("n1", "default", Some("web")),
            Rejection::ProjectUnknown("web".into()),
        ),
        // `api` is acme's project, not default's.
        (
            ns_in("n1", "default", Some("api")),
            Rejection::ProjectUnknown("api".into()),
        ),
    ];
    for (cmd, rejection) in cases {
        check(&c, cmd, Outcome::Rejected(rejection));
    }
    check(&c, ns_in("n1", "acme", Some("api")), Outcome::Done);
    check(&c, ns_in("n2", "acme", None), Outcome::Done);
    let n1 = c.namespace("n1").unwrap().unwrap();
    assert_eq!(
        (n1.organisation.as_str(), n1.project.as_deref()),
        ("acme", Some("api"))
    );
}

#[test]
fn namespace_names_are_unique_across_organisations_and_projects() {
    let c = catalog();
    check(&c, principal("alice", PrincipalKind::User), Outcome::Done);
    check(&c, organisation("acme", "alice"), Outcome::Done);
    check(&c, project("acme", "api"), Outcome::Done);
    check(&c, ns("shared"), Outcome::Done);
    for cmd in [
        ns("shared"),
        ns_in("shared", "acme", None),
        ns_in("shared", "acme", Some("api")),
    ] {
        check(
            &c,
            cmd,
            Outcome::Rejected(Rejection::NamespaceExists("shared".into())),
        );
    }
    assert_eq!(
        c.namespace("shared").unwrap(),
        Some(NamespaceRecord::for_test("shared"))
    );
}

#[test]
fn deleting_an_unknown_namespace_is_rejected() {
    let c = catalog();
    check(&c, ns("acme"), Outcome::Done);
    check(
        &c,
        Command::DeleteNamespace {
            name: "ghost".into(),
        },
        Outcome::Rejected(Rejection::NamespaceUnknown("ghost".into())),
    );
}

#[test]
fn deleting_a_namespace_removes_everything_in_it_and_nothing_else() {
    let c = catalog();
    check(&c, principal("dev", PrincipalKind::User), Outcome::Done);
    check(&c, project("default", "web"), Outcome::Done);
    let web = RoleScope::Project {
        organisation: "default".into(),
        project: "web".into(),
    };
    check(&c, bind("dev", web), Outcome::Done);
    // Neighbours whose names start with `acme`.
    for name in ["acme-2", "acmex"] {
        check(&c, ns(name), Outcome::Done);
        fill(&c, &format!("{name}/api"));
        check(
            &c,
            bind("dev", RoleScope::Namespace(name.into())),
            Outcome::Done,
        );
    }
    let usage = |ns: &str| crate::UsageDelta {
        namespace: ns.into(),
        usage: crate::Usage {
            pulls: 1,
            pushes: 1,
            bytes_out: 1,
        },
    };
    let deltas = vec![usage("acme-2")];
    check(&c, Command::RecordUsage { deltas }, Outcome::Done);
    let before = contents(&c);

    check(&c, ns_in("acme", "default", Some("web")), Outcome::Done);
    for repo in ["acme/api", "acme/api/v2", "acme/web"] {
        fill(&c, repo);
    }
    check(
        &c,
        bind("dev", RoleScope::Namespace("acme".into())),
        Outcome::Done,
    );
    let deltas = vec![usage("acme")];
    check(&c, Command::RecordUsage { deltas }, Outcome::Done);

    let delete = Command::DeleteNamespace {
        name: "acme".into(),
    };
    assert_eq!(
        unlinking(&c, &delete),
        [
            "sha256:acme/api-blob",
            "sha256:acme/api/v2-blob",
            "sha256:acme/web-blob"
        ]
    );
    check(&c, delete, Outcome::Done);
    assert_eq!(
        contents(&c),
        before,
        "the namespace, its repositories, their visibility, its usage and its bindings \
         are gone; its project's binding and the neighbours are untouched"
    );
}

/// `/v2/acme/manifests/x` names the repository `acme`, whose namespace is `acme`: it
/// must go with the namespace, or it would come back when someone reuses the name.
#[test]
fn deleting_a_namespace_removes_the_repository_named_after_it() {
    let c = catalog();
    let before = contents(&c);
    check(&c, ns("acme"), Outcome::Done);
    fill(&c, "acme");
    fill(&c, "acme/api");
    assert_eq!(c.repositories_in("acme").unwrap(), ["acme", "acme/api"]);
    let delete = Command::DeleteNamespace {
        name: "acme".into(),
    };
    assert_eq!(
        unlinking(&c, &delete),
        ["sha256:acme-blob", "sha256:acme/api-blob"]
    );
    check(&c, delete, Outcome::Done);
    assert_eq!(contents(&c), before);
    check(&c, ns("acme"), Outcome::Done);
    assert!(c.repositories(None, None).unwrap().is_empty());
}

/// What a reader derived at one version (an authorization decision) must not outlive a
/// change: every applied command moves the version, and while a snapshot loads there is
/// none to keep anything under, however the load ends.
#[test]
fn the_version_moves_with_every_change_and_is_absent_while_a_snapshot_loads() {
    let c = catalog();
    let reader = c.clone();
    let v0 = reader.version().unwrap();
    c.changed();
    let v1 = reader.version().unwrap();
    assert_ne!(v0, v1);
    let loading = c.loading();
    assert_eq!(reader.version(), None);
    drop(loading);
    let v2 = reader.version().unwrap();
    assert!(v2 != v0 && v2 != v1);
}
