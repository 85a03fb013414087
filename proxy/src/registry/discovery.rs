//! Content discovery: `tags/list` and `_catalog` with `n`/`last` pagination and `Link`, and
//! the referrers API. All read the local replica only.

use http::StatusCode;
use serde_json::{json, Value};

use super::manifest::OCI_INDEX;
use super::{parse_digest, Registry};
use crate::auth::{place, Action, Caller};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::RepoName;
use crate::wire::{Body, Reply, Request};

/// Largest page a client may ask for; larger `n` are clamped (Distribution clamps too).
const MAX_PAGE: usize = 10_000;

fn page_size(req: &Request) -> ApiResult<Option<usize>> {
    match req.query("n") {
        None | Some("") => Ok(None),
        Some(n) => n
            .parse::<usize>()
            .map(|n| Some(n.min(MAX_PAGE)))
            .map_err(|_| {
                ApiError::new(
                    Code::PaginationInvalid,
                    format!("n must be a non-negative integer, got {n:?}"),
                )
            }),
    }
}

/// Builds a page reply; `items` holds up to n+1 entries so we know whether more exist.
fn page(path: &str, key: &str, mut items: Vec<String>, n: Option<usize>, mut body: Value) -> Reply {
    let mut link = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            if let Some(last) = items.last() {
                let q: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("last", last)
                    .append_pair("n", &n.to_string())
                    .finish();
                link = Some(format!("<{path}?{q}>; rel=\"next\""));
            }
        }
    }
    body[key] = json!(items);
    let reply = Reply::json(StatusCode::OK, &body);
    match link {
        Some(l) => reply.header("Link", l),
        None => reply,
    }
}

impl Registry {
    pub(super) fn tags_list(&self, req: &Request, repo: &RepoName) -> ApiResult<Reply> {
        self.require_repo(repo)?;
        let n = page_size(req)?;
        let tags = self
            .meta
            .catalog()
            .tags(repo.as_str(), req.query("last"), n.map(|n| n + 1))?;
        Ok(page(
            &req.path,
            "tags",
            tags,
            n,
            json!({"name": repo.as_str()}),
        ))
    }

    /// Lists only the repositories the caller may list: names in other namespaces are not
    /// disclosed.
    pub(super) fn catalog(&self, req: &Request, caller: &Caller) -> ApiResult<Reply> {
        let n = page_size(req)?;
        let want = n.map_or(usize::MAX, |n| n + 1);
        let catalog = self.meta.catalog();
        let mut repos = Vec::new();
        let mut last = req.query("last").map(str::to_string);
        while repos.len() < want {
            let batch = catalog.repositories(last.as_deref(), Some(256))?;
            let Some(end) = batch.last().cloned() else {
                break;
            };
            // Repositories come in name order, so one namespace's run shares one lookup.
            let mut namespace: Option<(String, Option<shoal_raft::NamespaceRecord>)> = None;
            for repo in batch {
                let ns = repo.split('/').next().unwrap_or_default();
                if namespace.as_ref().is_none_or(|(n, _)| n != ns) {
                    namespace = Some((ns.to_string(), catalog.namespace(ns)?));
                }
                let Some((_, Some(record))) = &namespace else {
                    continue;
                };
                let at = place::repository_known(catalog, record, &repo)?;
                if repos.len() < want && caller.may(Action::List, &at) {
                    repos.push(repo);
                }
            }
            last = Some(end);
        }
        Ok(page(&req.path, "repositories", repos, n, json!({})))
    }

    pub(super) fn referrers(
        &self,
        req: &Request,
        repo: &RepoName,
        digest: &str,
    ) -> ApiResult<Reply> {
        let digest = parse_digest(digest)?;
        // No 404 for a repository that does not exist (yet): to a client, 404 means "this
        // registry has no referrers API, fall back to the tag schema". Callers reach this
        // only with pull permission on the name, so an empty index reveals nothing.
        let filter = req.query("artifactType").filter(|s| !s.is_empty());
        let mut manifests = Vec::new();
        for m in self
            .meta
            .catalog()
            .referrers(repo.as_str(), &digest.to_string())?
        {
            if filter.is_some_and(|f| m.artifact_type.as_deref() != Some(f)) {
                continue;
            }
            let mut d = json!({
                "mediaType": m.media_type,
                "digest": m.digest,
                "size": m.bytes.len(),
            });
            if let Some(t) = &m.artifact_type {
                d["artifactType"] = json!(t);
            }
            if let Some(a) = m
                .annotations
                .as_deref()
                .and_then(|a| serde_json::from_str::<Value>(a).ok())
            {
                d["annotations"] = a;
            }
            manifests.push(d);
        }
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        let bytes = serde_json::to_vec(&index).expect("JSON values serialise");
        let mut reply = Reply::new(StatusCode::OK)
            .header("Content-Type", OCI_INDEX)
            .body(Body::Bytes(bytes.into()));
        if filter.is_some() {
            reply = reply.header("OCI-Filters-Applied", "artifactType");
        }
        Ok(reply)
    }
}
