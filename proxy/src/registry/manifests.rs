//! Manifests: `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<tag|digest>`.
//!
//! Manifests are small and live in the replicated metadata, so reads never touch the origin.
//! The bytes pushed are the bytes served, with the media type they were pushed with.

use std::sync::Arc;

use http::StatusCode;
use shoal_origin::Digest;
use shoal_raft::{Command, ManifestRecord};

use super::manifest::{self, MAX_MANIFEST_BYTES};
use super::Registry;
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::{RepoName, Tag};
use crate::wire::{read_limited, Body, Reply, Request, RequestBody};

/// What a manifest GET sends, remembered by `repository@reference` while the catalogue
/// stays as it was read (`crate::memo`), behind an `Arc` so a hit copies no bytes.
pub struct Served {
    digest: String,
    media_type: String,
    bytes: bytes::Bytes,
}

/// Manifests remembered at most, and the largest remembered: at most 16 MiB held, whatever
/// callers ask for. Image manifests and indexes are a few KiB.
pub(super) const SERVED_CAPACITY: usize = 1024;
const SERVED_MAX_BYTES: usize = 16 * 1024;

/// A manifest reference: tags cannot contain `:`, digests always do.
enum Reference {
    Tag(Tag),
    Digest(Digest),
}

/// The request header that picks how fresh a manifest read must be. `local` (the default):
/// this node's replica, which may lag the leader by the replication delay but never goes
/// back on what this node acknowledged or showed. `linearizable`: first a read-index through
/// the leader, so the read sees every write the region committed before it was sent, on any
/// node, at the cost of one round trip to the leader and its quorum.
pub const CONSISTENCY_HEADER: &str = "Shoal-Consistency";

