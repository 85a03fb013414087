//! One fill: a missing blob fetched once into a temporary file while any number of readers
//! stream from that file as it grows.
//!
//! The filler publishes its progress on a `watch` channel and keeps the newest chunks in
//! memory (`Recent`). A reader near the head takes those chunks as they are (no copy, no
//! disk); one further behind reads the file with positional reads on a shared handle (the
//! file may be renamed into the cache while it reads; `ColdReader`, as the file is written
//! around the page cache), and waits for more. Two rules keep a reader from ever receiving a
//! complete-looking wrong body:
//! - a reader that would receive the blob's last byte waits until the digest was verified;
//! - a failed fill turns every reader's next read into an error, which drops the connection.
//!
//! Readers are plain streams owned by their responses; dropping one (client gone) does not
//! touch the filler, which runs as a detached task.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use parking_lot::Mutex;
use shoal_origin::{ColdReader, Digest};
use tokio::sync::watch;

/// The largest piece a reader takes from the fill file at once.
const READ_CHUNK: u64 = shoal_origin::FILE_CHUNK as u64;
/// Bytes of the newest chunks a fill keeps in memory. More than the writer may hold back
/// before they reach the file (its queue of 8 batches of at most 1.5 MiB, the batch it
/// writes, and `SequentialWriter`'s 1 MiB): a byte no longer kept here is on file.
pub const RECENT_BYTES: usize = 16 << 20;

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
    /// Bytes received, in order: readers may have them (`Fill::readable`), the last one
    /// only once the whole blob hashed to its digest.
    pub written: u64,
    /// Bytes on file (`writer`); the rest is only in `Recent`, or on its way to the disk.
    pub on_file: u64,
    pub state: State,
}

pub struct Fill {
    pub digest: Digest,
    pub size: u64,
    /// The temporary file, which the writer writes and the cache takes in when it is whole.
    pub file: Arc<std::fs::File>,
    /// Readers' view of `file`: the page cache where it holds the bytes, else the disk
    /// (measured: a storm's stragglers read faster so than through fresh cache pages).
    cold: ColdReader,
    recent: Mutex<Recent>,
    pub progress: watch::Receiver<Progress>,
    /// Set when the blob is deleted during the fill: the result must not enter the cache.
    pub discard: AtomicBool,
}

impl Fill {
    pub fn new(
        digest: Digest,
        size: u64,
        file: std::fs::File,
    ) -> std::io::Result<(Arc<Fill>, watch::Sender<Progress>)> {
        let (tx, rx) = watch::channel(Progress {
            written: 0,
            on_file: 0,
            state: State::Opening,
        });
        let cold = ColdReader::new(file.try_clone()?);
        let fill = Arc::new(Fill {
            digest,
            size,
            file: Arc::new(file),
            cold,
            recent: Mutex::new(Recent::default()),
            progress: rx,
            discard: AtomicBool::new(false),
        });
        Ok((fill, tx))
    }

    /// Keeps the chunk at `at` for readers near the head, before its bytes are announced.
    pub fn keep_recent(&self, at: u64, chunk: Bytes) {
        self.recent.lock().push(at, chunk);
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

    /// Says whether the file holds every byte of the blob, verified: from then on a reader
    /// may read the file as a complete one (`sendfile`).
    pub fn whole_on_file(&self) -> shoal_origin::Whole {
        let progress = self.progress.clone();
        let size = self.size;
        Box::new(move || {
            let p = progress.borrow();
            matches!(p.state, State::Verified) && p.on_file >= size
        })
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
                    let upto = readable.min(end);
                    let kept = fill.recent.lock().slice(pos, upto);
                    if let Some(bytes) = kept {
                        let next = pos + bytes.len() as u64;
                        return Some((Ok(bytes), (fill, rx, next)));
                    }
                    // Dropped from memory but not on file yet: wait for the writer.
                    if p.on_file > pos {
                        let n = (upto.min(p.on_file) - pos).min(READ_CHUNK) as usize;
                        let from = fill.clone();
                        let read = tokio::task::spawn_blocking(move || from.cold.read(pos, n))
                            .await
                            .unwrap_or_else(|e| Err(io::Error::other(e)));
                        return match read {
                            Ok(bytes) => Some((Ok(bytes), (fill, rx, pos + n as u64))),
                            Err(e) => Some((Err(e), (fill, rx, end))),
                        };
                    }
                }
                if rx.changed().await.is_err() {
                    let err = io::Error::other("the fill ended without a result");
                    return Some((Err(err), (fill, rx, end)));
                }
            }
        })
    }
}

