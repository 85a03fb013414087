//! The management API under `/api/v1` (JSON, Basic credentials), described by the OpenAPI
//! document `openapi.json` served at `/api/v1/openapi.json` (with this cluster's region filled
//! in). Errors use the same OCI-style body as the registry API, from the same table; a path
//! that is served answers the methods it does not take with 405 and `Allow`.
//!
//! One module per resource: `tenancy` (organisations, projects), `namespaces` (with
//! configuration and usage), `repositories` (summaries, inspection, visibility, tags,
//! deletion), `access` (who am I, users, service accounts, role bindings), `credentials`
//! (with pull secrets), `federations` (trusted CI issuers), `cluster` (members, signing
//! keys), `lifecycle` (GC, retention), `upstreams` (mirrored registries), `audit` (the trail of
//! metadata changes). Every handler first asks the `Gate` who is calling and then checks the action on
//! the place it touches (`Gate::require`), never a status of its own.
//!
//! Repository names hold `/`, so they travel as one percent-encoded path segment
//! (`acme%2Fteam%2Fapi`); nothing else here is ever decoded.

mod access;
mod audit;
mod cluster;
mod credentials;
mod federations;
mod lifecycle;
mod namespaces;
mod repositories;
mod tenancy;
mod upstreams;

use std::sync::Arc;

use http::{Method, StatusCode};
use shoal_raft::{Metadata, PrincipalKind};

use crate::auth::{Gate, Need};
use crate::errors::{ApiError, ApiResult, Code};
use crate::wire::{Reply, Request, RequestBody};

/// The OpenAPI 3 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

pub struct Api {
    pub meta: Arc<Metadata>,
    pub auth: Arc<Gate>,
    /// The region this cluster serves (`--region`), stamped on every namespace.
    pub region: String,
    /// The origin, for a collector's dry run.
    pub store: Arc<dyn shoal_origin::BlobStore>,
    pub lifecycle: crate::lifecycle::LifecycleConfig,
}

impl Api {
    pub async fn handle(&self, req: &Request, body: &mut dyn RequestBody) -> Reply {
        match self.dispatch(req, body).await {
            Ok(r) => r,
            Err(e) => Reply::error(&e),
        }
    }

