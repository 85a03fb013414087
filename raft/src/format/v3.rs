//! Format 3, frozen where format 4 differs: a snapshot was one postcard value in the
//! `snapshot` tree (key `data`: every catalogue pair, `Vec<(Vec<u8>, Vec<u8>)>`). Format 4
//! keeps snapshots in files beside the database (`crate::snapshot`); the step writes the
//! old value out as the file `migrated.snap` and records it. The catalogue and the log are
//! the same bytes in both formats.
//!
//! `golden-v3.txt` and `tests/fixtures/v3-single` hold format 3 to what it wrote.

use std::path::Path;

use super::{Lookup, Pair, Step};
use crate::snapshot::{self, Snapshots};
use crate::{Error, Result};

/// Format 3 → format 4.
pub struct ToV4;

impl Step for ToV4 {
    fn catalog_pairs(&self, _old: Lookup, key: &[u8], value: &[u8]) -> Result<Vec<Pair>> {
        Ok(vec![(key.to_vec(), value.to_vec())])
    }

    fn log_entry(&self, value: &[u8]) -> Result<Vec<u8>> {
        Ok(value.to_vec())
    }

    fn snapshot_pairs(&self, key: &[u8], value: &[u8], meta_dir: &Path) -> Result<Vec<Pair>> {
        if key != b"data" {
            return Ok(vec![(key.to_vec(), value.to_vec())]);
        }
        // Held whole once, as format 3 itself held it; the file is then written pair by pair.
        let pairs: Vec<Pair> = postcard::from_bytes(value)
            .map_err(|e| Error::Corrupt(format!("format 3 snapshot: {e}")))?;
        let dir = Snapshots::dir_of(meta_dir);
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            // Format 4's plain file: its header names the step's format, and its length
            // stands for the catalogue's bytes until the next snapshot records them.
            snapshot::write_file_as(&dir.join(snapshot::MIGRATED), pairs.into_iter().map(Ok), 4)
        });
        written.map_err(|e| Error::Fatal(format!("writing the snapshot out: {e}")))?;
        Ok(vec![(
            b"file".to_vec(),
            snapshot::MIGRATED.as_bytes().to_vec(),
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A format-3 snapshot value becomes a file holding the same pairs, and the tree
    /// records the file in its place.
    #[test]
    fn a_format_3_snapshot_becomes_a_file_of_the_same_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let pairs: Vec<Pair> = (0..100u8)
            .map(|i| (vec![b'k', i], vec![i; i as usize]))
            .collect();
        let value = postcard::to_stdvec(&pairs).unwrap();
        let out = ToV4.snapshot_pairs(b"data", &value, dir.path()).unwrap();
        assert_eq!(out, [(b"file".to_vec(), b"migrated.snap".to_vec())]);
        let file = Snapshots::dir_of(dir.path()).join(snapshot::MIGRATED);
        let read: Vec<Pair> = snapshot::read_file(&file)
            .unwrap()
            .map(|kv| kv.unwrap())
            .collect();
        assert_eq!(read, pairs);
        assert_eq!(
            ToV4.snapshot_pairs(b"meta", b"{}", dir.path()).unwrap(),
            [(b"meta".to_vec(), b"{}".to_vec())]
        );
        assert!(ToV4
            .snapshot_pairs(b"data", b"\xff\xff", dir.path())
            .unwrap_err()
            .to_string()
            .contains("format 3 snapshot"));
    }
}
