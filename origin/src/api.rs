//! The origin service's HTTP API, shared by `server` and `remote`: the paths, the JSON
//! bodies, and the one table that turns an `Error` into a status and a wire error and back.
//!
//! ```text
//! HEAD   /v1/blobs/{digest}                  200, x-blob-size, x-blob-modified | 404
//! GET    /v1/blobs/{digest}   [Range]        200/206 stream, x-blob-size, content-range
//! DELETE /v1/blobs/{digest}                  200 {"existed"}
//! GET    /v1/blobs?after=D&limit=N           200 {"blobs": [{"digest","size","modified"}]}
//! POST   /v1/uploads                         201 {"id"}
//! GET    /v1/uploads?after=ID&limit=N        200 {"uploads": [{"id","size","modified"}]}
//! POST   /v1/uploads/purge?untouched_for=S&now=T
//!                                            200 {"removed","skipped",
//!                                                "bytes_freed","multiparts_aborted"}
//! GET    /v1/uploads/{id}                    200 {"size"}
//! POST   /v1/uploads/{id}/claims?offset=N    201 {"claim"}   exclusive right to append at N
//! PATCH  /v1/claims/{claim}    body          200 {"size"}    append the body, then finish
//! DELETE /v1/claims/{claim}                  204             give the claim up unused
//! POST   /v1/uploads/{id}/commit?digest=D    200 {"size"}
//! DELETE /v1/uploads/{id}                    204
//! GET    /healthz                            200 (the only path without the secret)
//! ```
//!
//! Appending is split into claim + PATCH so that every precondition of `BlobStore::append`
//! (session exists, offset matches, nobody else appending) is answered before any byte is
//! sent, exactly as the in-process backends answer it. Every other path needs
//! `Authorization: Bearer <shared secret>`.
//!
//! The two listings are `BlobStore::list` and `list_uploads`, one page per request. Both
//! parameters are optional; `limit` defaults to and is capped at `MAX_PAGE`, so one answer
//! stays small, and an answer of fewer than `min(limit, MAX_PAGE)` entries is the last page.
//! `after` is validated like any digest or id: a malformed upload id answers as an unknown
//! upload, as it does on every other path. `purge` is `BlobStore::purge_stale`; `/purge`
//! cannot be mistaken for a session, whose ids are UUIDs. Times are unix seconds.

use serde::{Deserialize, Serialize};

use crate::store::{BlobEntry, PurgeReport, UploadEntry, UploadId};
use crate::{Digest, Error};

pub const BLOB_SIZE_HEADER: &str = "x-blob-size";
/// A blob's `BlobInfo::modified`, in unix seconds, on a stat.
pub const BLOB_MODIFIED_HEADER: &str = "x-blob-modified";
/// The most entries one listing answer holds.
pub const MAX_PAGE: usize = 1000;

#[derive(Serialize, Deserialize)]
pub struct Created {
    pub id: String,
}

