//! Region-wide peer fetch: a miss asks the blob's home node before the origin.
//!
//! The home node of a digest is chosen by rendezvous hashing over the current members, so
//! every node agrees on it without coordination and a membership change moves only the
//! blobs of the nodes that came or went. A cold miss *claims* the fill from the home
//! (`PeerAsk::Claim`): a home that holds or fills the blob streams it back; one that lent
//! the fill to another peer names it; otherwise it lends the fill to the asker, which reads
//! the origin itself (`leases`). So N nodes missing the same blob cost the origin one read,
//! and a single cold pull crosses one hop, not two. A mirror fill is claimed the same way
//! (`PeerAsk::MirrorClaim`): the node lent it reads the upstream itself, so the upstream is
//! still asked once per blob per region. Streams travel over the QUIC plane
//! (`Plane::open`). A peer that fails is skipped for a while, so a dead member does not slow
//! every miss.
//!
//! The messages are this version's own: a node of an older version refuses them, and the
//! asker then reads the origin (a second read during a rolling upgrade, never a wrong byte).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use shoal_origin::Digest;
use shoal_raft::plane::{ByteStream, StreamSource};
use shoal_raft::{Metadata, NodeId};
use tokio::io::AsyncReadExt;

use super::{BlobCache, Route};

/// How long a peer may take to start streaming before the origin is asked instead.
pub const PEER_OPEN: Duration = Duration::from_secs(3);
/// How long a peer that failed is passed over.
const PEER_BACKOFF: Duration = Duration::from_secs(10);

/// What a node sends its peer (`Request::Open` payload): the ask, and the asker's trace
/// context (W3C `traceparent`) so the peer's work joins the trace.
#[derive(Serialize, Deserialize)]
struct PeerRequest {
    trace: Option<String>,
    ask: PeerAsk,
}

/// What a node asks its peer.
#[derive(Serialize, Deserialize)]
enum PeerAsk {
    /// The blob's bytes, from the peer's cache or fill; a peer holding neither fills from
    /// the origin (for a mirror fill of repository `mirror`, from the upstream).
    Fetch {
        digest: String,
        size: u64,
        mirror: Option<String>,
    },
    /// The home node's decision on a cold miss; the answer's first byte says which.
    Claim { digest: String, size: u64 },
    /// `Claim` for a blob mirrored repository `repo` promises: a lent fill reads the
    /// upstream. (A variant of its own, after the others: a node of the previous version
    /// refuses it, and the asker reads the upstream, as it would have.)
    MirrorClaim {
        digest: String,
        size: u64,
        repo: String,
    },
}

/// First byte of a claim's answer: the blob's bytes follow.
const CLAIM_BYTES: u8 = 0;
/// First and only byte: the asker fills from the origin itself.
const CLAIM_LENT: u8 = 1;
/// Followed by the big-endian id of the peer lent the fill, to fetch from instead.
const CLAIM_ASK: u8 = 2;

/// The home node's answer to a claim.
pub enum Claimed {
    Bytes(ByteStream),
    /// Fill from the origin: this node holds the lease now.
    Lent,
    /// Another peer was lent the fill: fetch from it.
    Ask(NodeId),
}

/// Where a region miss goes first.
pub enum Home {
    /// This node is the digest's home: it decides, and reads the origin unless it lent the
    /// fill to a peer.
    Me,
    /// Claim the fill from this peer.
    Peer(NodeId, String),
    /// The home failed recently: the origin directly.
    Skipped,
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

    /// The members this node can reach over the plane, with their plane addresses.
    fn reachable(&self) -> Vec<(NodeId, String)> {
        self.meta
            .members()
            .into_iter()
            .filter(|(_, addr)| !addr.is_empty())
            .collect()
    }

    pub fn me(&self) -> NodeId {
        self.meta.member().0
    }

    /// The ids of the region's members.
    pub fn member_ids(&self) -> Vec<NodeId> {
        self.reachable().into_iter().map(|(id, _)| id).collect()
    }

    /// Where a miss of `digest` goes first.
    pub fn home(&self, digest: &Digest) -> Home {
        let Some((home, addr)) = rendezvous(digest, self.reachable()) else {
            return Home::Me;
        };
        if home == self.me() {
            Home::Me
        } else if self.recently_failed(home) {
            Home::Skipped
        } else {
            Home::Peer(home, addr)
        }
    }

    /// Peer `id`'s plane address, unless it is no member or failed recently.
    pub fn usable(&self, id: NodeId) -> Option<String> {
        if self.recently_failed(id) {
            return None;
        }
        self.reachable()
            .into_iter()
            .find_map(|(m, addr)| (m == id).then_some(addr))
    }

    fn recently_failed(&self, id: NodeId) -> bool {
        let failed_at = self.failed.lock().get(&id).copied();
        failed_at.is_some_and(|t| t.elapsed() < PEER_BACKOFF)
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
        let ask = PeerAsk::Fetch {
            digest: digest.to_string(),
            size,
            mirror,
        };
        self.ask(home, addr, ask).await
    }

