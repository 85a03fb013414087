//! The origin service: any `BlobStore` served over HTTP to the nodes of a region (see `api`
//! for the paths). Upload sessions live here, so one upload may be driven through several
//! nodes. Every request but `/healthz` must carry the shared secret; a caller without it gets
//! a bare 401 and nothing else.
//!
//! Claims: `POST …/claims` takes the store's append right (`BlobStore::append`) and parks the
//! writer under a random token until the PATCH with the body arrives. A claim the PATCH never
//! picks up is dropped after `CLAIM_TTL`, which releases the upload. A claim request that
//! finds the upload busy waits up to `BUSY_WAIT` first: a client that just gave up a claim
//! may still be releasing it.
//!
//! A purge runs against the store like any other request: a session parked under a claim is
//! held by its writer, so the store skips it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::api::{self, BlobPage, Claim, Created, Existed, Purged, Size, UploadPage};
use crate::store::{BlobStore, ByteRange, UploadId, UploadWriter};
use crate::{Digest, Error};

const CLAIM_TTL: Duration = Duration::from_secs(60);
const BUSY_WAIT: Duration = Duration::from_secs(2);

struct Parked {
    writer: Box<dyn UploadWriter>,
    since: Instant,
}

struct Service {
    store: Arc<dyn BlobStore>,
    secret: String,
    claims: Mutex<HashMap<String, Parked>>,
}

type Shared = Arc<Service>;

/// An `Error` answered as its wire form.
struct Failure(Error);

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, wire) = api::to_wire(&self.0);
        if status >= 500 {
            tracing::error!(err = %self.0, "origin request failed");
        }
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(wire)).into_response()
    }
}

type Answer<T> = Result<T, Failure>;

fn digest(s: &str) -> Answer<Digest> {
    Ok(s.parse()?)
}

fn upload_id(s: &str) -> Answer<UploadId> {
    Ok(s.parse()?)
}

/// Serves `store` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn BlobStore>,
    secret: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = Arc::new(Service {
        store,
        secret,
        claims: Mutex::new(HashMap::new()),
    });
    let reaper = tokio::spawn(reap_claims(service.clone()));
    // Without TCP_NODELAY a streamed body's first small write waits behind the head for
    // the node's delayed ACK: a cold fill of a 214-byte config blob took 48 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY on a connection");
        }
    });
    let result = axum::serve(listener, router(service))
        .with_graceful_shutdown(shutdown)
        .await;
    reaper.abort();
    result
}

