//! The OCI Distribution API (`/v2/...`): routing, the authorisation seam, and one module per
//! resource (`blobs`, `uploads`, `manifests`, `discovery`).
//!
//! Handlers read metadata from the local replica (`Catalog`), blob bytes from the origin
//! (`BlobStore`), and change metadata only through `Metadata::write` (Raft).

mod blobs;
mod discovery;
pub mod manifest;
mod manifests;
pub(crate) mod range;
pub mod routes;
pub(crate) mod strict_json;
mod uploads;

use std::sync::Arc;

use http::{Method, StatusCode};
use shoal_origin::{BlobStore, Digest};
use shoal_raft::Metadata;

use crate::auth::{Gate, Need};
use crate::cache::BlobCache;
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::{NamespaceName, RepoName};
use crate::usage::UsageMeter;
use crate::wire::{Reply, Request, RequestBody};
pub use manifests::Served;
use routes::Route;

/// An empty memory of the manifests sent, for `Registry::served`.
pub fn served_manifests() -> crate::memo::Memo<String, Arc<Served>> {
    crate::memo::Memo::new(manifests::SERVED_CAPACITY)
}

/// What a successful request adds to its namespace's usage.
enum Metered {
    Pull,
    Push,
    BlobBytes,
}

/// Everything a request handler can reach.
pub struct Registry {
    pub meta: Arc<Metadata>,
    pub store: Arc<dyn BlobStore>,
    /// The edge cache blob reads go through when the origin is a separate service.
    pub cache: Option<Arc<BlobCache>>,
    pub auth: Arc<Gate>,
    pub usage: Arc<UsageMeter>,
    /// Upload sessions one principal may hold open at once (`--max-open-uploads`).
    pub max_open_uploads: u32,
    /// The collector's grace period in seconds (`--gc-grace`): a pusher's use of a blob link
    /// or manifest older than half of it renews its lease.
    pub gc_grace: i64,
    /// Upstream registries mirrored into namespaces.
    pub mirrors: Arc<crate::mirror::Mirrors>,
    /// The cache mirror fills run through (`cache` when there is one).
    pub fills: Arc<BlobCache>,
    /// Manifests as last sent, while the catalogue has not changed.
    pub served: crate::memo::Memo<String, Arc<Served>>,
}

impl Registry {
    pub async fn handle(&self, req: &Request, body: &mut dyn RequestBody) -> Reply {
        let reply = match self.dispatch(req, body).await {
            Ok(r) => r,
            Err(e) => Reply::error(&e),
        };
        reply.header("Docker-Distribution-Api-Version", "registry/2.0")
    }

    /// `handle` without turning an error into its reply (the console makes its own page of
    /// it).
    pub(crate) async fn dispatch(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
    ) -> ApiResult<Reply> {
        let mut route = routes::parse(&req.path)?;
        if let Some(ns) = req.query("ns") {
            route = crate::mirror::route_ns(&self.meta, ns, route)?;
        }
        let m = &req.method;
        let read = *m == Method::GET || *m == Method::HEAD;
        let need = match &route {
            Route::Base => Need::Ping,
            Route::Catalog => Need::Catalog,
            Route::TagsList(r) | Route::Referrers(r, _) => Need::Pull(r.clone()),
            Route::Manifest(r, _) | Route::Blob(r, _) if *m == Method::DELETE => {
                Need::Delete(r.clone())
            }
            Route::Manifest(r, _) | Route::Blob(r, _) if read => Need::Pull(r.clone()),
            Route::Manifest(r, _)
            | Route::Blob(r, _)
            | Route::UploadStart(r)
            | Route::Upload(r, _) => Need::Push(r.clone()),
        };
        let caller = self.auth.authorize(req, &need).await?;
        if let Need::Push(r) | Need::Delete(r) = &need {
            if let Some(u) = self.mirrors.binding(r)? {
                return Err(ApiError::new(
                    Code::Denied,
                    format!(
                        "namespace {} mirrors upstream {} ({}) and is read-only",
                        u.namespace, u.name, u.url
                    ),
                ));
            }
        }
        let head = *m == Method::HEAD;
        let metered = match (&route, m.clone()) {
            (Route::Manifest(r, _), Method::GET) => Some((r.namespace(), Metered::Pull)),
            (Route::Manifest(r, _), Method::PUT) => Some((r.namespace(), Metered::Push)),
            (Route::Blob(r, _), Method::GET) => Some((r.namespace(), Metered::BlobBytes)),
            _ => None,
        };
        let reply = match (route, m.clone()) {
            (Route::Base, Method::GET | Method::HEAD) => {
                Ok(Reply::json(StatusCode::OK, &serde_json::json!({})))
            }
            (Route::Catalog, Method::GET) => self.catalog(req, &caller),
            (Route::TagsList(r), Method::GET) => self.tags_list(req, &r),
            (Route::Referrers(r, d), Method::GET) => self.referrers(req, &r, &d),
            (Route::Blob(r, d), Method::GET | Method::HEAD) => {
                self.get_blob(req, &r, &d, head, &caller).await
            }
            (Route::Blob(r, d), Method::DELETE) => self.delete_blob(req, &r, &d, &caller).await,
            (Route::UploadStart(r), Method::POST) => {
                self.start_upload(req, body, &r, &caller).await
            }
            (Route::Upload(r, id), Method::GET) => self.upload_status(&r, &id, &caller).await,
            (Route::Upload(r, id), Method::PATCH) => {
                self.patch_upload(req, body, &r, &id, &caller).await
            }
            (Route::Upload(r, id), Method::PUT) => {
                self.put_upload(req, body, &r, &id, &caller).await
            }
            (Route::Upload(r, id), Method::DELETE) => {
                self.cancel_upload(req, &r, &id, &caller).await
            }
            (Route::Manifest(r, reference), Method::GET | Method::HEAD) => {
                self.read_manifest(req, &r, &reference, head, &caller).await
            }
            (Route::Manifest(r, reference), Method::PUT) => {
                self.put_manifest(req, body, &r, &reference, &caller).await
            }
            (Route::Manifest(r, reference), Method::DELETE) => {
                self.delete_manifest(req, &r, &reference, &caller).await
            }
            (_, method) => Err(ApiError::new(
                Code::MethodNotAllowed,
                format!("{method} is not allowed on {}", req.path),
            )),
        }?;
        // A push counts once stored, whether or not its client reads the answer; a pull
        // once the reply went out whole, since one cut off midway served no image.
        match metered.filter(|_| reply.status.is_success()) {
            Some((ns, Metered::Push)) => {
                self.usage.push(ns.as_str());
                Ok(reply)
            }
            Some((ns, Metered::Pull)) => Ok(self.count_when_sent(reply, &ns, UsageMeter::pull)),
            Some((ns, Metered::BlobBytes)) => {
                Ok(self.count_when_sent(reply, &ns, UsageMeter::served))
            }
            None => Ok(reply),
        }
    }

