//! The cache's policy: which blobs are kept and which go, by bytes and recency.
//!
//! A pure index (no IO, as pingora-cache's `EvictionManager`): the `lru` crate orders entries,
//! and a byte total is kept beside it because `lru` counts entries. Inserting returns the
//! digests to evict; the caller deletes their files. A blob larger than the whole budget is
//! never admitted (it is returned as its own eviction).

use lru::LruCache;
use shoal_origin::Digest;

pub struct CacheIndex {
    entries: LruCache<Digest, u64>,
    bytes: u64,
    max_bytes: u64,
}

impl CacheIndex {
    pub fn new(max_bytes: u64) -> CacheIndex {
        CacheIndex {
            entries: LruCache::unbounded(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Marks `digest` as just used; its size if cached.
    pub fn touch(&mut self, digest: &Digest) -> Option<u64> {
        self.entries.get(digest).copied()
    }

    /// Adds `digest` as the most recently used entry and returns what must be evicted to
    /// stay within the budget, least recently used first (possibly `digest` itself).
    pub fn insert(&mut self, digest: Digest, size: u64) -> Vec<Digest> {
        if size > self.max_bytes {
            return vec![digest];
        }
        if let Some(old) = self.entries.put(digest, size) {
            self.bytes -= old;
        }
        self.bytes += size;
        let mut evicted = Vec::new();
        while self.bytes > self.max_bytes {
            let (d, s) = self.entries.pop_lru().expect("bytes > 0 means entries");
            self.bytes -= s;
            evicted.push(d);
        }
        evicted
    }

    /// Forgets `digest`; its size if it was cached.
    pub fn remove(&mut self, digest: &Digest) -> Option<u64> {
        let size = self.entries.pop(digest)?;
        self.bytes -= size;
        Some(size)
    }

    /// Every cached digest, most recently used first.
    pub fn digests(&self) -> Vec<Digest> {
        self.entries.iter().map(|(d, _)| d.clone()).collect()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    enum Op {
        Insert(u8, u64),
        Touch(u8),
        Remove(u8),
    }

    /// Applies `ops` to an index of `max` bytes; checks the evictions of each insert (by
    /// entry number) and the final byte total.
    fn check(max: u64, ops: &[(Op, &[u8])], bytes: u64) {
        let mut index = CacheIndex::new(max);
        for (i, (op, expected)) in ops.iter().enumerate() {
            let evicted = match op {
                Op::Insert(n, size) => index.insert(d(*n), *size),
                Op::Touch(n) => {
                    index.touch(&d(*n));
                    vec![]
                }
                Op::Remove(n) => {
                    index.remove(&d(*n));
                    vec![]
                }
            };
            let want: Vec<Digest> = expected.iter().map(|n| d(*n)).collect();
            assert_eq!(evicted, want, "op {i}");
        }
        assert_eq!(index.bytes(), bytes);
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        use Op::*;
        check(
            10,
            &[
                (Insert(1, 4), &[]),
                (Insert(2, 4), &[]),
                (Insert(3, 4), &[1]),
            ],
            8,
        );
        check(
            10,
            &[
                (Insert(1, 4), &[]),
                (Insert(2, 4), &[]),
                (Touch(1), &[]),
                (Insert(3, 4), &[2]),
            ],
            8,
        );
        check(
            10,
            &[
                (Insert(1, 3), &[]),
                (Insert(2, 3), &[]),
                (Insert(3, 9), &[1, 2]),
            ],
            9,
        );
        check(10, &[(Insert(1, 11), &[1])], 0);
        check(10, &[(Insert(1, 5), &[]), (Insert(1, 5), &[])], 5);
        check(
            10,
            &[(Insert(1, 5), &[]), (Remove(1), &[]), (Insert(2, 10), &[])],
            10,
        );
    }
}
