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
//! Where a fill's bytes come from and how they enter it is `fetch`. Policy (`index`) is
//! apart from IO (`files`). The cache is not a `BlobStore`: a read needs
//! the size the metadata recorded, so the response can be answered before the fill has it.
//! Fills run as detached tasks on the node's background runtime: a client that goes away
//! cancels only its own response.

mod fetch;
mod files;
mod fill;
mod index;
mod leases;
pub mod peer;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use shoal_origin::{BlobReader, BlobStore, ByteRange, Digest};
use shoal_raft::Metadata;
use tokio::sync::watch;

use crate::metrics as m;
use files::{remove_quietly, Layout};
pub use fill::FillError;
use fill::{Fill, Progress, State};
use index::CacheIndex;
use leases::Leases;
use peer::{Decision, Peers};

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
        // Not offered to `sendfile` as it is: the newest bytes are in memory (and may not be
        // on file yet). Once the fill is verified and its file whole, a sender may send the
        // rest from the file: a storm's clients are still far from their ends then.
        let stream = fill.reader(range.start, range.end);
        Ok(BlobReader::filling(
            size,
            range,
            Box::pin(stream),
            fill.file.try_clone()?,
            fill.whole_on_file(),
        ))
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
        let began = std::time::Instant::now();
        let mirrored = route.mirrored().map(str::to_string);
        let result = match self.fetch(&fill, &tx, &tmp, route).await {
            // Readers have every byte from memory or file now; the cache waits for the file.
            Ok((from_upstream, file)) => {
                tx.send_modify(|p| p.state = State::Verified);
                let seconds = began.elapsed().as_secs_f64();
                tracing::info!(
                    digest = %fill.digest,
                    bytes = fill.size,
                    seconds,
                    "filled a blob, verified"
                );
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
