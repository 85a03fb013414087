//! What travels through the Raft log: proposals (a command, who proposed it and the
//! request it came from) and their outcomes.
//!
//! Commands carry everything needed to apply them deterministically (timestamps and ids are
//! chosen by the node that proposes, never read from the clock while applying). Digests and
//! names arrive already validated by the node; the state machine still re-checks every
//! precondition that concurrent writes could invalidate (namespace exists, referenced blobs
//! linked) so that the answer a client gets is linearizable. Re-applying a command is
//! harmless.
//!
//! These types are a stored format (the Raft log, snapshots and the plane carry them):
//! `format` holds their version, the golden bytes of every variant and the migrations. A new
//! variant goes at the end of an enum, and any other change needs a new format version.

use serde::{Deserialize, Serialize};

use crate::access::{
    CredentialRecord, Principal, PrincipalKind, RoleBinding, RoleScope, SigningKey,
};
use crate::catalog::{NamespaceRecord, Visibility};
use crate::federation::FederationRecord;
use crate::lifecycle::{GcRun, ImmutableTags, Pulled, RetentionPolicy};
use crate::mirror::UpstreamRecord;
use crate::repos::UsageDelta;
use crate::tenancy::{OrgRecord, ProjectRecord};
use crate::uploads::UploadRecord;

/// Who proposed a command: what the audit trail records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// A user or service account, with the credential or federated identity it acted
    /// through (`None`: signed in with its password).
    Principal { name: String, via: Option<String> },
    /// The cluster itself: a job (`usage`, `bootstrap`, `gc`, …) or a migration.
    System(String),
}

/// One entry of the Raft log: a command and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub by: Actor,
    /// The id of the HTTP request that caused it (`X-Request-Id`), or the job's run.
    pub request_id: String,
    pub command: Command,
    /// When it was proposed: milliseconds since the Unix epoch on the proposing node's
    /// clock (0: proposed before format 3 recorded it). The audit trail's time.
    pub at: i64,
    /// The address of the client whose request caused it.
    pub from: Option<String>,
}

impl Proposal {
    /// A proposal made now.
    pub fn new(by: Actor, request_id: impl Into<String>, command: Command) -> Proposal {
        Proposal {
            by,
            request_id: request_id.into(),
            command,
            at: chrono::Utc::now().timestamp_millis(),
            from: None,
        }
    }

    /// The same, caused by a request from `client`.
    pub fn from_client(mut self, client: Option<std::net::IpAddr>) -> Proposal {
        self.from = client.map(|c| c.to_string());
        self
    }

    /// A command of the cluster's own job `job`.
    pub fn system(job: &str, command: Command) -> Proposal {
        Proposal::new(Actor::System(job.into()), "", command)
    }
}

/// A command's precondition held and its writes are planned.
pub(crate) fn done() -> crate::Result<Outcome> {
    Ok(Outcome::Done)
}

/// A command changes nothing because `r`.
pub(crate) fn rejected(r: Rejection) -> crate::Result<Outcome> {
    Ok(Outcome::Rejected(r))
}

