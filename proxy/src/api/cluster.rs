//! `/api/v1/cluster`: the region as this node sees it (its name, leader, term, members with
//! their API and cluster addresses, voter or learner, replication progress), for the
//! cluster's admins only, and removing a member; `/api/v1/cluster/plane`: this node's id
//! and cluster-plane address, the one thing a joining node needs before it can ask over the
//! authenticated plane (open: it names only the node asked, which mutual TLS guards);
//! `/api/v1/signing-keys`: the registry token keys, and rotating them.
//!
//! A rotation adds a key that signs from then on; older keys keep verifying the tokens they
//! signed, and a key replaced longer ago than a token lives is dropped by a later rotation.

use http::StatusCode;
use serde_json::json;
use shoal_raft::Command;

use super::{time, Api};
use crate::auth::token::{new_signing_key, TOKEN_TTL};
use crate::auth::Need;
use crate::errors::{ApiError, ApiResult, Code};
use crate::wire::{Reply, Request};

/// Seconds of clock skew allowed on top of a token's lifetime before its key goes.
const RETIRE_SLACK: i64 = 60;

impl Api {
    pub(super) fn cluster_status(&self) -> ApiResult<Reply> {
        let status = self.meta.cluster_status();
        let mut body =
            serde_json::to_value(&status).map_err(|e| ApiError::internal("status", e))?;
        body["region"] = json!(self.region);
        Ok(Reply::json(StatusCode::OK, &body))
    }

    pub(super) fn plane_address(&self) -> ApiResult<Reply> {
        let (node_id, member) = self.meta.member();
        Ok(Reply::json(
            StatusCode::OK,
            &json!({"node_id": node_id, "cluster": member.cluster}),
        ))
    }

    pub(super) async fn remove_member(&self, req: &Request, id: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        self.auth.require_cluster_admin(&caller)?;
        let id: u64 = id.parse().map_err(|_| {
            ApiError::new(
                Code::BadRequest,
                format!("node ids are numbers, got {id:?}"),
            )
        })?;
        // Raft answers both refusals as a bad membership change; they are a missing member
        // and a state that forbids the removal.
        let members = self.meta.cluster_status().members;
        if !members.iter().any(|m| m.id == id) {
            return Err(ApiError::new(
                Code::NotFound,
                format!("node {id} is not a member"),
            ));
        }
        if members.iter().all(|m| !m.voter || m.id == id) {
            return Err(ApiError::new(
                Code::Conflict,
                format!("node {id} is the last voter; the region cannot lose it"),
            ));
        }
        self.meta.remove_member(id).await?;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }

    pub(super) async fn list_signing_keys(&self, req: &Request) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        self.auth.require_cluster_admin(&caller)?;
        let keys = self.meta.catalog().signing_keys()?;
        let newest = keys.last().map(|k| k.kid.clone());
        let list: Vec<_> = keys
            .iter()
            .map(|k| {
                json!({
                    "kid": k.kid,
                    "created_at": time(Some(k.created_at)),
                    "signing": Some(&k.kid) == newest.as_ref(),
                })
            })
            .collect();
        Ok(Reply::json(StatusCode::OK, &json!({"signing_keys": list})))
    }

    pub(super) async fn rotate_signing_key(&self, req: &Request) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        self.auth.require_cluster_admin(&caller)?;
        let now = chrono::Utc::now().timestamp();
        let key = tokio::task::spawn_blocking(move || new_signing_key(now))
            .await
            .map_err(|e| ApiError::internal("generating a signing key", e))?;
        let kid = key.kid.clone();
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::RotateSigningKey {
                key,
                retire_after: TOKEN_TTL + RETIRE_SLACK,
            },
        )
        .await?;
        Ok(Reply::json(
            StatusCode::CREATED,
            &json!({"kid": kid, "created_at": time(Some(now)), "signing": true}),
        ))
    }
}