    /// Claims the fill of `digest` from its home node `home`; for a mirror fill, of the
    /// blob repository `mirror` promises.
    #[tracing::instrument(name = "peer claim", level = "debug", skip_all, fields(peer = home, %digest))]
    pub async fn claim(
        &self,
        home: NodeId,
        addr: &str,
        digest: &Digest,
        size: u64,
        mirror: Option<String>,
    ) -> shoal_raft::Result<Claimed> {
        let digest_text = digest.to_string();
        let ask = match mirror {
            None => PeerAsk::Claim {
                digest: digest_text,
                size,
            },
            Some(repo) => PeerAsk::MirrorClaim {
                digest: digest_text,
                size,
                repo,
            },
        };
        let mut stream = self.ask(home, addr, ask).await?;
        let bad = |e: &dyn std::fmt::Display| {
            shoal_raft::Error::Unreachable(format!("node {home}'s answer to a claim: {e}"))
        };
        let answer = tokio::time::timeout(PEER_OPEN, async {
            let first = stream.read_u8().await?;
            Ok::<_, std::io::Error>(match first {
                CLAIM_BYTES => None,
                CLAIM_LENT => Some(Claimed::Lent),
                CLAIM_ASK => Some(Claimed::Ask(stream.read_u64().await?)),
                other => {
                    return Err(std::io::Error::other(format!("unknown answer {other}")));
                }
            })
        })
        .await
        .map_err(|e| bad(&e))?
        .map_err(|e| bad(&e))?;
        Ok(answer.unwrap_or(Claimed::Bytes(stream)))
    }

    async fn ask(
        &self,
        target: NodeId,
        addr: &str,
        ask: PeerAsk,
    ) -> shoal_raft::Result<ByteStream> {
        let plane = self.meta.plane().expect("Peers exist only with a plane");
        let request = PeerRequest {
            trace: shoal_origin::telemetry::traceparent(),
            ask,
        };
        let payload = postcard::to_stdvec(&request).expect("a peer request serialises");
        plane.open(target, addr, payload, PEER_OPEN).await
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
        let request: PeerRequest =
            postcard::from_bytes(&payload).map_err(|e| format!("undecodable peer request: {e}"))?;
        // Traced only as part of the asker's trace.
        let span = shoal_origin::telemetry::child(request.trace.as_deref(), &|| {
            tracing::debug_span!("peer serve", peer)
        });
        tracing::Instrument::instrument(self.answer(peer, request.ask), span).await
    }
}

impl PeerSource {
    async fn answer(&self, peer: NodeId, ask: PeerAsk) -> Result<ByteStream, String> {
        let cache = self.0.upgrade().ok_or("the cache is shutting down")?;
        let (digest, size, mirror, is_claim) = match ask {
            PeerAsk::Fetch {
                digest,
                size,
                mirror,
            } => (digest, size, mirror, false),
            PeerAsk::Claim { digest, size } => (digest, size, None, true),
            PeerAsk::MirrorClaim { digest, size, repo } => (digest, size, Some(repo), true),
        };
        let digest: Digest = digest.parse().map_err(|e| format!("{e}"))?;
        if is_claim {
            if let Some(said) = decided(&cache, peer, &digest, mirror.as_deref()) {
                return Ok(said);
            }
        }
        // A promise this node already kept (linked) is read as any blob: a peer whose
        // replica has not applied the link yet must not cause a second upstream fetch.
        let route = match mirror {
            Some(repo) if !cache.is_linked(&repo, &digest) => Route::MirrorHome(repo),
            _ => Route::OriginOnly,
        };
        tracing::debug!(peer, %digest, "serving a blob to a peer");
        metrics::counter!(crate::metrics::PEER_SERVES).increment(1);
        let blob = cache
            .read(&digest, size, None, route)
            .await
            .map_err(|e| e.to_string())?;
        let body = blob.into_async_read();
        Ok(if is_claim {
            Box::new(std::io::Cursor::new([CLAIM_BYTES]).chain(body))
        } else {
            Box::new(body)
        })
    }
}

/// The answer to a claim when it is not the bytes: the fill lent to the asker, or the
/// peer lent it before named. `None`: this node streams the blob.
fn decided(
    cache: &BlobCache,
    peer: NodeId,
    digest: &Digest,
    mirror: Option<&str>,
) -> Option<ByteStream> {
    let answer = match cache.answer_claim(peer, digest, mirror) {
        Decision::Serve => return None,
        Decision::Lend => {
            tracing::info!(peer, %digest, mirror, "lent a cold fill to a peer");
            metrics::counter!(crate::metrics::FILL_LEASES).increment(1);
            vec![CLAIM_LENT]
        }
        Decision::Redirect(to) => {
            let mut answer = vec![CLAIM_ASK];
            answer.extend_from_slice(&to.to_be_bytes());
            answer
        }
    };
    Some(Box::new(std::io::Cursor::new(answer)))
}

/// What the home node decides on a claim (`BlobCache::answer_claim`).
pub enum Decision {
    /// It holds or fills the blob: it streams it.
    Serve,
    /// The asker fills from the origin.
    Lend,
    /// The peer lent the fill earlier: the asker fetches from it.
    Redirect(NodeId),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every node computes the same home, and removing a member moves only its blobs.
    /// The asks of the previous version keep their encoding (postcard tags variants by
    /// index): `MirrorClaim` was appended, so a `Fetch` or `Claim` from an older node still
    /// reads as itself.
    #[test]
    fn asks_of_the_previous_version_keep_their_tags() {
        let fetch = PeerAsk::Fetch {
            digest: "d".into(),
            size: 7,
            mirror: None,
        };
        let claim = PeerAsk::Claim {
            digest: "d".into(),
            size: 7,
        };
        let mirror = PeerAsk::MirrorClaim {
            digest: "d".into(),
            size: 7,
            repo: "r".into(),
        };
        let bytes = |a: &PeerAsk| postcard::to_allocvec(a).unwrap();
        assert_eq!(bytes(&fetch), [0, 1, b'd', 7, 0]);
        assert_eq!(bytes(&claim), [1, 1, b'd', 7]);
        assert_eq!(bytes(&mirror), [2, 1, b'd', 7, 1, b'r']);
        assert!(matches!(
            postcard::from_bytes(&[1, 1, b'd', 7]),
            Ok(PeerAsk::Claim { size: 7, .. })
        ));
    }

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
