//! shoal-origin: the authoritative blob store of a region.
//!
//! Layout of the crate:
//! - `digest`: `Digest` (validated `alg:hex`) and a streaming `Hasher`;
//! - `store`: the `BlobStore` trait, `UploadWriter`, `BlobReader`, `ByteRange`, `UploadId`;
//! - `paths`: the on-disk layout of the filesystem backend, drawn once;
//! - `fs`: `FsStore`, the filesystem backend (the embedded default);
//! - `conformance`: the suite every backend passes;
//! - `error`: the crate's `Error` and `Result`.
//!
//! The origin knows nothing about Raft, tokens, repositories or a node's cache: it stores
//! bytes under digests and runs upload sessions.

pub mod conformance;
mod digest;
mod error;
mod fs;
pub mod paths;
mod store;

pub use digest::{Algorithm, Digest, Hasher};
pub use error::{Error, Result, Source};
pub use fs::FsStore;
pub use store::{BlobReader, BlobStore, ByteRange, UploadId, UploadWriter};
