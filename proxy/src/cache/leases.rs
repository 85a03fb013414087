//! The home node's fill leases: which peer it let fill a blob straight from the origin.
//!
//! A cold miss on a node that is not the digest's home asks the home to *claim* the fill.
//! When the home neither holds the blob nor fills it, and no other peer was lent it, it lends
//! the fill to the asker, which then reads the origin itself: a single cold pull costs one
//! hop, not two. Whoever misses later, the home included, is sent to the lessee, which
//! serves from its fill or its cache. So the origin is still read once per blob per region;
//! only who reads it moved.
//!
//! Mirror fills are lent the same way: the lessee reads the upstream instead of the origin.
//!
//! A lease is a hint, not a lock: one whose holder left the region is ignored, and a holder
//! that has dropped the blob since fills it again from the origin when asked (one read, as
//! the home would). The map is bounded; the oldest leases go first.

use std::num::NonZeroUsize;

use lru::LruCache;
use shoal_origin::Digest;
use shoal_raft::NodeId;

/// Leases remembered at most: about 100 bytes each.
const CAPACITY: usize = 65_536;

pub struct Leases(LruCache<Digest, NodeId>);

impl Default for Leases {
    fn default() -> Self {
        Leases(LruCache::new(
            NonZeroUsize::new(CAPACITY).expect("non-zero"),
        ))
    }
}

impl Leases {
    /// The peer lent `digest`, if it is still one of `members`.
    pub fn holder(&mut self, digest: &Digest, members: &[NodeId]) -> Option<NodeId> {
        let holder = *self.0.get(digest)?;
        if members.contains(&holder) {
            return Some(holder);
        }
        self.0.pop(digest);
        None
    }

    pub fn lend(&mut self, digest: Digest, to: NodeId) {
        self.0.put(digest, to);
    }

    /// Forgets a deleted blob's lease.
    pub fn forget(&mut self, digest: &Digest) {
        self.0.pop(digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_names_its_holder_until_it_leaves_the_region_or_the_blob_goes() {
        let d = Digest::sha256_of(b"a");
        let mut l = Leases::default();
        assert_eq!(l.holder(&d, &[1, 2, 3]), None);
        l.lend(d.clone(), 2);
        assert_eq!(l.holder(&d, &[1, 2, 3]), Some(2));
        assert_eq!(l.holder(&d, &[1, 3]), None, "node 2 left the region");
        assert_eq!(l.holder(&d, &[1, 2, 3]), None, "and the lease went with it");
        l.lend(d.clone(), 3);
        l.forget(&d);
        assert_eq!(l.holder(&d, &[1, 2, 3]), None);
    }
}
