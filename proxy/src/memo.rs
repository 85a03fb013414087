//! A small memory of values read from the catalogue, given again only while the catalogue
//! has not changed since they were read.
//!
//! Why: a manifest GET by tag read the tag, then the manifest record (decoding its blob
//! list), then whether the namespace mirrors an upstream, from sled on every request; at
//! 45 000 requests/s that was ~8 % of a node's CPU for answers that change only when the
//! catalogue does (`bench/RESULTS.md`, "Manifest reads remembered").
//!
//! Why it cannot answer stale: `Catalog::version` moves after every entry the replica
//! applies (and is `None` while a snapshot loads). A value is kept with the version read
//! *before* it was read, and the whole memory is forgotten as soon as a later version is
//! seen, so a value is given only while the catalogue is exactly the one it came from. A
//! write applied between the version's read and the value's read leaves the value filed
//! under the older version, which the next request (seeing the newer one) throws away.
//!
//! Cost when abused: at most `capacity` entries, least recently used forgotten first; a
//! caller asking for many distinct names only makes every read a miss, as before. Values
//! are cloned under the lock, so large ones are kept behind an `Arc`.

use std::hash::Hash;
use std::num::NonZeroUsize;

use lru::LruCache;
use parking_lot::Mutex;

pub struct Memo<K: Hash + Eq, V: Clone> {
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K: Hash + Eq, V> {
    /// The catalogue version every entry was read at.
    version: u64,
    entries: LruCache<K, V>,
}

impl<K: Hash + Eq, V: Clone> Memo<K, V> {
    pub fn new(capacity: usize) -> Self {
        Memo {
            inner: Mutex::new(Inner {
                version: 0,
                entries: LruCache::new(NonZeroUsize::new(capacity.max(1)).expect("non-zero")),
            }),
        }
    }

    /// The value kept for `key`, if it was read at `version` (the catalogue's now).
    pub fn get<Q>(&self, version: Option<u64>, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let version = version?;
        let mut inner = self.inner.lock();
        if inner.version != version {
            return None;
        }
        inner.entries.get(key).cloned()
    }

    /// Keeps `value`, read after the catalogue's version was `version`. A value read at an
    /// older version than what is kept is dropped; one at a newer version forgets the rest.
    pub fn put(&self, version: Option<u64>, key: K, value: V) {
        let Some(version) = version else { return };
        let mut inner = self.inner.lock();
        if version < inner.version {
            return;
        }
        // What a newer version makes stale is freed after the lock is let go.
        let stale = (version > inner.version).then(|| {
            inner.version = version;
            let cap = inner.entries.cap();
            std::mem::replace(&mut inner.entries, LruCache::new(cap))
        });
        inner.entries.put(key, value);
        drop(inner);
        drop(stale);
    }

    /// The value for `key` at the catalogue's `version()`, from memory or from `read` (whose
    /// answer is kept when `keep` says so).
    pub fn get_or_read<Q, E>(
        &self,
        version: Option<u64>,
        key: &Q,
        read: impl FnOnce() -> Result<V, E>,
        keep: impl FnOnce(&V) -> bool,
    ) -> Result<V, E>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(v) = self.get(version, key) {
            return Ok(v);
        }
        let v = read()?;
        if keep(&v) {
            self.put(version, key.to_owned(), v.clone());
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_given_only_at_the_version_it_was_read_at() {
        let m: Memo<String, u32> = Memo::new(4);
        m.put(Some(2), "a".into(), 1);
        assert_eq!(m.get(Some(2), "a"), Some(1));
        assert_eq!(m.get(Some(4), "a"), None, "the catalogue changed");
        assert_eq!(m.get(None, "a"), None, "a snapshot is loading");
        m.put(Some(4), "b".into(), 2);
        assert_eq!(m.get(Some(2), "a"), None, "a newer version forgot the rest");
        assert_eq!(m.get(Some(4), "b"), Some(2));
        // Read at an older version than what is kept: dropped.
        m.put(Some(2), "c".into(), 3);
        assert_eq!(m.get(Some(4), "c"), None);
        assert_eq!(m.get(Some(2), "c"), None);
        // Nothing is kept while a snapshot loads.
        m.put(None, "d".into(), 4);
        assert_eq!(m.get(Some(4), "d"), None);
    }

    #[test]
    fn it_holds_at_most_its_capacity_and_reads_through_when_it_must() {
        let m: Memo<u32, u32> = Memo::new(2);
        for k in 0..3 {
            m.put(Some(2), k, k * 10);
        }
        assert_eq!(m.get(Some(2), &0), None, "the least recently used went");
        let mut reads = 0;
        let mut read = |k: u32| {
            m.get_or_read::<u32, ()>(
                Some(2),
                &k,
                || {
                    reads += 1;
                    Ok(k + 100)
                },
                |v| *v != 105,
            )
        };
        assert_eq!(read(2), Ok(20));
        assert_eq!(read(7), Ok(107));
        assert_eq!(read(7), Ok(107));
        assert_eq!(read(5), Ok(105));
        assert_eq!(read(5), Ok(105));
        assert_eq!(reads, 3, "7 read once; 5 not kept, read twice");
    }
}
