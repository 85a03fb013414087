//! Manifests: `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<tag|digest>`.
//!
//! Manifests are small and live in the replicated metadata, so reads never touch the origin.
//! The bytes pushed are the bytes served, with the media type they were pushed with.

use http::StatusCode;
use shoal_origin::Digest;
use shoal_raft::{Command, ManifestRecord};

use super::manifest::{self, MAX_MANIFEST_BYTES};
use super::Registry;
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::{RepoName, Tag};
use crate::wire::{read_limited, Body, Reply, Request, RequestBody};

/// A manifest reference: tags cannot contain `:`, digests always do.
enum Reference {
    Tag(Tag),
    Digest(Digest),
}

fn parse_reference(s: &str) -> ApiResult<Reference> {
    if s.contains(':') {
        Ok(Reference::Digest(s.parse()?))
    } else {
        Tag::parse(s)
            .map(Reference::Tag)
            .map_err(|e| ApiError::new(Code::TagInvalid, e.to_string()))
    }
}

impl Registry {
    fn find_manifest(&self, repo: &RepoName, reference: &str) -> ApiResult<ManifestRecord> {
        let catalog = self.meta.catalog();
        let digest = match parse_reference(reference)? {
            Reference::Digest(d) => Some(d.to_string()),
            Reference::Tag(t) => catalog.tag(repo.as_str(), t.as_str())?,
        };
        let found = match digest {
            Some(d) => catalog.manifest(repo.as_str(), &d)?,
            None => None,
        };
        match found {
            Some(m) => Ok(m),
            None => {
                self.require_repo(repo)?;
                Err(ApiError::new(
                    Code::ManifestUnknown,
                    format!("manifest {reference} is not in repository {repo}"),
                ))
            }
        }
    }

    pub(super) fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &str,
        head: bool,
    ) -> ApiResult<Reply> {
        let m = self.find_manifest(repo, reference)?;
        let len = m.bytes.len() as u64;
        Ok(Reply::new(StatusCode::OK)
            .header("Content-Type", m.media_type.clone())
            .header("Docker-Content-Digest", m.digest.clone())
            .header("ETag", format!("\"{}\"", m.digest))
            .body(if head {
                Body::HeadOnly(len)
            } else {
                Body::Bytes(m.bytes.into())
            }))
    }

    pub(super) async fn put_manifest(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        repo: &RepoName,
        reference: &str,
    ) -> ApiResult<Reply> {
        let reference = parse_reference(reference)?;
        self.require_namespace(repo).await?;
        let too_large = || {
            ApiError::new(
                Code::ManifestTooLarge,
                format!("manifest exceeds the limit of {MAX_MANIFEST_BYTES} bytes"),
            )
        };
        if req
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > MAX_MANIFEST_BYTES as u64)
        {
            return Err(too_large());
        }
        let bytes = read_limited(body, MAX_MANIFEST_BYTES)
            .await?
            .ok_or_else(too_large)?;
        let (digest_ref, tag) = match &reference {
            Reference::Digest(d) => (Some(d), None),
            Reference::Tag(t) => (None, Some(t.to_string())),
        };
        let now = chrono::Utc::now().timestamp();
        let parsed = manifest::parse(&bytes, req.header("content-type"), digest_ref, now)?;
        let record = parsed.record;
        let digest = record.digest.clone();
        let subject = record.subject.clone();
        crate::errors::commit(
            &self.meta,
            Command::PutManifest {
                repo: repo.to_string(),
                manifest: record,
                tag,
            },
        )
        .await?;
        let mut reply = Reply::new(StatusCode::CREATED)
            .header("Location", format!("/v2/{repo}/manifests/{digest}"))
            .header("Docker-Content-Digest", digest);
        if let Some(s) = subject {
            reply = reply.header("OCI-Subject", s);
        }
        Ok(reply)
    }

    pub(super) async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &str,
    ) -> ApiResult<Reply> {
        let cmd = match parse_reference(reference)? {
            Reference::Digest(d) => Command::DeleteManifest {
                repo: repo.to_string(),
                digest: d.to_string(),
            },
            Reference::Tag(t) => Command::DeleteTag {
                repo: repo.to_string(),
                tag: t.to_string(),
            },
        };
        crate::errors::commit(&self.meta, cmd).await?;
        Ok(Reply::new(StatusCode::ACCEPTED))
    }
}
