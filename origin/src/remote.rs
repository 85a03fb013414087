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
//!
//! Several origins (`--origin A,B`: `shoal-origin` processes sharing one S3 bucket) are
//! failed over between. A request goes to the origin that last answered; when its
//! connection fails it goes to the next: reads whatever the failure, a request that changes
//! something only if it was never sent (`Retry`). An answer, even an error, is final: the
//! origins share their storage, so another would say the same. A blob body cut off part way
//! goes on from the next origin with a range request (`Resuming`). An append's PATCH streams
//! the client's body once, so an origin dying under it fails that append, and the client
//! appends again, to whichever origin answers then: the session lives in the bucket.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// The origin processes, all serving the same bucket (or one filesystem origin).
    bases: Arc<[String]>,
    /// The one asked first: the last that answered.
    preferred: Arc<AtomicUsize>,
    bearer: String,
    http: Client,
}

/// Whether a request may be sent again to another origin after its connection failed part
/// way: reads may; a request that changes something is sent again only if it never left.
#[derive(Clone, Copy, PartialEq)]
enum Retry {
    Idempotent,
    IfUnsent,
}

impl RemoteStore {
    /// `bases` is the origin's URL (`http://host:port`), or several separated by commas:
    /// `shoal-origin` processes sharing one S3 bucket, any of which can serve any blob and
    /// continue any upload session (see `s3.rs`). `secret` is the region's shared secret.
    pub fn new(bases: &str, secret: &str) -> Result<RemoteStore> {
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Unavailable(format!("building the HTTP client: {e}")))?;
        let bases: Vec<String> = bases
            .split(',')
            .map(|b| b.trim().trim_end_matches('/').to_string())
            .filter(|b| !b.is_empty())
            .collect();
        if bases.is_empty() {
            return Err(Error::Unavailable("no origin URL given".into()));
        }
        Ok(RemoteStore {
            bases: bases.into(),
            preferred: Arc::new(AtomicUsize::new(0)),
            bearer: format!("Bearer {secret}"),
            http,
        })
    }

    /// A request to origin `at`, carrying the current span's trace (`telemetry`).
    fn req_at(&self, at: usize, method: reqwest::Method, path: &str) -> RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{}", self.bases[at], path))
            .header(reqwest::header::AUTHORIZATION, &self.bearer);
        match crate::telemetry::traceparent() {
            Some(parent) => req.header("traceparent", parent),
            None => req,
        }
    }

    /// Sends the request `make` builds for an origin, to the preferred one first and, when
    /// its connection fails, to the next (per `retry`). The origin that answered is
    /// preferred from then on. Returns its index with the answer; any non-success answer
    /// becomes the `Error` it stands for (an answer is never retried elsewhere: the
    /// origins share their storage, so another would answer the same).
    async fn call(
        &self,
        retry: Retry,
        make: impl Fn(usize) -> RequestBuilder,
    ) -> Result<(usize, Response)> {
        let (at, resp) = self.call_raw(retry, make).await?;
        if resp.status().is_success() {
            return Ok((at, resp));
        }
        Err(answer_error(resp).await)
    }

    /// `call`, with the answer as it came, whatever its status.
    async fn call_raw(
        &self,
        retry: Retry,
        make: impl Fn(usize) -> RequestBuilder,
    ) -> Result<(usize, Response)> {
        let first = self.preferred.load(Ordering::Relaxed) % self.bases.len();
        let mut last = None;
        for k in 0..self.bases.len() {
            let at = (first + k) % self.bases.len();
            match make(at).send().await {
                Ok(resp) => {
                    if k > 0 {
                        self.preferred.store(at, Ordering::Relaxed);
                        tracing::warn!(origin = %self.bases[at], "failed over to this origin");
                    }
                    return Ok((at, resp));
                }
                Err(e) => {
                    let again = e.is_connect() || retry == Retry::Idempotent;
                    tracing::debug!(origin = %self.bases[at], error = %e, "origin request failed");
                    last = Some(e);
                    if !again {
                        break;
                    }
                }
            }
        }
        Err(unreachable(last.expect("at least one origin was asked")))
    }

    async fn send(&self, retry: Retry, make: impl Fn(usize) -> RequestBuilder) -> Result<Response> {
        Ok(self.call(retry, make).await?.1)
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        retry: Retry,
        make: impl Fn(usize) -> RequestBuilder,
    ) -> Result<T> {
        self.send(retry, make)
            .await?
            .json()
            .await
            .map_err(unreachable)
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

    /// One page of a listing.
    async fn page<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<T> {
        self.json(Retry::Idempotent, |at| {
            let mut req = self
                .req_at(at, reqwest::Method::GET, path)
                .query(&[("limit", limit)]);
            if let Some(after) = &after {
                req = req.query(&[("after", after)]);
            }
            req
        })
        .await
    }

    /// Opens `range` of a blob's bytes: (blob size, bytes in the answer, body).
    async fn open(&self, digest: &Digest, range: Option<ByteRange>) -> Result<(u64, u64, Body)> {
        let spec = range.map(|r| match r.end {
            u64::MAX => format!("bytes={}-", r.start),
            end => format!("bytes={}-{}", r.start, end - 1),
        });
        let resp = self
            .send(Retry::Idempotent, |at| {
                let req = self.req_at(at, reqwest::Method::GET, &format!("/v1/blobs/{digest}"));
                match &spec {
                    Some(spec) => req.header(reqwest::header::RANGE, spec),
                    None => req,
                }
            })
            .await?;
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
        let body = resp
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other));
        Ok((size, len, Box::pin(body)))
    }
}

