//! Tests of the lifecycle commands: what collection takes and what it never takes, tombstones
//! against links, immutable tags, retention's tag deletion, pull times, and that every
//! command keeps the reverse indexes exactly in step with what they index.

use std::collections::BTreeSet;

use crate::catalog::tests::{catalog, check, link, manifest, ns, push, unlinking};
use crate::catalog::Catalog;
use crate::keys;
use crate::lifecycle::ImmutableTags;
use crate::{Command, ManifestRecord, Outcome, Pulled, Rejection};

const NOW: i64 = 1_000_000;
const GRACE: i64 = 3600;

/// The keys under `prefix`, with `\0` spelt out.
fn keys_under(c: &Catalog, prefix: &str) -> BTreeSet<String> {
    c.tree()
        .scan_prefix(prefix.as_bytes())
        .map(|kv| String::from_utf8_lossy(&kv.unwrap().0[prefix.len()..]).replace('\0', "|"))
        .collect()
}

/// The reverse indexes hold exactly what the indexed keys say.
fn check_indexes(c: &Catalog) {
    let links = keys_under(c, keys::BLOB_LINK);
    let expected: BTreeSet<String> = links
        .iter()
        .map(|l| {
            let (repo, digest) = l.split_once('|').unwrap();
            format!("{digest}|{repo}")
        })
        .collect();
    assert_eq!(keys_under(c, keys::LINKED_IN), expected, "d/ against b/");
    let mut refs = BTreeSet::new();
    for kv in c.tree().scan_prefix(keys::MANIFEST.as_bytes()) {
        let (k, v) = kv.unwrap();
        let k = String::from_utf8_lossy(&k[keys::MANIFEST.len()..]).into_owned();
        let (repo, digest) = k.split_once('\0').unwrap();
        let m: ManifestRecord = crate::catalog::decode(&v).unwrap();
        for r in m.blobs.iter().chain(&m.manifests) {
            refs.insert(format!("{repo}|{r}|{digest}"));
        }
    }
    assert_eq!(keys_under(c, keys::REFERENCED_BY), refs, "e/ against m/");
    let mut tagged = BTreeSet::new();
    for kv in c.tree().scan_prefix(keys::TAG.as_bytes()) {
        let (k, v) = kv.unwrap();
        let k = String::from_utf8_lossy(&k[2..]).into_owned();
        let (repo, tag) = k.split_once('\0').unwrap();
        tagged.insert(format!("{repo}|{}|{tag}", String::from_utf8_lossy(&v)));
    }
    assert_eq!(keys_under(c, keys::TAGGED_AS), tagged, "a/ against t/");
}

fn at(cmd: Command, when: i64) -> Command {
    match cmd {
        Command::LinkBlob {
            repo,
            digest,
            size,
            upload,
            ..
        } => Command::LinkBlob {
            repo,
            digest,
            size,
            upload,
            at: when,
        },
        Command::PutManifest {
            repo,
            mut manifest,
            tag,
        } => {
            manifest.pushed_at = when;
            Command::PutManifest {
                repo,
                manifest,
                tag,
            }
        }
        other => other,
    }
}

fn index(digest: &str, children: &[&str]) -> ManifestRecord {
    ManifestRecord {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        manifests: children.iter().map(|c| c.to_string()).collect(),
        ..manifest(digest, &[], None)
    }
}

fn collect_manifests(digests: &[&str]) -> Command {
    Command::CollectManifests {
        repo: "acme/app".into(),
        digests: digests.iter().map(|d| d.to_string()).collect(),
        now: NOW,
        grace: GRACE,
    }
}

fn collect_blobs(digests: &[&str]) -> Command {
    Command::CollectBlobs {
        repo: "acme/app".into(),
        digests: digests.iter().map(|d| d.to_string()).collect(),
        now: NOW,
        grace: GRACE,
    }
}

const R: &str = "acme/app";

