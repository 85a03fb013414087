//! Pull-through mirrors of upstream registries: a namespace bound to an upstream
//! (`shoal_raft::UpstreamRecord`) serves what the upstream holds, fetched on demand.
//!
//! - Manifests: by digest, fetched once and served from the catalogue forever after; by
//!   tag, served from the catalogue while younger than the upstream's TTL, then revalidated
//!   with a `HEAD` and fetched again only when the digest moved. When the upstream cannot
//!   be asked (429, 5xx, timeout, refused, DNS) a cached tag is served stale and counted.
//!   One fetch per tag or digest at a time on a node (`Flights`).
//! - Blobs: a mirrored manifest promises its blobs (`MirrorManifest`); the first read of a
//!   promised blob fills through the node's cache with the route `Mirror`, which asks the
//!   blob's home node first, so a region sends one GET per blob upstream. The node that
//!   fetched the bytes from the upstream verifies them, stores them in the origin and links
//!   them (`source::Keep`): from then on they are ordinary content.
//! - Routing: containerd's `?ns=<registry host>` picks the namespace bound to that host
//!   (`route_ns`); pushes and deletes through the registry API are refused (read-only).

pub mod client;
pub mod source;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use shoal_origin::Digest;
use shoal_raft::{Actor, Command, Metadata, Outcome, Proposal, UpstreamRecord};

use crate::errors::{ApiError, ApiResult, Code};
use crate::metrics as m;
use crate::names::RepoName;
use crate::registry::manifest;
use crate::registry::routes::Route;
use client::{UpstreamClient, UpstreamError};

/// Namespaces whose binding is remembered at most (a miss only reads the catalogue).
const BINDINGS_REMEMBERED: usize = 1024;
/// Stripes of the per-node single flight for manifest fetches.
const FLIGHT_STRIPES: usize = 64;

pub struct Mirrors {
    meta: Arc<Metadata>,
    /// `--upstream-timeout`: how long any one upstream exchange may take to answer.
    timeout: Duration,
    /// One client per upstream, rebuilt when its record changes.
    clients: Mutex<HashMap<String, Arc<UpstreamClient>>>,
    flights: Vec<tokio::sync::Mutex<()>>,
    /// Which upstream each namespace mirrors, as last read (`binding`).
    bindings: crate::memo::Memo<String, Option<Arc<UpstreamRecord>>>,
}

