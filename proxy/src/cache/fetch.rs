//! A fill's fetch: where its bytes come from, and how they go into the fill.
//!
//! The source is the digest's home node (which may stream the blob, name the peer it lent
//! the fill, or lend it to this node), else the origin, or for a mirrored blob the upstream
//! (`open_upstream`); a peer that breaks off mid-stream is continued from the origin or
//! upstream at the byte reached. The source is a stream of chunks (`ByteChunks`) taken as
//! they are, never copied: gathered into batches for the hash and the file writer, kept
//! for readers, verified against the digest before the fill may complete.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use shoal_origin::{ByteRange, Digest, Hasher};
use tokio::sync::watch;

use super::fill::{Fill, FillError, Progress, State};
use super::peer::{Claimed, Home, Peers};
use super::writer::FillWriter;
use super::{BlobCache, Route};
use crate::metrics as m;

/// How long an upstream may stay silent in the middle of a fill.
const STALL: Duration = Duration::from_secs(10);
/// How long the origin may take to answer a fetch before the request gets a 503: an origin
/// that accepts connections but does not answer (paused, stuck backend) must not hang pulls.
const ORIGIN_OPEN: Duration = Duration::from_secs(5);
/// Bytes gathered from the upstream before each batch goes to the hash and the fill file.
const FILL_WRITE: usize = 1 << 20;

/// The hash of a fill's chunks so far, its next chunk being added on the blocking pool.
type Hashing = tokio::task::JoinHandle<Hasher>;

async fn hashed(task: Hashing) -> Result<Hasher, FillError> {
    task.await.map_err(|e| FillError::Io(e.to_string()))
}

impl BlobCache {
    /// Streams the blob from the home node, the origin or (mirrors) the upstream into the
    /// fill file, verifying it. `Ok(true)` when the upstream sent the bytes to this node.
    pub(super) async fn fetch(
        &self,
        fill: &Fill,
        tx: &watch::Sender<Progress>,
        path: &std::path::Path,
        route: Route,
    ) -> Result<(bool, FillWriter), FillError> {
        let digest = &fill.digest;
        let mut upstream = self.open_upstream(digest, fill.size, &route).await?;
        tx.send_modify(|p| p.state = State::Streaming);
        // Each chunk is handed to readers, to the writer thread and to the hash as it comes:
        // the fill streams at the slowest of the three, not at their sum.
        let file = FillWriter::start(
            fill.file.as_ref().try_clone().map_err(io)?,
            path,
            tx.clone(),
        );
        let mut hashing: Option<Hashing> = None;
        let mut queued = 0u64;
        // The source's own chunks, gathered until a batch is worth a trip to the hash and
        // the writer: handed on as they arrived, never copied (a copy into a fresh buffer
        // per MiB, and the kernel zeroing its pages, was a fifth of a cold fill's CPU).
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batched = 0u64;
        loop {
            let next = tokio::time::timeout(STALL, upstream.chunks.next()).await;
            let ended = matches!(next, Ok(None));
            let mut broke = match next {
                Ok(Some(Ok(chunk))) => {
                    if !chunk.is_empty() {
                        batched += chunk.len() as u64;
                        batch.push(chunk);
                    }
                    None
                }
                Ok(None) => None,
                Ok(Some(Err(e))) => Some(e.to_string()),
                Err(_) => Some(format!("no bytes for {STALL:?}")),
            };
            let at = queued + batched;
            if ended && at < fill.size {
                broke = Some("the stream ended early".to_string());
            }
            // A peer that fails after its last byte has still delivered the whole blob.
            let complete = upstream.peer.is_some() && at == fill.size;
            if let Some(why) = broke.filter(|_| !complete) {
                let Some(peer) = upstream.peer else {
                    return Err(FillError::Unavailable(format!(
                        "the {} stream broke off at byte {at}: {why}",
                        upstream.source
                    )));
                };
                if let Some(p) = &self.peers {
                    p.failed(peer);
                }
                metrics::counter!(m::PEER_FETCH_FAILURES).increment(1);
                tracing::warn!(%digest, home = peer, at, %why, "peer fetch failed mid-stream; continuing from the origin or upstream");
                upstream = self.open_source(digest, fill.size, at, &route).await?;
                continue;
            }
            let end = ended || complete;
            if (end && batched > 0) || batched >= FILL_WRITE as u64 / 2 {
                if at > fill.size {
                    return Err(FillError::Mismatch(format!(
                        "upstream sent more than the {} bytes recorded",
                        fill.size
                    )));
                }
                // Readers may have the chunks at once: the last byte waits for the digest
                // (`Fill::readable`) and the file enters the cache only once verified, so an
                // unverified byte never completes a body nor lands in the cache. The hash then
                // runs beside the sending instead of in front of it.
                let chunks = std::mem::take(&mut batch);
                let mut pos = queued;
                for chunk in &chunks {
                    fill.keep_recent(pos, chunk.clone());
                    pos += chunk.len() as u64;
                }
                metrics::counter!(m::BLOB_BYTES, "source" => upstream.source).increment(batched);
                queued = at;
                batched = 0;
                tx.send_modify(|p| p.written = queued);
                file.write(chunks.clone()).await?;
                // One batch at a time on the blocking pool, off the runtime that drives Raft.
                let mut h = match hashing.take() {
                    Some(task) => hashed(task).await?,
                    None => Hasher::new(digest.algorithm()),
                };
                hashing = Some(tokio::task::spawn_blocking(move || {
                    for chunk in &chunks {
                        h.update(chunk);
                    }
                    h
                }));
            }
            if end {
                break;
            }
        }
        let hasher = match hashing {
            Some(task) => hashed(task).await?,
            None => Hasher::new(digest.algorithm()),
        };
        if queued != fill.size {
            return Err(FillError::Mismatch(format!(
                "upstream sent {queued} of {} bytes",
                fill.size
            )));
        }
        let actual = hasher.finish();
        if &actual != digest {
            return Err(FillError::Mismatch(format!("content hashes to {actual}")));
        }
        Ok((upstream.source == "upstream", file))
    }

