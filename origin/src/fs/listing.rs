//! Paged listings of the filesystem backend: blobs and upload sessions in name order.
//!
//! A directory lists its entries in no order, so a page must look at every name of a
//! directory to find the smallest ones past the cursor. It keeps only those (`Smallest`, a
//! heap capped at what the page still needs), and walks the two-level `blobs/<alg>/<xx>/`
//! layout in order, one prefix directory at a time, stopping once the page is full: memory
//! follows the page size, not the store size. Synchronous `std::fs` code, run by the callers
//! on the blocking pool: it is nothing but directory reads and stats.

use std::collections::BinaryHeap;
use std::path::Path;

use crate::digest::Algorithm;
use crate::paths::Layout;
use crate::store::{unix_secs, BlobEntry, UploadEntry, UploadId};
use crate::{Digest, Result};

/// The `cap` smallest items pushed.
struct Smallest<K: Ord> {
    cap: usize,
    heap: BinaryHeap<K>,
}

impl<K: Ord> Smallest<K> {
    fn new(cap: usize) -> Smallest<K> {
        Smallest {
            cap,
            heap: BinaryHeap::new(),
        }
    }

    fn push(&mut self, k: K) {
        if self.heap.len() < self.cap {
            self.heap.push(k);
        } else if let Some(mut largest) = self.heap.peek_mut() {
            if k < *largest {
                *largest = k;
            }
        }
    }

    fn is_full(&self) -> bool {
        self.heap.len() == self.cap
    }

    fn into_sorted(self) -> Vec<K> {
        self.heap.into_sorted_vec()
    }
}

/// The UTF-8 names in `dir`; none if it does not exist.
fn names(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            out.push(name);
        }
    }
    Ok(out)
}

/// Size and mtime of `path`, or `None` if it is gone.
fn size_and_time(path: &Path) -> Result<Option<(u64, i64)>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((m.len(), unix_secs(m.modified()?)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Appends to `out`, up to `limit` in all, the entries of the smallest keys of one directory
/// after `after`. `keys` reads the directory; `entry` is `None` for a key whose file went
/// away since, in which case the directory is read again past the last key taken, so a
/// deletion never hides the keys behind it.
fn fill<K: Ord + Clone, E>(
    out: &mut Vec<E>,
    limit: usize,
    mut after: Option<K>,
    keys: impl Fn() -> Result<Vec<K>>,
    entry: impl Fn(&K) -> Result<Option<E>>,
) -> Result<()> {
    while out.len() < limit {
        let mut smallest = Smallest::new(limit - out.len());
        for k in keys()? {
            if after.as_ref().is_none_or(|a| &k > a) {
                smallest.push(k);
            }
        }
        let exhausted = !smallest.is_full();
        let taken = smallest.into_sorted();
        for k in &taken {
            out.extend(entry(k)?);
        }
        match taken.last() {
            Some(last) if !exhausted => after = Some(last.clone()),
            _ => break,
        }
    }
    Ok(())
}

/// Committed blobs after `after`, at most `limit`: `blobs/<alg>/<xx>/<hex>` in order of
/// algorithm name, prefix and name, which is the order of the digests' string form.
pub(super) fn blobs(
    layout: &Layout,
    after: Option<&Digest>,
    limit: usize,
) -> Result<Vec<BlobEntry>> {
    let mut out = Vec::new();
    for alg in Algorithm::ALL {
        if out.len() == limit {
            break;
        }
        if after.is_some_and(|a| a.algorithm() > alg) {
            continue;
        }
        let alg_dir = layout.blobs_dir().join(alg.as_str());
        let mut prefixes = names(&alg_dir)?;
        prefixes.retain(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
        prefixes.sort();
        // Only the cursor's own algorithm and prefix need the cursor; later ones start fresh.
        let cursor = after.filter(|a| a.algorithm() == alg);
        for prefix in prefixes {
            if out.len() == limit {
                break;
            }
            if cursor.is_some_and(|a| prefix.as_str() < &a.hex()[..2]) {
                continue;
            }
            let dir = alg_dir.join(&prefix);
            let keys = || {
                let digests = names(&dir)?.into_iter().filter_map(|name| {
                    let d: Digest = format!("{}:{name}", alg.as_str()).parse().ok()?;
                    // A file under the wrong prefix is not one `stat` would find.
                    (d.hex()[..2] == prefix).then_some(d)
                });
                Ok(digests.collect())
            };
            let entry = |d: &Digest| {
                let found = size_and_time(&layout.blob(d))?;
                Ok(found.map(|(size, modified)| BlobEntry {
                    digest: d.clone(),
                    size,
                    modified,
                }))
            };
            fill(&mut out, limit, cursor.cloned(), keys, entry)?;
        }
    }
    Ok(out)
}

/// Upload sessions after `after`, at most `limit`, with the size and mtime of their files.
pub(super) fn uploads(
    layout: &Layout,
    after: Option<&UploadId>,
    limit: usize,
) -> Result<Vec<UploadEntry>> {
    let mut out = Vec::new();
    let keys = || {
        let ids = names(&layout.uploads_dir())?.into_iter();
        Ok(ids.filter_map(|name| name.parse().ok()).collect())
    };
    let entry = |id: &UploadId| {
        let found = size_and_time(&layout.upload(id))?;
        Ok(found.map(|(size, modified)| UploadEntry {
            id: id.clone(),
            size,
            modified,
        }))
    };
    fill(&mut out, limit, after.cloned(), keys, entry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(items: &[u32], cap: usize, expected: &[u32]) {
        let mut s = Smallest::new(cap);
        for &i in items {
            s.push(i);
        }
        assert_eq!(s.into_sorted(), expected, "{items:?} capped at {cap}");
    }

    #[test]
    fn smallest_keeps_the_smallest() {
        check(&[5, 1, 4, 2, 3], 2, &[1, 2]);
        check(&[5, 1, 4, 2, 3], 9, &[1, 2, 3, 4, 5]);
        check(&[5, 1, 4], 0, &[]);
        check(&[], 3, &[]);
        check(&[3, 3, 1], 2, &[1, 3]);
    }
}
