//! Golden bytes: one sample of every `Command` variant and every stored record, encoded,
//! compared with `golden-v{CURRENT}.txt`. A change that alters any of them fails here: bump
//! `format::CURRENT`, add the migration from the old version, and let
//! `SHOAL_WRITE_GOLDEN=1 cargo test -p shoal-raft golden` write the new version's file
//! (it only ever adds lines for samples the file lacks; it never rewrites one).
//!
//! `sample` matches `CommandKind` exhaustively, so a new variant does not compile until it has
//! a sample, and then has no golden line until one is written.

use std::collections::BTreeMap;

use strum::IntoEnumIterator;

use super::CURRENT;
use crate::access::{
    CredentialRecord, CredentialScope, Principal, PrincipalKind, Role, RoleBinding, RoleScope,
    SigningKey,
};
use crate::audit::AuditEvent;
use crate::catalog::{NamespaceRecord, Visibility};
use crate::command::{Actor, Command, CommandKind, ManifestRecord, Proposal};
use crate::federation::FederationRecord;
use crate::lifecycle::{
    GcRun, GcStatus, ImmutableTags, KeepRule, Pulled, RetentionPolicy, TagTimes,
};
use crate::mirror::UpstreamRecord;
use crate::repos::{Usage, UsageDelta};
use crate::tenancy::{OrgRecord, ProjectRecord};
use crate::types::TypeConfig;
use crate::uploads::UploadRecord;

fn namespace() -> NamespaceRecord {
    NamespaceRecord {
        name: "team".into(),
        organisation: "acme".into(),
        project: Some("web".into()),
        region: "nl-01".into(),
        description: Some("the team".into()),
        created_at: 1_700_000_000,
        visibility: Visibility::Public,
        immutable: immutable(),
    }
}

fn immutable() -> ImmutableTags {
    ImmutableTags {
        patterns: vec!["v*".into()],
        exclude: vec!["*-rc*".into()],
    }
}

fn policy() -> RetentionPolicy {
    RetentionPolicy {
        repositories: vec!["team/**".into()],
        rules: vec![
            KeepRule {
                tags: vec!["v*".into()],
                ..KeepRule::default()
            },
            KeepRule {
                tags_regex: vec!["^[0-9a-f]{7}$".into()],
                exclude: vec!["tmp-*".into()],
                exclude_regex: vec!["-dirty$".into()],
                newest_pushed: Some(10),
                newest_pulled: Some(3),
                pushed_within: Some(86_400),
                pulled_within: Some(2_592_000),
                ..KeepRule::default()
            },
            KeepRule {
                untagged: true,
                pushed_within: Some(172_800),
                ..KeepRule::default()
            },
        ],
    }
}

fn gc_run() -> GcRun {
    GcRun {
        started_at: 1_700_000_100,
        finished_at: Some(1_700_000_160),
        phase: "done".into(),
        manifests: 4,
        blob_links: 9,
        blobs_deleted: 7,
        bytes_reclaimed: 1 << 30,
        protected: 2,
        error: None,
    }
}

fn audit_event() -> AuditEvent {
    AuditEvent {
        index: 42,
        at: 1_700_000_024_500,
        actor: Actor::Principal {
            name: "alice".into(),
            via: Some("cred-abc".into()),
        },
        request_id: "7f3a-13".into(),
        from: Some("2001:db8::7".into()),
        action: "retention.delete-tags".into(),
        organisation: Some("acme".into()),
        namespace: Some("team".into()),
        repository: Some("team/app".into()),
        tag: None,
        digest: None,
        subject: None,
        items: vec!["v0@sha256:0123".into()],
        refused: Some("tag \"v0\" is not in the repository".into()),
    }
}

fn org() -> OrgRecord {
    OrgRecord {
        name: "acme".into(),
        description: Some("a tenant".into()),
        home: false,
        created_at: 1_700_000_001,
    }
}

fn project() -> ProjectRecord {
    ProjectRecord {
        organisation: "acme".into(),
        name: "web".into(),
        description: None,
        created_at: 1_700_000_002,
    }
}

