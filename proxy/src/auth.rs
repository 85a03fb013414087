//! The one seam where authorisation happens. Every `/v2` and `/api` request states what it
//! needs (`Need`) and the node's `Authorizer` says yes or no before any handler runs.
//!
//! Only `OpenAccess` exists so far: the identity-and-access issue replaces it with token
//! auth. It grants everything and the node logs one loud warning when it is installed.

use crate::errors::ApiResult;
use crate::names::RepoName;
use crate::wire::Request;

/// What a request needs to be allowed to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// `GET /v2/`: any client may probe the API version.
    Ping,
    Pull(RepoName),
    Push(RepoName),
    Delete(RepoName),
    /// `_catalog` and namespace listing.
    List,
    /// Management writes (namespaces and, later, everything under `/api/v1`).
    Admin,
}

pub trait Authorizer: Send + Sync + 'static {
    fn authorize(&self, req: &Request, need: &Need) -> ApiResult<()>;
}

/// Grants every request. Used until access control exists; never silently.
pub struct OpenAccess;

impl OpenAccess {
    pub fn install() -> OpenAccess {
        tracing::warn!(
            "ACCESS CONTROL IS NOT BUILT YET: this node accepts pushes, pulls, deletes and \
             management calls from anyone who can reach it. Do not expose it beyond a trusted network."
        );
        OpenAccess
    }
}

impl Authorizer for OpenAccess {
    fn authorize(&self, _req: &Request, _need: &Need) -> ApiResult<()> {
        Ok(())
    }
}
