//! The node's edge cache: blobs it served, kept on its own disk, filled once per miss.
//!
//! The pull-through shape of distribution's `proxyblobstore`, at the level the node needs:
//! - a hit streams the cached file from disk;
//! - a miss joins the blob's fill if one runs (single flight) or starts one, and streams from
//!   the fill as it grows (`fill`);
//! - a fill claims the blob from its home node first (`peer`): the home streams it, names
//!   the peer it lent the fill, or lends it to this node, which then reads the origin
//!   (`leases`); a peer that fails mid-stream is replaced by the origin from the offset
//!   reached, in the same fill;
//! - a fill is verified against the digest before it is renamed into the cache; a mismatch
//!   never enters it, and the responses in flight are aborted;
//! - a mirrored blob not fetched yet (`Route::Mirror`) fills from its home node's mirror
//!   fill, else from the upstream (`UpstreamSource`), never from this cache or the origin:
//!   its promise is only kept once the upstream delivered its bytes, which the node that
//!   fetched them then stores in the origin and links (`UpstreamSource::keep`).
//!
//! Policy (`index`) is apart from IO (`files`). The cache is not a `BlobStore`: a read needs
//! the size the metadata recorded, so the response can be answered before the fill has it.
//! Fills run as detached tasks on the node's background runtime: a client that goes away
//! cancels only its own response.

mod files;
mod fill;
mod index;
mod leases;
pub mod peer;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use shoal_origin::{BlobReader, BlobStore, ByteRange, Digest, Hasher};
use shoal_raft::Metadata;
use tokio::sync::watch;

use crate::metrics as m;
use files::{remove_quietly, Layout};
pub use fill::FillError;
use fill::{Fill, Progress, State};
use index::CacheIndex;
use leases::Leases;
use peer::{Claimed, Decision, Home, Peers};
use writer::FillWriter;

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

#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    /// Keep mirror fills in the cache. Off where blobs are read from an embedded origin
    /// (the cache then holds only fills under way).
    pub keep_mirrored: bool,
}

/// Where a miss may be filled from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// The home node first, then the origin.
    Region,
    /// The origin only: this node is the home node serving a peer.
    OriginOnly,
    /// A blob mirrored repository `.0` promises: the home node's mirror fill first, then
    /// the upstream.
    Mirror(String),
    /// The upstream only: this node is the home node serving a peer's mirror fill.
    MirrorHome(String),
}

impl Route {
    /// The mirrored repository, for the two mirror routes.
    fn mirrored(&self) -> Option<&str> {
        match self {
            Route::Mirror(r) | Route::MirrorHome(r) => Some(r),
            Route::Region | Route::OriginOnly => None,
        }
    }
}

/// A mirror's upstream, as the cache needs it (`mirror::source`).
#[async_trait::async_trait]
pub trait UpstreamSource: Send + Sync {
    /// The bytes of `digest`, which mirrored `repo` promises, from byte `from` on.
    async fn open(
        &self,
        repo: &str,
        digest: &Digest,
        from: u64,
    ) -> Result<shoal_origin::ByteChunks, FillError>;
    /// Makes the verified bytes in `file` an ordinary blob of `repo`: in the origin, linked.
    /// `path` is the file's own path when the cache does not keep it: the origin may then
    /// take the file itself instead of a copy.
    async fn keep(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        file: Arc<std::fs::File>,
        path: Option<&std::path::Path>,
    ) -> Result<(), String>;
}

/// A running fill: of the blob, or of its mirror fetch (kept apart: a mirror fill must
/// come from the upstream, whatever this node holds).
type FillKey = (Digest, bool);

pub struct BlobCache {
    layout: Layout,
    index: Mutex<CacheIndex>,
    fills: Mutex<HashMap<FillKey, Arc<Fill>>>,
    /// Written only under `fills` (lock order: fills, leases), so a claim and this node's
    /// own miss agree on who reads the origin.
    leases: Mutex<Leases>,
    origin: Arc<dyn BlobStore>,
    peers: Option<Peers>,
    upstream: std::sync::OnceLock<Arc<dyn UpstreamSource>>,
    keep_mirrored: bool,
    meta: Arc<Metadata>,
    /// Fills run here, detached from the requests that started them.
    runtime: tokio::runtime::Handle,
}

