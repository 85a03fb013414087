//! `RemoteStore`: the `BlobStore` of a node whose origin is a separate `shoal-origin`
//! service, spoken to over HTTP (see `api`).
//!
//! An append first claims the upload (so a wrong offset, an unknown upload or a concurrent
//! writer is reported by `append` itself, as with the in-process backends), then streams the
//! chunks into one chunked PATCH through a small channel, which gives backpressure. A writer
//! dropped without `finish` ends the body with an error, so the server counts none of it,
//! and gives the claim back in the background.
//!
//! Listings ask for pages of at most `api::MAX_PAGE` and join them until `limit` is reached
//! or a short page ends the listing, so a caller sees the trait's paging whatever the cap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::api::{self, BlobPage, Claim, Created, Existed, Purged, Size, UploadPage, WireError};
use crate::store::{
    BlobEntry, BlobInfo, BlobReader, BlobStore, ByteRange, PurgeReport, UploadEntry, UploadId,
    UploadWriter,
};
use crate::{Digest, Error, Result};

#[derive(Clone)]
pub struct RemoteStore {
    base: String,
    bearer: String,
    http: Client,
}

impl RemoteStore {
    /// `base` is the origin's URL (`http://host:port`), `secret` the region's shared secret.
    pub fn new(base: &str, secret: &str) -> Result<RemoteStore> {
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Unavailable(format!("building the HTTP client: {e}")))?;
        Ok(RemoteStore {
            base: base.trim_end_matches('/').to_string(),
            bearer: format!("Bearer {secret}"),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request to the origin, carrying the current span's trace (`telemetry`).
    fn req(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let req = self
            .http
            .request(method, self.url(path))
            .header(reqwest::header::AUTHORIZATION, &self.bearer);
        match crate::telemetry::traceparent() {
            Some(parent) => req.header("traceparent", parent),
            None => req,
        }
    }

    /// Sends `req`; any non-success answer becomes the `Error` it stands for.
    async fn send(req: RequestBuilder) -> Result<Response> {
        let resp = req.send().await.map_err(unreachable)?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(answer_error(resp).await)
    }

    async fn json<T: serde::de::DeserializeOwned>(req: RequestBuilder) -> Result<T> {
        Self::send(req).await?.json().await.map_err(unreachable)
    }

    /// Up to `limit` entries of a listing after `after`, asked for in pages of at most
    /// `max_page`: `fetch` gets the page after a cursor, `cursor` makes one of an entry.
    async fn pages<E, F, Fut>(
        limit: usize,
        max_page: usize,
        mut after: Option<String>,
        fetch: F,
        cursor: impl Fn(&E) -> String,
    ) -> Result<Vec<E>>
    where
        F: Fn(Option<String>, usize) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<E>>>,
    {
        let mut out = Vec::new();
        while out.len() < limit {
            let want = (limit - out.len()).min(max_page);
            let page = fetch(after.take(), want).await?;
            let last_page = page.len() < want;
            out.extend(page);
            match out.last() {
                Some(last) if !last_page => after = Some(cursor(last)),
                _ => break,
            }
        }
        Ok(out)
    }

    /// A listing request for one page.
    fn page_req(&self, path: &str, after: Option<String>, limit: usize) -> RequestBuilder {
        let mut req = self
            .req(reqwest::Method::GET, path)
            .query(&[("limit", limit)]);
        if let Some(after) = after {
            req = req.query(&[("after", after)]);
        }
        req
    }
}

/// A header of a stat answer, parsed.
fn stat_header<T: std::str::FromStr>(resp: &Response, name: &str) -> Result<T> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Unavailable(format!("origin sent no valid {name}")))
}

fn unreachable(e: reqwest::Error) -> Error {
    Error::Unavailable(format!("origin request failed: {e}"))
}

async fn answer_error(resp: Response) -> Error {
    let status = resp.status();
    if status == StatusCode::UNAUTHORIZED {
        return Error::Unavailable("the origin rejected this node's shared secret".into());
    }
    match resp.json::<WireError>().await {
        Ok(w) => api::from_wire(w),
        Err(_) => Error::Unavailable(format!("origin answered {status}")),
    }
}

type Chunk = std::result::Result<Bytes, std::io::Error>;

struct RemoteWriter {
    store: RemoteStore,
    claim: String,
    tx: Option<mpsc::Sender<Chunk>>,
    finished: Arc<AtomicBool>,
    request: Option<JoinHandle<Result<Response>>>,
}