type Body = std::pin::Pin<Box<dyn futures::Stream<Item = Chunk> + Send>>;

/// A blob body that, when its origin dies part way, goes on from where it stopped with a
/// range request to the next origin (several origins only; the bytes are the same blob, and
/// whoever fills a cache verifies the digest at the end anyway).
struct Resuming {
    store: RemoteStore,
    digest: Digest,
    next: u64,
    end: u64,
    body: Option<Body>,
    resumed: usize,
}

impl Resuming {
    fn stream(self) -> Body {
        Box::pin(futures::stream::unfold(self, |mut s| async move {
            loop {
                if s.next >= s.end {
                    return None;
                }
                let Some(body) = &mut s.body else {
                    let range = ByteRange {
                        start: s.next,
                        end: s.end,
                    };
                    match s.store.open(&s.digest, Some(range)).await {
                        Ok((_, _, body)) => s.body = Some(body),
                        Err(e) => {
                            s.end = s.next;
                            return Some((Err(std::io::Error::other(e.to_string())), s));
                        }
                    }
                    continue;
                };
                let failed = match body.next().await {
                    Some(Ok(chunk)) => {
                        s.next += chunk.len() as u64;
                        return Some((Ok(chunk), s));
                    }
                    Some(Err(e)) => e,
                    None => std::io::Error::other("the origin ended the body early"),
                };
                // Each origin gets one more chance after the first failure.
                if s.resumed >= s.store.bases.len() {
                    s.end = s.next;
                    return Some((Err(failed), s));
                }
                tracing::warn!(digest = %s.digest, at = s.next, error = %failed, "an origin failed mid-blob; resuming from another");
                s.resumed += 1;
                s.body = None;
                let at = s.store.preferred.load(Ordering::Relaxed);
                s.store
                    .preferred
                    .store((at + 1) % s.store.bases.len(), Ordering::Relaxed);
            }
        }))
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
    /// The origin holding the claim: the PATCH and its release go there.
    at: usize,
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
            let req = self.store.req_at(
                self.at,
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
        let path = format!("/v1/blobs/{digest}");
        let (_, resp) = self
            .call_raw(Retry::Idempotent, |at| {
                self.req_at(at, reqwest::Method::HEAD, &path)
            })
            .await?;
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
        if let Some(r) = range {
            if r.is_empty() || r.end < r.start {
                let size = self.stat(digest).await?.map_or(0, |i| i.size);
                return Err(Error::RangeNotSatisfiable { size });
            }
        }
        let (size, len, body) = self.open(digest, range).await?;
        let start = range.map_or(0, |r| r.start);
        let range = ByteRange {
            start,
            end: start + len,
        };
        let body = match self.bases.len() {
            1 => body,
            _ => Resuming {
                store: self.clone(),
                digest: digest.clone(),
                next: range.start,
                end: range.end,
                body: Some(body),
                resumed: 0,
            }
            .stream(),
        };
        Ok(BlobReader::streamed(size, range, body))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let path = format!("/v1/blobs/{digest}");
        let e: Existed = self
            .json(Retry::IfUnsent, |at| {
                self.req_at(at, reqwest::Method::DELETE, &path)
            })
            .await?;
        Ok(e.existed)
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<BlobEntry>> {
        let fetch = |after, limit| async move {
            let page: BlobPage = self.page("/v1/blobs", after, limit).await?;
            page.blobs.into_iter().map(TryInto::try_into).collect()
        };
        let cursor = |e: &BlobEntry| e.digest.to_string();
        let after = after.map(ToString::to_string);
        Self::pages(limit, api::MAX_PAGE, after, fetch, cursor).await
    }

    async fn create_upload(&self) -> Result<UploadId> {
        let c: Created = self
            .json(Retry::IfUnsent, |at| {
                self.req_at(at, reqwest::Method::POST, "/v1/uploads")
            })
            .await?;
        c.id.parse()
    }

    async fn upload_size(&self, id: &UploadId) -> Result<u64> {
        let path = format!("/v1/uploads/{id}");
        let s: Size = self
            .json(Retry::Idempotent, |at| {
                self.req_at(at, reqwest::Method::GET, &path)
            })
            .await?;
        Ok(s.size)
    }

    async fn append(&self, id: &UploadId, offset: u64) -> Result<Box<dyn UploadWriter>> {
        let path = format!("/v1/uploads/{id}/claims?offset={offset}");
        let (at, resp) = self
            .call(Retry::IfUnsent, |at| {
                self.req_at(at, reqwest::Method::POST, &path)
            })
            .await?;
        let claim: Claim = resp.json().await.map_err(unreachable)?;
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
            .req_at(
                at,
                reqwest::Method::PATCH,
                &format!("/v1/claims/{}", claim.claim),
            )
            .body(reqwest::Body::wrap_stream(body));
        // The body is streamed once, so the PATCH is never sent elsewhere: a failure reaches
        // the client, which appends again (to whichever origin then answers).
        let request = tokio::spawn(async move {
            let resp = req.send().await.map_err(unreachable)?;
            match resp.status().is_success() {
                true => Ok(resp),
                false => Err(answer_error(resp).await),
            }
        });
        Ok(Box::new(RemoteWriter {
            store: self.clone(),
            at,
            claim: claim.claim,
            tx: Some(tx),
            finished,
            request: Some(request),
        }))
    }

    async fn commit_upload(&self, id: &UploadId, digest: &Digest) -> Result<u64> {
        let path = format!("/v1/uploads/{id}/commit?digest={digest}");
        let s: Size = self
            .json(Retry::IfUnsent, |at| {
                self.req_at(at, reqwest::Method::POST, &path)
            })
            .await?;
        Ok(s.size)
    }

    async fn cancel_upload(&self, id: &UploadId) -> Result<()> {
        let path = format!("/v1/uploads/{id}");
        self.send(Retry::IfUnsent, |at| {
            self.req_at(at, reqwest::Method::DELETE, &path)
        })
        .await?;
        Ok(())
    }

    async fn list_uploads(
        &self,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<UploadEntry>> {
        let fetch = |after, limit| async move {
            let page: UploadPage = self.page("/v1/uploads", after, limit).await?;
            page.uploads.into_iter().map(TryInto::try_into).collect()
        };
        let cursor = |e: &UploadEntry| e.id.to_string();
        let after = after.map(ToString::to_string);
        Self::pages(limit, api::MAX_PAGE, after, fetch, cursor).await
    }

    async fn purge_stale(&self, untouched_for_secs: i64, now: i64) -> Result<PurgeReport> {
        let purged: Purged = self
            .json(Retry::IfUnsent, |at| {
                self.req_at(at, reqwest::Method::POST, "/v1/uploads/purge")
                    .query(&[("untouched_for", untouched_for_secs), ("now", now)])
            })
            .await?;
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

    /// An origin that answers every request with the headers of the whole `blob` and then
    /// only its first half, and hangs up: an origin killed mid-body.
    async fn dying_origin(blob: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\n{}: {}\r\ncontent-length: {}\r\n\r\n",
                    api::BLOB_SIZE_HEADER,
                    blob.len(),
                    blob.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(&blob[..blob.len() / 2]).await;
            }
        });
        url
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_cut_off_by_a_dying_origin_goes_on_from_the_next() {
        let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let digest = Digest::sha256_of(&blob);
        let (_dir, good, _stop) = start("s3cret").await;
        let direct = RemoteStore::new(&good, "s3cret").unwrap();
        let id = direct.create_upload().await.unwrap();
        let mut w = direct.append(&id, 0).await.unwrap();
        w.write(Bytes::from(blob.clone())).await.unwrap();
        w.finish().await.unwrap();
        direct.commit_upload(&id, &digest).await.unwrap();

        let dying = dying_origin(blob.clone()).await;
        let store = RemoteStore::new(&format!("{dying},{good}"), "s3cret").unwrap();
        let reader = store.read(&digest, None).await.unwrap();
        let mut got = Vec::new();
        let mut body = reader.body;
        while let Some(chunk) = body.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert!(
            got == blob,
            "{} bytes came back, {} expected",
            got.len(),
            blob.len()
        );
        // The origin that answered is asked first from then on.
        assert_eq!(store.preferred.load(Ordering::Relaxed), 1);

        // A single origin keeps the failure: there is nowhere to go on from.
        let alone = RemoteStore::new(&dying, "s3cret").unwrap();
        let mut body = alone.read(&digest, None).await.unwrap().body;
        let mut failed = false;
        while let Some(chunk) = body.next().await {
            failed |= chunk.is_err();
        }
        assert!(
            failed,
            "a cut-off body from the only origin ends in an error"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_origin_in_the_list_is_skipped() {
        let (_dir, good, _stop) = start("s3cret").await;
        let store = RemoteStore::new(&format!("http://127.0.0.1:1, {good}/"), "s3cret").unwrap();
        let id = store.create_upload().await.unwrap();
        assert_eq!(store.upload_size(&id).await.unwrap(), 0);
        assert!(
            RemoteStore::new(" , ", "s3cret").is_err(),
            "no URL at all is refused"
        );
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
