//! Node configuration: one `Config` built from flags and `SHOAL_*` environment variables by
//! `main`, passed whole to `run`.

use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Address of the public listener (`127.0.0.1:5000`; port 0 picks a free port).
    pub listen: String,
    /// Data directory: metadata under `meta/`, the embedded origin under `origin/`.
    pub data: PathBuf,
    pub node_id: u64,
    /// Worker threads of the HTTP front end.
    pub threads: usize,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// A separate origin service; `None` keeps the embedded filesystem origin.
    pub origin: Option<RemoteOrigin>,
    /// Public API URL other members and operators use (default: `http://` + bound address).
    pub advertise_url: Option<String>,
    /// Raft log entries between metadata snapshots; the log is purged behind each one.
    pub snapshot_every: u64,
    /// Bytes of sled's page cache for the metadata.
    pub metadata_cache: u64,
    /// Blob cache directory (default `<data>/cache`). With the embedded origin it holds only
    /// mirror fills under way: the origin is already this node's own disk.
    pub cache_dir: Option<PathBuf>,
    pub cache_max_bytes: u64,
    /// `None`: the single-node default without a cluster plane.
    pub cluster: Option<Cluster>,
    pub edge: crate::edge::EdgeConfig,
    /// The region this cluster serves (`nl-01`); every namespace is created in it.
    pub region: String,
    /// How often the usage counted here is added to the catalogue.
    pub usage_interval: std::time::Duration,
    /// How long a console session lasts after signing in.
    pub console_session: std::time::Duration,
    /// Serve HTTPS on the public listener; plain HTTP when `None`.
    pub tls: Option<crate::http::TlsFiles>,
    /// The URL clients reach the registry at; default: the advertise URL, else the bound
    /// address (`Config::public_url`).
    pub public_url: Option<String>,
    /// `/metrics` needs credentials (a role on the home organisation).
    pub metrics_auth: bool,
    /// The node's own audit events (`--audit-log`, `--audit-pulls`).
    pub audit: crate::audit::AuditConfig,
    /// Upload sessions one principal may hold open at once.
    pub max_open_uploads: u32,
    /// How long an upstream registry may take to answer (mirrors).
    pub upstream_timeout: std::time::Duration,
    /// Garbage collection, retention and upload purging (run by the leader).
    pub lifecycle: crate::lifecycle::LifecycleConfig,
}

/// Settings of a node that is part of a multi-node region.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// UDP address of the QUIC cluster plane.
    pub listen: std::net::SocketAddr,
    /// Cluster-plane address peers dial, if not the bound one.
    pub advertise: Option<String>,
    /// Directory with this node's `ca.pem`, `node.pem`, `node-key.pem`.
    pub tls_dir: PathBuf,
    /// Start a new region with this node as its first voter.
    pub bootstrap: bool,
    /// API URL of any member of the region to join.
    pub join: Option<String>,
    /// Voters the region should have; further nodes stay learners.
    pub voters: usize,
    /// How long a voter may stay silent before a learner replaces it (`None`: never).
    pub replace_dead_voter_after: Option<std::time::Duration>,
}

#[derive(Clone)]
pub struct RemoteOrigin {
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for RemoteOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteOrigin")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn meta_dir(&self) -> PathBuf {
        self.data.join("meta")
    }

    pub fn origin_dir(&self) -> PathBuf {
        self.data.join("origin")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.data.join("cache"))
    }
}
