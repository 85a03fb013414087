//! shoal-raft: the registry's replicated metadata.
//!
//! Split the way openraft's examples split it:
//! - `types`: the openraft type configuration;
//! - `command`: proposals, commands, manifest records and outcomes (what the log carries);
//! - `keys`: every key prefix of the catalogue tree;
//! - `catalog`: the catalogue's layout in sled and its reads;
//! - `audit`: the audit trail of metadata changes, written as each command is applied;
//! - `apply`: the one exhaustive `match` that applies each command through its planner;
//! - `batch`: the writes of one entry, with their keys (for snapshots written meanwhile);
//! - `content`: planning namespaces, blob links, manifests and tags;
//! - `uploads`: open upload sessions, bound to their repository and owner;
//! - `lifecycle`: reverse indexes, leases, tombstones, tag and pull times, retention and
//!   immutability, the garbage collector's state, and the planners that collect;
//! - `mirror`: upstream registries bound to namespaces, mirrored manifests, promised blobs;
//! - `format`: the stored format's version, its golden bytes and the migrations;
//! - `access`: identity records in the catalogue (principals, credentials, role bindings,
//!   signing keys), their keys and their commands;
//! - `tenancy`: organisations and projects;
//! - `repos`: repository summaries, visibility and deletion, usage per namespace;
//! - `federation`: trusted OIDC issuers (workload identity federation);
//! - `log_store`: the Raft log for openraft, its vote and pointers (in sled);
//!   `segments` the entries, in append-only segment files;
//! - `sm`: the state machine (apply, snapshots) over the catalogue;
//! - `snapshot`: snapshot files, their install and the record of the current one;
//!   `snapshot_file` their bytes, written and read as streams of catalogue pairs;
//! - `network`: Raft RPC transport over the plane (`QuicNetwork`), or none for a single node;
//! - `plane`: the QUIC cluster plane with mutual TLS (`tls`: CA and node certificates;
//!   `rpc`: messages);
//! - `node`: `Metadata`, opening and driving this node's member of the group, forwarding;
//! - `cluster`: membership (join, promote, remove), region status, the plane's handler,
//!   read-index catch-up (`read_index`: concurrent callers share rounds);
//! - `handover`: a leader that is being removed hands leadership to another voter first;
//! - `trace`: the hooks that carry a trace context over the plane;
//! - `prevote`: elections start only after a quorum says it would vote (openraft 0.9 has
//!   no pre-vote), so a voter coming back from a partition does not depose the leader;
//! - `voters`: the leader keeps the wanted number of voters, promoting caught-up learners;
//! - `removal`: a node removed without being told finds out from the others and stops
//!   serving.
//!
//! This crate never sees blob bytes or HTTP: members reach one another only over the plane.

// openraft's storage traits fix `StorageError` (224 bytes) as the error type; helpers that
// feed those traits return it as is rather than boxing and unboxing at every call.
#![allow(clippy::result_large_err)]

mod access;
mod apply;
mod audit;
mod batch;
mod catalog;
mod cluster;
mod command;
mod content;
mod error;
mod federation;
pub mod format;
mod handover;
pub mod keys;
mod lifecycle;
mod log_store;
mod mirror;
mod network;
mod node;
pub mod plane;
mod prevote;
mod read_index;
mod removal;
mod repos;
mod segments;
mod sessions;
mod sm;
mod snapshot;
mod snapshot_file;
mod tenancy;
mod trace;
mod types;
mod uploads;
mod voters;

pub use access::{
    CredentialRecord, CredentialScope, Principal, PrincipalKind, Role, RoleBinding, RoleScope,
    SigningKey,
};
pub use audit::AuditEvent;
pub use catalog::{Catalog, NamespaceRecord, Visibility};
pub use cluster::{ClusterStatus, MemberStatus};
pub use command::{Actor, Command, ManifestRecord, Outcome, Proposal, Rejection};
pub use error::{Error, Result};
pub use federation::FederationRecord;
pub use lifecycle::{GcRun, GcStatus, ImmutableTags, KeepRule, Pulled, RetentionPolicy, TagTimes};
pub use mirror::UpstreamRecord;
pub use node::{ClusterConfig, MetaConfig, Metadata, Status};
pub use repos::{RepoSummary, Usage, UsageDelta};
pub use snapshot::StorageStats;
pub use tenancy::{OrgRecord, ProjectRecord};
pub use trace::{set_trace_hooks, TraceHooks};
pub use types::{Member, NodeId};
pub use uploads::UploadRecord;
