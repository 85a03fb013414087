//! `RemoteStore`: the `BlobStore` of a node whose origin is a separate `shoal-origin`
//! service, spoken to over HTTP (see `api`).
//!
//! An append first claims the upload (so a wrong offset, an unknown upload or a concurrent
//! writer is reported by `append` itself, as with the in-process backends), then streams the
//! chunks into one chunked PATCH through a small channel, which gives backpressure. A writer
//! dropped without `finish` ends the body with an error, so the server counts none of it,
//! and gives the claim back in the background.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::api::{self, Claim, Created, Digests, Existed, Size, WireError};
use crate::store::{BlobReader, BlobStore, ByteRange, UploadId, UploadWriter};
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

    fn req(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header(reqwest::header::AUTHORIZATION, &self.bearer)
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
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let resp = self
            .req(reqwest::Method::HEAD, &format!("/v1/blobs/{digest}"))
            .send()
            .await
            .map_err(unreachable)?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => resp
                .headers()
                .get(api::BLOB_SIZE_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .map(Some)
                .ok_or_else(|| Error::Unavailable("origin sent no blob size".into())),
            s => Err(Error::Unavailable(format!("origin answered {s} to a stat"))),
        }
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobReader> {
        let mut req = self.req(reqwest::Method::GET, &format!("/v1/blobs/{digest}"));
        if let Some(r) = range {
            if r.is_empty() || r.end < r.start {
                let size = self.stat(digest).await?.unwrap_or(0);
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

    async fn list(&self) -> Result<Vec<Digest>> {
        let d: Digests = Self::json(self.req(reqwest::Method::GET, "/v1/blobs")).await?;
        d.digests.iter().map(|s| s.parse()).collect()
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
        assert!(matches!(store.list().await, Err(Error::Unavailable(_))));
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

    #[tokio::test]
    async fn unreachable_origin_is_unavailable() {
        let store = RemoteStore::new("http://127.0.0.1:1", "x").unwrap();
        assert!(matches!(
            store.create_upload().await,
            Err(Error::Unavailable(_))
        ));
    }
}