/// The newest chunks of a fill, oldest first, at most `RECENT_BYTES` of them.
#[derive(Default)]
struct Recent {
    chunks: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

impl Recent {
    fn push(&mut self, at: u64, chunk: Bytes) {
        self.bytes += chunk.len();
        self.chunks.push_back((at, chunk));
        while self.bytes > RECENT_BYTES {
            let (_, old) = self.chunks.pop_front().expect("bytes counted are kept");
            self.bytes -= old.len();
        }
    }

    /// The kept bytes from `pos` on, up to `upto` and the end of their chunk. The chunks
    /// are as the source sent them (hundreds of them in `RECENT_BYTES` over HTTP), in order
    /// and end to end: found by bisection.
    fn slice(&self, pos: u64, upto: u64) -> Option<Bytes> {
        let i = self
            .chunks
            .partition_point(|(at, c)| at + c.len() as u64 <= pos);
        let (at, chunk) = self.chunks.get(i).filter(|(at, _)| *at <= pos)?;
        let end = (at + chunk.len() as u64).min(upto);
        Some(chunk.slice((pos - at) as usize..(end - at) as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slice never crosses its chunk or `upto`, and the oldest chunks go first once more
    /// than `RECENT_BYTES` are kept.
    #[test]
    fn recent_chunks_are_sliced_in_place_and_the_oldest_dropped() {
        let mut r = Recent::default();
        let mib = 1 << 20;
        for i in 0..(RECENT_BYTES / mib + 2) {
            r.push((i * mib) as u64, Bytes::from(vec![i as u8; mib]));
        }
        assert!(r.bytes <= RECENT_BYTES);
        assert_eq!(r.slice(0, u64::MAX), None, "the oldest chunk was dropped");
        let last = (RECENT_BYTES / mib + 1) as u64 * mib as u64;
        let s = r.slice(last + 10, last + 20).unwrap();
        assert_eq!((s.len(), s[0]), (10, (RECENT_BYTES / mib + 1) as u8));
        let across = r.slice(last - 5, u64::MAX).unwrap();
        assert_eq!(across.len(), 5, "a slice ends with its chunk");
        assert_eq!(
            r.slice(last + mib as u64, u64::MAX),
            None,
            "nothing past the head"
        );
    }

    /// Chunks of any size, as an HTTP source hands them on: every position is found in
    /// the chunk that holds it, and a slice starts there.
    #[test]
    fn uneven_chunks_are_found_by_position() {
        let mut r = Recent::default();
        let mut at = 0u64;
        for (i, len) in [3usize, 1, 7, 5].into_iter().enumerate() {
            r.push(at, Bytes::from(vec![i as u8; len]));
            at += len as u64;
        }
        let check = |pos: u64, expected: Option<(u8, usize)>| {
            let got = r.slice(pos, u64::MAX).map(|s| (s[0], s.len()));
            assert_eq!(got, expected, "at {pos}");
        };
        check(0, Some((0, 3)));
        check(2, Some((0, 1)));
        check(3, Some((1, 1)));
        check(4, Some((2, 7)));
        check(10, Some((2, 1)));
        check(11, Some((3, 5)));
        check(15, Some((3, 1)));
        check(16, None);
    }
}