/// A tagged index with two children, a signature of it, an old untagged image with its own
/// signature, and a fresh untagged image; blobs for each.
fn repository() -> Catalog {
    let c = catalog();
    check(&c, ns("acme"), Outcome::Done);
    for b in [
        "sha256:b-arm",
        "sha256:b-amd",
        "sha256:b-old",
        "sha256:b-new",
        "sha256:b-orphan",
    ] {
        check(&c, link(R, b, 10), Outcome::Done);
    }
    let old = NOW - 2 * GRACE;
    for (d, blob) in [
        ("sha256:arm", "sha256:b-arm"),
        ("sha256:amd", "sha256:b-amd"),
        ("sha256:old", "sha256:b-old"),
    ] {
        check(&c, at(push(R, d, &[blob], None, None), old), Outcome::Done);
    }
    let idx = Command::PutManifest {
        repo: R.into(),
        manifest: index("sha256:idx", &["sha256:arm", "sha256:amd"]),
        tag: Some("latest".into()),
    };
    check(&c, at(idx, old), Outcome::Done);
    check(
        &c,
        at(
            push(R, "sha256:idx-sig", &[], Some("sha256:idx"), None),
            old,
        ),
        Outcome::Done,
    );
    check(
        &c,
        at(
            push(R, "sha256:old-sig", &[], Some("sha256:old"), None),
            old,
        ),
        Outcome::Done,
    );
    check(
        &c,
        at(push(R, "sha256:new", &["sha256:b-new"], None, None), NOW),
        Outcome::Done,
    );
    check_indexes(&c);
    c
}

#[test]
fn collection_takes_only_what_no_tag_reaches_and_the_grace_passed() {
    let c = repository();
    // A collector working from stale state proposes everything untagged: the state machine
    // keeps the children of the tagged index, its signature, and the fresh image.
    let all = [
        "sha256:arm",
        "sha256:amd",
        "sha256:old",
        "sha256:idx-sig",
        "sha256:old-sig",
        "sha256:new",
    ];
    check(&c, collect_manifests(&all), Outcome::Done);
    let left: BTreeSet<String> = c
        .manifest_digests(R)
        .unwrap()
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    let expected: BTreeSet<String> = [
        "sha256:arm",
        "sha256:amd",
        "sha256:idx",
        "sha256:idx-sig",
        "sha256:new",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        left, expected,
        "the old image and its signature went, nothing else"
    );
    check_indexes(&c);

    // The old image's blob is listed by nothing now; the fresh one's still is; an unlisted
    // blob linked just now is protected by its lease.
    check(&c, at(link(R, "sha256:b-fresh", 5), NOW), Outcome::Done);
    let cmd = collect_blobs(&[
        "sha256:b-old",
        "sha256:b-new",
        "sha256:b-arm",
        "sha256:b-orphan",
        "sha256:b-fresh",
    ]);
    assert_eq!(unlinking(&c, &cmd), ["sha256:b-old", "sha256:b-orphan"]);
    check(&c, cmd, Outcome::Done);
    let links: Vec<String> = c
        .blob_links(R)
        .unwrap()
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(
        links,
        [
            "sha256:b-amd",
            "sha256:b-arm",
            "sha256:b-fresh",
            "sha256:b-new"
        ]
    );
    check_indexes(&c);
}

#[test]
fn untagging_an_index_lets_its_children_go_together() {
    let c = repository();
    check(
        &c,
        Command::DeleteTag {
            repo: R.into(),
            tag: "latest".into(),
        },
        Outcome::Done,
    );
    // A child alone stays while the index that lists it stays.
    check(&c, collect_manifests(&["sha256:arm"]), Outcome::Done);
    assert!(c.manifest(R, "sha256:arm").unwrap().is_some());
    // Index, children and signature together go.
    check(
        &c,
        collect_manifests(&["sha256:idx", "sha256:arm", "sha256:amd", "sha256:idx-sig"]),
        Outcome::Done,
    );
    for d in ["sha256:idx", "sha256:arm", "sha256:amd", "sha256:idx-sig"] {
        assert!(c.manifest(R, d).unwrap().is_none(), "{d}");
    }
    check_indexes(&c);
}