impl RemoteWriter {
    /// The PATCH ended before we were done sending: its answer says why.
    async fn request_error(&mut self) -> Error {
        match self.request.take() {
            Some(task) => match task.await {
                Ok(Ok(_)) => {
                    Error::Unavailable("origin answered before the body was complete".into())
                }
                Ok(Err(e)) => e,
                Err(e) => Error::Unavailable(format!("upload task failed: {e}")),
            },
            None => Error::Unavailable("upload request already ended".into()),
        }
    }
}

#[async_trait]
impl UploadWriter for RemoteWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let sent = match &self.tx {
            Some(tx) => tx.send(Ok(chunk)).await.is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.request_error().await)
        }
    }

    async fn finish(mut self: Box<Self>) -> Result<u64> {
        self.finished.store(true, Ordering::SeqCst);
        self.tx = None;
        let task = self.request.take().expect("request runs until finish");
        let resp = task
            .await
            .map_err(|e| Error::Unavailable(format!("upload task failed: {e}")))??;
        let size: Size = resp.json().await.map_err(unreachable)?;
        Ok(size.size)
    }
}

impl Drop for RemoteWriter {
    fn drop(&mut self) {
        if self.finished.load(Ordering::SeqCst) {
            return;
        }
        // Closing the channel ends the body with an error (see `append`); the release covers
        // a PATCH that never reached the origin.
        self.tx = None;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let req = self.store.req(
                reqwest::Method::DELETE,
                &format!("/v1/claims/{}", self.claim),
            );
            rt.spawn(async move {
                let _ = req.send().await;
            });
        }
    }
}

