//! `GET /api/v1/audit`: the replicated audit trail of metadata changes, answered by any
//! node from its replica (`shoal_raft::AuditEvent`).
//!
//! Only administrators read it (Owner or Admin: `ManageAccess`), and each one only the
//! events of organisations they administer; events about the cluster itself (no
//! organisation) belong to the home organisation's. A caller who administers nothing gets
//! 403 rather than an empty page that would look like a quiet registry.
//!
//! Filters: `since`/`until` (RFC 3339; the CLI also takes a duration ago), `actor`
//! (`alice`, or `system:gc` for a job), `namespace`, `repository`, `action` (`tag.delete`,
//! or `tag` for every `tag.*`), `limit` (≤ 1000). Pages continue with `cursor` (`next` of
//! the previous page). One request reads at most `SCAN` events whatever the filters, so a
//! query that matches little costs the same as one that matches much; `next` then says
//! where to go on.

use http::StatusCode;
use serde::Serialize;
use shoal_raft::{Actor, AuditEvent};

use super::Api;
use crate::auth::{place, Action, Caller, Need, Place};
use crate::errors::{ApiError, ApiResult, Code};
use crate::wire::{Reply, Request};

/// Events one request reads at most.
const SCAN: usize = 10_000;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

/// An event as the API, the CLI and the console show it.
#[derive(Serialize)]
pub struct EventView {
    pub at: String,
    pub index: u64,
    /// `alice`, or `system:<job>` for the cluster's own jobs.
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    /// `ok`, or `refused` with `reason`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Whether `a` is the actor a query names (`alice`, or `system:gc`), without building its
/// name for every event scanned.
fn is_actor(a: &Actor, named: &str) -> bool {
    match a {
        Actor::Principal { name, .. } => name == named,
        Actor::System(job) => named.strip_prefix("system:") == Some(job.as_str()),
    }
}

fn actor_name(a: &Actor) -> (String, Option<String>) {
    match a {
        Actor::Principal { name, via } => (name.clone(), via.clone()),
        Actor::System(job) => (format!("system:{job}"), None),
    }
}

impl EventView {
    fn of(e: AuditEvent) -> EventView {
        let (actor, via) = actor_name(&e.actor);
        EventView {
            at: chrono::DateTime::from_timestamp_millis(e.at)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default(),
            index: e.index,
            actor,
            via,
            request_id: e.request_id,
            from: e.from,
            action: e.action,
            organisation: e.organisation,
            namespace: e.namespace,
            repository: e.repository,
            tag: e.tag,
            digest: e.digest,
            subject: e.subject,
            items: e.items,
            result: if e.refused.is_some() { "refused" } else { "ok" },
            reason: e.refused,
        }
    }
}

/// What a query asks for.
struct Query {
    since: i64,
    until: Option<i64>,
    after: Option<(i64, u64)>,
    actor: Option<String>,
    namespace: Option<String>,
    repository: Option<String>,
    action: Option<String>,
    limit: usize,
}

/// A point in time in ms, as RFC 3339.
fn instant(what: &str, s: &str) -> ApiResult<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            ApiError::new(
                Code::BadRequest,
                format!(
                    "{what} must be an RFC 3339 time such as 2026-12-01T00:00:00Z, got {s:?}: {e}"
                ),
            )
        })
}

fn cursor(s: &str) -> ApiResult<(i64, u64)> {
    s.split_once('.')
        .and_then(|(at, index)| Some((at.parse().ok()?, index.parse().ok()?)))
        .ok_or_else(|| {
            ApiError::new(
                Code::BadRequest,
                format!("cursor {s:?} is not one this API gave"),
            )
        })
}

impl Query {
    fn parse(req: &Request) -> ApiResult<Query> {
        let text = |k: &str| req.query(k).filter(|v| !v.is_empty()).map(str::to_string);
        let limit = match req.query("limit") {
            None => DEFAULT_LIMIT,
            Some(n) => match n.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::new(
                        Code::BadRequest,
                        format!("limit must be a number from 1 to {MAX_LIMIT}, got {n:?}"),
                    ))
                }
            },
        };
        Ok(Query {
            since: req
                .query("since")
                .map(|s| instant("since", s))
                .transpose()?
                .unwrap_or(0),
            until: req
                .query("until")
                .map(|s| instant("until", s))
                .transpose()?,
            after: req.query("cursor").map(cursor).transpose()?,
            actor: text("actor"),
            namespace: text("namespace"),
            repository: text("repository"),
            action: text("action"),
            limit,
        })
    }

    fn matches(&self, e: &AuditEvent) -> bool {
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        self.actor.as_ref().is_none_or(|a| is_actor(&e.actor, a))
            && same(&self.namespace, &e.namespace)
            && same(&self.repository, &e.repository)
            && self.action.as_ref().is_none_or(|a| {
                e.action == *a
                    || e.action
                        .strip_prefix(a.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            })
    }
}

impl Api {
    pub(super) async fn audit(&self, req: &Request) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let query = Query::parse(req)?;
        let catalog = self.meta.catalog();
        let home = place::home(catalog)?;
        let administers = |org: &str| caller.may(Action::ManageAccess, &Place::organisation(org));
        if !catalog
            .organisations()?
            .iter()
            .any(|o| administers(&o.name))
        {
            return Err(denied(&caller));
        }
        let scanned = catalog.audit_events(query.since, query.after, SCAN)?;
        let read = scanned.len();
        let mut last = None;
        let mut events = Vec::new();
        let mut ended = read < SCAN;
        for e in scanned {
            if query.until.is_some_and(|u| e.at > u) {
                ended = true;
                break;
            }
            last = Some((e.at, e.index));
            let org = e.organisation.as_deref().unwrap_or(&home);
            if administers(org) && query.matches(&e) {
                events.push(EventView::of(e));
                if events.len() == query.limit {
                    ended = false;
                    break;
                }
            }
        }
        let next = match (ended, last) {
            (false, Some((at, index))) => Some(format!("{at}.{index}")),
            _ => None,
        };
        Ok(Reply::json(
            StatusCode::OK,
            &serde_json::json!({"events": events, "next": next}),
        ))
    }
}

fn denied(caller: &Caller) -> ApiError {
    let who = caller.principal().unwrap_or("anonymous");
    ApiError::new(
        Code::Denied,
        format!("{who} administers no organisation: the audit trail is for Owners and Admins"),
    )
}
