//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (plain, monolithic `?digest=`, cross-repo
//! `?mount=&from=`), `PATCH`, `PUT ?digest=`, `GET` status and `DELETE` on the session.
//!
//! The session lives in the origin; the node only streams bytes into it. A blob becomes
//! visible in a repository only after the origin verified its digest *and* the link was
//! committed through Raft, so a failed or truncated upload leaves nothing behind.
//!
//! A session belongs to the repository it was opened in and to the principal that opened it
//! (`OpenUpload` records both in the replicated catalogue, so every node and a restart know
//! it). Its status, appends, finishing and cancelling answer only that principal (through
//! any of its credentials or tokens) on that repository; anyone else gets
//! `BLOB_UPLOAD_UNKNOWN`, exactly as for an id that never existed. A principal holds at most
//! `Registry::max_open_uploads` sessions at once (429 past that). A monolithic upload
//! (`POST ?digest=`) opens and finishes its session within one request and records none.

use http::StatusCode;
use shoal_origin::{Digest, UploadId, UploadWriter};
use shoal_raft::{Command, UploadRecord};

use super::range::parse_content_range;
use super::{parse_digest, Registry};
use crate::auth::{Caller, Need};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::RepoName;
use crate::wire::{Reply, Request, RequestBody};

fn upload_location(repo: &RepoName, id: &UploadId) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// `Range` value for an upload of `size` bytes (inclusive end; `0-0` when empty, as Distribution).
fn range_of(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// The answer for a session that does not exist *or* is not the caller's to touch.
fn unknown_upload(id: &str) -> ApiError {
    ApiError::new(
        Code::BlobUploadUnknown,
        format!("upload {id} is not known to this registry"),
    )
}

impl Registry {
    fn upload_reply(&self, status: StatusCode, repo: &RepoName, id: &UploadId, size: u64) -> Reply {
        Reply::new(status)
            .header("Location", upload_location(repo, id))
            .header("Range", range_of(size))
            .header("Docker-Upload-UUID", id.to_string())
    }

    fn created(&self, repo: &RepoName, digest: &Digest) -> Reply {
        Reply::new(StatusCode::CREATED)
            .header("Location", format!("/v2/{repo}/blobs/{digest}"))
            .header("Docker-Content-Digest", digest.to_string())
    }

    /// Links `digest` to `repo`, closing recorded session `upload` in the same commit.
    async fn link(
        &self,
        caller: &Caller,
        req: &Request,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        upload: Option<&UploadId>,
    ) -> ApiResult<()> {
        let cmd = Command::LinkBlob {
            repo: repo.to_string(),
            digest: digest.to_string(),
            size,
            upload: upload.map(UploadId::to_string),
            at: chrono::Utc::now().timestamp(),
        };
        crate::errors::commit(&self.meta, caller, req, cmd).await
    }

    /// The uid of the principal `caller` acts for: what a session is bound to.
    fn owner_uid(&self, caller: &Caller) -> ApiResult<Option<(String, String)>> {
        let Some(name) = caller.principal() else {
            return Ok(None);
        };
        Ok(self
            .meta
            .catalog()
            .principal(name)?
            .map(|p| (p.name, p.uid)))
    }

    /// Session `id` of `repo`, if `caller` opened it; `BLOB_UPLOAD_UNKNOWN` otherwise. A
    /// session this replica does not know yet may have just been opened through another
    /// node, so "unknown" is answered only after catching up with the region.
    async fn session(&self, caller: &Caller, repo: &RepoName, id: &str) -> ApiResult<UploadId> {
        let parsed: UploadId = id.parse().map_err(|_| unknown_upload(id))?;
        let key = parsed.to_string();
        let catalog = self.meta.catalog();
        let record = match catalog.upload(&key)? {
            Some(r) => Some(r),
            None => {
                self.meta.catch_up().await?;
                catalog.upload(&key)?
            }
        };
        let owner = self.owner_uid(caller)?;
        match (record, owner) {
            (Some(r), Some((_, uid))) if r.repo == repo.as_str() && r.owner_uid == uid => {
                Ok(parsed)
            }
            _ => Err(unknown_upload(id)),
        }
    }

    pub(super) async fn start_upload(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        repo: &RepoName,
        caller: &Caller,
    ) -> ApiResult<Reply> {
        self.require_namespace(repo).await?;
        if let (Some(mount), Some(from)) = (req.query("mount"), req.query("from")) {
            if let Some(reply) = self.try_mount(req, repo, mount, from, caller).await? {
                return Ok(reply);
            }
        }
        if let Some(digest) = req.query("digest") {
            let digest = parse_digest(digest)?;
            Self::check_blob_type(req)?;
            let id = self.store.create_upload().await?;
            let result = async {
                self.append_body(req, body, &id).await?;
                self.finish(caller, req, repo, &id, &digest, false).await
            }
            .await;
            if result.is_err() {
                let _ = self.store.cancel_upload(&id).await;
            }
            return result;
        }
        let (owner, owner_uid) = self
            .owner_uid(caller)?
            .ok_or_else(|| ApiError::new(Code::Denied, "uploads are opened by a principal"))?;
        let id = self.store.create_upload().await?;
        let open = Command::OpenUpload {
            id: id.to_string(),
            upload: UploadRecord {
                repo: repo.to_string(),
                owner,
                owner_uid,
                started_at: chrono::Utc::now().timestamp(),
            },
            limit: self.max_open_uploads,
        };
        if let Err(e) = crate::errors::commit(&self.meta, caller, req, open).await {
            let _ = self.store.cancel_upload(&id).await;
            return Err(e);
        }
        Ok(self.upload_reply(StatusCode::ACCEPTED, repo, &id, 0))
    }

    /// Links a blob another repository already has. `None` means "not mountable": the
    /// client gets a normal upload session instead, as the spec asks.
    async fn try_mount(
        &self,
        req: &Request,
        repo: &RepoName,
        mount: &str,
        from: &str,
        caller: &Caller,
    ) -> ApiResult<Option<Reply>> {
        let digest = parse_digest(mount)?;
        let Ok(from) = RepoName::parse(from) else {
            return Ok(None);
        };
        if self
            .auth
            .authorize(req, &Need::Pull(from.clone()))
            .await
            .is_err()
        {
            return Ok(None);
        }
        let Some(size) = self
            .meta
            .catalog()
            .blob_size(from.as_str(), &digest.to_string())?
        else {
            return Ok(None);
        };
        if self.store.stat(&digest).await?.is_none() {
            return Ok(None);
        }
        self.link(caller, req, repo, &digest, size, None).await?;
        Ok(Some(self.created(repo, &digest)))
    }

    /// Blob bytes are `application/octet-stream`: a body announced as anything else (JSON, a
    /// form) is refused before a byte is stored. No Content-Type, as some clients send, is
    /// taken as bytes; an empty body is not checked.
    fn check_blob_type(req: &Request) -> ApiResult<()> {
        let Some(ct) = req.header("content-type") else {
            return Ok(());
        };
        let empty = req
            .header("content-length")
            .is_some_and(|l| l.trim() == "0");
        let base = ct.split(';').next().unwrap_or("").trim();
        if empty || base.eq_ignore_ascii_case("application/octet-stream") {
            return Ok(());
        }
        Err(ApiError::new(
            Code::Unsupported,
            format!("blob uploads carry application/octet-stream, not {ct:?}"),
        ))
    }

    /// Streams the request body into the upload at its current end. When a `Content-Range`
    /// is given it must start there and match the body length. Returns the new size.
    #[tracing::instrument(name = "upload append", level = "debug", skip_all, fields(upload = %id))]
    async fn append_body(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        id: &UploadId,
    ) -> ApiResult<u64> {
        Self::check_blob_type(req)?;
        let current = self.store.upload_size(id).await?;
        let declared = match req.header("content-range") {
            None => None,
            Some(h) => {
                let r = parse_content_range(h).ok_or_else(|| {
                    ApiError::new(Code::RangeInvalid, format!("malformed Content-Range {h:?}"))
                        .header("Range", range_of(current))
                })?;
                if r.start != current {
                    return Err(ApiError::new(
                        Code::RangeInvalid,
                        format!(
                            "chunk starts at {}, but the upload has {current} bytes",
                            r.start
                        ),
                    )
                    .header("Range", range_of(current)));
                }
                Some(r.len())
            }
        };
        let mut writer: Option<Box<dyn UploadWriter>> = None;
        let mut received = 0u64;
        while let Some(chunk) = body.next().await? {
            if writer.is_none() {
                writer = Some(self.store.append(id, current).await?);
            }
            received += chunk.len() as u64;
            if declared.is_some_and(|d| received > d) {
                break;
            }
            writer
                .as_mut()
                .expect("writer opened above")
                .write(chunk)
                .await?;
        }
        if let Some(d) = declared {
            if received != d {
                return Err(ApiError::new(
                    Code::SizeInvalid,
                    format!("Content-Range announces {d} bytes but the body had {received}"),
                ));
            }
        }
        if let Some(cl) = req
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok())
        {
            if cl != received {
                return Err(ApiError::new(
                    Code::SizeInvalid,
                    format!("Content-Length is {cl} but the body had {received} bytes"),
                ));
            }
        }
        match writer {
            Some(w) => Ok(w.finish().await?),
            None => Ok(current),
        }
    }

    /// Commits upload `id` as blob `digest` of `repo`; `recorded` when the session has a
    /// catalogue record to close with the link.
    #[tracing::instrument(name = "upload commit", level = "debug", skip_all, fields(repository = %repo, %digest))]
    async fn finish(
        &self,
        caller: &Caller,
        req: &Request,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        recorded: bool,
    ) -> ApiResult<Reply> {
        let size = self.store.commit_upload(id, digest).await?;
        self.link(caller, req, repo, digest, size, recorded.then_some(id))
            .await?;
        Ok(self.created(repo, digest))
    }

    pub(super) async fn upload_status(
        &self,
        repo: &RepoName,
        id: &str,
        caller: &Caller,
    ) -> ApiResult<Reply> {
        let id = self.session(caller, repo, id).await?;
        let size = self.store.upload_size(&id).await?;
        Ok(self.upload_reply(StatusCode::NO_CONTENT, repo, &id, size))
    }

    pub(super) async fn patch_upload(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        repo: &RepoName,
        id: &str,
        caller: &Caller,
    ) -> ApiResult<Reply> {
        let id = self.session(caller, repo, id).await?;
        let size = self.append_body(req, body, &id).await?;
        Ok(self.upload_reply(StatusCode::ACCEPTED, repo, &id, size))
    }

    pub(super) async fn put_upload(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        repo: &RepoName,
        id: &str,
        caller: &Caller,
    ) -> ApiResult<Reply> {
        let id = self.session(caller, repo, id).await?;
        let digest = req.query("digest").ok_or_else(|| {
            ApiError::new(
                Code::DigestInvalid,
                "PUT needs ?digest= to finish an upload",
            )
        })?;
        let digest = parse_digest(digest)?;
        self.require_namespace(repo).await?;
        self.append_body(req, body, &id).await?;
        self.finish(caller, req, repo, &id, &digest, true).await
    }

    pub(super) async fn cancel_upload(
        &self,
        req: &Request,
        repo: &RepoName,
        id: &str,
        caller: &Caller,
    ) -> ApiResult<Reply> {
        let id = self.session(caller, repo, id).await?;
        self.store.cancel_upload(&id).await?;
        let close = Command::CloseUploads {
            ids: vec![id.to_string()],
        };
        crate::errors::commit(&self.meta, caller, req, close).await?;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }
}