fn router(service: Shared) -> Router {
    let authed = Router::new()
        .route("/v1/blobs", get(list))
        .route("/v1/blobs/{digest}", get(read).head(stat).delete(delete))
        .route("/v1/uploads", post(create).get(list_uploads))
        .route("/v1/uploads/purge", post(purge))
        .route("/v1/uploads/{id}", get(size).delete(cancel))
        .route("/v1/uploads/{id}/claims", post(claim))
        .route("/v1/uploads/{id}/commit", post(commit))
        .route("/v1/claims/{claim}", patch(append).delete(release))
        .layer(middleware::from_fn_with_state(
            service.clone(),
            require_secret,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(authed)
        .layer(middleware::from_fn(traced))
        .with_state(service)
}

/// Each request in a span named after its route, the child of the calling node's span when
/// it sent a `traceparent` (`telemetry`).
async fn traced(req: Request, next: Next) -> Response {
    let parent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if !crate::telemetry::sampled(parent.as_deref()) {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |m| m.as_str().to_string());
    let span = tracing::debug_span!(
        "origin request",
        otel.name = format!("{} {route}", req.method()),
        otel.kind = "server",
        http.request.method = %req.method(),
        url.path = req.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    if let Some(parent) = &parent {
        crate::telemetry::adopt(&span, parent);
    }
    let response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

async fn require_secret(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(s.secret.as_bytes())) {
        next.run(req).await
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

async fn reap_claims(s: Shared) {
    loop {
        tokio::time::sleep(CLAIM_TTL / 4).await;
        let expired: Vec<Parked> = {
            let mut claims = s.claims.lock().expect("claims poisoned");
            let old: Vec<String> = claims
                .iter()
                .filter(|(_, p)| p.since.elapsed() > CLAIM_TTL)
                .map(|(k, _)| k.clone())
                .collect();
            old.iter().filter_map(|k| claims.remove(k)).collect()
        };
        if !expired.is_empty() {
            tracing::warn!(
                count = expired.len(),
                "dropping upload claims whose PATCH never came"
            );
        }
    }
}

/// Parses `bytes=a-b` / `bytes=a-` as sent by `RemoteStore`.
fn range(headers: &HeaderMap) -> Answer<Option<ByteRange>> {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let bad = || Failure(Error::RangeNotSatisfiable { size: 0 });
    let (a, b) = v
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let start = a.parse::<u64>().map_err(|_| bad())?;
    let end = if b.is_empty() {
        u64::MAX
    } else {
        b.parse::<u64>().map_err(|_| bad())?.saturating_add(1)
    };
    Ok(Some(ByteRange { start, end }))
}

fn size_header(size: u64) -> HeaderValue {
    HeaderValue::from(size)
}

async fn stat(State(s): State<Shared>, Path(d): Path<String>) -> Answer<Response> {
    match s.store.stat(&digest(&d)?).await? {
        Some(info) => Ok(([
            (header::CONTENT_LENGTH, size_header(info.size)),
            (
                api::BLOB_SIZE_HEADER.parse().expect("static"),
                size_header(info.size),
            ),
            (
                api::BLOB_MODIFIED_HEADER.parse().expect("static"),
                HeaderValue::from(info.modified),
            ),
        ],)
            .into_response()),
        None => Ok(StatusCode::NOT_FOUND.into_response()),
    }
}

async fn read(
    State(s): State<Shared>,
    Path(d): Path<String>,
    headers: HeaderMap,
) -> Answer<Response> {
    let r = range(&headers)?;
    let digest = digest(&d)?;
    let blob = s.store.read(&digest, r).await?;
    // One line per read: operators (and the tests) count origin fetches per blob from it.
    tracing::info!(%digest, start = blob.range.start, end = blob.range.end, "blob read");
    let status = if r.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut resp = Response::new(Body::from_stream(read_ahead(blob.body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, size_header(blob.range.len()));
    h.insert(api::BLOB_SIZE_HEADER, size_header(blob.size));
    if r.is_some() && !blob.range.is_empty() {
        let cr = format!(
            "bytes {}-{}/{}",
            blob.range.start,
            blob.range.end - 1,
            blob.size
        );
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&cr).expect("ascii"),
        );
    }
    Ok(resp)
}

/// `body` with its next chunk read while this one is sent: a cold blob's disk reads then
/// overlap the network (a 256 MiB first read: 0.24–0.32 s one after the other, 0.18–0.25 s
/// so). At most two chunks per read in memory; only here, where reads are few.
fn read_ahead(
    mut body: crate::ByteChunks,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> {
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

async fn delete(State(s): State<Shared>, Path(d): Path<String>) -> Answer<Json<Existed>> {
    let existed = s.store.delete(&digest(&d)?).await?;
    Ok(Json(Existed { existed }))
}

#[derive(Deserialize)]
struct PageQuery {
    after: Option<String>,
    limit: Option<usize>,
}

impl PageQuery {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(api::MAX_PAGE).min(api::MAX_PAGE)
    }
}

async fn list(State(s): State<Shared>, Query(q): Query<PageQuery>) -> Answer<Json<BlobPage>> {
    let after = q.after.as_deref().map(digest).transpose()?;
    let page = s.store.list(after.as_ref(), q.limit()).await?;
    let blobs = page.into_iter().map(Into::into).collect();
    Ok(Json(BlobPage { blobs }))
}

async fn list_uploads(
    State(s): State<Shared>,
    Query(q): Query<PageQuery>,
) -> Answer<Json<UploadPage>> {
    let after = q.after.as_deref().map(upload_id).transpose()?;
    let page = s.store.list_uploads(after.as_ref(), q.limit()).await?;
    let uploads = page.into_iter().map(Into::into).collect();
    Ok(Json(UploadPage { uploads }))
}

#[derive(Deserialize)]
struct PurgeQuery {
    untouched_for: i64,
    now: i64,
}

async fn purge(State(s): State<Shared>, Query(q): Query<PurgeQuery>) -> Answer<Json<Purged>> {
    let report = s.store.purge_stale(q.untouched_for, q.now).await?;
    tracing::info!(
        removed = report.removed.len(),
        skipped = report.skipped.len(),
        bytes_freed = report.bytes_freed,
        multiparts_aborted = report.multiparts_aborted,
        "stale uploads purged"
    );
    Ok(Json(report.into()))
}

async fn create(State(s): State<Shared>) -> Answer<(StatusCode, Json<Created>)> {
    let id = s.store.create_upload().await?;
    Ok((StatusCode::CREATED, Json(Created { id: id.to_string() })))
}

async fn size(State(s): State<Shared>, Path(id): Path<String>) -> Answer<Json<Size>> {
    let size = s.store.upload_size(&upload_id(&id)?).await?;
    Ok(Json(Size { size }))
}

async fn cancel(State(s): State<Shared>, Path(id): Path<String>) -> Answer<StatusCode> {
    s.store.cancel_upload(&upload_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct OffsetQuery {
    offset: u64,
}

async fn claim(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<OffsetQuery>,
) -> Answer<(StatusCode, Json<Claim>)> {
    let id = upload_id(&id)?;
    let started = Instant::now();
    let writer = loop {
        match s.store.append(&id, q.offset).await {
            Err(Error::UploadBusy) if started.elapsed() < BUSY_WAIT => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => break other?,
        }
    };
    let token = uuid::Uuid::new_v4().to_string();
    s.claims.lock().expect("claims poisoned").insert(
        token.clone(),
        Parked {
            writer,
            since: Instant::now(),
        },
    );
    Ok((StatusCode::CREATED, Json(Claim { claim: token })))
}

fn take_claim(s: &Service, token: &str) -> Option<Box<dyn UploadWriter>> {
    s.claims
        .lock()
        .expect("claims poisoned")
        .remove(token)
        .map(|p| p.writer)
}

async fn append(
    State(s): State<Shared>,
    Path(token): Path<String>,
    body: Body,
) -> Answer<Json<Size>> {
    let mut writer = take_claim(&s, &token).ok_or_else(|| {
        Error::Unavailable("the upload claim expired or is unknown; claim again".into())
    })?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => writer.write(bytes).await?,
            // The client gave up mid-body: dropping the writer counts none of it.
            Err(e) => {
                return Err(
                    Error::Io(std::io::Error::other(format!("request body broken: {e}"))).into(),
                )
            }
        }
    }
    let size = writer.finish().await?;
    Ok(Json(Size { size }))
}

async fn release(State(s): State<Shared>, Path(token): Path<String>) -> StatusCode {
    drop(take_claim(&s, &token));
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct DigestQuery {
    digest: String,
}

async fn commit(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<DigestQuery>,
) -> Answer<Json<Size>> {
    let id = upload_id(&id)?;
    let size = s.store.commit_upload(&id, &digest(&q.digest)?).await?;
    Ok(Json(Size { size }))
}
