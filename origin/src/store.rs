//! The `BlobStore` trait: the one seam between the registry and where blob bytes live.
//!
//! Shaped like distribution's `StorageDriver`, but at the level of digests and upload
//! sessions rather than paths: stat, ranged read, resumable uploads that are verified on
//! commit, delete, list. It never hears of repositories, tags, tokens or Raft. Upload sessions
//! live here (not in a node) so a push may span nodes. Every backend passes `conformance`.
//!
//! What garbage collection needs is here too, and no more: paged listings of blobs and of
//! upload sessions with their sizes and times, and `purge_stale`. Listings are paged by a
//! cursor (`after`) rather than an offset so that a page stays right while blobs come and go,
//! and so that no backend has to hold a whole store's listing at once. Times are unix seconds
//! of the storage's own clock (file mtimes, S3 `LastModified`); what "last written" means for
//! each backend is said in its module doc. The store decides nothing about which blobs are
//! garbage: it does not know which are referenced.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncRead;

use crate::chunks::ByteChunks;
use crate::{Digest, Error, Result};

/// An inclusive-exclusive byte range `[start, end)` inside a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The part of a blob of `size` bytes that `requested` asks for (all of it when `None`),
    /// with the end clamped to the size. A start at or past the end is not satisfiable;
    /// every backend answers ranges through this one rule.
    pub fn within(requested: Option<ByteRange>, size: u64) -> Result<ByteRange> {
        match requested {
            None => Ok(ByteRange {
                start: 0,
                end: size,
            }),
            Some(r) if r.start < size && r.start < r.end => Ok(ByteRange {
                start: r.start,
                end: r.end.min(size),
            }),
            Some(_) => Err(Error::RangeNotSatisfiable { size }),
        }
    }
}

/// A blob opened for reading: its total size, the range being read and the bytes.
pub struct BlobReader {
    pub size: u64,
    pub range: ByteRange,
    pub body: ByteChunks,
    /// The complete local file `body` reads, when there is one: a sender that copies
    /// straight from a file to a socket (sendfile) may send `range` of it instead of polling
    /// `body`.
    pub file: Option<std::fs::File>,
    /// For a body still arriving (a cache fill): the file it is being written to, and what
    /// says when that file holds every byte. A sender that copies from files may switch to
    /// it part way, once it does.
    pub filling: Option<(std::fs::File, Whole)>,
}

/// Says whether a file being written holds every byte of its blob yet (and they were
/// verified); once it says so it always does.
pub type Whole = Box<dyn Fn() -> bool + Send + Sync>;

impl BlobReader {
    /// A body that is only a stream (a remote or object-store read).
    pub fn streamed(size: u64, range: ByteRange, body: ByteChunks) -> BlobReader {
        BlobReader {
            size,
            range,
            body,
            file: None,
            filling: None,
        }
    }

    /// A body still arriving, read from `body`, while `file` is being written with the same
    /// bytes; `whole` says when it holds them all.
    pub fn filling(
        size: u64,
        range: ByteRange,
        body: ByteChunks,
        file: std::fs::File,
        whole: Whole,
    ) -> BlobReader {
        BlobReader {
            filling: Some((file, whole)),
            ..BlobReader::streamed(size, range, body)
        }
    }

    /// `range` of a complete local file of `size` bytes: read in 1 MiB pieces
    /// (`file_chunks`), and offered as the file itself to senders that copy from it.
    pub fn from_file(file: std::fs::File, size: u64, range: ByteRange) -> Result<BlobReader> {
        let local = file.try_clone()?;
        Ok(BlobReader {
            size,
            range,
            body: crate::chunks::file_chunks(file, range.start, range.end),
            file: Some(local),
            filling: None,
        })
    }

    /// The body as an `AsyncRead`, for callers that copy it somewhere.
    pub fn into_async_read(self) -> impl AsyncRead + Send + Unpin {
        tokio_util::io::StreamReader::new(self.body)
    }
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader")
            .field("size", &self.size)
            .field("range", &self.range)
            .finish()
    }
}

/// Identifies an upload session. Only ever a UUID, so it is safe inside paths and URLs. Ordered
/// as its string form: the UUID's bytes in order are its lowercase hex digits in order.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(uuid::Uuid);

