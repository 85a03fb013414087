//! `/api/v1/cluster`: the region as this node sees it (leader, term, members with their API
//! and cluster addresses, voter or learner, replication progress) and removing a member.
//! Joining is not here: it happens over the authenticated cluster plane.

use http::StatusCode;

use super::Api;
use crate::auth::Need;
use crate::errors::{ApiError, ApiResult, Code};
use crate::wire::{Reply, Request};

impl Api {
    pub(super) fn cluster_status(&self) -> ApiResult<Reply> {
        let status = self.meta.cluster_status();
        let body = serde_json::to_value(&status).map_err(|e| ApiError::internal("status", e))?;
        Ok(Reply::json(StatusCode::OK, &body))
    }

    pub(super) async fn remove_member(&self, req: &Request, id: &str) -> ApiResult<Reply> {
        self.auth.authorize(req, &Need::ManageAccess).await?;
        let id: u64 = id.parse().map_err(|_| {
            ApiError::new(
                Code::BadRequest,
                format!("node ids are numbers, got {id:?}"),
            )
        })?;
        self.meta.remove_member(id).await?;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }
}