/// A change to the registry catalogue. (`CommandKind` names the variants, so the golden
/// test can check that every one has its fixture.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, strum::EnumDiscriminants)]
#[strum_discriminants(name(CommandKind), derive(strum::EnumIter, strum::IntoStaticStr))]
pub enum Command {
    /// Creates a namespace in its organisation or project. Names are unique in the region
    /// (the cluster), because an image path names the namespace alone.
    CreateNamespace {
        record: NamespaceRecord,
    },
    SetVisibility {
        namespace: String,
        visibility: Visibility,
    },
    /// Removes the namespace with its repositories (their own visibility too), tags,
    /// manifests, blob links, usage and role bindings; blobs no longer linked anywhere become
    /// collectable.
    DeleteNamespace {
        name: String,
    },
    /// A new organisation, with `owner` bound as its Owner.
    CreateOrganisation {
        org: OrgRecord,
        owner: String,
    },
    CreateProject {
        project: ProjectRecord,
    },
    /// Removes an empty project and the role bindings on it.
    DeleteProject {
        organisation: String,
        name: String,
    },
    /// Sets (`Some`) or clears (`None`: inherit the namespace's) a repository's visibility.
    SetRepositoryVisibility {
        repo: String,
        visibility: Option<Visibility>,
    },
    /// Removes a repository with its tags, manifests and blob links.
    DeleteRepository {
        repo: String,
    },
    /// Adds a node's pull, push and transfer counts since its last report.
    RecordUsage {
        deltas: Vec<UsageDelta>,
    },
    /// Trusts an OIDC issuer's tokens that match the record, acting as its service account.
    CreateFederation {
        federation: FederationRecord,
    },
    DeleteFederation {
        name: String,
    },
    /// First start of a new cluster: the organisation, its Owner and the first signing key.
    /// Rejected once any organisation exists, so only one bootstrap ever takes effect.
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
    /// Replaces a credential's secret (a pull secret hands out a fresh one).
    RotateCredentialSecret {
        id: String,
        secret_hash: String,
    },
    /// Grants a role, replacing the principal's role at the same scope.
    Bind {
        binding: RoleBinding,
    },
    Unbind {
        principal: String,
        scope: RoleScope,
    },
    /// Adds `key`, which signs from now on, and removes every key that was replaced more
    /// than `retire_after` seconds before `key.created_at` (no token it signed is still valid).
    RotateSigningKey {
        key: SigningKey,
        retire_after: i64,
    },
    /// Records that a verified blob of `size` bytes now belongs to `repo` (creating the repo),
    /// and closes the upload session it was finished from, if any.
    LinkBlob {
        repo: String,
        digest: String,
        size: u64,
        upload: Option<String>,
        /// When: the link's lease starts here (see `lifecycle`).
        at: i64,
    },
    UnlinkBlob {
        repo: String,
        digest: String,
    },
    /// Stores a manifest and, when `tag` is set, points the tag at it.
    PutManifest {
        repo: String,
        manifest: ManifestRecord,
        tag: Option<String>,
    },
    DeleteTag {
        repo: String,
        tag: String,
    },
    /// Removes a manifest and every tag that points at it.
    DeleteManifest {
        repo: String,
        digest: String,
    },
    /// Removes a user or service account with its credentials, role bindings and the
    /// federated identities acting as it; refused for an organisation's last Owner. The
    /// organisation and kind the proposer saw must still be the principal's, so a namesake
    /// made meanwhile is not the one deleted.
    DeletePrincipal {
        name: String,
        organisation: String,
        kind: PrincipalKind,
    },
    /// Removes an organisation that holds no projects or namespaces, with its principals
    /// (as `DeletePrincipal` does) and every binding on it; never the home organisation.
    DeleteOrganisation {
        name: String,
    },
    /// Records an upload session opened in the origin, bound to its repository and to the
    /// principal that opened it; refused when that principal holds `limit` open already.
    OpenUpload {
        id: String,
        upload: UploadRecord,
        limit: u32,
    },
    /// Forgets upload sessions (cancelled, or purged as abandoned).
    CloseUploads {
        ids: Vec<String>,
    },
    /// Renews the leases of blob links and manifests of `repo` that a pusher just used (a
    /// HEAD before a push), so the garbage collector leaves them for another grace period.
    TouchContent {
        repo: String,
        digests: Vec<String>,
        at: i64,
    },
    /// Adds the pulls a node counted since its last report (times per manifest and tag).
    RecordPulls {
        pulls: Vec<Pulled>,
    },
    /// Removes those of `digests` (manifests of `repo`) that are still collectable: untagged,
    /// listed by no manifest that stays, not a referrer of a manifest that stays, and
    /// untouched for `grace` seconds before `now`.
    CollectManifests {
        repo: String,
        digests: Vec<String>,
        now: i64,
        grace: i64,
    },
    /// Unlinks those of `digests` from `repo` that no manifest there lists and that were
    /// untouched for `grace` seconds before `now`.
    CollectBlobs {
        repo: String,
        digests: Vec<String>,
        now: i64,
        grace: i64,
    },
    /// Marks each digest that no repository links as being deleted from the origin; no link
    /// to it is committed until `ForgetDigests`.
    CondemnDigests {
        digests: Vec<String>,
        now: i64,
    },
    /// The bytes of these condemned digests are gone from the origin.
    ForgetDigests {
        digests: Vec<String>,
    },
    /// Sets (`Some`) or removes a namespace's retention policy.
    SetRetention {
        namespace: String,
        policy: Option<RetentionPolicy>,
    },
    SetImmutableTags {
        namespace: String,
        rules: ImmutableTags,
    },
    /// Deletes the tags of `repo` that retention found no rule keeps, each only while it
    /// still points at the digest retention saw and is not immutable.
    RetainTags {
        repo: String,
        delete: Vec<(String, String)>,
    },
    /// Asks the leader's garbage collector for a run.
    RequestGc {
        at: i64,
    },
    /// The garbage collector's progress or result.
    RecordGc {
        run: GcRun,
    },
    /// Binds a namespace to an upstream registry it mirrors.
    CreateUpstream {
        upstream: UpstreamRecord,
    },
    /// Removes a binding; the mirrored content stays.
    DeleteUpstream {
        name: String,
    },
    /// Stores a manifest fetched from the upstream (`fetched_at` also marks `tag` fresh),
    /// promising the blobs it lists with their sizes until their bytes are fetched.
    MirrorManifest {
        repo: String,
        manifest: ManifestRecord,
        tag: Option<String>,
        blobs: Vec<(String, u64)>,
        fetched_at: i64,
    },
    /// The upstream still gives `tag` the digest `digest`.
    TagChecked {
        repo: String,
        tag: String,
        digest: String,
        at: i64,
    },
    /// A console session signed out: refused by every node until `until`, its expiry.
    EndSession {
        id: String,
        until: i64,
        at: i64,
    },
    /// Changes a namespace's description (`None` removes it).
    SetNamespaceDescription {
        namespace: String,
        description: Option<String>,
    },
    /// Removes audit events older than `before` (milliseconds since the Unix epoch), the
    /// oldest first and a bounded number per command.
    ExpireAudit {
        before: i64,
    },
}

