//! `/api/v1/namespaces/NS/repositories` and `/api/v1/repositories/REPO`: repositories as
//! people browse them (tag counts, sizes, last push), one repository inspected (tags,
//! manifests with digests and sizes), its own visibility (`public`, `private`, or `inherit`
//! the namespace's), and deleting a tag or a whole repository.
//!
//! `REPO` is the full name percent-encoded as one segment (`acme%2Fteam%2Fapi`). Listing
//! and inspecting need List, configuring needs the namespace-management permission, and
//! deleting needs Delete, all on the repository's place.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_raft::{Command, RepoSummary, Visibility};

use super::namespaces::visibility_name;
use super::{json_body, time, Api};
use crate::auth::{place, Action, Caller, Need, Place};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::{RepoName, Tag};
use crate::wire::{Reply, Request, RequestBody};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Configure {
    visibility: RepoVisibility,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RepoVisibility {
    Public,
    Private,
    Inherit,
}

fn summary_view(s: &RepoSummary, namespace_visibility: Visibility) -> Value {
    json!({
        "name": s.name,
        "tags": s.tags,
        "manifests": s.manifests,
        "size": s.size,
        "last_push": time(s.last_push),
        "visibility": s.visibility.map_or("inherit", visibility_name),
        "effective_visibility": visibility_name(s.visibility.unwrap_or(namespace_visibility)),
    })
}

/// A repository name from its percent-encoded path segment.
fn repo_name(segment: &str) -> ApiResult<RepoName> {
    let decoded = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| ApiError::new(Code::NameInvalid, "the repository name is not UTF-8"))?;
    Ok(RepoName::parse(&decoded)?)
}

impl Api {
    /// The repository `segment` names, its place, and its summary, if the caller may do
    /// `action` there. Callers who may not even list it get `NAME_UNKNOWN`, as for a
    /// repository that does not exist.
    async fn repository(
        &self,
        caller: &Caller,
        segment: &str,
        action: Action,
    ) -> ApiResult<(RepoName, Place, RepoSummary)> {
        let repo = repo_name(segment)?;
        let at = place::repository(&self.meta, repo.namespace().as_str(), repo.as_str()).await?;
        let unknown = || {
            ApiError::new(
                Code::NameUnknown,
                format!("repository {repo} is not known to this registry"),
            )
        };
        if !caller.may(Action::List, &at) {
            return Err(unknown());
        }
        self.auth.require(caller, action, &at)?;
        let summary = self
            .meta
            .catalog()
            .repository_summary(repo.as_str())?
            .ok_or_else(unknown)?;
        Ok((repo, at, summary))
    }

    pub(super) async fn list_repositories(&self, req: &Request, ns: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let ns = self.listable_namespace(&caller, ns).await?;
        let catalog = self.meta.catalog();
        let mut list = Vec::new();
        for repo in catalog.repositories_in(&ns.name)? {
            if let Some(s) = catalog.repository_summary(&repo)? {
                list.push(summary_view(&s, ns.visibility));
            }
        }
        Ok(Reply::json(
            StatusCode::OK,
            &json!({"namespace": ns.name, "repositories": list}),
        ))
    }

    pub(super) async fn get_repository(&self, req: &Request, segment: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let (repo, _, summary) = self.repository(&caller, segment, Action::List).await?;
        let catalog = self.meta.catalog();
        let ns_visibility = catalog
            .namespace(repo.namespace().as_str())?
            .map_or(Visibility::Private, |n| n.visibility);
        let tags = catalog.tag_map(repo.as_str())?;
        let manifests: Vec<Value> = catalog
            .manifests_of(repo.as_str())?
            .iter()
            .map(|m| {
                let size = m.bytes.len() as u64
                    + m.blobs
                        .iter()
                        .filter_map(|b| catalog.blob_size(repo.as_str(), b).ok().flatten())
                        .sum::<u64>();
                let tagged: Vec<&String> = tags
                    .iter()
                    .filter(|(_, d)| **d == m.digest)
                    .map(|(t, _)| t)
                    .collect();
                json!({
                    "digest": m.digest,
                    "media_type": m.media_type,
                    "artifact_type": m.artifact_type,
                    "manifest_size": m.bytes.len(),
                    "size": size,
                    "subject": m.subject,
                    "tags": tagged,
                    "pushed_at": time(Some(m.pushed_at)),
                })
            })
            .collect();
        let mut out = summary_view(&summary, ns_visibility);
        out["namespace"] = json!(repo.namespace().as_str());
        out["tag_list"] = tags
            .iter()
            .map(|(t, d)| json!({"name": t, "digest": d}))
            .collect();
        out["manifest_list"] = json!(manifests);
        Ok(Reply::json(StatusCode::OK, &out))
    }

    pub(super) async fn list_tags(&self, req: &Request, segment: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let (repo, _, _) = self.repository(&caller, segment, Action::List).await?;
        let catalog = self.meta.catalog();
        let tags: Vec<Value> = catalog
            .tag_map(repo.as_str())?
            .iter()
            .map(|(t, d)| {
                let pushed = catalog
                    .manifest(repo.as_str(), d)
                    .ok()
                    .flatten()
                    .map(|m| m.pushed_at);
                json!({"name": t, "digest": d, "pushed_at": time(pushed)})
            })
            .collect();
        Ok(Reply::json(
            StatusCode::OK,
            &json!({"repository": repo.as_str(), "tags": tags}),
        ))
    }

    pub(super) async fn configure_repository(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        segment: &str,
    ) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let (repo, _, _) = self
            .repository(&caller, segment, Action::ManageNamespaces)
            .await?;
        let input: Configure = json_body(req, body).await?;
        let visibility = match input.visibility {
            RepoVisibility::Public => Some(Visibility::Public),
            RepoVisibility::Private => Some(Visibility::Private),
            RepoVisibility::Inherit => None,
        };
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::SetRepositoryVisibility {
                repo: repo.to_string(),
                visibility,
            },
        )
        .await?;
        let catalog = self.meta.catalog();
        let ns_visibility = catalog
            .namespace(repo.namespace().as_str())?
            .map_or(Visibility::Private, |n| n.visibility);
        let summary = catalog
            .repository_summary(repo.as_str())?
            .ok_or_else(|| ApiError::internal("repository vanished after configuring", &repo))?;
        Ok(Reply::json(
            StatusCode::OK,
            &summary_view(&summary, ns_visibility),
        ))
    }

    /// Deletes the repository: its tags, manifests and blob links (blobs nothing else links
    /// become collectable, and caches drop them). Managing namespaces, not registry access:
    /// a push credential deletes tags and manifests, never a whole repository.
    pub(super) async fn delete_repository(&self, req: &Request, segment: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let (repo, _, _) = self
            .repository(&caller, segment, Action::ManageNamespaces)
            .await?;
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::DeleteRepository {
                repo: repo.to_string(),
            },
        )
        .await?;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }

    /// Removes one tag; the manifest it pointed at stays, reachable by digest.
    pub(super) async fn delete_tag(
        &self,
        req: &Request,
        segment: &str,
        tag: &str,
    ) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let (repo, _, _) = self.repository(&caller, segment, Action::Delete).await?;
        let tag = Tag::parse(tag).map_err(|e| ApiError::new(Code::TagInvalid, e.to_string()))?;
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::DeleteTag {
                repo: repo.to_string(),
                tag: tag.to_string(),
            },
        )
        .await?;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }
}