#[test]
fn a_tombstone_refuses_links_until_the_bytes_are_forgotten() {
    let c = catalog();
    check(&c, ns("acme"), Outcome::Done);
    check(&c, link(R, "sha256:linked", 1), Outcome::Done);
    let condemn = Command::CondemnDigests {
        digests: vec!["sha256:linked".into(), "sha256:free".into()],
        now: NOW,
    };
    check(&c, condemn, Outcome::Done);
    assert_eq!(
        c.tombstone("sha256:linked").unwrap(),
        None,
        "a linked digest is never condemned"
    );
    assert_eq!(c.tombstone("sha256:free").unwrap(), Some(NOW));
    check(
        &c,
        link("acme/other", "sha256:free", 1),
        Outcome::Rejected(Rejection::BlobBeingCollected("sha256:free".into())),
    );
    check(
        &c,
        Command::ForgetDigests {
            digests: vec!["sha256:free".into()],
        },
        Outcome::Done,
    );
    check(&c, link("acme/other", "sha256:free", 1), Outcome::Done);
    check_indexes(&c);
}

#[test]
fn leases_are_renewed_by_links_pushes_and_touches() {
    let c = repository();
    assert_eq!(
        c.lease(R, "sha256:b-old").unwrap(),
        0,
        "linked before leases"
    );
    let touch = Command::TouchContent {
        repo: R.into(),
        digests: vec![
            "sha256:b-old".into(),
            "sha256:old".into(),
            "sha256:nothing".into(),
        ],
        at: NOW,
    };
    check(&c, touch, Outcome::Done);
    assert_eq!(c.lease(R, "sha256:b-old").unwrap(), NOW);
    assert_eq!(c.lease(R, "sha256:old").unwrap(), NOW);
    assert_eq!(
        c.lease(R, "sha256:nothing").unwrap(),
        0,
        "only what exists is touched"
    );
    check(
        &c,
        collect_manifests(&["sha256:old", "sha256:old-sig"]),
        Outcome::Done,
    );
    assert!(
        c.manifest(R, "sha256:old").unwrap().is_some(),
        "a touched manifest stays"
    );
}

#[test]
fn immutable_tags_cannot_move_or_go() {
    let c = repository();
    let rules = Command::SetImmutableTags {
        namespace: "acme".into(),
        rules: ImmutableTags {
            patterns: vec!["v*".into()],
            exclude: vec!["*-rc*".into()],
        },
    };
    check(&c, rules, Outcome::Done);
    check(
        &c,
        push(R, "sha256:old", &["sha256:b-old"], None, Some("v1")),
        Outcome::Done,
    );
    check(
        &c,
        push(R, "sha256:old", &["sha256:b-old"], None, Some("v1")),
        Outcome::Done,
    );
    let refused = |tag: &str| {
        Outcome::Rejected(Rejection::ImmutableTag {
            tag: tag.into(),
            rule: "v*".into(),
        })
    };
    check(
        &c,
        push(R, "sha256:new", &["sha256:b-new"], None, Some("v1")),
        refused("v1"),
    );
    check(
        &c,
        Command::DeleteTag {
            repo: R.into(),
            tag: "v1".into(),
        },
        refused("v1"),
    );
    check(
        &c,
        Command::DeleteManifest {
            repo: R.into(),
            digest: "sha256:old".into(),
        },
        refused("v1"),
    );
    check(
        &c,
        Command::DeleteRepository { repo: R.into() },
        refused("v1"),
    );
    // Excluded tags and other tags move freely.
    check(
        &c,
        push(R, "sha256:old", &["sha256:b-old"], None, Some("v2-rc1")),
        Outcome::Done,
    );
    check(
        &c,
        push(R, "sha256:new", &["sha256:b-new"], None, Some("v2-rc1")),
        Outcome::Done,
    );
    check(
        &c,
        Command::DeleteTag {
            repo: R.into(),
            tag: "v2-rc1".into(),
        },
        Outcome::Done,
    );
    // Retention skips immutable tags and tags that moved since it looked.
    check(
        &c,
        push(R, "sha256:new", &["sha256:b-new"], None, Some("ci-1")),
        Outcome::Done,
    );
    let retain = Command::RetainTags {
        repo: R.into(),
        delete: vec![
            ("v1".into(), "sha256:old".into()),
            ("ci-1".into(), "sha256:old".into()),
            ("latest".into(), "sha256:idx".into()),
        ],
    };
    check(&c, retain, Outcome::Done);
    let tags: Vec<String> = c.tag_map(R).unwrap().into_keys().collect();
    assert_eq!(tags, ["ci-1", "v1"]);
    check_indexes(&c);
}