    /// `reply`, which counts its body bytes against `ns` with `count` once sent whole.
    fn count_when_sent(
        &self,
        reply: Reply,
        ns: &NamespaceName,
        count: fn(&UsageMeter, &str, u64),
    ) -> Reply {
        let (usage, ns) = (self.usage.clone(), ns.to_string());
        reply.when_sent(move |bytes| count(&usage, &ns, bytes))
    }

    /// Renews the lease of blob link or manifest `digest` of `repo` when `caller` may push
    /// there and the lease is older than half the grace period: what a pusher just saw must
    /// not be collected before its push ends (a Raft write, but only then).
    async fn touch_if_old(
        &self,
        req: &Request,
        caller: &crate::auth::Caller,
        repo: &RepoName,
        digest: &str,
    ) -> ApiResult<()> {
        let now = chrono::Utc::now().timestamp();
        let lease = self.meta.catalog().lease(repo.as_str(), digest)?;
        if lease.saturating_add(self.gc_grace / 2) >= now || caller.is_anonymous() {
            return Ok(());
        }
        let place =
            crate::auth::place::repository(&self.meta, repo.namespace().as_str(), repo.as_str())
                .await?;
        if !caller.may(crate::auth::Action::Push, &place) {
            return Ok(());
        }
        let touch = shoal_raft::Command::TouchContent {
            repo: repo.to_string(),
            digests: vec![digest.to_string()],
            at: now,
        };
        crate::errors::commit(&self.meta, caller, req, touch).await
    }

    /// Fails with `NAME_UNKNOWN` unless the repository's namespace exists. A namespace this
    /// replica does not have yet may have just been created through another node, so the
    /// answer "unknown" is only given after catching up with the region (read-index).
    async fn require_namespace(&self, repo: &RepoName) -> ApiResult<()> {
        let ns = repo.namespace();
        let catalog = self.meta.catalog();
        if catalog.namespace(ns.as_str())?.is_some() {
            return Ok(());
        }
        self.meta.catch_up().await?;
        match catalog.namespace(ns.as_str())? {
            Some(_) => Ok(()),
            None => Err(shoal_raft::Rejection::NamespaceUnknown(ns.to_string()).into()),
        }
    }

    /// Fails with `NAME_UNKNOWN` unless the repository exists.
    fn require_repo(&self, repo: &RepoName) -> ApiResult<()> {
        if self.meta.catalog().repository_exists(repo.as_str())? {
            Ok(())
        } else {
            Err(ApiError::new(
                Code::NameUnknown,
                format!("repository {repo} is not known to this registry"),
            ))
        }
    }
}

fn parse_digest(s: &str) -> ApiResult<Digest> {
    Ok(s.parse::<Digest>()?)
}