#[derive(Serialize, Deserialize)]
pub struct Size {
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
pub struct Claim {
    pub claim: String,
}

#[derive(Serialize, Deserialize)]
pub struct Existed {
    pub existed: bool,
}

#[derive(Serialize, Deserialize)]
pub struct BlobPage {
    pub blobs: Vec<ListedBlob>,
}

#[derive(Serialize, Deserialize)]
pub struct ListedBlob {
    pub digest: String,
    pub size: u64,
    pub modified: i64,
}

#[derive(Serialize, Deserialize)]
pub struct UploadPage {
    pub uploads: Vec<ListedUpload>,
}

#[derive(Serialize, Deserialize)]
pub struct ListedUpload {
    pub id: String,
    pub size: u64,
    pub modified: i64,
}

#[derive(Serialize, Deserialize)]
pub struct Purged {
    pub removed: Vec<String>,
    pub skipped: Vec<String>,
    pub bytes_freed: u64,
    pub multiparts_aborted: u64,
}

impl From<BlobEntry> for ListedBlob {
    fn from(e: BlobEntry) -> ListedBlob {
        ListedBlob {
            digest: e.digest.to_string(),
            size: e.size,
            modified: e.modified,
        }
    }
}

impl TryFrom<ListedBlob> for BlobEntry {
    type Error = Error;
    fn try_from(w: ListedBlob) -> Result<BlobEntry, Error> {
        Ok(BlobEntry {
            digest: w.digest.parse()?,
            size: w.size,
            modified: w.modified,
        })
    }
}

impl From<UploadEntry> for ListedUpload {
    fn from(e: UploadEntry) -> ListedUpload {
        ListedUpload {
            id: e.id.to_string(),
            size: e.size,
            modified: e.modified,
        }
    }
}

impl TryFrom<ListedUpload> for UploadEntry {
    type Error = Error;
    fn try_from(w: ListedUpload) -> Result<UploadEntry, Error> {
        Ok(UploadEntry {
            id: w.id.parse()?,
            size: w.size,
            modified: w.modified,
        })
    }
}

impl From<PurgeReport> for Purged {
    fn from(r: PurgeReport) -> Purged {
        let ids = |ids: Vec<UploadId>| ids.iter().map(ToString::to_string).collect();
        Purged {
            removed: ids(r.removed),
            skipped: ids(r.skipped),
            bytes_freed: r.bytes_freed,
            multiparts_aborted: r.multiparts_aborted,
        }
    }
}

impl TryFrom<Purged> for PurgeReport {
    type Error = Error;
    fn try_from(w: Purged) -> Result<PurgeReport, Error> {
        let ids = |ids: Vec<String>| ids.iter().map(|s| s.parse()).collect::<Result<_, _>>();
        Ok(PurgeReport {
            removed: ids(w.removed)?,
            skipped: ids(w.skipped)?,
            bytes_freed: w.bytes_freed,
            multiparts_aborted: w.multiparts_aborted,
        })
    }
}

/// An `Error` as it travels between the origin service and a node.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireError {
    InvalidDigest { value: String },
    UnsupportedDigest { value: String },
    BlobNotFound { digest: String },
    UploadNotFound { id: String },
    UploadOffset { expected: u64, got: u64 },
    UploadBusy,
    DigestMismatch { expected: String, actual: String },
    RangeNotSatisfiable { size: u64 },
    Storage { message: String },
    Unavailable { message: String },
}

/// The table: error → (HTTP status, wire form).
pub fn to_wire(e: &Error) -> (u16, WireError) {
    match e {
        Error::InvalidDigest(v) => (400, WireError::InvalidDigest { value: v.clone() }),
        Error::UnsupportedDigest(v) => (400, WireError::UnsupportedDigest { value: v.clone() }),
        Error::BlobNotFound(d) => (
            404,
            WireError::BlobNotFound {
                digest: d.to_string(),
            },
        ),
        Error::UploadNotFound(id) => (404, WireError::UploadNotFound { id: id.clone() }),
        Error::UploadOffset { expected, got } => (
            416,
            WireError::UploadOffset {
                expected: *expected,
                got: *got,
            },
        ),
        Error::UploadBusy => (409, WireError::UploadBusy),
        Error::DigestMismatch { expected, actual } => (
            400,
            WireError::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            },
        ),
        Error::RangeNotSatisfiable { size } => {
            (416, WireError::RangeNotSatisfiable { size: *size })
        }
        Error::Io(err) => (
            500,
            WireError::Storage {
                message: err.to_string(),
            },
        ),
        Error::Unavailable(m) => (503, WireError::Unavailable { message: m.clone() }),
    }
}

/// The inverse of `to_wire`, for the client.
pub fn from_wire(w: WireError) -> Error {
    let digest = |s: String| s.parse::<Digest>();
    match w {
        WireError::InvalidDigest { value } => Error::InvalidDigest(value),
        WireError::UnsupportedDigest { value } => Error::UnsupportedDigest(value),
        WireError::BlobNotFound { digest: d } => match digest(d) {
            Ok(d) => Error::BlobNotFound(d),
            Err(e) => e,
        },
        WireError::UploadNotFound { id } => Error::UploadNotFound(id),
        WireError::UploadOffset { expected, got } => Error::UploadOffset { expected, got },
        WireError::UploadBusy => Error::UploadBusy,
        WireError::DigestMismatch { expected, actual } => {
            match (digest(expected), digest(actual)) {
                (Ok(expected), Ok(actual)) => Error::DigestMismatch { expected, actual },
                (Err(e), _) | (_, Err(e)) => e,
            }
        }
        WireError::RangeNotSatisfiable { size } => Error::RangeNotSatisfiable { size },
        WireError::Storage { message } => Error::Io(std::io::Error::other(message)),
        WireError::Unavailable { message } => Error::Unavailable(message),
    }
}
