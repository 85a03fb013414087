//! `/api/v1/gc`: the garbage collector's status and runs (the cluster's admins);
//! `/api/v1/namespaces/NS/retention`: a namespace's retention policy, its preview and runs.
//!
//! A collector run is asked for through the catalogue (`RequestGc`) and done by the leader,
//! whichever node took the request; a dry run is computed by the node asked, from its
//! replica, and changes nothing. A retention preview and a run are the same computation
//! (`lifecycle::retain`): the run commits exactly what the preview lists.

use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shoal_raft::{Command, GcRun, KeepRule, RetentionPolicy};

use super::{json_body, time, Api};
use crate::auth::{place, Action, Need};
use crate::errors::{ApiError, ApiResult, Code};
use crate::lifecycle::{gc, retain, retention};
use crate::names::NamespaceName;
use crate::wire::{Reply, Request, RequestBody};

/// A duration as the API spells it (`30d`, `12h`).
fn duration_text(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// The spelling of a duration the API takes (and its document states): whole numbers with a
/// unit, up to nine of them (`30d`, `1day 12h`); humantime alone would also take `0 S `.
const DURATION: &str = r"^[0-9]{1,9} ?(nsec|ns|usec|us|msec|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y)( [0-9]{1,9} ?(nsec|ns|usec|us|msec|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y)){0,8}$";

pub(super) fn parse_duration(what: &str, s: &str) -> ApiResult<u64> {
    static SPELLING: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let spelling = SPELLING.get_or_init(|| regex::Regex::new(DURATION).expect("a valid pattern"));
    if !spelling.is_match(s) {
        return Err(ApiError::new(
            Code::BadRequest,
            format!("{what} must be a duration such as 30d or 12h, got {s:?}"),
        ));
    }
    humantime::parse_duration(s)
        .map(|d| d.as_secs())
        .map_err(|e| {
            ApiError::new(
                Code::BadRequest,
                format!("{what} must be a duration such as 30d or 12h, got {s:?}: {e}"),
            )
        })
}

/// A keep rule as the API spells it.
#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleView {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    untagged: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags_regex: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    exclude: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    exclude_regex: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newest_pushed: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newest_pulled: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pushed_within: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pulled_within: Option<String>,
}

/// A retention policy as the API spells it.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyView {
    #[serde(default)]
    repositories: Vec<String>,
    rules: Vec<RuleView>,
}

impl PolicyView {
    fn of(p: &RetentionPolicy) -> PolicyView {
        PolicyView {
            repositories: p.repositories.clone(),
            rules: p
                .rules
                .iter()
                .map(|r| RuleView {
                    untagged: r.untagged,
                    tags: r.tags.clone(),
                    tags_regex: r.tags_regex.clone(),
                    exclude: r.exclude.clone(),
                    exclude_regex: r.exclude_regex.clone(),
                    newest_pushed: r.newest_pushed,
                    newest_pulled: r.newest_pulled,
                    pushed_within: r.pushed_within.map(duration_text),
                    pulled_within: r.pulled_within.map(duration_text),
                })
                .collect(),
        }
    }

    /// The stored policy, checked: every pattern compiles, durations parse.
    fn policy(self) -> ApiResult<RetentionPolicy> {
        let mut rules = Vec::new();
        for (i, r) in self.rules.into_iter().enumerate() {
            let within = |what: &str, d: Option<String>| {
                d.map(|d| parse_duration(&format!("rules[{i}].{what}"), &d))
                    .transpose()
            };
            rules.push(KeepRule {
                untagged: r.untagged,
                tags: r.tags,
                tags_regex: r.tags_regex,
                exclude: r.exclude,
                exclude_regex: r.exclude_regex,
                newest_pushed: r.newest_pushed,
                newest_pulled: r.newest_pulled,
                pushed_within: within("pushed_within", r.pushed_within)?,
                pulled_within: within("pulled_within", r.pulled_within)?,
            });
        }
        let policy = RetentionPolicy {
            repositories: self.repositories,
            rules,
        };
        retention::Compiled::new(&policy).map_err(|e| ApiError::new(Code::BadRequest, e))?;
        Ok(policy)
    }
}

