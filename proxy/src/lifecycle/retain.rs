//! Running a namespace's retention policy: what the catalogue says about each repository it
//! covers goes through the pure `retention::Compiled::decide`, and a run commits exactly the
//! decisions a preview reports (`RetainTags`, in batches; the state machine skips a tag that
//! moved or became immutable in between). The bytes a deletion would free are estimated the
//! way the collector will free them: manifests no remaining tag reaches, and blobs that only
//! they list and that no other repository links.

use std::collections::BTreeSet;

use serde::Serialize;
use shoal_raft::{Catalog, Command, Metadata, Proposal};

use super::reachable;
use super::retention::{Compiled, TagInfo};
use crate::errors::{ApiError, ApiResult, Code};

/// Tags deleted per command.
const BATCH: usize = 256;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DeletedTag {
    pub tag: String,
    pub digest: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RepoPlan {
    pub repository: String,
    pub delete: Vec<DeletedTag>,
    pub kept: usize,
    /// Bytes the collector frees once these tags are gone.
    pub bytes_freed: u64,
}

/// What a policy deletes in one namespace (a preview), or deleted (a run).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Plan {
    pub namespace: String,
    pub repositories: Vec<RepoPlan>,
    pub tags: usize,
    pub bytes_freed: u64,
}

/// What the policy of `ns` deletes now, read from `catalog` (nothing without a policy).
pub fn preview(catalog: &Catalog, ns: &str, now: i64) -> ApiResult<Plan> {
    let record = catalog.namespace(ns)?.ok_or_else(|| {
        ApiError::new(Code::NameUnknown, format!("namespace {ns} does not exist"))
    })?;
    let mut plan = Plan {
        namespace: ns.into(),
        repositories: Vec::new(),
        tags: 0,
        bytes_freed: 0,
    };
    let Some(policy) = catalog.retention(ns)? else {
        return Ok(plan);
    };
    let compiled = Compiled::new(&policy)
        .map_err(|e| ApiError::internal("a stored retention policy does not compile", e))?;
    for repo in catalog.repositories_in(ns)? {
        if !compiled.covers(&repo) {
            continue;
        }
        let mut tags = Vec::new();
        for (tag, digest) in catalog.tag_map(&repo)? {
            let times = catalog.tag_times(&repo, &tag)?;
            tags.push(TagInfo {
                tag,
                digest,
                pushed_at: times.pushed_at,
                pulled_at: times.pulled_at,
            });
        }
        let decision = compiled.decide(&tags, &[], &record.immutable, now);
        if decision.delete.is_empty() {
            continue;
        }
        let bytes_freed = freed(catalog, &repo, &tags, &decision.delete)?;
        plan.tags += decision.delete.len();
        plan.bytes_freed += bytes_freed;
        plan.repositories.push(RepoPlan {
            repository: repo,
            kept: tags.len() - decision.delete.len(),
            delete: decision
                .delete
                .into_iter()
                .map(|(tag, digest)| DeletedTag { tag, digest })
                .collect(),
            bytes_freed,
        });
    }
    Ok(plan)
}

/// Bytes freed in `repo` once `delete` is gone: manifests that only those tags reached, and
/// blobs only they list that no other repository links.
fn freed(
    catalog: &Catalog,
    repo: &str,
    tags: &[TagInfo],
    delete: &[(String, String)],
) -> ApiResult<u64> {
    let going: BTreeSet<&str> = delete.iter().map(|(t, _)| t.as_str()).collect();
    let all_roots = tags.iter().map(|t| t.digest.clone());
    let before = reachable(catalog, repo, all_roots)?;
    let staying = tags
        .iter()
        .filter(|t| !going.contains(t.tag.as_str()))
        .map(|t| t.digest.clone());
    let after = reachable(catalog, repo, staying)?;
    let mut bytes = 0;
    let mut lost_blobs = BTreeSet::new();
    for d in before.difference(&after) {
        if let Some(m) = catalog.manifest(repo, d)? {
            bytes += m.bytes.len() as u64;
            lost_blobs.extend(m.blobs);
        }
    }
    for b in lost_blobs {
        let still_listed = catalog
            .referenced_by(repo, &b)?
            .iter()
            .any(|m| after.contains(m));
        let elsewhere = catalog.linked_in(&b)?.iter().any(|r| r != repo);
        if !still_listed && !elsewhere {
            bytes += catalog.blob_size(repo, &b)?.unwrap_or(0);
        }
    }
    Ok(bytes)
}

/// Deletes what `preview` reports, proposed by `by` in request `request_id`.
pub async fn run(
    meta: &Metadata,
    ns: &str,
    now: i64,
    by: shoal_raft::Actor,
    request_id: &str,
) -> ApiResult<Plan> {
    let plan = preview(meta.catalog(), ns, now)?;
    for repo in &plan.repositories {
        for chunk in repo.delete.chunks(BATCH) {
            let cmd = Command::RetainTags {
                repo: repo.repository.clone(),
                delete: chunk
                    .iter()
                    .map(|d| (d.tag.clone(), d.digest.clone()))
                    .collect(),
            };
            match meta
                .write(Proposal::new(by.clone(), request_id, cmd))
                .await?
            {
                shoal_raft::Outcome::Done => {}
                shoal_raft::Outcome::Rejected(r) => return Err(r.into()),
            }
        }
    }
    metrics::counter!(crate::metrics::RETENTION_TAGS).increment(plan.tags as u64);
    if plan.tags > 0 {
        tracing::info!(
            namespace = ns,
            tags = plan.tags,
            bytes = plan.bytes_freed,
            "retention deleted tags"
        );
    }
    Ok(plan)
}

/// Runs every namespace's policy (the leader's schedule).
pub async fn run_all(meta: &Metadata, now: i64) -> ApiResult<usize> {
    let mut deleted = 0;
    for ns in meta.catalog().namespaces()? {
        if meta.catalog().retention(&ns.name)?.is_none() {
            continue;
        }
        let actor = shoal_raft::Actor::System("retention".into());
        deleted += run(meta, &ns.name, now, actor, "retention").await?.tags;
    }
    Ok(deleted)
}
