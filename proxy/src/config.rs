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
}