fn run_view(r: &GcRun) -> Value {
    json!({
        "started_at": time(Some(r.started_at)),
        "finished_at": time(r.finished_at),
        "phase": r.phase,
        "manifests": r.manifests,
        "blob_links": r.blob_links,
        "blobs_deleted": r.blobs_deleted,
        "bytes_reclaimed": r.bytes_reclaimed,
        "protected": r.protected,
        "error": r.error,
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RunGc {
    #[serde(default)]
    dry_run: bool,
}

impl Api {
    fn gc_status_view(&self) -> ApiResult<Value> {
        let s = self.meta.catalog().gc_status()?;
        Ok(json!({
            "requested_at": time(s.requested_at),
            "running": s.running.as_ref().map(run_view),
            "last": s.last.as_ref().map(run_view),
            "interval": self.lifecycle.gc_interval.map(|d| duration_text(d.as_secs())),
            "grace": duration_text(self.lifecycle.gc.grace.max(0) as u64),
        }))
    }

    pub(super) async fn gc_status(&self, req: &Request) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        self.auth.require_cluster_admin(&caller)?;
        Ok(Reply::json(StatusCode::OK, &self.gc_status_view()?))
    }

    pub(super) async fn run_gc(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
    ) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        self.auth.require_cluster_admin(&caller)?;
        let input: RunGc = if req.header("content-length").is_some_and(|l| l != "0") {
            json_body(req, body).await?
        } else {
            RunGc::default()
        };
        if input.dry_run {
            let collector = gc::Collector {
                meta: self.meta.clone(),
                store: self.store.clone(),
                config: self.lifecycle.gc.clone(),
            };
            let report = collector.run(true).await?;
            return Ok(Reply::json(StatusCode::OK, &report));
        }
        let at = chrono::Utc::now().timestamp();
        crate::errors::commit(&self.meta, &caller, req, Command::RequestGc { at }).await?;
        Ok(Reply::json(StatusCode::ACCEPTED, &self.gc_status_view()?))
    }

    /// The namespace `ns` named in a retention route, with the caller checked for `action`.
    async fn retention_namespace(
        &self,
        req: &Request,
        ns: &str,
        action: Action,
    ) -> ApiResult<(crate::auth::Caller, NamespaceName)> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let name = NamespaceName::parse(ns)?;
        let record = self.listable_namespace(&caller, name.as_str()).await?;
        let at = place::Place::of_namespace(&record);
        self.auth.require(&caller, action, &at)?;
        Ok((caller, name))
    }

    pub(super) async fn get_retention(&self, req: &Request, ns: &str) -> ApiResult<Reply> {
        let (_, name) = self.retention_namespace(req, ns, Action::List).await?;
        let policy = self.stored_policy(&name)?;
        Ok(Reply::json(StatusCode::OK, &PolicyView::of(&policy)))
    }

    /// The namespace's policy; none is 404 (as ECR's lifecycle policies answer), so a
    /// deleted policy does not read back as an empty one.
    fn stored_policy(&self, name: &NamespaceName) -> ApiResult<RetentionPolicy> {
        self.meta
            .catalog()
            .retention(name.as_str())?
            .ok_or_else(|| {
                ApiError::new(
                    Code::NotFound,
                    format!("namespace {name} has no retention policy: it keeps every tag"),
                )
            })
    }

    pub(super) async fn set_retention(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        ns: &str,
    ) -> ApiResult<Reply> {
        let (caller, name) = self
            .retention_namespace(req, ns, Action::ManageNamespaces)
            .await?;
        let input: PolicyView = json_body(req, body).await?;
        let policy = input.policy()?;
        let cmd = Command::SetRetention {
            namespace: name.to_string(),
            policy: Some(policy.clone()),
        };
        crate::errors::commit(&self.meta, &caller, req, cmd).await?;
        Ok(Reply::json(StatusCode::OK, &PolicyView::of(&policy)))
    }

    pub(super) async fn delete_retention(&self, req: &Request, ns: &str) -> ApiResult<Reply> {
        let (caller, name) = self
            .retention_namespace(req, ns, Action::ManageNamespaces)
            .await?;
        self.stored_policy(&name)?;
        let cmd = Command::SetRetention {
            namespace: name.to_string(),
            policy: None,
        };
        crate::errors::commit(&self.meta, &caller, req, cmd).await?;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }

    pub(super) async fn preview_retention(&self, req: &Request, ns: &str) -> ApiResult<Reply> {
        let (_, name) = self.retention_namespace(req, ns, Action::List).await?;
        let now = chrono::Utc::now().timestamp();
        let plan = retain::preview(self.meta.catalog(), name.as_str(), now)?;
        Ok(Reply::json(StatusCode::OK, &plan))
    }

    pub(super) async fn run_retention(&self, req: &Request, ns: &str) -> ApiResult<Reply> {
        let (caller, name) = self
            .retention_namespace(req, ns, Action::ManageNamespaces)
            .await?;
        let now = chrono::Utc::now().timestamp();
        let plan = retain::run(&self.meta, name.as_str(), now, caller.actor(), &req.id).await?;
        Ok(Reply::json(StatusCode::OK, &plan))
    }
}