    /// One management request made on behalf of a console session (`ui`): `method` on
    /// `path` (under `/api/v1`) with an optional JSON body, authorised exactly as a request
    /// from outside, for the session's subject. Returns the answer's JSON (`null` for an
    /// empty one).
    pub async fn call(
        &self,
        from: &Request,
        session: Option<&str>,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> ApiResult<serde_json::Value> {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        for h in ["x-forwarded-proto", "x-forwarded-host", "host"] {
            if let Some(v) = from.headers.get(h) {
                headers.insert(h, v.clone());
            }
        }
        let mut req = Request::new(method, &format!("/api/v1{path}"), headers);
        req.id = from.id.clone();
        req.client = from.client;
        req.via_trusted_proxy = from.via_trusted_proxy;
        req.session = session.map(str::to_string);
        let bytes = body.map(|b| bytes::Bytes::from(b.to_string()));
        let mut body = crate::wire::BytesBody(bytes);
        let reply = self.dispatch(&req, &mut body).await?;
        match reply.body {
            crate::wire::Body::Bytes(b) if !b.is_empty() => serde_json::from_slice(&b)
                .map_err(|e| ApiError::internal("reading a management answer", e)),
            _ => Ok(serde_json::Value::Null),
        }
    }

    async fn dispatch(&self, req: &Request, body: &mut dyn RequestBody) -> ApiResult<Reply> {
        let rest = req.path.strip_prefix("/api/v1").unwrap_or("");
        let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
        use Method as M;
        match (req.method.clone(), segs.as_slice()) {
            (M::GET, ["openapi.json"]) => {
                Ok(Reply::json(StatusCode::OK, &openapi_for(&self.region)))
            }
            (M::GET, ["me"]) => self.me(req).await,
            (M::GET, ["organisations"]) => self.list_organisations(req).await,
            (M::POST, ["organisations"]) => self.create_organisation(req, body).await,
            (M::GET, ["organisations", org]) => self.get_organisation(req, org).await,
            (M::DELETE, ["organisations", org]) => self.delete_organisation(req, org).await,
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
            (M::GET, ["namespaces", ns, "retention"]) => self.get_retention(req, ns).await,
            (M::PUT, ["namespaces", ns, "retention"]) => self.set_retention(req, body, ns).await,
            (M::DELETE, ["namespaces", ns, "retention"]) => self.delete_retention(req, ns).await,
            (M::POST, ["namespaces", ns, "retention", "preview"]) => {
                self.preview_retention(req, ns).await
            }
            (M::POST, ["namespaces", ns, "retention", "run"]) => self.run_retention(req, ns).await,
            (M::GET, ["upstreams"]) => self.list_upstreams(req).await,
            (M::POST, ["upstreams"]) => self.create_upstream(req, body).await,
            (M::GET, ["upstreams", name]) => self.get_upstream(req, name).await,
            (M::DELETE, ["upstreams", name]) => self.delete_upstream(req, name).await,
            (M::GET, ["audit"]) => self.audit(req).await,
            (M::GET, ["gc"]) => self.gc_status(req).await,
            (M::POST, ["gc"]) => self.run_gc(req, body).await,
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
            (M::DELETE, ["users", name]) => {
                self.delete_principal(req, name, PrincipalKind::User).await
            }
            (M::DELETE, ["service-accounts", name]) => {
                self.delete_principal(req, name, PrincipalKind::ServiceAccount)
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
                let caller = self.auth.authorize(req, &Need::SignedIn).await?;
                self.auth.require_cluster_admin(&caller)?;
                self.cluster_status()
            }
            (M::GET, ["cluster", "plane"]) => {
                self.auth.authorize(req, &Need::Open).await?;
                self.plane_address()
            }
            (M::DELETE, ["cluster", "members", id]) => self.remove_member(req, id).await,
            (m, segs) => Err(match allowed_methods(segs) {
                Some(allow) => ApiError::new(
                    Code::MethodNotAllowed,
                    format!("{m} is not allowed on {}", req.path),
                )
                .header("Allow", allow),
                None => ApiError::new(
                    Code::NotFound,
                    format!("no management endpoint {m} {}", req.path),
                ),
            }),
        }
    }
}

/// `OPENAPI` with `region` as the only region there is, so the document a node serves says
/// exactly what it accepts (a namespace of another region is refused).
fn openapi_for(region: &str) -> serde_json::Value {
    use serde_json::json;
    let mut doc: serde_json::Value =
        serde_json::from_str(OPENAPI).expect("openapi.json is valid JSON");
    for (schema, values) in [
        ("/components/schemas/Region", json!([region])),
        (
            "/components/schemas/CreateNamespace/properties/region",
            json!([region, null]),
        ),
    ] {
        doc.pointer_mut(schema)
            .unwrap_or_else(|| panic!("openapi.json has {schema}"))["enum"] = values;
    }
    doc
}

/// The methods a path of `dispatch` answers, for the `Allow` header of a 405; `None` for a
/// path it does not serve at all. Kept next to `dispatch`: the test below holds them together.
fn allowed_methods(segs: &[&str]) -> Option<&'static str> {
    Some(match segs {
        ["openapi.json"] | ["me"] | ["cluster"] | ["cluster", "plane"] | ["audit"] => "GET",
        ["organisations", _] => "GET, DELETE",
        ["namespaces", _, "usage" | "repositories"] | ["repositories", _, "tags"] => "GET",
        ["organisations"] | ["organisations", _, "projects"] | ["namespaces"] => "GET, POST",
        ["credentials"] | ["users"] | ["service-accounts"] => "GET, POST",
        ["federations"] | ["signing-keys"] => "GET, POST",
        ["namespaces", _] | ["repositories", _] => "GET, PATCH, DELETE",
        ["role-bindings"] => "GET, POST, DELETE",
        ["organisations", _, "projects", _] | ["repositories", _, "tags", _] => "DELETE",
        ["credentials", _] | ["federations", _] | ["cluster", "members", _] => "DELETE",
        ["users", _] | ["service-accounts", _] => "DELETE",
        ["credentials", _, "pull-secret"] => "POST",
        ["namespaces", _, "retention"] => "GET, PUT, DELETE",
        ["namespaces", _, "retention", "preview" | "run"] => "POST",
        ["gc"] | ["upstreams"] => "GET, POST",
        ["upstreams", _] => "GET, DELETE",
        _ => return None,
    })
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
    let bad =
        |e: serde_json::Error| ApiError::new(Code::BadRequest, format!("invalid JSON body: {e}"));
    // Every body is an object: serde would also read a struct from an array of its fields.
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(bad)?;
    if !value.is_object() {
        return Err(ApiError::new(
            Code::BadRequest,
            "invalid JSON body: expected an object",
        ));
    }
    serde_json::from_value(value).map_err(bad)
}

/// A timestamp as the API spells it (RFC 3339), or null.
fn time(t: Option<i64>) -> serde_json::Value {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or(serde_json::Value::Null, |t| {
            serde_json::json!(t.to_rfc3339())
        })
}

/// Free text (descriptions): at most 1024 characters (as JSON Schema's `maxLength` counts
/// them), no control characters; empty is none.
fn description(d: Option<String>) -> ApiResult<Option<String>> {
    const MAX: usize = 1024;
    match d {
        Some(d) if d.chars().count() > MAX || d.chars().any(char::is_control) => {
            Err(ApiError::new(
                Code::BadRequest,
                format!("a description is at most {MAX} characters of printable text"),
            ))
        }
        d => Ok(d.filter(|d| !d.is_empty())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path of the document answers exactly the methods it documents, so a 405's
    /// `Allow` header and the document never disagree.
    #[test]
    fn allowed_methods_match_the_document() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (path, ops) in paths {
            let segs: Vec<&str> = path
                .trim_matches('/')
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect();
            let mut documented: Vec<String> = ops
                .as_object()
                .unwrap()
                .keys()
                .map(|m| m.to_uppercase())
                .collect();
            documented.sort();
            let mut allowed: Vec<String> = allowed_methods(&segs)
                .unwrap_or_else(|| panic!("{path} is not served"))
                .split(", ")
                .map(str::to_string)
                .collect();
            allowed.sort();
            assert_eq!(allowed, documented, "{path}");
        }
        assert_eq!(allowed_methods(&["nosuch"]), None);
    }

    #[test]
    fn the_served_document_names_the_region() {
        let doc = openapi_for("nl-01");
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["Region"]["enum"], serde_json::json!(["nl-01"]));
        assert_eq!(
            schemas["CreateNamespace"]["properties"]["region"]["enum"],
            serde_json::json!(["nl-01", null])
        );
    }
}
