//! The management API under `/api/v1` (JSON, Basic credentials), described by the OpenAPI
//! document `openapi.json` served at `/api/v1/openapi.json`. Errors use the same OCI-style
//! body as the registry API, from the same table.
//!
//! One module per resource: `tenancy` (organisations, projects), `namespaces` (with
//! configuration and usage), `repositories` (summaries, inspection, visibility, tags,
//! deletion), `access` (who am I, users, service accounts, role bindings), `credentials`
//! (with pull secrets), `federations` (trusted CI issuers), `cluster` (members, signing
//! keys). Every handler first asks the `Gate` who is calling and then checks the action on
//! the place it touches (`Gate::require`), never a status of its own.
//!
//! Repository names hold `/`, so they travel as one percent-encoded path segment
//! (`acme%2Fteam%2Fapi`); nothing else here is ever decoded.

mod access;
mod cluster;
mod credentials;
mod federations;
mod namespaces;
mod repositories;
mod tenancy;

use std::sync::Arc;

use http::{Method, StatusCode};
use shoal_raft::{Metadata, PrincipalKind};

use crate::auth::{Gate, Need};
use crate::errors::{ApiError, ApiResult, Code};
use crate::wire::{Body, Reply, Request, RequestBody};

/// The OpenAPI 3 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

pub struct Api {
    pub meta: Arc<Metadata>,
    pub auth: Arc<Gate>,
    /// The region this cluster serves (`--region`), stamped on every namespace.
    pub region: String,
}

impl Api {
    pub async fn handle(&self, req: &Request, body: &mut dyn RequestBody) -> Reply {
        match self.dispatch(req, body).await {
            Ok(r) => r,
            Err(e) => Reply::error(&e),
        }
    }

    async fn dispatch(&self, req: &Request, body: &mut dyn RequestBody) -> ApiResult<Reply> {
        let rest = req.path.strip_prefix("/api/v1").unwrap_or("");
        let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
        use Method as M;
        match (req.method.clone(), segs.as_slice()) {
            (M::GET, ["openapi.json"]) => Ok(Reply::new(StatusCode::OK)
                .header("Content-Type", "application/json")
                .body(Body::Bytes(OPENAPI.as_bytes().into()))),
            (M::GET, ["me"]) => self.me(req).await,
            (M::GET, ["organisations"]) => self.list_organisations(req).await,
            (M::POST, ["organisations"]) => self.create_organisation(req, body).await,
            (M::GET, ["organisations", org]) => self.get_organisation(req, org).await,
            (M::GET, ["organisations", org, "projects"]) => self.list_projects(req, org).await,
            (M::POST, ["organisations", org, "projects"]) => {
                self.create_project(req, body, org).await
            }
            (M::DELETE, ["organisations", org, "projects", p]) => {
                self.delete_project(req, org, p).await
            }
            (M::GET, ["namespaces"]) => self.list_namespaces(req).await,
            (M::POST, ["namespaces"]) => self.create_namespace(req, body).await,
            (M::GET, ["namespaces", ns]) => self.get_namespace(req, ns).await,
            (M::PATCH, ["namespaces", ns]) => self.configure_namespace(req, body, ns).await,
            (M::DELETE, ["namespaces", ns]) => self.delete_namespace(req, ns).await,
            (M::GET, ["namespaces", ns, "usage"]) => self.namespace_usage(req, ns).await,
            (M::GET, ["namespaces", ns, "repositories"]) => self.list_repositories(req, ns).await,
            (M::GET, ["repositories", repo]) => self.get_repository(req, repo).await,
            (M::PATCH, ["repositories", repo]) => self.configure_repository(req, body, repo).await,
            (M::DELETE, ["repositories", repo]) => self.delete_repository(req, repo).await,
            (M::GET, ["repositories", repo, "tags"]) => self.list_tags(req, repo).await,
            (M::DELETE, ["repositories", repo, "tags", tag]) => {
                self.delete_tag(req, repo, tag).await
            }
            (M::GET, ["credentials"]) => self.list_credentials(req).await,
            (M::POST, ["credentials"]) => self.create_credential(req, body).await,
            (M::DELETE, ["credentials", id]) => self.revoke_credential(req, id).await,
            (M::POST, ["credentials", id, "pull-secret"]) => self.pull_secret(req, body, id).await,
            (M::GET, ["users"]) => self.list_principals(req, PrincipalKind::User).await,
            (M::POST, ["users"]) => self.create_principal(req, body, PrincipalKind::User).await,
            (M::GET, ["service-accounts"]) => {
                self.list_principals(req, PrincipalKind::ServiceAccount)
                    .await
            }
            (M::POST, ["service-accounts"]) => {
                self.create_principal(req, body, PrincipalKind::ServiceAccount)
                    .await
            }
            (M::GET, ["role-bindings"]) => self.list_bindings(req).await,
            (M::POST, ["role-bindings"]) => self.bind(req, body).await,
            (M::DELETE, ["role-bindings"]) => self.unbind(req, body).await,
            (M::GET, ["federations"]) => self.list_federations(req).await,
            (M::POST, ["federations"]) => self.create_federation(req, body).await,
            (M::DELETE, ["federations", name]) => self.delete_federation(req, name).await,
            (M::GET, ["signing-keys"]) => self.list_signing_keys(req).await,
            (M::POST, ["signing-keys"]) => self.rotate_signing_key(req).await,
            (M::GET, ["cluster"]) => {
                self.auth.authorize(req, &Need::Open).await?;
                self.cluster_status()
            }
            (M::DELETE, ["cluster", "members", id]) => self.remove_member(req, id).await,
            (m, _) => Err(ApiError::new(
                Code::NotFound,
                format!("no management endpoint {m} {}", req.path),
            )),
        }
    }
}

/// Reads a JSON request body of at most 64 KiB, insisting on `Content-Type: application/json`.
async fn json_body<T: serde::de::DeserializeOwned>(
    req: &Request,
    body: &mut dyn RequestBody,
) -> ApiResult<T> {
    let ct = req.header("content-type").unwrap_or("");
    if ct.split(';').next().map(str::trim) != Some("application/json") {
        return Err(ApiError::new(
            Code::Unsupported,
            "the body must be application/json",
        ));
    }
    let bytes = crate::wire::read_limited(body, 64 * 1024)
        .await?
        .ok_or_else(|| ApiError::new(Code::SizeInvalid, "the body is larger than 64 KiB"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(Code::BadRequest, format!("invalid JSON body: {e}")))
}

/// A timestamp as the API spells it (RFC 3339), or null.
fn time(t: Option<i64>) -> serde_json::Value {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or(serde_json::Value::Null, |t| {
            serde_json::json!(t.to_rfc3339())
        })
}

/// Free text (descriptions): at most 1024 bytes, no control characters; empty is none.
fn description(d: Option<String>) -> ApiResult<Option<String>> {
    const MAX: usize = 1024;
    match d {
        Some(d) if d.len() > MAX || d.chars().any(char::is_control) => Err(ApiError::new(
            Code::BadRequest,
            format!("a description is at most {MAX} bytes of printable text"),
        )),
        d => Ok(d.filter(|d| !d.is_empty())),
    }
}
