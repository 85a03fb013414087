//! shoal-raft: the registry's replicated metadata.
//!
//! Split the way openraft's examples split it:
//! - `types`: the openraft type configuration;
//! - `command`: commands, manifest records and outcomes (what the log carries);
//! - `catalog`: the catalogue's key layout in sled, reads, and planning a command's writes;
//! - `log_store`: the Raft log and vote in sled;
//! - `sm`: the state machine (apply, snapshots) over the catalogue;
//! - `network`: Raft RPC transport (single-member only until the QUIC plane exists);
//! - `node`: `Metadata`, opening and driving this node's member of the group.
//!
//! This crate never sees blob bytes or HTTP.

// openraft's storage traits fix `StorageError` (224 bytes) as the error type; helpers that
// feed those traits return it as is rather than boxing and unboxing at every call.
#![allow(clippy::result_large_err)]

mod catalog;
mod command;
mod error;
mod log_store;
mod network;
mod node;
mod sm;
mod types;

pub use catalog::{Catalog, NamespaceRecord};
pub use command::{Command, ManifestRecord, Outcome, Rejection};
pub use error::{Error, Result};
pub use node::{MetaConfig, Metadata, Status};
pub use types::NodeId;