#[test]
fn pull_times_keep_the_latest_and_follow_the_tag() {
    let c = repository();
    let pull = |tag: Option<&str>, digest: &str, t: i64| Pulled {
        repo: R.into(),
        digest: digest.into(),
        tag: tag.map(Into::into),
        at: t,
    };
    let record = Command::RecordPulls {
        pulls: vec![
            pull(Some("latest"), "sha256:idx", 50),
            pull(None, "sha256:idx", 40),
            pull(Some("latest"), "sha256:arm", 60),
            pull(None, "sha256:gone", 70),
        ],
    };
    check(&c, record, Outcome::Done);
    assert_eq!(c.manifest_pulled_at(R, "sha256:idx").unwrap(), Some(50));
    assert_eq!(c.manifest_pulled_at(R, "sha256:arm").unwrap(), Some(60));
    assert_eq!(
        c.tag_times(R, "latest").unwrap().pulled_at,
        Some(50),
        "a pull by a tag that points elsewhere is not the tag's"
    );
    assert_eq!(c.manifest_pulled_at(R, "sha256:gone").unwrap(), None);
    // Pushing the tag again restarts its times.
    check(
        &c,
        at(
            push(R, "sha256:new", &["sha256:b-new"], None, Some("latest")),
            NOW,
        ),
        Outcome::Done,
    );
    let t = c.tag_times(R, "latest").unwrap();
    assert_eq!((t.pushed_at, t.pulled_at), (NOW, None));
    // The scan of a repository's tag times agrees with reading them one by one.
    let all = c.tag_times_in(R).unwrap();
    assert!(!all.is_empty());
    for (tag, times) in all {
        assert_eq!(c.tag_times(R, &tag).unwrap(), times, "{tag}");
    }
}

#[test]
fn deleting_a_repository_or_namespace_leaves_no_index_behind() {
    let c = repository();
    check(
        &c,
        Command::DeleteRepository { repo: R.into() },
        Outcome::Done,
    );
    check_indexes(&c);
    for prefix in [
        keys::LEASE,
        keys::TAG_TIMES,
        keys::LINKED_IN,
        keys::REFERENCED_BY,
        keys::TAGGED_AS,
    ] {
        assert!(keys_under(&c, prefix).is_empty(), "{prefix}");
    }
    let c = repository();
    let policy = Command::SetRetention {
        namespace: "acme".into(),
        policy: Some(Default::default()),
    };
    check(&c, policy, Outcome::Done);
    check(
        &c,
        Command::DeleteNamespace {
            name: "acme".into(),
        },
        Outcome::Done,
    );
    check_indexes(&c);
    assert!(c.retention("acme").unwrap().is_none());
    for prefix in [
        keys::LEASE,
        keys::TAG_TIMES,
        keys::LINKED_IN,
        keys::REFERENCED_BY,
        keys::TAGGED_AS,
    ] {
        assert!(keys_under(&c, prefix).is_empty(), "{prefix}");
    }
}

#[test]
fn a_requested_run_is_answered_by_the_run_that_starts_after_it() {
    let c = catalog();
    check(&c, Command::RequestGc { at: 100 }, Outcome::Done);
    assert_eq!(c.gc_status().unwrap().requested_at, Some(100));
    let run = |started_at, finished_at| crate::GcRun {
        started_at,
        finished_at,
        phase: "x".into(),
        ..Default::default()
    };
    check(&c, Command::RecordGc { run: run(90, None) }, Outcome::Done);
    assert_eq!(
        c.gc_status().unwrap().requested_at,
        Some(100),
        "an older run does not answer it"
    );
    check(
        &c,
        Command::RecordGc {
            run: run(101, None),
        },
        Outcome::Done,
    );
    let s = c.gc_status().unwrap();
    assert_eq!(
        (s.requested_at, s.running.map(|r| r.started_at)),
        (None, Some(101))
    );
    check(
        &c,
        Command::RecordGc {
            run: run(101, Some(120)),
        },
        Outcome::Done,
    );
    let s = c.gc_status().unwrap();
    assert!(s.running.is_none());
    assert_eq!(s.last.and_then(|r| r.finished_at), Some(120));
}
