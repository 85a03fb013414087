//! Format 1, frozen: the types as main wrote them before formats had versions, for reading
//! old data directories and logs, and the step that turns them into format 2.
//!
//! Nothing here may change: these definitions *are* the format (postcard is not
//! self-describing, so the field order and the variant order are the bytes). They are
//! copies, not the live types, so a change to a live type cannot change how old data reads;
//! `tests/fixtures/v1-single` (a directory written by format-1 main) holds them to it.

use std::collections::BTreeMap;
use std::io::Cursor;

use openraft::{Entry, EntryPayload};
use serde::{Deserialize, Serialize};

use super::v2::{Proposal, V2Config};
use super::{derived_uid, Lookup, Pair, Step};
use crate::command::{Actor, Outcome};
use crate::keys;
use crate::types::{Member, NodeId};
use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub name: String,
    pub organisation: String,
    pub project: Option<String>,
    pub region: String,
    pub description: Option<String>,
    pub created_at: i64,
    pub visibility: Visibility,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Visibility {
    Private,
    Public,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub name: String,
    pub description: Option<String>,
    pub home: bool,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectRecord {
    pub organisation: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub pulls: u64,
    pub pushes: u64,
    pub bytes_out: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDelta {
    pub namespace: String,
    pub usage: Usage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialScope {
    All,
    Pull,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FederationRecord {
    pub name: String,
    pub issuer: String,
    pub audience: String,
    pub conditions: BTreeMap<String, String>,
    pub service_account: String,
    pub scope: CredentialScope,
    pub namespace: Option<String>,
    pub created_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrincipalKind {
    User,
    ServiceAccount,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
    pub kind: PrincipalKind,
    pub organisation: String,
    pub password_hash: Option<String>,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CredentialRecord {
    pub id: String,
    pub name: String,
    pub login: String,
    pub secret_hash: String,
    pub owner: String,
    pub scope: CredentialScope,
    pub namespace: Option<String>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Reader,
    Developer,
    Admin,
    Owner,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoleScope {
    Organisation(String),
    Project {
        organisation: String,
        project: String,
    },
    Namespace(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleBinding {
    pub principal: String,
    pub scope: RoleScope,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SigningKey {
    pub kid: String,
    pub private_pem: String,
    pub public_pem: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub blobs: Vec<String>,
    pub manifests: Vec<String>,
    pub subject: Option<String>,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
    pub pushed_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    CreateNamespace {
        record: NamespaceRecord,
    },
    SetVisibility {
        namespace: String,
        visibility: Visibility,
    },
    DeleteNamespace {
        name: String,
    },
    CreateOrganisation {
        org: OrgRecord,
        owner: String,
    },
    CreateProject {
        project: ProjectRecord,
    },
    DeleteProject {
        organisation: String,
        name: String,
    },
    SetRepositoryVisibility {
        repo: String,
        visibility: Option<Visibility>,
    },
    DeleteRepository {
        repo: String,
    },
    RecordUsage {
        deltas: Vec<UsageDelta>,
    },
    CreateFederation {
        federation: FederationRecord,
    },
    DeleteFederation {
        name: String,
    },
    Bootstrap {
        org: OrgRecord,
        admin: Principal,
        key: SigningKey,
    },
    CreatePrincipal {
        principal: Principal,
    },
    CreateCredential {
        credential: CredentialRecord,
    },
    RevokeCredential {
        id: String,
        revoked_at: i64,
    },
    RotateCredentialSecret {
        id: String,
        secret_hash: String,
    },
    Bind {
        binding: RoleBinding,
    },
    Unbind {
        principal: String,
        scope: RoleScope,
    },
    RotateSigningKey {
        key: SigningKey,
        retire_after: i64,
    },
    LinkBlob {
        repo: String,
        digest: String,
        size: u64,
    },
    UnlinkBlob {
        repo: String,
        digest: String,
    },
    PutManifest {
        repo: String,
        manifest: ManifestRecord,
        tag: Option<String>,
    },
    DeleteTag {
        repo: String,
        tag: String,
    },
    DeleteManifest {
        repo: String,
        digest: String,
    },
    DeletePrincipal {
        name: String,
        organisation: String,
        kind: PrincipalKind,
    },
    DeleteOrganisation {
        name: String,
    },
}

openraft::declare_raft_types!(
    /// The Raft types of format 1: its log entries carried a bare `Command`.
    pub V1Config:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<V1Config>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<V1Config>,
);

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("format 1 {what}: {e}"))
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| corrupt(what, e))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("records serialise")
}

/// Re-reads a value whose encoding format 2 kept as it was.
fn same<A: Serialize, B: for<'de> Deserialize<'de>>(what: &str, a: &A) -> Result<B> {
    decode(what, &encode(a))
}

fn principal(p: Principal) -> Result<crate::Principal> {
    Ok(crate::Principal {
        uid: derived_uid(&p.name, p.created_at),
        name: p.name,
        kind: same("principal kind", &p.kind)?,
        organisation: p.organisation,
        password_hash: p.password_hash,
        created_at: p.created_at,
    })
}

fn federation(f: FederationRecord) -> Result<crate::FederationRecord> {
    Ok(crate::FederationRecord {
        uid: derived_uid(&f.name, f.created_at),
        name: f.name,
        issuer: f.issuer,
        audience: f.audience,
        conditions: f.conditions,
        service_account: f.service_account,
        scope: same("credential scope", &f.scope)?,
        namespace: f.namespace,
        created_at: f.created_at,
    })
}

fn namespace(n: NamespaceRecord) -> Result<crate::NamespaceRecord> {
    Ok(crate::NamespaceRecord {
        name: n.name,
        organisation: n.organisation,
        project: n.project,
        region: n.region,
        description: n.description,
        created_at: n.created_at,
        visibility: same("visibility", &n.visibility)?,
        immutable: Default::default(),
    })
}

fn command(c: Command) -> Result<crate::Command> {
    use crate::Command as C2;
    Ok(match c {
        Command::CreateNamespace { record } => C2::CreateNamespace {
            record: namespace(record)?,
        },
        Command::Bootstrap { org, admin, key } => C2::Bootstrap {
            org: same("organisation", &org)?,
            admin: principal(admin)?,
            key: same("signing key", &key)?,
        },
        Command::CreatePrincipal { principal: p } => C2::CreatePrincipal {
            principal: principal(p)?,
        },
        Command::CreateFederation { federation: f } => C2::CreateFederation {
            federation: federation(f)?,
        },
        // A link made before leases counts as old: collectable once nothing lists it.
        Command::LinkBlob { repo, digest, size } => C2::LinkBlob {
            repo,
            digest,
            size,
            upload: None,
            at: 0,
        },
        // Every other variant kept its index and its fields' encoding.
        other => same("command", &other)?,
    })
}

/// Format 1 → format 2.
pub struct ToV2;

/// `<repo>` and the part after it of a key `<prefix><repo>\0<rest>`.
fn repo_and_rest<'a>(key: &'a [u8], prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = std::str::from_utf8(&key[prefix.len()..]).ok()?;
    rest.split_once('\0')
}

impl Step for ToV2 {
    fn catalog_pairs(&self, old: Lookup, key: &[u8], value: &[u8]) -> Result<Vec<Pair>> {
        let one = |v: Vec<u8>| Ok(vec![(key.to_vec(), v)]);
        let starts = |prefix: &str| key.starts_with(prefix.as_bytes());
        if starts(keys::PRINCIPAL) {
            return one(encode(&principal(decode("principal", value)?)?));
        }
        if starts(keys::FEDERATION) {
            return one(encode(&federation(decode("federation", value)?)?));
        }
        if starts(keys::NAMESPACE) {
            return one(encode(&namespace(decode("namespace", value)?)?));
        }
        let mut pairs = vec![(key.to_vec(), value.to_vec())];
        // Format 2 keeps reverse indexes beside what they index: build them.
        if starts(keys::BLOB_LINK) {
            if let Some((repo, digest)) = repo_and_rest(key, keys::BLOB_LINK) {
                pairs.push((keys::key(keys::LINKED_IN, &[digest, repo]), Vec::new()));
            }
        } else if starts(keys::MANIFEST) {
            if let Some((repo, digest)) = repo_and_rest(key, keys::MANIFEST) {
                let m: ManifestRecord = decode("manifest", value)?;
                for r in m.blobs.iter().chain(&m.manifests) {
                    pairs.push((
                        keys::key(keys::REFERENCED_BY, &[repo, r, digest]),
                        Vec::new(),
                    ));
                }
                pairs.push((
                    keys::key(keys::LEASE, &[repo, digest]),
                    encode(&m.pushed_at),
                ));
            }
        } else if starts(keys::TAG) {
            if let Some((repo, tag)) = repo_and_rest(key, keys::TAG) {
                let digest = String::from_utf8_lossy(value).into_owned();
                pairs.push((
                    keys::key(keys::TAGGED_AS, &[repo, &digest, tag]),
                    Vec::new(),
                ));
                // The tag was last pushed no later than its manifest was.
                let pushed_at = match old(&keys::key(keys::MANIFEST, &[repo, &digest]))? {
                    Some(m) => decode::<ManifestRecord>("manifest", &m)?.pushed_at,
                    None => 0,
                };
                let times = crate::TagTimes {
                    pushed_at,
                    pulled_at: None,
                };
                pairs.push((keys::key(keys::TAG_TIMES, &[repo, tag]), encode(&times)));
            }
        }
        Ok(pairs)
    }

    fn log_entry(&self, value: &[u8]) -> Result<Vec<u8>> {
        let old: Entry<V1Config> = decode("log entry", value)?;
        let payload = match old.payload {
            EntryPayload::Blank => EntryPayload::Blank,
            EntryPayload::Membership(m) => EntryPayload::Membership(m),
            EntryPayload::Normal(c) => EntryPayload::Normal(Proposal {
                by: Actor::System("format-1".into()),
                request_id: String::new(),
                command: command(c)?,
            }),
        };
        let new: Entry<V2Config> = Entry {
            log_id: old.log_id,
            payload,
        };
        Ok(encode(&new))
    }

    fn snapshot_data(&self, data: &[u8]) -> Result<Vec<u8>> {
        // A format-1 snapshot is one value holding the whole catalogue (as format 1 built
        // them); it is converted as a whole, its pairs sorted again since indexes were added.
        let pairs: Vec<Pair> = decode("snapshot", data)?;
        let by_key: BTreeMap<&[u8], &[u8]> = pairs
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        let old = |k: &[u8]| -> Result<Option<Vec<u8>>> { Ok(by_key.get(k).map(|v| v.to_vec())) };
        let mut converted = BTreeMap::new();
        for (k, v) in &pairs {
            if k.starts_with(b"~") {
                converted.insert(k.clone(), v.clone());
                continue;
            }
            for (k, v) in self.catalog_pairs(&old, k, v)? {
                converted.insert(k, v);
            }
        }
        Ok(encode(&converted.into_iter().collect::<Vec<Pair>>()))
    }
}
