//! The origin's one error type. Each variant says whose fault it is (`Source`) so the node
//! can decide between answering the client, retrying, or failing over without reading strings.

use crate::Digest;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where an error came from, as pingora-error's `ErrorSource` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The request was wrong; retrying it unchanged will fail again.
    Client,
    /// The storage behind the origin failed; a retry may help.
    Storage,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedDigest(String),
    #[error("blob {0} is not in the store")]
    BlobNotFound(Digest),
    #[error("upload {0:?} does not exist")]
    UploadNotFound(String),
    #[error("upload is at offset {expected}, but the chunk starts at {got}")]
    UploadOffset { expected: u64, got: u64 },
    #[error("another request is writing to this upload")]
    UploadBusy,
    #[error("content digest is {actual}, not the declared {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The origin service cannot be reached or refused this caller.
    #[error("origin unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    pub fn source_kind(&self) -> Source {
        match self {
            Error::Io(_) | Error::Unavailable(_) => Source::Storage,
            _ => Source::Client,
        }
    }

    pub fn retryable(&self) -> bool {
        matches!(self.source_kind(), Source::Storage)
    }
}