#[async_trait]
impl BlobStore for RemoteStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>> {
        let resp = self
            .req(reqwest::Method::HEAD, &format!("/v1/blobs/{digest}"))
            .send()
            .await
            .map_err(unreachable)?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(BlobInfo {
                size: stat_header(&resp, api::BLOB_SIZE_HEADER)?,
                // An origin older than this node sends no time: take the blob as written
                // just now, the side on which the collector leaves it alone.
                modified: stat_header(&resp, api::BLOB_MODIFIED_HEADER)
                    .unwrap_or_else(|_| chrono::Utc::now().timestamp()),
            })),
            s => Err(Error::Unavailable(format!("origin answered {s} to a stat"))),
        }
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobReader> {
        let mut req = self.req(reqwest::Method::GET, &format!("/v1/blobs/{digest}"));
        if let Some(r) = range {
            if r.is_empty() || r.end < r.start {
                let size = self.stat(digest).await?.map_or(0, |i| i.size);
                return Err(Error::RangeNotSatisfiable { size });
            }
            let spec = match r.end {
                u64::MAX => format!("bytes={}-", r.start),
                end => format!("bytes={}-{}", r.start, end - 1),
            };
            req = req.header(reqwest::header::RANGE, spec);
        }
        let resp = Self::send(req).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let size: u64 = header(api::BLOB_SIZE_HEADER)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Unavailable("origin sent no blob size".into()))?;
        let len: u64 = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(size);
        let start = range.map_or(0, |r| r.start);
        let body = resp
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other));
        let range = ByteRange {
            start,
            end: start + len,
        };
        Ok(BlobReader::streamed(size, range, Box::pin(body)))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let e: Existed =
            Self::json(self.req(reqwest::Method::DELETE, &format!("/v1/blobs/{digest}"))).await?;
        Ok(e.existed)
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<BlobEntry>> {
        let fetch = |after, limit| async move {
            let page: BlobPage = Self::json(self.page_req("/v1/blobs", after, limit)).await?;
            page.blobs.into_iter().map(TryInto::try_into).collect()
        };
        let cursor = |e: &BlobEntry| e.digest.to_string();
        let after = after.map(ToString::to_string);
        Self::pages(limit, api::MAX_PAGE, after, fetch, cursor).await
    }

    async fn create_upload(&self) -> Result<UploadId> {
        let c: Created = Self::json(self.req(reqwest::Method::POST, "/v1/uploads")).await?;
        c.id.parse()
    }

    async fn upload_size(&self, id: &UploadId) -> Result<u64> {
        let s: Size =
            Self::json(self.req(reqwest::Method::GET, &format!("/v1/uploads/{id}"))).await?;
        Ok(s.size)
    }

    async fn append(&self, id: &UploadId, offset: u64) -> Result<Box<dyn UploadWriter>> {
        let path = format!("/v1/uploads/{id}/claims?offset={offset}");
        let claim: Claim = Self::json(self.req(reqwest::Method::POST, &path)).await?;
        let (tx, rx) = mpsc::channel::<Chunk>(4);
        let finished = Arc::new(AtomicBool::new(false));
        let done = finished.clone();
        // The body ends cleanly only once `finish` has set the flag; otherwise with an error,
        // which aborts the request so the origin counts nothing.
        let body = futures::stream::unfold(Some(rx), move |rx| {
            let done = done.clone();
            async move {
                let mut rx = rx?;
                match rx.recv().await {
                    Some(chunk) => Some((chunk, Some(rx))),
                    None if done.load(Ordering::SeqCst) => None,
                    None => Some((Err(std::io::Error::other("upload abandoned")), None)),
                }
            }
        });
        let req = self
            .req(
                reqwest::Method::PATCH,
                &format!("/v1/claims/{}", claim.claim),
            )
            .body(reqwest::Body::wrap_stream(body));
        let request = tokio::spawn(Self::send(req));
        Ok(Box::new(RemoteWriter {
            store: self.clone(),
            claim: claim.claim,
            tx: Some(tx),
            finished,
            request: Some(request),
        }))
    }

    async fn commit_upload(&self, id: &UploadId, digest: &Digest) -> Result<u64> {
        let path = format!("/v1/uploads/{id}/commit?digest={digest}");
        let s: Size = Self::json(self.req(reqwest::Method::POST, &path)).await?;
        Ok(s.size)
    }

    async fn cancel_upload(&self, id: &UploadId) -> Result<()> {
        Self::send(self.req(reqwest::Method::DELETE, &format!("/v1/uploads/{id}"))).await?;
        Ok(())
    }

    async fn list_uploads(
        &self,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<UploadEntry>> {
        let fetch = |after, limit| async move {
            let page: UploadPage = Self::json(self.page_req("/v1/uploads", after, limit)).await?;
            page.uploads.into_iter().map(TryInto::try_into).collect()
        };
        let cursor = |e: &UploadEntry| e.id.to_string();
        let after = after.map(ToString::to_string);
        Self::pages(limit, api::MAX_PAGE, after, fetch, cursor).await
    }

    async fn purge_stale(&self, untouched_for_secs: i64, now: i64) -> Result<PurgeReport> {
        let req = self
            .req(reqwest::Method::POST, "/v1/uploads/purge")
            .query(&[("untouched_for", untouched_for_secs), ("now", now)]);
        let purged: Purged = Self::json(req).await?;
        purged.try_into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FsStore;

    async fn start(secret: &str) -> (tempfile::TempDir, String, tokio::sync::oneshot::Sender<()>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FsStore::open(dir.path()).await.unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let secret = secret.to_string();
        tokio::spawn(async move {
            crate::server::serve(listener, store, secret, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        (dir, url, tx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remote_store_over_fs_passes_conformance() {
        let (_dir, url, _stop) = start("s3cret").await;
        let store = RemoteStore::new(&url, "s3cret").unwrap();
        crate::conformance::run_all(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_secret_gets_nothing() {
        let (_dir, url, _stop) = start("right").await;
        let store = RemoteStore::new(&url, "wrong").unwrap();
        assert!(
            matches!(store.create_upload().await, Err(Error::Unavailable(m)) if m.contains("secret"))
        );
        assert!(matches!(
            store.list(None, 10).await,
            Err(Error::Unavailable(_))
        ));
        let d = Digest::sha256_of(b"x");
        assert!(store.stat(&d).await.is_err());
        let resp = reqwest::get(format!("{url}/v1/blobs")).await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.text().await.unwrap(),
            "",
            "an unauthenticated caller learns nothing"
        );
    }

    /// `limit` entries from a listing of `total` read in pages of at most `max_page`.
    async fn check_pages(limit: usize, total: u32, max_page: usize) {
        let fetch = |after: Option<String>, want: usize| async move {
            let start = after.map_or(0, |a| a.parse::<u32>().unwrap() + 1);
            assert!(want <= max_page, "asked for {want}, cap {max_page}");
            Ok((start..total).take(want).collect::<Vec<u32>>())
        };
        let got = RemoteStore::pages(limit, max_page, None, fetch, u32::to_string).await;
        let want: Vec<u32> = (0..total).take(limit).collect();
        assert_eq!(
            got.unwrap(),
            want,
            "limit {limit}, {total} entries, pages of {max_page}"
        );
    }

    #[tokio::test]
    async fn listings_join_capped_pages() {
        check_pages(10, 25, 3).await;
        check_pages(30, 25, 3).await;
        check_pages(24, 24, 3).await;
        check_pages(7, 0, 3).await;
        check_pages(0, 5, 3).await;
        check_pages(5, 5, 1000).await;
    }

    #[tokio::test]
    async fn unreachable_origin_is_unavailable() {
        let store = RemoteStore::new("http://127.0.0.1:1", "x").unwrap();
        assert!(matches!(
            store.create_upload().await,
            Err(Error::Unavailable(_))
        ));
    }
}
