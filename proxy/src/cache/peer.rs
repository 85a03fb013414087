//! Region-wide peer fetch: a miss asks the blob's home node before the origin.
//!
//! The home node of a digest is chosen by rendezvous hashing over the current members, so
//! every node agrees on it without coordination and a membership change moves only the
//! blobs of the nodes that came or went. The home node fills from the origin with its own
//! single flight and streams to the asking node over the QUIC plane (`Plane::open`), so N
//! nodes missing the same blob cost the origin one fetch. A peer that fails is skipped for a
//! while, so a dead member does not slow every miss.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use shoal_origin::Digest;
use shoal_raft::plane::{ByteStream, StreamSource};
use shoal_raft::{Metadata, NodeId};

use super::{BlobCache, Route};

/// How long a peer may take to start streaming before the origin is asked instead.
pub const PEER_OPEN: Duration = Duration::from_secs(3);
/// How long a peer that failed is passed over.
const PEER_BACKOFF: Duration = Duration::from_secs(10);

/// What a node asks its peer for (`Request::Open` payload).
#[derive(Serialize, Deserialize)]
struct PeerFetch {
    digest: String,
    size: u64,
    /// A mirror fill for this repository: the home node fetches it from the upstream.
    mirror: Option<String>,
}

pub struct Peers {
    meta: Arc<Metadata>,
    failed: parking_lot::Mutex<HashMap<NodeId, Instant>>,
}

impl Peers {
    pub fn new(meta: Arc<Metadata>) -> Option<Peers> {
        meta.plane()?;
        Some(Peers {
            meta,
            failed: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// The home node of `digest` and its plane address, unless that is this node or a
    /// peer that failed recently.
    pub fn home(&self, digest: &Digest) -> Option<(NodeId, String)> {
        let members: Vec<(NodeId, String)> = self
            .meta
            .members()
            .into_iter()
            .filter(|(_, addr)| !addr.is_empty())
            .collect();
        let (home, addr) = rendezvous(digest, members)?;
        let (me, _) = self.meta.member();
        let failed_at = self.failed.lock().get(&home).copied();
        if home == me || failed_at.is_some_and(|t| t.elapsed() < PEER_BACKOFF) {
            return None;
        }
        Some((home, addr))
    }

    pub fn failed(&self, id: NodeId) {
        self.failed.lock().insert(id, Instant::now());
    }

    /// Opens `digest` on node `home` (its mirror fill for repository `mirror`, if set).
    pub async fn open(
        &self,
        home: NodeId,
        addr: &str,
        digest: &Digest,
        size: u64,
        mirror: Option<String>,
    ) -> shoal_raft::Result<ByteStream> {
        let plane = self.meta.plane().expect("Peers exist only with a plane");
        let payload = postcard::to_stdvec(&PeerFetch {
            digest: digest.to_string(),
            size,
            mirror,
        })
        .expect("a fetch request serialises");
        plane.open(home, addr, payload, PEER_OPEN).await
    }
}

/// The member with the highest score for `digest`.
fn rendezvous(digest: &Digest, members: Vec<(NodeId, String)>) -> Option<(NodeId, String)> {
    members.into_iter().max_by_key(|(id, _)| {
        let mut h = Sha256::new();
        h.update(digest.to_string().as_bytes());
        h.update(id.to_be_bytes());
        let out = h.finalize();
        u64::from_be_bytes(out[..8].try_into().expect("8 bytes"))
    })
}

/// Serves peers' fetches from this node's cache (filled from the origin, or for a mirror
/// fill from the upstream; never from another peer, so a fetch never travels in a circle).
pub struct PeerSource(pub Weak<BlobCache>);

#[async_trait]
impl StreamSource for PeerSource {
    async fn open(&self, peer: NodeId, payload: Vec<u8>) -> Result<ByteStream, String> {
        let req: PeerFetch =
            postcard::from_bytes(&payload).map_err(|e| format!("undecodable fetch: {e}"))?;
        let digest: Digest = req.digest.parse().map_err(|e| format!("{e}"))?;
        let cache = self.0.upgrade().ok_or("the cache is shutting down")?;
        tracing::debug!(peer, %digest, "serving a blob to a peer");
        metrics::counter!(crate::metrics::PEER_SERVES).increment(1);
        // A promise this node already kept (linked) is read as any blob: a peer whose
        // replica has not applied the link yet must not cause a second upstream fetch.
        let route = match req.mirror {
            Some(repo) if !cache.is_linked(&repo, &digest) => Route::MirrorHome(repo),
            _ => Route::OriginOnly,
        };
        let blob = cache
            .read(&digest, req.size, None, route)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Box::new(blob.into_async_read()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every node computes the same home, and removing a member moves only its blobs.
    #[test]
    fn rendezvous_is_stable_and_moves_only_what_it_must() {
        let members = |ids: &[u64]| -> Vec<(NodeId, String)> {
            ids.iter().map(|i| (*i, format!("n{i}"))).collect()
        };
        let mut moved = 0;
        let mut spread = HashMap::new();
        for n in 0..300u32 {
            let d = Digest::sha256_of(&n.to_be_bytes());
            let home3 = rendezvous(&d, members(&[1, 2, 3])).unwrap().0;
            assert_eq!(home3, rendezvous(&d, members(&[3, 1, 2])).unwrap().0);
            *spread.entry(home3).or_insert(0) += 1;
            let home2 = rendezvous(&d, members(&[1, 2])).unwrap().0;
            if home3 != 3 {
                assert_eq!(
                    home2, home3,
                    "a blob not homed on the removed node stays put"
                );
            } else {
                moved += 1;
            }
        }
        assert!(spread.values().all(|c| *c > 50), "spread: {spread:?}");
        assert_eq!(moved, spread[&3]);
        assert_eq!(rendezvous(&Digest::sha256_of(b"x"), vec![]), None);
    }
}