impl UploadId {
    pub fn new() -> UploadId {
        UploadId(uuid::Uuid::new_v4())
    }
}

impl Default for UploadId {
    fn default() -> Self {
        UploadId::new()
    }
}

impl FromStr for UploadId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        // Only the canonical hyphenated form: one spelling per session.
        match uuid::Uuid::parse_str(s) {
            Ok(u) if u.hyphenated().to_string() == s => Ok(UploadId(u)),
            _ => Err(Error::UploadNotFound(s.chars().take(64).collect())),
        }
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Appends one run of bytes to an upload. Nothing counts until `finish`: a writer dropped
/// half way (client gone, truncated body) leaves the upload at the offset it had before.
#[async_trait]
pub trait UploadWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<()>;
    /// Ends this append and returns the upload's new size.
    async fn finish(self: Box<Self>) -> Result<u64>;
}

/// What `stat` knows of a committed blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub size: u64,
    /// Unix seconds of the blob's last write (its commit, or a later commit of the same
    /// content); see each backend's module doc.
    pub modified: i64,
}

/// One committed blob in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    pub digest: Digest,
    pub size: u64,
    pub modified: i64,
}

/// One open upload session in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadEntry {
    pub id: UploadId,
    /// Bytes the session holds in storage, which removing it frees. The same as `upload_size`
    /// unless an append broke off and left bytes the next append will cut off.
    pub size: u64,
    /// Unix seconds of the last write to the session: its creation or its last append.
    pub modified: i64,
}

/// What `purge_stale` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Stale sessions removed, in id order.
    pub removed: Vec<UploadId>,
    /// Stale sessions left alone because an append or a commit held them.
    pub skipped: Vec<UploadId>,
    /// Bytes the removed sessions held.
    pub bytes_freed: u64,
    /// Incomplete multipart uploads aborted (S3 only: a crashed commit or append leaves one).
    pub multiparts_aborted: u64,
}

/// `t` as unix seconds (negative before 1970).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size and last write of a committed blob, or `None` if absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>>;
    /// Opens a committed blob, whole or a range of it (`range.end` is clamped to the size).
    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobReader>;
    /// Removes a committed blob; `false` if it was not there.
    async fn delete(&self, digest: &Digest) -> Result<bool>;
    /// Committed blobs in ascending order of the digest's string form, strictly after `after`
    /// (which need not be stored), at most `limit`; fewer only when there are no more. A blob
    /// committed or deleted while a caller pages may or may not appear.
    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<BlobEntry>>;

    async fn create_upload(&self) -> Result<UploadId>;
    /// Bytes received so far by an upload.
    async fn upload_size(&self, id: &UploadId) -> Result<u64>;
    /// Starts appending at `offset`, which must equal the current size.
    async fn append(&self, id: &UploadId, offset: u64) -> Result<Box<dyn UploadWriter>>;
    /// Verifies the content against `digest` and makes it a committed blob. On a mismatch
    /// nothing is stored and the session is removed. Returns the blob size.
    async fn commit_upload(&self, id: &UploadId, digest: &Digest) -> Result<u64>;
    /// Removes the session and everything it left in storage.
    async fn cancel_upload(&self, id: &UploadId) -> Result<()>;
    /// Open upload sessions in ascending order of the id's string form, paged as `list`.
    async fn list_uploads(
        &self,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<UploadEntry>>;
    /// Removes, as `cancel_upload` would, every session not written to for longer than
    /// `untouched_for_secs` before `now` (unix seconds, the caller's clock against the
    /// storage's: leave a margin). A session an append or a commit holds is skipped, never
    /// removed under it. On S3 it also aborts the incomplete multipart uploads initiated
    /// before that time that no append or commit of this process is running.
    async fn purge_stale(&self, untouched_for_secs: i64, now: i64) -> Result<PurgeReport>;
    /// Makes the file at `path`, whose content the caller verified against `digest`, a
    /// committed blob by moving it in, without copying or hashing it again. `Ok(false)`:
    /// this store cannot (not a local store, or another filesystem), the file is untouched
    /// and the caller stores the bytes as an upload.
    async fn adopt_file(&self, path: &std::path::Path, digest: &Digest) -> Result<bool> {
        let _ = (path, digest);
        Ok(false)
    }
}
