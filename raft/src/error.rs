//! The metadata crate's error type. `retryable` tells the node whether to answer 503 (the
//! group cannot commit right now) or 500 (something is broken).

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("metadata storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("metadata is corrupt: {0}")]
    Corrupt(String),
    #[error("no leader can commit this write right now: {0}")]
    NoQuorum(String),
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("raft stopped: {0}")]
    Fatal(String),
    #[error("cluster TLS: {0}")]
    Tls(String),
    #[error("cluster peer unreachable: {0}")]
    Unreachable(String),
    #[error("membership change refused: {0}")]
    Membership(String),
    #[error("the peer could not open the stream: {0}")]
    Refused(String),
    #[error("this node is shutting down")]
    Stopping,
}

impl Error {
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::NoQuorum(_) | Error::NotLeader { .. } | Error::Unreachable(_) | Error::Stopping
        )
    }
}
