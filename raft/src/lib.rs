//! shoal-raft: the registry's replicated metadata.
//!
//! Split the way openraft's examples split it:
//! - `types`: the openraft type configuration;
//! - `command`: commands, manifest records and outcomes (what the log carries);
//! - `catalog`: the catalogue's key layout in sled, reads, and planning a command's writes;
//! - `access`: identity records in the catalogue (principals, credentials, role bindings,
//!   signing keys), their keys and their commands;
//! - `tenancy`: organisations and projects;
//! - `repos`: repository summaries, visibility and deletion, usage per namespace;
//! - `federation`: trusted OIDC issuers (workload identity federation);
//! - `log_store`: the Raft log and vote in sled;
//! - `sm`: the state machine (apply, snapshots) over the catalogue;
//! - `network`: Raft RPC transport over the plane (`QuicNetwork`), or none for a single node;
//! - `plane`: the QUIC cluster plane with mutual TLS (`tls`: CA and node certificates;
//!   `rpc`: messages);
//! - `node`: `Metadata`, opening and driving this node's member of the group, forwarding;
//! - `cluster`: membership (join, promote, remove), region status, the plane's handler;
//! - `handover`: a leader that is being removed hands leadership to another voter first.
//!
//! This crate never sees blob bytes or HTTP: members reach one another only over the plane.

// openraft's storage traits fix `StorageError` (224 bytes) as the error type; helpers that
// feed those traits return it as is rather than boxing and unboxing at every call.
#![allow(clippy::result_large_err)]

mod access;
mod catalog;
mod cluster;
mod command;
mod error;
mod federation;
mod handover;
mod log_store;
mod network;
mod node;
pub mod plane;
mod repos;
mod sm;
mod tenancy;
mod types;

pub use access::{
    CredentialRecord, CredentialScope, Principal, PrincipalKind, Role, RoleBinding, RoleScope,
    SigningKey,
};
pub use catalog::{Catalog, NamespaceRecord, Visibility};
pub use cluster::{ClusterStatus, MemberStatus};
pub use command::{Command, ManifestRecord, Outcome, Rejection};
pub use error::{Error, Result};
pub use federation::FederationRecord;
pub use node::{ClusterConfig, MetaConfig, Metadata, Status};
pub use repos::{RepoSummary, Usage, UsageDelta};
pub use tenancy::{OrgRecord, ProjectRecord};
pub use types::{Member, NodeId};
