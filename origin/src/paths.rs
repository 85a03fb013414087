//! The on-disk layout of the filesystem backend, drawn once:
//!
//! ```text
//! <root>/
//!   blobs/<algorithm>/<first two hex>/<hex>   committed blob; immutable, named by its digest
//!   uploads/<upload-uuid>                     bytes received so far by one upload session
//!   tmp/                                      scratch for files being verified before a rename
//! ```
//!
//! A blob appears under `blobs/` only by an atomic rename after its digest was verified, so
//! any file there is complete and correct. Every path component comes from a `Digest` or an
//! `UploadId`, which cannot hold `/` or `..`.

use std::path::{Path, PathBuf};

use crate::{Digest, UploadId};

#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    pub fn blob(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs_dir()
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub fn upload(&self, id: &UploadId) -> PathBuf {
        self.uploads_dir().join(id.to_string())
    }
}
