//! The cache's on-disk layout, drawn once, and the IO that rebuilds the index from it.
//!
//! ```text
//! <cache-dir>/
//!   blobs/<algorithm>/<hex>   complete blobs, verified before they were renamed here
//!   tmp/<uuid>                fills in progress; emptied at start-up (a crash leaves halves)
//! ```
//!
//! A file appears under `blobs/` only through a rename after its digest matched, with its
//! data synced first, so whatever is there after a crash is complete and correct. Paths are
//! built only from a validated `Digest` and fresh UUIDs.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use shoal_origin::Digest;

#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Layout {
        Layout { root }
    }

    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    pub fn new_tmp(&self) -> PathBuf {
        self.root.join("tmp").join(uuid::Uuid::new_v4().to_string())
    }

    /// Creates the directories, empties `tmp/`, and lists the complete blobs with their
    /// sizes, least recently modified first (the order to re-insert them into the index).
    pub fn prepare(&self) -> io::Result<Vec<(Digest, u64)>> {
        let tmp = self.root.join("tmp");
        match std::fs::remove_dir_all(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(&tmp)?;
        let blobs = self.root.join("blobs");
        std::fs::create_dir_all(&blobs)?;
        let mut found: Vec<(SystemTime, Digest, u64)> = Vec::new();
        for alg in std::fs::read_dir(&blobs)? {
            let alg = alg?;
            if !alg.file_type()?.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(alg.path())? {
                let file = file?;
                let name = format!(
                    "{}:{}",
                    alg.file_name().to_string_lossy(),
                    file.file_name().to_string_lossy()
                );
                let meta = file.metadata()?;
                match name.parse::<Digest>() {
                    Ok(d) if meta.is_file() && self.blob(&d) == file.path() => {
                        found.push((meta.modified()?, d, meta.len()));
                    }
                    _ => {
                        tracing::warn!(path = %file.path().display(), "removing a stray file from the cache");
                        remove_quietly(&file.path());
                    }
                }
            }
        }
        found.sort_by_key(|(t, _, _)| *t);
        Ok(found.into_iter().map(|(_, d, s)| (d, s)).collect())
    }
}

/// Removes a file; a file already gone is fine, anything else is logged.
pub fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a cache file")
        }
        _ => {}
    }
}
