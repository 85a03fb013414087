//! The management API under `/api/v1` (JSON). So far: namespaces and the region's cluster. Errors use the same
//! OCI-style body as the registry API, from the same table.

mod access;
mod cluster;
mod credentials;
mod namespaces;

use std::sync::Arc;

use http::Method;
use shoal_raft::{Metadata, PrincipalKind};

use crate::auth::{Gate, Need};
use crate::errors::{ApiError, ApiResult, Code};
use crate::wire::{Reply, Request, RequestBody};

pub struct Api {
    pub meta: Arc<Metadata>,
    pub auth: Arc<Gate>,
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
        match (req.method.clone(), segs.as_slice()) {
            (Method::GET, ["namespaces"]) => self.list_namespaces(req).await,
            (Method::POST, ["namespaces"]) => self.create_namespace(req, body).await,
            (Method::GET, ["namespaces", name]) => self.get_namespace(req, name).await,
            (Method::PATCH, ["namespaces", name]) => {
                self.configure_namespace(req, body, name).await
            }
            (Method::DELETE, ["namespaces", name]) => self.delete_namespace(req, name).await,
            (Method::GET, ["credentials"]) => self.list_credentials(req).await,
            (Method::POST, ["credentials"]) => self.create_credential(req, body).await,
            (Method::DELETE, ["credentials", id]) => self.revoke_credential(req, id).await,
            (Method::POST, ["credentials", id, "pull-secret"]) => {
                self.pull_secret(req, body, id).await
            }
            (Method::GET, ["users"]) => self.list_principals(req).await,
            (Method::POST, ["users"]) => {
                self.create_principal(req, body, PrincipalKind::User).await
            }
            (Method::POST, ["service-accounts"]) => {
                self.create_principal(req, body, PrincipalKind::ServiceAccount)
                    .await
            }
            (Method::GET, ["role-bindings"]) => self.list_bindings(req).await,
            (Method::POST, ["role-bindings"]) => self.bind(req, body).await,
            (Method::DELETE, ["role-bindings"]) => self.unbind(req, body).await,
            (Method::GET, ["cluster"]) => {
                self.auth.authorize(req, &Need::Open).await?;
                self.cluster_status()
            }
            (Method::DELETE, ["cluster", "members", id]) => self.remove_member(req, id).await,
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