    async fn open_upstream(
        &self,
        digest: &Digest,
        size: u64,
        route: &Route,
    ) -> Result<Upstream, FillError> {
        let Some(peers) = &self.peers else {
            return self.open_source(digest, size, 0, route).await;
        };
        // A region fill reads the origin, a mirror fill the upstream; both ask the home
        // first, which may lend the read. The home routes only serve a peer's ask.
        if !matches!(route, Route::Region | Route::Mirror(_)) {
            return self.open_source(digest, size, 0, route).await;
        }
        let mirror = route.mirrored().map(str::to_string);
        match peers.home(digest) {
            Home::Me => {
                // This node decides, as for a peer's claim; a peer lent the fill has it.
                let holder = self.leases.lock().holder(digest, &peers.member_ids());
                if let Some(lessee) = holder.filter(|h| *h != peers.me()) {
                    if let Some(up) = self
                        .fetch_from_peer(peers, lessee, digest, size, mirror)
                        .await
                    {
                        return Ok(up);
                    }
                }
            }
            Home::Peer(home, addr) => {
                let started = Instant::now();
                match peers.claim(home, &addr, digest, size, mirror.clone()).await {
                    Ok(Claimed::Bytes(reader)) => {
                        return Ok(peer_upstream(home, digest, started, reader))
                    }
                    Ok(Claimed::Lent) => {
                        tracing::info!(%digest, home, mirror, "the home lent this node the cold fill");
                    }
                    Ok(Claimed::Ask(lessee)) if lessee != peers.me() => {
                        if let Some(up) = self
                            .fetch_from_peer(peers, lessee, digest, size, mirror)
                            .await
                        {
                            return Ok(up);
                        }
                    }
                    // Lent to this node before, which no longer has it: it fills again.
                    Ok(Claimed::Ask(_)) => {}
                    Err(e) => self.peer_failed(peers, home, digest, &e),
                }
            }
            Home::Skipped => {}
        }
        self.open_source(digest, size, 0, route).await
    }

    /// A fetch from peer `id`, or `None` (counted, logged) if it cannot be had.
    #[tracing::instrument(name = "peer fetch", level = "debug", skip_all, fields(peer = id, %digest))]
    async fn fetch_from_peer(
        &self,
        peers: &Peers,
        id: shoal_raft::NodeId,
        digest: &Digest,
        size: u64,
        mirror: Option<String>,
    ) -> Option<Upstream> {
        let addr = peers.usable(id)?;
        let started = Instant::now();
        match peers.open(id, &addr, digest, size, mirror).await {
            Ok(reader) => Some(peer_upstream(id, digest, started, reader)),
            Err(e) => {
                self.peer_failed(peers, id, digest, &e);
                None
            }
        }
    }

