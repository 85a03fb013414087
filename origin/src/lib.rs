//! shoal-origin: the authoritative blob store of a region.
//!
//! Layout of the crate:
//! - `digest`: `Digest` (validated `alg:hex`) and a streaming `Hasher`;
//! - `chunks`: `ByteChunks`, blob bodies as streams of owned chunks, and the file source;
//! - `store`: the `BlobStore` trait, `UploadWriter`, `BlobReader`, `ByteRange`, `UploadId`,
//!   and what listings and purges return (`BlobInfo`, `BlobEntry`, `UploadEntry`, `PurgeReport`);
//! - `paths`: the on-disk layout of the filesystem backend, drawn once;
//! - `fs`: `FsStore`, the filesystem backend (the embedded default), its listings in `fs::listing`;
//! - `s3`: `S3Store`, the S3 backend; its bucket key layout is drawn in its module doc, its
//!   listings and purging in `s3::listing`, incomplete multipart uploads in `s3::multiparts`;
//! - `purge`: the walk over stale sessions both of them share;
//! - `remote`: `RemoteStore`, the client of a separate origin service;
//! - `api`, `server`: the origin service's HTTP API (paths, wire errors) and its server;
//! - `conformance`: the suite every backend passes;
//! - `telemetry`: OpenTelemetry export and the W3C `traceparent` both binaries share;
//! - `error`: the crate's `Error` and `Result`.
//!
//! The origin knows nothing about Raft, tokens, repositories or a node's cache: it stores
//! bytes under digests and runs upload sessions.

pub mod api;
mod chunks;
pub mod conformance;
mod digest;
mod direct;
mod error;
mod fs;
pub mod paths;
mod purge;
mod remote;
mod s3;
pub mod server;
mod store;
pub mod telemetry;
mod writeback;

pub use chunks::{ByteChunks, ColdReader, FILE_CHUNK};
pub use digest::{Algorithm, Digest, Hasher};
pub use direct::SequentialWriter;
pub use error::{Error, Result, Source};
pub use fs::FsStore;
pub use remote::RemoteStore;
pub use s3::{S3Config, S3Store};
pub use store::{
    BlobEntry, BlobInfo, BlobReader, BlobStore, ByteRange, PurgeReport, UploadEntry, UploadId,
    UploadWriter, Whole,
};

/// The region's shared secret: the contents of `file`, else `SHOAL_ORIGIN_SECRET`, trimmed.
/// Both the origin service and its nodes read it this way.
pub fn read_secret(file: Option<&std::path::Path>) -> std::io::Result<String> {
    let secret = match file {
        Some(f) => std::fs::read_to_string(f)?,
        None => std::env::var("SHOAL_ORIGIN_SECRET").unwrap_or_default(),
    };
    Ok(secret.trim().to_string())
}
