//! The origin service's HTTP API, shared by `server` and `remote`: the paths, the JSON
//! bodies, and the one table that turns an `Error` into a status and a wire error and back.
//!
//! ```text
//! HEAD   /v1/blobs/{digest}                  200, x-blob-size | 404
//! GET    /v1/blobs/{digest}   [Range]        200/206 stream, x-blob-size, content-range
//! DELETE /v1/blobs/{digest}                  200 {"existed"}
//! GET    /v1/blobs                           200 {"digests"}
//! POST   /v1/uploads                         201 {"id"}
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

use serde::{Deserialize, Serialize};

use crate::{Digest, Error};

pub const BLOB_SIZE_HEADER: &str = "x-blob-size";

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
pub struct Digests {
    pub digests: Vec<String>,
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