impl Mirrors {
    pub fn new(meta: Arc<Metadata>, timeout: Duration) -> Mirrors {
        Mirrors {
            meta,
            timeout,
            clients: Mutex::new(HashMap::new()),
            flights: (0..FLIGHT_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            bindings: crate::memo::Memo::new(BINDINGS_REMEMBERED),
        }
    }

    /// The upstream `repo`'s namespace mirrors, if any. Asked on every manifest GET and
    /// push, so remembered per namespace while the catalogue stays as it was read.
    pub fn binding(&self, repo: &RepoName) -> ApiResult<Option<Arc<UpstreamRecord>>> {
        let catalog = self.meta.catalog();
        self.bindings.get_or_read(
            catalog.version(),
            repo.as_str().split('/').next().unwrap_or_default(),
            || Ok(catalog.upstream_of(repo.as_str())?.map(Arc::new)),
            |_| true,
        )
    }

    /// The client for `record`, made once per version of the record.
    pub fn client(&self, record: &UpstreamRecord) -> ApiResult<Arc<UpstreamClient>> {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(&record.name).filter(|c| c.record == *record) {
            return Ok(c.clone());
        }
        let c = Arc::new(
            UpstreamClient::new(record.clone(), self.timeout)
                .map_err(|e| ApiError::internal("building an upstream client", e))?,
        );
        clients.insert(record.name.clone(), c.clone());
        Ok(c)
    }

    fn flight(&self, key: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.flights[(h.finish() as usize) % FLIGHT_STRIPES]
    }

    /// Makes sure the catalogue holds manifest `reference` of mirrored `repo`, fresh enough
    /// to serve: fetched or revalidated upstream when it must be, served stale when the
    /// upstream fails and a copy is here.
    pub async fn ensure_manifest(
        &self,
        request_id: &str,
        repo: &RepoName,
        upstream: &UpstreamRecord,
        reference: &str,
    ) -> ApiResult<()> {
        if self.fresh(repo, upstream, reference)? {
            return Ok(());
        }
        let _flight = self.flight(&format!("{repo}@{reference}")).lock().await;
        // Another request may have fetched it while this one waited.
        if self.fresh(repo, upstream, reference)? {
            return Ok(());
        }
        let remote = upstream.remote_path(repo.as_str()).ok_or_else(|| {
            ApiError::new(
                Code::NameUnknown,
                format!("{repo} names the mirror namespace alone, not an image in it"),
            )
        })?;
        let client = self.client(upstream)?;
        let catalog = self.meta.catalog();
        let cached = if reference.contains(':') {
            None
        } else {
            catalog.tag(repo.as_str(), reference)?
        };
        let result = match &cached {
            Some(digest) => {
                self.revalidate(request_id, repo, &client, &remote, reference, digest)
                    .await
            }
            None => {
                self.fetch(request_id, repo, &client, &remote, reference)
                    .await
            }
        };
        match result {
            Ok(()) => Ok(()),
            // A cached tag is served whatever the upstream's trouble, a 404 included: an
            // upstream that lost or hid an image must not break the fleet pulling it.
            Err(e) if cached.is_some() => {
                metrics::counter!(m::UPSTREAM_STALE, "upstream" => upstream.name.clone())
                    .increment(1);
                tracing::warn!(upstream = %upstream.name, %repo, reference, error = %e, "serving a cached tag; the upstream could not revalidate it");
                Ok(())
            }
            Err(e) => Err(upstream_error(&upstream.name, e, Code::ManifestUnknown)),
        }
    }

    /// A digest already here, or a tag here and checked within the TTL.
    fn fresh(
        &self,
        repo: &RepoName,
        upstream: &UpstreamRecord,
        reference: &str,
    ) -> ApiResult<bool> {
        let catalog = self.meta.catalog();
        if reference.contains(':') {
            return Ok(catalog.manifest(repo.as_str(), reference)?.is_some());
        }
        if catalog.tag(repo.as_str(), reference)?.is_none() {
            return Ok(false);
        }
        let now = chrono::Utc::now().timestamp();
        let checked = catalog.tag_checked_at(repo.as_str(), reference)?;
        Ok(checked.is_some_and(|at| at.saturating_add(upstream.tag_ttl) > now))
    }

    /// Asks the upstream (`HEAD`) whether tag `tag` still names `digest`; fetches the manifest
    /// again only when it moved.
    async fn revalidate(
        &self,
        request_id: &str,
        repo: &RepoName,
        client: &UpstreamClient,
        remote: &str,
        tag: &str,
        digest: &str,
    ) -> Result<(), UpstreamError> {
        let head = client.manifest(remote, tag, true).await?;
        let name = client.record.name.clone();
        if head.digest.as_deref() == Some(digest) {
            metrics::counter!(m::UPSTREAM_REVALIDATIONS, "upstream" => name, "result" => "same")
                .increment(1);
            let now = chrono::Utc::now().timestamp();
            let cmd = Command::TagChecked {
                repo: repo.to_string(),
                tag: tag.to_string(),
                digest: digest.to_string(),
                at: now,
            };
            return self.commit(request_id, cmd).await;
        }
        metrics::counter!(m::UPSTREAM_REVALIDATIONS, "upstream" => name, "result" => "changed")
            .increment(1);
        self.fetch(request_id, repo, client, remote, tag).await
    }

    /// Fetches manifest `reference`, checks it as a push would be checked, and stores it.
    async fn fetch(
        &self,
        request_id: &str,
        repo: &RepoName,
        client: &UpstreamClient,
        remote: &str,
        reference: &str,
    ) -> Result<(), UpstreamError> {
        let by_digest = if reference.contains(':') {
            Some(
                reference
                    .parse::<Digest>()
                    .map_err(|e| UpstreamError::Invalid(e.to_string()))?,
            )
        } else {
            None
        };
        let got = client.manifest(remote, reference, false).await?;
        let now = chrono::Utc::now().timestamp();
        let parsed = manifest::parse(
            &got.bytes,
            got.media_type.as_deref(),
            by_digest.as_ref(),
            now,
        )
        .map_err(|e| UpstreamError::Invalid(format!("its manifest: {}", e.message)))?;
        if let Some(said) = &got.digest {
            if *said != parsed.record.digest {
                return Err(UpstreamError::Invalid(format!(
                    "it named the manifest {said}, but its bytes hash to {}",
                    parsed.record.digest
                )));
            }
        }
        tracing::info!(upstream = %client.record.name, %repo, reference, digest = %parsed.record.digest, "fetched a manifest from the upstream");
        let cmd = Command::MirrorManifest {
            repo: repo.to_string(),
            manifest: parsed.record,
            tag: by_digest.is_none().then(|| reference.to_string()),
            blobs: parsed.blob_sizes,
            fetched_at: now,
        };
        self.commit(request_id, cmd).await
    }

    async fn commit(&self, request_id: &str, cmd: Command) -> Result<(), UpstreamError> {
        let proposal = Proposal::new(Actor::System("mirror".into()), request_id, cmd);
        match self.meta.write(proposal).await {
            Ok(Outcome::Done) => Ok(()),
            // An immutable tag keeps its digest: what is here is what is served.
            Ok(Outcome::Rejected(r)) => Err(UpstreamError::Invalid(format!(
                "the catalogue refused it: {r}"
            ))),
            Err(e) => Err(UpstreamError::Unavailable(format!(
                "recording it in the catalogue: {e}"
            ))),
        }
    }
}

/// The client's error for an upstream failure with nothing cached to serve instead;
/// `missing` is the code for "the upstream does not have it".
pub fn upstream_error(name: &str, e: UpstreamError, missing: Code) -> ApiError {
    match e {
        UpstreamError::NotFound => {
            ApiError::new(missing, format!("upstream {name} does not have it"))
        }
        UpstreamError::RateLimited(secs) => ApiError::new(
            Code::TooManyRequests,
            format!("upstream {name} is rate-limiting and nothing is cached; retry in {secs} s"),
        )
        .header("Retry-After", secs.to_string()),
        UpstreamError::Denied(m) => ApiError::new(
            Code::Unavailable,
            format!("upstream {name} refused the mirror: {m}"),
        ),
        e @ (UpstreamError::Unavailable(_) | UpstreamError::Invalid(_)) => ApiError::new(
            Code::Unavailable,
            format!("upstream {name} is unavailable and nothing is cached: {e}"),
        ),
    }
}

/// `route` for a request that containerd sent with `?ns=<registry host>`: its repository
/// moved into the namespace mirroring that host (`/v2/library/nginx/...?ns=docker.io` →
/// `hub/library/nginx`). A host no upstream serves is `NAME_UNKNOWN` at once, so containerd
/// falls back to its next host. (containerd sends `ns` only to a mirror, never to the
/// registry it names, so a request for Shoal's own content carries none.)
pub fn route_ns(meta: &Metadata, ns: &str, route: Route) -> ApiResult<Route> {
    let Some(upstream) = meta.catalog().upstream_for_host(ns)? else {
        return Err(ApiError::new(
            Code::NameUnknown,
            format!("no upstream of this registry serves {ns:?}"),
        ));
    };
    let moved = |r: RepoName| -> ApiResult<RepoName> {
        Ok(RepoName::parse(&format!("{}/{r}", upstream.namespace))?)
    };
    Ok(match route {
        Route::Base | Route::Catalog => route,
        Route::TagsList(r) => Route::TagsList(moved(r)?),
        Route::Manifest(r, x) => Route::Manifest(moved(r)?, x),
        Route::Blob(r, x) => Route::Blob(moved(r)?, x),
        Route::UploadStart(r) => Route::UploadStart(moved(r)?),
        Route::Upload(r, x) => Route::Upload(moved(r)?, x),
        Route::Referrers(r, x) => Route::Referrers(moved(r)?, x),
    })
}
