//! Blob reads and deletes: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.
//!
//! A blob is served only if the metadata links it to the repository (no reading another
//! repository's blob by guessing its digest), or a mirrored manifest of the repository
//! promises it: then it is fetched from the upstream (`mirror`). The bytes come from the
//! edge cache when the origin is a separate service (`cache`), else straight from the
//! embedded origin. With the cache, a HEAD is answered from the metadata alone, so it works
//! while the origin is down.

use http::StatusCode;
use shoal_raft::Command;

use super::range::parse_range;
use super::{parse_digest, Registry};
use crate::cache::Route as CacheRoute;
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::RepoName;
use crate::wire::{Body, LocalFile, Reply, Request};

impl Registry {
    pub(super) async fn get_blob(
        &self,
        req: &Request,
        repo: &RepoName,
        digest: &str,
        head: bool,
        caller: &crate::auth::Caller,
    ) -> ApiResult<Reply> {
        let digest = parse_digest(digest)?;
        let catalog = self.meta.catalog();
        let mut linked = catalog.blob_size(repo.as_str(), &digest.to_string())?;
        // A blob a mirrored manifest promises is fetched from the upstream on first read.
        let promised = match linked {
            Some(_) => None,
            None => match catalog.promised_blob(repo.as_str(), &digest.to_string())? {
                Some(size) => {
                    Some(size).filter(|_| self.mirrors.binding(repo).is_ok_and(|b| b.is_some()))
                }
                None => {
                    // Linking a fetched blob removes its promise in the same write: one
                    // applied between the two reads left neither, so the link is read again.
                    linked = catalog.blob_size(repo.as_str(), &digest.to_string())?;
                    None
                }
            },
        };
        let Some(size) = linked.or(promised) else {
            self.require_repo(repo)?;
            return Err(ApiError::new(
                Code::BlobUnknown,
                format!("blob {digest} is not in repository {repo}"),
            ));
        };
        if promised.is_none() {
            // Docker HEADs a layer before a push and skips uploading it if it is here: the
            // link must then outlive the push, so a pusher's use renews an old lease first.
            self.touch_if_old(req, caller, repo, &digest.to_string())
                .await?;
        }
        let range = parse_range(req.header("range"), Some(size)).map_err(|()| {
            ApiError::new(Code::RangeInvalid, "unsupported or malformed Range header")
                .header("Content-Range", format!("bytes */{size}"))
        })?;
        let common = |r: Reply| {
            r.header("Docker-Content-Digest", digest.to_string())
                .header("ETag", format!("\"{digest}\""))
                .header("Accept-Ranges", "bytes")
                .header("Content-Type", "application/octet-stream")
                .header("Cache-Control", "max-age=31536000, immutable")
        };
        if head && range.is_none() {
            if self.cache.is_some() || promised.is_some() {
                return Ok(common(Reply::new(StatusCode::OK)).body(Body::HeadOnly(size)));
            }
            let stored = self.store.stat(&digest).await?.map(|i| i.size);
            let size = stored.ok_or_else(|| lost(&digest))?;
            return Ok(common(Reply::new(StatusCode::OK)).body(Body::HeadOnly(size)));
        }
        let blob = if promised.is_some() {
            let route = CacheRoute::Mirror(repo.to_string());
            self.fills
                .read(&digest, size, range, route)
                .await
                .map_err(|e| mirror_fill_error(repo, e))?
        } else {
            let read = match &self.cache {
                Some(cache) => cache.read(&digest, size, range, CacheRoute::Region).await,
                None => self.store.read(&digest, range).await,
            };
            read.map_err(|e| match e {
                shoal_origin::Error::BlobNotFound(_) => lost(&digest),
                other => other.into(),
            })?
        };
        let len = blob.range.len();
        let mut reply = common(Reply::new(if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        }));
        if range.is_some() {
            reply = reply.header(
                "Content-Range",
                format!(
                    "bytes {}-{}/{}",
                    blob.range.start,
                    blob.range.end - 1,
                    blob.size
                ),
            );
        }
        Ok(reply.body(if head {
            Body::HeadOnly(len)
        } else {
            Body::Stream {
                len,
                chunks: blob.body,
                file: match (blob.file, blob.filling) {
                    (Some(file), _) => Some(LocalFile {
                        file,
                        offset: blob.range.start,
                        whole: None,
                    }),
                    (None, Some((file, whole))) => Some(LocalFile {
                        file,
                        offset: blob.range.start,
                        whole: Some(whole),
                    }),
                    (None, None) => None,
                },
            }
        }))
    }

    pub(super) async fn delete_blob(
        &self,
        req: &Request,
        repo: &RepoName,
        digest: &str,
        caller: &crate::auth::Caller,
    ) -> ApiResult<Reply> {
        let digest = parse_digest(digest)?;
        crate::errors::commit(
            &self.meta,
            caller,
            req,
            Command::UnlinkBlob {
                repo: repo.to_string(),
                digest: digest.to_string(),
            },
        )
        .await?;
        Ok(Reply::new(StatusCode::ACCEPTED).header("Docker-Content-Digest", digest.to_string()))
    }
}

/// A mirror fill that could not start: the upstream lost the blob, or cannot be asked.
fn mirror_fill_error(repo: &RepoName, e: shoal_origin::Error) -> ApiError {
    match e {
        shoal_origin::Error::BlobNotFound(d) => ApiError::new(
            Code::BlobUnknown,
            format!("the upstream of {repo} no longer has blob {d}"),
        ),
        shoal_origin::Error::Unavailable(m) => ApiError::new(
            Code::Unavailable,
            format!("blob of {repo} not cached and {m}"),
        )
        .header("Retry-After", "10"),
        other => other.into(),
    }
}

/// The metadata links a blob the origin does not have: answered as unknown, logged loudly.
fn lost(digest: &shoal_origin::Digest) -> ApiError {
    tracing::error!(%digest, "blob is linked in the metadata but missing from the origin");
    ApiError::new(
        Code::BlobUnknown,
        format!("blob {digest} is missing from the origin store"),
    )
}