impl BlobCache {
    /// Opens the cache directory, discards half-written fills and rebuilds the index.
    pub fn open(
        config: &CacheConfig,
        origin: Arc<dyn BlobStore>,
        meta: &Arc<Metadata>,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Arc<BlobCache>> {
        let layout = Layout::new(config.dir.clone());
        let mut index = CacheIndex::new(config.max_bytes);
        let mut evicted = Vec::new();
        for (digest, size) in layout.prepare()? {
            evicted.extend(index.insert(digest, size));
        }
        for d in &evicted {
            remove_quietly(&layout.blob(d));
        }
        tracing::info!(
            dir = %config.dir.display(),
            entries = index.len(),
            bytes = index.bytes(),
            max_bytes = config.max_bytes,
            "blob cache ready"
        );
        let cache = Arc::new(BlobCache {
            layout,
            index: Mutex::new(index),
            fills: Mutex::new(HashMap::new()),
            leases: Mutex::new(Leases::default()),
            origin,
            peers: Peers::new(meta.clone()),
            upstream: std::sync::OnceLock::new(),
            keep_mirrored: config.keep_mirrored,
            meta: meta.clone(),
            runtime: runtime.clone(),
        });
        cache.publish_size();
        if let Some(plane) = meta.plane() {
            plane.serve_streams(Arc::new(peer::PeerSource(Arc::downgrade(&cache))));
        }
        runtime.spawn(drop_unlinked(Arc::downgrade(&cache), meta.blob_unlinks()));
        Ok(cache)
    }

    /// Whether the catalogue links `digest` to `repo` (a mirrored blob's promise kept).
    fn is_linked(&self, repo: &str, digest: &Digest) -> bool {
        self.meta
            .catalog()
            .blob_size(repo, &digest.to_string())
            .is_ok_and(|s| s.is_some())
    }

    /// Sets where mirror fills come from (once; mirrors are built after the cache).
    pub fn set_upstream(&self, source: Arc<dyn UpstreamSource>) {
        let _ = self.upstream.set(source);
    }

    /// Opens `range` of a blob of `size` bytes: from disk on a hit, else from its fill.
    /// Answers only once the bytes can flow, so an unreachable origin is an error here and
    /// not a broken response.
    #[tracing::instrument(name = "cache read", level = "debug", skip_all, fields(%digest, hit))]
    pub async fn read(
        self: &Arc<Self>,
        digest: &Digest,
        size: u64,
        range: Option<ByteRange>,
        route: Route,
    ) -> shoal_origin::Result<BlobReader> {
        let range = ByteRange::within(range, size)?;
        let fill = loop {
            if route.mirrored().is_none() {
                if let Some(reader) = self.read_cached(digest, size, range).await? {
                    tracing::Span::current().record("hit", true);
                    metrics::counter!(m::CACHE_HITS).increment(1);
                    metrics::counter!(m::BLOB_BYTES, "source" => "cache").increment(range.len());
                    return Ok(reader);
                }
            }
            if let Some(fill) = self.join_or_start(digest, size, route.clone())? {
                break fill;
            }
        };
        tracing::Span::current().record("hit", false);
        metrics::counter!(m::CACHE_MISSES).increment(1);
        fill.opened()
            .await
            .map_err(|e| e.into_origin_error(digest))?;
        // Not offered to `sendfile`: the newest bytes are in memory (and may not be on file
        // yet), the older ones on disk rather than in the page cache.
        let stream = fill.reader(range.start, range.end);
        Ok(BlobReader::streamed(size, range, Box::pin(stream)))
    }

    async fn read_cached(
        &self,
        digest: &Digest,
        size: u64,
        range: ByteRange,
    ) -> shoal_origin::Result<Option<BlobReader>> {
        if self.index.lock().touch(digest).is_none() {
            return Ok(None);
        }
        let path = self.layout.blob(digest);
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(%digest, "a cached blob vanished from disk; filling it again");
                self.forget(digest);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Some(BlobReader::from_file(
            file.into_std().await,
            size,
            range,
        )?))
    }

