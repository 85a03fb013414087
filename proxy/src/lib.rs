//! shoal-proxy: the Shoal node.
//!
//! - `node::run` starts a node from a `config::Config` (what `shoal serve` calls);
//! - `http`: Pingora front end, the only module that touches Pingora types;
//! - `wire`: request/reply types handlers use;
//! - `registry`: the OCI Distribution API (`routes`, `blobs`, `uploads`, `manifests`,
//!   `discovery`, manifest parsing, range headers);
//! - `api`: the management API under `/api/v1`;
//! - `ui`: the web console under `/ui/` (server-rendered pages over the same checks);
//! - `cache`: the edge blob cache (LRU on disk, single-flight fills, peer fetch);
//! - `metrics`: Prometheus metric names, recorder and `/metrics` text;
//! - `auth`: the authorisation seam (`Gate`, `Need`, the policy, tokens, OIDC federation);
//! - `names`: validated namespace, repository, tag and other names;
//! - `usage`: pulls, pushes and bytes served per namespace, batched into Raft;
//! - `edge`: anonymous rate limit per IP, CORS, security headers; `limits`: the rate
//!   limiter it and the sign-in limit share;
//! - `mirror`: namespaces that mirror upstream registries (manifests on demand, blobs
//!   through the cache's mirror fills, the upstream client with its token flow);
//! - `lifecycle`: the leader's jobs: garbage collection, retention, upload purging;
//! - `audit`: the node's own audit events (failed sign-ins, tokens, pulls) as JSON lines;
//!   the replicated trail of metadata changes is `shoal_raft::AuditEvent`;
//! - `errors`: `ApiError` and the one code → status table;
//! - `cli`: the operator commands of the `shoal` binary;
//! - `malloc`: glibc arena limit for many concurrent large bodies;
//! - `logging`, `config`; `config_file`: the TOML file `serve --config` reads, layered
//!   under flags and environment.

/// The version and the git commit this binary was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SHOAL_GIT_COMMIT"),
    ")"
);

pub mod api;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod edge;
pub mod errors;
pub mod forwarded;
pub mod http;
pub mod lifecycle;
pub mod limits;
pub mod log_lines;
pub mod logging;
pub mod malloc;
pub mod memo;
pub mod metrics;
pub mod mirror;
pub mod names;
pub mod node;
pub mod registry;
pub mod ui;
pub mod usage;
pub mod wire;

#[cfg(test)]
mod fuzz_tests;