fn principal() -> Principal {
    Principal {
        name: "alice".into(),
        kind: PrincipalKind::User,
        organisation: "acme".into(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        created_at: 1_700_000_003,
        uid: "u-0123456789abcdef".into(),
    }
}

fn credential() -> CredentialRecord {
    CredentialRecord {
        id: "cred-abc".into(),
        name: "deploy".into(),
        login: "shoal-xyz".into(),
        secret_hash: "$argon2id$h".into(),
        owner: "ci".into(),
        scope: CredentialScope::Pull,
        namespace: Some("team".into()),
        expires_at: Some(1_800_000_000),
        revoked_at: None,
        created_at: 1_700_000_004,
    }
}

fn binding() -> RoleBinding {
    RoleBinding {
        principal: "alice".into(),
        scope: RoleScope::Project {
            organisation: "acme".into(),
            project: "web".into(),
        },
        role: Role::Developer,
    }
}

fn signing_key() -> SigningKey {
    SigningKey {
        kid: "kid1".into(),
        private_pem: "-----BEGIN PRIVATE KEY-----".into(),
        public_pem: "-----BEGIN PUBLIC KEY-----".into(),
        created_at: 1_700_000_005,
    }
}

fn federation() -> FederationRecord {
    FederationRecord {
        name: "gha".into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        audience: "shoal".into(),
        conditions: BTreeMap::from([("repository".into(), "acme/*".into())]),
        service_account: "ci".into(),
        scope: CredentialScope::All,
        namespace: None,
        created_at: 1_700_000_006,
        uid: "f-0123456789abcdef".into(),
    }
}

fn manifest() -> ManifestRecord {
    ManifestRecord {
        digest: "sha256:aa".into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        bytes: b"{\"schemaVersion\":2}".to_vec(),
        blobs: vec!["sha256:bb".into(), "sha256:cc".into()],
        manifests: vec![],
        subject: Some("sha256:dd".into()),
        artifact_type: Some("application/vnd.example".into()),
        annotations: Some("{\"a\":\"b\"}".into()),
        pushed_at: 1_700_000_007,
    }
}

fn upload() -> UploadRecord {
    UploadRecord {
        repo: "team/app".into(),
        owner: "alice".into(),
        owner_uid: "u-0123456789abcdef".into(),
        started_at: 1_700_000_008,
    }
}

fn usage() -> Usage {
    Usage {
        pulls: 3,
        pushes: 2,
        bytes_out: 1 << 40,
    }
}

fn upstream() -> UpstreamRecord {
    UpstreamRecord {
        name: "hub".into(),
        namespace: "hub".into(),
        url: "https://registry-1.docker.io".into(),
        host: "docker.io".into(),
        username: Some("bot".into()),
        password: Some("secret".into()),
        tag_ttl: 300,
        max_connections: 16,
        library_prefix: true,
        created_at: 1_700_000_023,
    }
}

fn sample(kind: CommandKind) -> Command {
    use CommandKind as K;
    match kind {
        K::CreateNamespace => Command::CreateNamespace {
            record: namespace(),
        },
        K::SetVisibility => Command::SetVisibility {
            namespace: "team".into(),
            visibility: Visibility::Private,
        },
        K::DeleteNamespace => Command::DeleteNamespace {
            name: "team".into(),
        },
        K::CreateOrganisation => Command::CreateOrganisation {
            org: org(),
            owner: "alice".into(),
        },
        K::CreateProject => Command::CreateProject { project: project() },
        K::DeleteProject => Command::DeleteProject {
            organisation: "acme".into(),
            name: "web".into(),
        },
        K::SetRepositoryVisibility => Command::SetRepositoryVisibility {
            repo: "team/app".into(),
            visibility: Some(Visibility::Public),
        },
        K::DeleteRepository => Command::DeleteRepository {
            repo: "team/app".into(),
        },
        K::RecordUsage => Command::RecordUsage {
            deltas: vec![UsageDelta {
                namespace: "team".into(),
                usage: usage(),
            }],
        },
        K::CreateFederation => Command::CreateFederation {
            federation: federation(),
        },
        K::DeleteFederation => Command::DeleteFederation { name: "gha".into() },
        K::Bootstrap => Command::Bootstrap {
            org: org(),
            admin: principal(),
            key: signing_key(),
        },
        K::CreatePrincipal => Command::CreatePrincipal {
            principal: principal(),
        },
        K::CreateCredential => Command::CreateCredential {
            credential: credential(),
        },
        K::RevokeCredential => Command::RevokeCredential {
            id: "cred-abc".into(),
            revoked_at: 1_700_000_009,
        },
        K::RotateCredentialSecret => Command::RotateCredentialSecret {
            id: "cred-abc".into(),
            secret_hash: "$argon2id$new".into(),
        },
        K::Bind => Command::Bind { binding: binding() },
        K::Unbind => Command::Unbind {
            principal: "alice".into(),
            scope: RoleScope::Namespace("team".into()),
        },
        K::RotateSigningKey => Command::RotateSigningKey {
            key: signing_key(),
            retire_after: 360,
        },
        K::LinkBlob => Command::LinkBlob {
            repo: "team/app".into(),
            digest: "sha256:bb".into(),
            size: 1 << 33,
            upload: Some("6f9619ff-8b86-d011-b42d-00c04fc964ff".into()),
            at: 1_700_000_010,
        },
        K::UnlinkBlob => Command::UnlinkBlob {
            repo: "team/app".into(),
            digest: "sha256:bb".into(),
        },
        K::PutManifest => Command::PutManifest {
            repo: "team/app".into(),
            manifest: manifest(),
            tag: Some("v1".into()),
        },
        K::DeleteTag => Command::DeleteTag {
            repo: "team/app".into(),
            tag: "v1".into(),
        },
        K::DeleteManifest => Command::DeleteManifest {
            repo: "team/app".into(),
            digest: "sha256:aa".into(),
        },
        K::DeletePrincipal => Command::DeletePrincipal {
            name: "alice".into(),
            organisation: "acme".into(),
            kind: PrincipalKind::ServiceAccount,
        },
        K::DeleteOrganisation => Command::DeleteOrganisation {
            name: "acme".into(),
        },
        K::OpenUpload => Command::OpenUpload {
            id: "6f9619ff-8b86-d011-b42d-00c04fc964ff".into(),
            upload: upload(),
            limit: 1000,
        },
        K::CloseUploads => Command::CloseUploads {
            ids: vec!["6f9619ff-8b86-d011-b42d-00c04fc964ff".into()],
        },
        K::TouchContent => Command::TouchContent {
            repo: "team/app".into(),
            digests: vec!["sha256:bb".into()],
            at: 1_700_000_011,
        },
        K::RecordPulls => Command::RecordPulls {
            pulls: vec![Pulled {
                repo: "team/app".into(),
                digest: "sha256:aa".into(),
                tag: Some("v1".into()),
                at: 1_700_000_012,
            }],
        },
        K::CollectManifests => Command::CollectManifests {
            repo: "team/app".into(),
            digests: vec!["sha256:aa".into()],
            now: 1_700_000_013,
            grace: 3600,
        },
        K::CollectBlobs => Command::CollectBlobs {
            repo: "team/app".into(),
            digests: vec!["sha256:bb".into()],
            now: 1_700_000_014,
            grace: 3600,
        },
        K::CondemnDigests => Command::CondemnDigests {
            digests: vec!["sha256:bb".into()],
            now: 1_700_000_015,
        },
        K::ForgetDigests => Command::ForgetDigests {
            digests: vec!["sha256:bb".into()],
        },
        K::SetRetention => Command::SetRetention {
            namespace: "team".into(),
            policy: Some(policy()),
        },
        K::SetImmutableTags => Command::SetImmutableTags {
            namespace: "team".into(),
            rules: immutable(),
        },
        K::RetainTags => Command::RetainTags {
            repo: "team/app".into(),
            delete: vec![("ci-1".into(), "sha256:aa".into())],
        },
        K::RequestGc => Command::RequestGc { at: 1_700_000_016 },
        K::RecordGc => Command::RecordGc { run: gc_run() },
        K::CreateUpstream => Command::CreateUpstream {
            upstream: upstream(),
        },
        K::DeleteUpstream => Command::DeleteUpstream { name: "hub".into() },
        K::MirrorManifest => Command::MirrorManifest {
            repo: "hub/library/nginx".into(),
            manifest: manifest(),
            tag: Some("latest".into()),
            blobs: vec![("sha256:cc".into(), 1234)],
            fetched_at: 1_700_000_021,
        },
        K::TagChecked => Command::TagChecked {
            repo: "hub/library/nginx".into(),
            tag: "latest".into(),
            digest: "sha256:dd".into(),
            at: 1_700_000_022,
        },
        K::EndSession => Command::EndSession {
            id: "s3ss10n".into(),
            until: 1_700_028_800,
            at: 1_700_000_023,
        },
        K::SetNamespaceDescription => Command::SetNamespaceDescription {
            namespace: "team".into(),
            description: Some("the team's images".into()),
        },
        K::ExpireAudit => Command::ExpireAudit {
            before: 1_700_000_021_000,
        },
    }
}

fn hex_of<T: serde::Serialize>(v: &T) -> String {
    hex::encode(postcard::to_stdvec(v).expect("samples serialise"))
}

/// Every sample's name and encoded bytes (hex).
fn samples() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for kind in CommandKind::iter() {
        let name: &'static str = kind.into();
        out.push((format!("command.{name}"), hex_of(&sample(kind))));
    }
    let proposal = |by| Proposal {
        at: 1_700_000_022_345,
        from: Some("192.0.2.7".into()),
        ..Proposal::new(
            by,
            "7f3a-12",
            Command::DeleteTag {
                repo: "team/app".into(),
                tag: "v1".into(),
            },
        )
    };
    let principal_actor = Actor::Principal {
        name: "alice".into(),
        via: Some("cred-abc".into()),
    };
    out.push((
        "proposal.principal".into(),
        hex_of(&proposal(principal_actor)),
    ));
    out.push((
        "proposal.system".into(),
        hex_of(&proposal(Actor::System("gc".into()))),
    ));
    let entry: openraft::Entry<TypeConfig> = openraft::Entry {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), 42),
        payload: openraft::EntryPayload::Normal(Proposal {
            at: 1_700_000_023_000,
            ..Proposal::system("usage", sample(CommandKind::RecordUsage))
        }),
    };
    out.push(("log.entry".into(), hex_of(&entry)));
    for (name, bytes) in [
        ("record.namespace", hex_of(&namespace())),
        ("record.visibility", hex_of(&Visibility::Public)),
        ("record.usage", hex_of(&usage())),
        ("record.manifest", hex_of(&manifest())),
        ("record.principal", hex_of(&principal())),
        ("record.credential", hex_of(&credential())),
        ("record.role", hex_of(&Role::Admin)),
        ("record.signing_key", hex_of(&signing_key())),
        ("record.organisation", hex_of(&org())),
        ("record.project", hex_of(&project())),
        ("record.federation", hex_of(&federation())),
        ("record.upload", hex_of(&upload())),
        ("record.upstream", hex_of(&upstream())),
        (
            "record.tag_times",
            hex_of(&TagTimes {
                pushed_at: 1_700_000_017,
                pulled_at: Some(1_700_000_018),
            }),
        ),
        ("record.instant", hex_of(&1_700_000_019i64)),
        ("record.retention", hex_of(&policy())),
        (
            "record.gc_status",
            hex_of(&GcStatus {
                requested_at: Some(1_700_000_020),
                running: None,
                last: Some(gc_run()),
            }),
        ),
        ("record.audit", hex_of(&audit_event())),
        (
            "snapshot.pairs",
            hex_of(&vec![(b"n/team".to_vec(), vec![1u8, 2])]),
        ),
    ] {
        out.push((name.into(), bytes));
    }
    out
}

#[test]
fn encodings_match_their_golden_bytes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/format")
        .join(format!("golden-v{CURRENT}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let golden: BTreeMap<&str, &str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(' '))
        .collect();
    let write = std::env::var_os("SHOAL_WRITE_GOLDEN").is_some();
    let mut missing = Vec::new();
    for (name, bytes) in samples() {
        match golden.get(name.as_str()) {
            Some(g) => assert_eq!(
                *g, bytes,
                "the encoding of {name} changed: format {CURRENT} is fixed; bump format::CURRENT and add a migration"
            ),
            None => missing.push(format!("{name} {bytes}")),
        }
    }
    if missing.is_empty() {
        return;
    }
    assert!(
        write,
        "no golden bytes for {missing:?} in {}; write them with SHOAL_WRITE_GOLDEN=1",
        path.display()
    );
    let mut out = if text.is_empty() {
        format!("# Golden bytes of format {CURRENT} (postcard, hex). Never edit a line; see golden.rs.\n")
    } else {
        text.clone()
    };
    for line in missing {
        out.push_str(&line);
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
}