    fn peer_failed(
        &self,
        peers: &Peers,
        id: shoal_raft::NodeId,
        digest: &Digest,
        e: &shoal_raft::Error,
    ) {
        if matches!(e, shoal_raft::Error::Unreachable(_)) {
            peers.failed(id);
        }
        metrics::counter!(m::PEER_FETCH_FAILURES).increment(1);
        tracing::warn!(%digest, peer = id, error = %e, "peer fetch failed; asking the origin or upstream");
    }

    /// The origin, or for a mirror fill the upstream.
    async fn open_source(
        &self,
        digest: &Digest,
        size: u64,
        from: u64,
        route: &Route,
    ) -> Result<Upstream, FillError> {
        match route.mirrored() {
            Some(repo) => self.open_mirrored(repo, digest, from).await,
            None => self.open_origin(digest, size, from).await,
        }
    }

    #[tracing::instrument(name = "upstream fetch", level = "debug", skip_all, fields(repository = repo, %digest))]
    async fn open_mirrored(
        &self,
        repo: &str,
        digest: &Digest,
        from: u64,
    ) -> Result<Upstream, FillError> {
        let source = self
            .upstream
            .get()
            .ok_or_else(|| FillError::Unavailable("this node has no mirror configured".into()))?;
        Ok(Upstream {
            chunks: source.open(repo, digest, from).await?,
            source: "upstream",
            peer: None,
        })
    }

    #[tracing::instrument(name = "origin fetch", level = "debug", skip_all, fields(%digest, from))]
    async fn open_origin(
        &self,
        digest: &Digest,
        size: u64,
        from: u64,
    ) -> Result<Upstream, FillError> {
        let started = Instant::now();
        let range = (from > 0).then_some(ByteRange {
            start: from,
            end: size,
        });
        let read = tokio::time::timeout(ORIGIN_OPEN, self.origin.read(digest, range))
            .await
            .map_err(|_| {
                metrics::counter!(m::ORIGIN_ERRORS).increment(1);
                FillError::Unavailable(format!("the origin did not answer within {ORIGIN_OPEN:?}"))
            })?;
        let blob = read.map_err(|e| match e {
            shoal_origin::Error::BlobNotFound(_) => FillError::NotFound,
            shoal_origin::Error::Unavailable(m) => {
                metrics::counter!(m::ORIGIN_ERRORS).increment(1);
                FillError::Unavailable(m)
            }
            other => {
                metrics::counter!(m::ORIGIN_ERRORS).increment(1);
                FillError::Io(format!("reading from the origin: {other}"))
            }
        })?;
        if blob.size != size {
            return Err(FillError::Mismatch(format!(
                "the origin holds {} bytes, the metadata records {size}",
                blob.size
            )));
        }
        metrics::counter!(m::ORIGIN_FETCHES).increment(1);
        metrics::histogram!(m::ORIGIN_FETCH_SECONDS).record(started.elapsed().as_secs_f64());
        Ok(Upstream {
            chunks: blob.body,
            source: "origin",
            peer: None,
        })
    }
}

/// A stream from peer `id`, asked at `started`, which opened just now.
fn peer_upstream(
    id: shoal_raft::NodeId,
    digest: &Digest,
    started: Instant,
    reader: shoal_raft::plane::ByteStream,
) -> Upstream {
    metrics::counter!(m::PEER_FETCHES).increment(1);
    metrics::histogram!(m::PEER_FETCH_SECONDS).record(started.elapsed().as_secs_f64());
    tracing::info!(%digest, peer = id, "peer fetch");
    Upstream {
        chunks: Box::pin(tokio_util::io::ReaderStream::with_capacity(
            reader, FILL_WRITE,
        )),
        source: "peer",
        peer: Some(id),
    }
}

/// A stream of blob bytes going into a fill, in the chunks its source made.
struct Upstream {
    chunks: shoal_origin::ByteChunks,
    source: &'static str,
    /// The peer this stream comes from; if it breaks off, the origin continues it.
    peer: Option<shoal_raft::NodeId>,
}

fn io(e: std::io::Error) -> FillError {
    FillError::Io(format!("cache file: {e}"))
}
