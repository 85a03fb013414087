//! The cache's way to the upstream of a mirrored blob (`cache::UpstreamSource`): open its
//! bytes there, and once a fill verified them, keep them as ordinary content: stored in the
//! origin (so they outlive cache eviction and node loss) and linked to the repository
//! through Raft, which ends the blob's promise. The embedded origin takes the fill file
//! itself (`BlobStore::adopt_file`), so a mirrored blob is written and hashed once.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::BytesMut;
use shoal_origin::{BlobStore, Digest};
use shoal_raft::{Actor, Command, Metadata, Outcome, Proposal};

use super::client::UpstreamError;
use super::Mirrors;
use crate::cache::{FillError, UpstreamSource};

/// Bytes copied into the origin per write.
const KEEP_CHUNK: u64 = 4 << 20;

pub struct MirrorSource {
    pub mirrors: Arc<Mirrors>,
    pub meta: Arc<Metadata>,
    pub store: Arc<dyn BlobStore>,
}

#[async_trait]
impl UpstreamSource for MirrorSource {
    async fn open(
        &self,
        repo: &str,
        digest: &Digest,
        from: u64,
    ) -> Result<shoal_origin::ByteChunks, FillError> {
        let upstream = self
            .meta
            .catalog()
            .upstream_of(repo)
            .map_err(|e| FillError::Io(e.to_string()))?
            .ok_or_else(|| FillError::Unavailable(format!("{repo} mirrors no upstream now")))?;
        let remote = upstream
            .remote_path(repo)
            .ok_or_else(|| FillError::Unavailable(format!("{repo} is no image path")))?;
        let client = self
            .mirrors
            .client(&upstream)
            .map_err(|e| FillError::Io(e.message))?;
        tracing::info!(upstream = %upstream.name, repo, %digest, from, "fetching a blob from the upstream");
        match client.blob(&remote, &digest.to_string(), from).await {
            Ok(blob) => Ok(Box::pin(blob)),
            Err(UpstreamError::NotFound) => Err(FillError::NotFound),
            Err(e) => Err(FillError::Unavailable(format!(
                "upstream {}: {e}",
                upstream.name
            ))),
        }
    }

    async fn keep(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        file: Arc<std::fs::File>,
        path: Option<&std::path::Path>,
    ) -> Result<(), String> {
        let stored = self.store.stat(digest).await.map_err(|e| e.to_string())?;
        if stored.is_none() {
            // The embedded origin takes the verified fill file itself (a rename on the same
            // disk); any other origin gets a copy as an upload.
            let adopted = match path {
                Some(p) => self.store.adopt_file(p, digest).await.unwrap_or_else(|e| {
                    tracing::warn!(%digest, error = %e, "the origin could not take the fill file; copying it");
                    false
                }),
                None => false,
            };
            if !adopted {
                self.store_file(digest, size, file).await?;
            }
        }
        let cmd = Command::LinkBlob {
            repo: repo.to_string(),
            digest: digest.to_string(),
            size,
            upload: None,
            at: chrono::Utc::now().timestamp(),
        };
        let proposal = Proposal::new(Actor::System("mirror".into()), "", cmd);
        match self.meta.write(proposal).await {
            Ok(Outcome::Done) => Ok(()),
            Ok(Outcome::Rejected(r)) => Err(format!("linking it: {r}")),
            Err(e) => Err(format!("linking it: {e}")),
        }
    }
}

impl MirrorSource {
    /// Copies the verified fill file into the origin as a committed blob.
    async fn store_file(
        &self,
        digest: &Digest,
        size: u64,
        file: Arc<std::fs::File>,
    ) -> Result<(), String> {
        let id = self
            .store
            .create_upload()
            .await
            .map_err(|e| e.to_string())?;
        let copy = async {
            let mut writer: Box<dyn shoal_origin::UploadWriter> = self.store.append(&id, 0).await?;
            let mut at = 0u64;
            while at < size {
                let n = (size - at).min(KEEP_CHUNK);
                let f = file.clone();
                let chunk = tokio::task::spawn_blocking(move || {
                    let mut buf = BytesMut::zeroed(n as usize);
                    f.read_exact_at(&mut buf, at).map(|()| buf.freeze())
                })
                .await
                .map_err(std::io::Error::other)??;
                writer.write(chunk).await?;
                at += n;
            }
            writer.finish().await?;
            self.store.commit_upload(&id, digest).await?;
            Ok::<(), shoal_origin::Error>(())
        };
        if let Err(e) = copy.await {
            let _ = self.store.cancel_upload(&id).await;
            return Err(format!("storing it in the origin: {e}"));
        }
        Ok(())
    }
}