/// A stored manifest: the exact bytes the client pushed plus what was parsed out of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub digest: String,
    pub media_type: String,
    /// As bytes, not a sequence: postcard writes both the same way (a length, then the
    /// bytes; `golden.rs` holds it to that), but reading a sequence visits every byte on
    /// every manifest GET.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// Blobs (config, layers) the manifest needs in the same repository.
    pub blobs: Vec<String>,
    /// Child manifests (of an index) the manifest needs in the same repository.
    pub manifests: Vec<String>,
    pub subject: Option<String>,
    /// `artifactType`, or for an image manifest without one, its config media type.
    pub artifact_type: Option<String>,
    /// Annotations as JSON text, copied into referrers descriptors.
    pub annotations: Option<String>,
    pub pushed_at: i64,
}

/// How the state machine answered a command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    /// The command changed nothing because its precondition did not hold.
    Rejected(Rejection),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("namespace {0:?} already exists")]
    NamespaceExists(String),
    #[error("namespace {0:?} does not exist")]
    NamespaceUnknown(String),
    #[error("blob {0} is not in the repository")]
    BlobUnknown(String),
    #[error("manifest {0} is not in the repository")]
    ManifestUnknown(String),
    #[error("the manifest references blob {0}, which is not in the repository")]
    ReferencedBlobUnknown(String),
    #[error("the index references manifest {0}, which is not in the repository")]
    ReferencedManifestUnknown(String),
    #[error("tag {0:?} is not in the repository")]
    TagUnknown(String),
    #[error("the registry is already initialised")]
    AlreadyInitialised,
    #[error("principal {0:?} already exists")]
    PrincipalExists(String),
    #[error("principal {0:?} does not exist")]
    PrincipalUnknown(String),
    #[error("a credential with login {0:?} already exists")]
    CredentialExists(String),
    #[error("credential {0:?} does not exist")]
    CredentialUnknown(String),
    #[error("credential {0:?} is revoked")]
    CredentialRevoked(String),
    #[error("{0} does not exist")]
    ScopeUnknown(String),
    #[error("no such role binding")]
    BindingUnknown,
    #[error("organisation {0:?} already exists")]
    OrganisationExists(String),
    #[error("organisation {0:?} does not exist")]
    OrganisationUnknown(String),
    #[error("project {0:?} already exists in the organisation")]
    ProjectExists(String),
    #[error("project {0:?} does not exist")]
    ProjectUnknown(String),
    #[error("project {0:?} still holds namespaces; delete them first")]
    ProjectNotEmpty(String),
    #[error("organisation {0:?} still holds projects or namespaces; delete them first")]
    OrganisationNotEmpty(String),
    #[error("organisation {0:?} runs the cluster and cannot be deleted")]
    HomeOrganisation(String),
    #[error("repository {0:?} does not exist")]
    RepositoryUnknown(String),
    #[error("federated identity {0:?} already exists")]
    FederationExists(String),
    #[error("federated identity {0:?} does not exist")]
    FederationUnknown(String),
    #[error("{0:?} is not a service account")]
    NotAServiceAccount(String),
    #[error("the last Owner of organisation {0:?} must stay; bind another Owner first")]
    LastOwner(String),
    #[error("{0} upload sessions are open already; finish or cancel some first")]
    TooManyUploads(u32),
    #[error("tag {tag:?} is immutable (rule {rule:?})")]
    ImmutableTag { tag: String, rule: String },
    #[error("blob {0} is being garbage-collected; push it again in a moment")]
    BlobBeingCollected(String),
    #[error("upstream {0:?} already exists, or already serves that namespace or host")]
    UpstreamExists(String),
    #[error("upstream {0:?} does not exist")]
    UpstreamUnknown(String),
    #[error("namespace {0:?} mirrors no upstream")]
    NotAMirror(String),
}