    /// The running fill of `digest`, or a new one; `None` if the blob is cached by now.
    fn join_or_start(
        self: &Arc<Self>,
        digest: &Digest,
        size: u64,
        route: Route,
    ) -> shoal_origin::Result<Option<Arc<Fill>>> {
        let key = (digest.clone(), route.mirrored().is_some());
        let mut fills = self.fills.lock();
        if let Some(f) = fills.get(&key) {
            return Ok(Some(f.clone()));
        }
        // A fill may have been admitted since the caller looked (lock order: fills, index).
        if !key.1 && self.index.lock().touch(digest).is_some() {
            return Ok(None);
        }
        let tmp = self.layout.new_tmp();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let (fill, tx) = Fill::new(digest.clone(), size, file)?;
        fills.insert(key, fill.clone());
        self.runtime.spawn(tracing::Instrument::instrument(
            self.clone().run_fill(fill.clone(), tx, tmp, route),
            tracing::debug_span!("cache fill", digest = %fill.digest),
        ));
        Ok(Some(fill))
    }

    /// The detached filler: fetch, verify, then rename into the cache or throw away.
    async fn run_fill(
        self: Arc<Self>,
        fill: Arc<Fill>,
        tx: watch::Sender<Progress>,
        tmp: PathBuf,
        route: Route,
    ) {
        metrics::gauge!(m::FILLS_IN_FLIGHT).increment(1.0);
        let mirrored = route.mirrored().map(str::to_string);
        let result = match self.fetch(&fill, &tx, &tmp, route).await {
            // Readers have every byte from memory or file now; the cache waits for the file.
            Ok((from_upstream, file)) => {
                tx.send_modify(|p| p.state = State::Verified);
                file.finish().await.map(|()| from_upstream)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(from_upstream) => {
                let admit = mirrored.is_none() || self.keep_mirrored;
                if admit {
                    if let Err(e) = self.admit(&fill, &tmp).await {
                        tracing::warn!(digest = %fill.digest, error = %e, "could not keep a verified blob in the cache");
                        remove_quietly(&tmp);
                    }
                }
                if let (Some(repo), true) = (&mirrored, from_upstream) {
                    let own = (!admit).then_some(tmp.as_path());
                    self.keep_mirrored_blob(repo, &fill, own).await;
                }
                if !admit {
                    // Gone already if the origin took the file.
                    remove_quietly(&tmp);
                }
                // Only now: until the blob is in the index (or linked, for a mirror fill),
                // newcomers must join this fill.
                self.unregister(&fill, mirrored.is_some());
            }
            Err(e) => {
                if let FillError::Mismatch(why) = &e {
                    metrics::counter!(m::DIGEST_MISMATCHES).increment(1);
                    tracing::error!(digest = %fill.digest, %why, "upstream content does not match its digest; nothing cached, responses aborted");
                } else {
                    tracing::warn!(digest = %fill.digest, error = %e, "blob fill failed");
                }
                // Unregistered first: a request arriving now starts a new fill rather than
                // joining this failed one.
                self.unregister(&fill, mirrored.is_some());
                tx.send_modify(|p| p.state = State::Failed(e));
                remove_quietly(&tmp);
            }
        }
        metrics::gauge!(m::FILLS_IN_FLIGHT).decrement(1.0);
    }

    fn unregister(&self, fill: &Arc<Fill>, mirrored: bool) {
        let key = (fill.digest.clone(), mirrored);
        let mut fills = self.fills.lock();
        if fills.get(&key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            fills.remove(&key);
        }
    }

    /// As the home of `digest`, decides a peer's claim on its cold fill (of the blob mirrored
    /// repository `mirror` promises, for a mirror fill): stream it if this node holds or
    /// fills it (or has kept the mirrored blob), else send the peer to whoever was lent it,
    /// else lend it.
    fn answer_claim(
        &self,
        peer: shoal_raft::NodeId,
        digest: &Digest,
        mirror: Option<&str>,
    ) -> Decision {
        // Read from the catalogue before the lock, which every miss takes.
        let kept = mirror.is_some_and(|repo| self.is_linked(repo, digest));
        let fills = self.fills.lock();
        let held = kept
            || fills.contains_key(&(digest.clone(), false))
            || (mirror.is_some() && fills.contains_key(&(digest.clone(), true)))
            || self.index.lock().touch(digest).is_some();
        if held {
            return Decision::Serve;
        }
        let Some(peers) = &self.peers else {
            return Decision::Serve;
        };
        let mut leases = self.leases.lock();
        match leases.holder(digest, &peers.member_ids()) {
            // A holder this node saw fail is passed over: the asker fills instead.
            Some(holder) if holder != peer && peers.usable(holder).is_some() => {
                Decision::Redirect(holder)
            }
            _ => {
                leases.lend(digest.clone(), peer);
                Decision::Lend
            }
        }
    }

    /// Stores a verified mirror fill in the origin and links it; a failure leaves the blob
    /// promised, to be fetched again by the next read.
    async fn keep_mirrored_blob(&self, repo: &str, fill: &Fill, path: Option<&std::path::Path>) {
        let Some(source) = self.upstream.get() else {
            return;
        };
        let kept = source
            .keep(repo, &fill.digest, fill.size, fill.file.clone(), path)
            .await;
        match kept {
            Ok(()) => {
                tracing::info!(digest = %fill.digest, repo, "a mirrored blob is kept in the origin and linked")
            }
            Err(e) => {
                tracing::warn!(digest = %fill.digest, repo, error = %e, "a verified mirrored blob could not be kept; it stays promised")
            }
        }
    }

    /// Streams the blob from the home node, the origin or (mirrors) the upstream into the
    /// fill file, verifying it. `Ok(true)` when the upstream sent the bytes to this node.
    async fn fetch(
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

    /// Renames a verified fill into the cache and evicts what no longer fits.
    async fn admit(&self, fill: &Fill, tmp: &std::path::Path) -> std::io::Result<()> {
        let file = fill.file.clone();
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(std::io::Error::other)??;
        if fill.discarded() {
            remove_quietly(tmp);
            return Ok(());
        }
        let dest = self.layout.blob(&fill.digest);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(tmp, &dest).await?;
        let evicted = self.index.lock().insert(fill.digest.clone(), fill.size);
        for d in &evicted {
            remove_quietly(&self.layout.blob(d));
        }
        if fill.discarded() {
            // Unlinked while it was being renamed: `drop_blob` sets the flag before it looks
            // at the index, so one of the two sees the other.
            self.forget(&fill.digest);
        }
        metrics::counter!(m::EVICTIONS).increment(evicted.len() as u64);
        self.publish_size();
        Ok(())
    }

    /// Drops `digest` from the cache, including a fill under way (deleted blobs never stay).
    pub fn drop_blob(&self, digest: &Digest) {
        {
            let fills = self.fills.lock();
            for mirrored in [false, true] {
                if let Some(f) = fills.get(&(digest.clone(), mirrored)) {
                    f.discard.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            self.leases.lock().forget(digest);
        }
        self.forget(digest);
    }

    fn forget(&self, digest: &Digest) {
        if self.index.lock().remove(digest).is_some() {
            remove_quietly(&self.layout.blob(digest));
            tracing::info!(%digest, "dropped a blob from the cache");
        }
        self.publish_size();
    }

    /// Empties the cache, fills under way included (after missing delete notices).
    fn forget_all(&self) {
        let cached = self.index.lock().digests();
        let filling: Vec<Digest> = self.fills.lock().keys().map(|(d, _)| d.clone()).collect();
        for d in cached.iter().chain(&filling) {
            self.drop_blob(d);
        }
    }

    fn publish_size(&self) {
        let (bytes, len) = {
            let i = self.index.lock();
            (i.bytes(), i.len())
        };
        metrics::gauge!(m::CACHE_BYTES).set(bytes as f64);
        metrics::gauge!(m::CACHE_ENTRIES).set(len as f64);
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

/// Drops every blob the metadata unlinks, as each unlink is applied on this node.
async fn drop_unlinked(
    cache: std::sync::Weak<BlobCache>,
    mut unlinks: tokio::sync::broadcast::Receiver<String>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let next = unlinks.recv().await;
        let Some(cache) = cache.upgrade() else { return };
        match next {
            Ok(d) => match d.parse::<Digest>() {
                Ok(d) => cache.drop_blob(&d),
                Err(e) => {
                    tracing::warn!(digest = %d, error = %e, "unlink notice with a bad digest")
                }
            },
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "missed blob unlink notices; emptying the cache to be safe"
                );
                cache.forget_all();
            }
            Err(RecvError::Closed) => return,
        }
    }
}
