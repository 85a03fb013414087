//! One fill: a missing blob fetched once into a temporary file while any number of readers
//! stream from that file as it grows.
//!
//! The filler publishes its progress on a `watch` channel; a reader reads the part already
//! written with positional reads on a shared handle (the file may be renamed into the cache
//! while it reads) and waits for more. Two rules keep a reader from ever receiving a
//! complete-looking wrong body:
//! - a reader that would receive the blob's last byte waits until the digest was verified;
//! - a failed fill turns every reader's next read into an error, which drops the connection.
//!
//! Readers are plain streams owned by their responses; dropping one (client gone) does not
//! touch the filler, which runs as a detached task.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use shoal_origin::Digest;
use tokio::sync::watch;

/// The largest piece a reader takes from the fill file at once.
const READ_CHUNK: u64 = shoal_origin::FILE_CHUNK as u64;

/// Why a fill failed, shared by every waiting reader.
#[derive(Clone, Debug)]
pub enum FillError {
    /// The origin (and any peer) could not be reached.
    Unavailable(String),
    /// The origin does not have the blob.
    NotFound,
    /// The bytes did not match the digest or the size.
    Mismatch(String),
    Io(String),
}

impl FillError {
    pub fn into_origin_error(self, digest: &Digest) -> shoal_origin::Error {
        match self {
            FillError::Unavailable(m) => shoal_origin::Error::Unavailable(m),
            FillError::NotFound => shoal_origin::Error::BlobNotFound(digest.clone()),
            FillError::Mismatch(m) | FillError::Io(m) => {
                shoal_origin::Error::Io(io::Error::other(m))
            }
        }
    }
}

impl std::fmt::Display for FillError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FillError::Unavailable(m) => write!(f, "origin unavailable: {m}"),
            FillError::NotFound => write!(f, "the origin does not have the blob"),
            FillError::Mismatch(m) => write!(f, "content mismatch: {m}"),
            FillError::Io(m) => write!(f, "{m}"),
        }
    }
}

#[derive(Clone, Debug)]
pub enum State {
    /// Waiting for the upstream to answer.
    Opening,
    /// Bytes are arriving.
    Streaming,
    /// All bytes arrived and the digest matched.
    Verified,
    Failed(FillError),
}

#[derive(Clone, Debug)]
pub struct Progress {
    pub written: u64,
    pub state: State,
}

pub struct Fill {
    pub digest: Digest,
    pub size: u64,
    /// The temporary file, shared by the filler (writes) and readers (positional reads).
    pub file: Arc<std::fs::File>,
    pub progress: watch::Receiver<Progress>,
    /// Set when the blob is deleted during the fill: the result must not enter the cache.
    pub discard: AtomicBool,
}

impl Fill {
    pub fn new(
        digest: Digest,
        size: u64,
        file: std::fs::File,
    ) -> (Arc<Fill>, watch::Sender<Progress>) {
        let (tx, rx) = watch::channel(Progress {
            written: 0,
            state: State::Opening,
        });
        let fill = Arc::new(Fill {
            digest,
            size,
            file: Arc::new(file),
            progress: rx,
            discard: AtomicBool::new(false),
        });
        (fill, tx)
    }

    pub fn discarded(&self) -> bool {
        self.discard.load(Ordering::Relaxed)
    }

    /// Waits until the upstream answered; the error if the fill has failed by then (a
    /// request is answered with an error rather than with headers and a cut-off body).
    pub async fn opened(&self) -> Result<(), FillError> {
        let mut rx = self.progress.clone();
        let p = rx
            .wait_for(|p| !matches!(p.state, State::Opening))
            .await
            .map_err(|_| FillError::Io("the fill ended without a result".into()))?;
        match &p.state {
            State::Failed(e) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// How much of the file readers may take given `p`: all of it once verified, all but
    /// the last byte before; the fill's error once it failed.
    fn readable(&self, p: &Progress) -> io::Result<u64> {
        match &p.state {
            State::Failed(e) => Err(io::Error::other(format!("filling {}: {e}", self.digest))),
            State::Verified => Ok(p.written),
            // The last byte waits for the digest check.
            _ => Ok(p.written.min(self.size.saturating_sub(1))),
        }
    }

    /// The fill's progress for a sender that copies straight from its file (`sendfile`).
    pub fn growing(self: &Arc<Fill>) -> FillGrowth {
        FillGrowth {
            fill: self.clone(),
            rx: self.progress.clone(),
        }
    }

    /// The bytes `[start, end)` of the blob as they arrive.
    pub fn reader(
        self: &Arc<Fill>,
        start: u64,
        end: u64,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        let state = (self.clone(), self.progress.clone(), start);
        futures::stream::unfold(state, move |(fill, mut rx, pos)| async move {
            if pos >= end {
                return None;
            }
            loop {
                let p = rx.borrow_and_update().clone();
                let readable = match fill.readable(&p) {
                    Ok(r) => r,
                    Err(err) => return Some((Err(err), (fill, rx, end))),
                };
                if readable > pos {
                    let n = (readable.min(end) - pos).min(READ_CHUNK);
                    let file = fill.file.clone();
                    let read = tokio::task::spawn_blocking(move || {
                        let mut buf = BytesMut::zeroed(n as usize);
                        file.read_exact_at(&mut buf, pos).map(|()| buf.freeze())
                    })
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(e)));
                    return match read {
                        Ok(bytes) => Some((Ok(bytes), (fill, rx, pos + n))),
                        Err(e) => Some((Err(e), (fill, rx, end))),
                    };
                }
                if rx.changed().await.is_err() {
                    let err = io::Error::other("the fill ended without a result");
                    return Some((Err(err), (fill, rx, end)));
                }
            }
        })
    }
}

/// `Growing` for a fill's file: the same rules as its readers (the last byte only once
/// verified, an error once failed).
pub struct FillGrowth {
    fill: Arc<Fill>,
    rx: watch::Receiver<Progress>,
}

#[async_trait::async_trait]
impl shoal_origin::Growing for FillGrowth {
    async fn sendable(&mut self, want: u64) -> io::Result<u64> {
        loop {
            let p = self.rx.borrow_and_update().clone();
            let readable = self.fill.readable(&p)?;
            if readable >= want {
                return Ok(readable);
            }
            if self.rx.changed().await.is_err() {
                return Err(io::Error::other("the fill ended without a result"));
            }
        }
    }
}