/// Whether the caller asked for a read-index; any value but the two known is refused, so a
/// misspelt `linearizable` is not silently served stale.
fn wants_read_index(req: &Request) -> ApiResult<bool> {
    match req.header(CONSISTENCY_HEADER) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("local") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("linearizable") => Ok(true),
        Some(v) => Err(ApiError::new(
            Code::BadRequest,
            format!("{CONSISTENCY_HEADER} must be `local` or `linearizable`, not {v:?}"),
        )),
    }
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
    /// The manifest `reference` names. A reference that is not a valid tag names no
    /// manifest: reads answer 404 `MANIFEST_UNKNOWN` for it, as for any manifest that does not
    /// exist (the conformance suites expect that); only a `PUT` refuses it as `TAG_INVALID`.
    #[tracing::instrument(name = "manifest lookup", level = "debug", skip_all, fields(repository = %repo, reference))]
    fn find_manifest(&self, repo: &RepoName, reference: &str) -> ApiResult<ManifestRecord> {
        let catalog = self.meta.catalog();
        let digest = match parse_reference(reference) {
            Ok(Reference::Digest(d)) => Some(d.to_string()),
            Ok(Reference::Tag(t)) => catalog.tag(repo.as_str(), t.as_str())?,
            Err(e) if e.code == Code::TagInvalid => None,
            Err(e) => return Err(e),
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

    /// A manifest read: in a mirror namespace, fetched or revalidated upstream first when it
    /// must be; by digest, a pusher's use renews an old lease (it may be about to list it in
    /// an index); the pull is counted for retention once the reply went out.
    pub(super) async fn read_manifest(
        &self,
        req: &Request,
        repo: &RepoName,
        reference: &str,
        head: bool,
        caller: &crate::auth::Caller,
    ) -> ApiResult<Reply> {
        if wants_read_index(req)? {
            self.meta.catch_up().await?;
        }
        if let Some(upstream) = self.mirrors.binding(repo)? {
            self.mirrors
                .ensure_manifest(&req.id, repo, &upstream, reference)
                .await?;
        }
        let reply = self.get_manifest(repo, reference, head)?;
        let digest = reply
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("docker-content-digest"))
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let by_tag = !reference.contains(':');
        if !by_tag {
            self.touch_if_old(req, caller, repo, &digest).await?;
        }
        let audit = self.auth.audit();
        if !head && audit.pulls() {
            audit.record(
                req,
                crate::audit::NodeEvent {
                    action: "pull",
                    actor: Some(caller.principal().unwrap_or("anonymous")),
                    via: caller.via(),
                    repository: Some(repo.as_str()),
                    reference: Some(reference),
                    digest: Some(&digest),
                    result: "ok",
                    ..Default::default()
                },
            );
        }
        let (usage, repo, tag) = (
            self.usage.clone(),
            repo.to_string(),
            by_tag.then(|| reference.to_string()),
        );
        // A HEAD by tag resolves the tag (containerd pulls that way): the tag was used. A
        // HEAD by digest only asks whether it is there.
        if head && tag.is_none() {
            return Ok(reply);
        }
        Ok(reply.when_sent(move |_| {
            usage.pulled(
                &repo,
                &digest,
                tag.as_deref(),
                chrono::Utc::now().timestamp(),
            );
        }))
    }

    fn get_manifest(&self, repo: &RepoName, reference: &str, head: bool) -> ApiResult<Reply> {
        let version = self.meta.catalog().version();
        let key = format!("{repo}@{reference}");
        let m = self.served.get_or_read(
            version,
            &key,
            || {
                self.find_manifest(repo, reference).map(|m| {
                    Arc::new(Served {
                        digest: m.digest,
                        media_type: m.media_type,
                        bytes: m.bytes.into(),
                    })
                })
            },
            |m| m.bytes.len() <= SERVED_MAX_BYTES,
        )?;
        let len = m.bytes.len() as u64;
        Ok(Reply::new(StatusCode::OK)
            .header("Content-Type", m.media_type.clone())
            .header("ETag", format!("\"{}\"", m.digest))
            .header("Docker-Content-Digest", m.digest.clone())
            .body(if head {
                Body::HeadOnly(len)
            } else {
                Body::Bytes(m.bytes.clone())
            }))
    }

    pub(super) async fn put_manifest(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        repo: &RepoName,
        reference: &str,
        caller: &crate::auth::Caller,
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
        self.check_sizes(repo, &parsed)?;
        let record = parsed.record;
        let digest = record.digest.clone();
        let subject = record.subject.clone();
        crate::errors::commit(
            &self.meta,
            caller,
            req,
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

    /// Each descriptor's size must be the size of what the repository holds under its
    /// digest: a blob or child manifest of another size is `MANIFEST_BLOB_UNKNOWN`, as one
    /// the repository lacks (there is no such blob or manifest). Sizes never
    /// change under a digest, so this check cannot race a concurrent write; a reference
    /// not in the repository at all is left to the state machine, which checks it again.
    fn check_sizes(&self, repo: &RepoName, parsed: &manifest::Parsed) -> ApiResult<()> {
        let catalog = self.meta.catalog();
        for (digest, said) in &parsed.blob_sizes {
            if let Some(held) = catalog.blob_size(repo.as_str(), digest)? {
                if held != *said {
                    return Err(ApiError::new(
                        Code::ManifestBlobUnknown,
                        format!("the manifest gives blob {digest} a size of {said} bytes; the repository's has {held}"),
                    ));
                }
            }
        }
        for (digest, said) in &parsed.child_sizes {
            if let Some(child) = catalog.manifest(repo.as_str(), digest)? {
                let held = child.bytes.len() as u64;
                if held != *said {
                    return Err(ApiError::new(
                        Code::ManifestBlobUnknown,
                        format!("the index gives manifest {digest} a size of {said} bytes; the repository's has {held}"),
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) async fn delete_manifest(
        &self,
        req: &Request,
        repo: &RepoName,
        reference: &str,
        caller: &crate::auth::Caller,
    ) -> ApiResult<Reply> {
        let cmd = match parse_reference(reference) {
            Ok(Reference::Digest(d)) => Command::DeleteManifest {
                repo: repo.to_string(),
                digest: d.to_string(),
            },
            Ok(Reference::Tag(t)) => Command::DeleteTag {
                repo: repo.to_string(),
                tag: t.to_string(),
            },
            // Nothing is tagged with a name that is not a tag.
            Err(e) if e.code == Code::TagInvalid => {
                return Err(self.find_manifest(repo, reference).err().unwrap_or(e))
            }
            Err(e) => return Err(e),
        };
        crate::errors::commit(&self.meta, caller, req, cmd).await?;
        Ok(Reply::new(StatusCode::ACCEPTED))
    }
}
