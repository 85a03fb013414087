//! The node's `HttpServerApp`: reads one request off a Pingora session, hands it to the
//! right handler (`/v2`, `/api/v1`, `/ui`, health), writes the reply and logs one line.
//!
//! Blob bodies are written in 1 MiB pieces: Pingora flushes per write, and 64 KiB writes
//! measured 0.4× nginx on this kind of machine while 1–2 MiB writes reached 1.1–1.2×.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::StatusCode;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

use crate::api::Api;
use crate::edge::Edge;
use crate::errors::{ApiError, ApiResult, Code};
use crate::registry::Registry;
use crate::wire::{Body, Reply, Request, RequestBody};

use super::sendfile;

/// Body chunks at least this long go to the socket as they are; shorter ones are gathered
/// until there is this much. Fills hand on their source's chunks (an HTTP client's are
/// tens to hundreds of KiB): a copy of each into a larger buffer cost more than the write
/// calls it saved.
const GATHER: usize = 128 << 10;

/// A reply written in full.
struct Sent {
    bytes: u64,
    /// False when bytes went around Pingora (sendfile): the connection is closed after.
    reusable: bool,
}

impl Sent {
    fn reusable(bytes: u64) -> Sent {
        Sent {
            bytes,
            reusable: true,
        }
    }
}

/// How much of an unread request body is read and dropped before an error reply is sent.
/// A client still writing its body when the server answers and closes sees a broken pipe
/// instead of the error; draining a bounded amount lets it read the OCI error. Bodies
/// larger than this get the connection closed after the reply.
const DRAIN_BEFORE_ERROR: u64 = 64 << 20;

pub struct NodeApp {
    pub registry: Arc<Registry>,
    pub api: Arc<Api>,
    pub console: Arc<crate::ui::Console>,
    pub edge: Edge,
    pub options: HttpServerOptions,
    pub requests: AtomicU64,
    /// The listener speaks TLS: requests are marked `X-Forwarded-Proto: https`, as a
    /// TLS-terminating proxy in front would mark them, so links and token realms say https
    /// (`Edge::admit_forwarded`).
    pub secure: bool,
    /// How long the next request head may take to arrive, idle keep-alive time included.
    pub header_timeout: std::time::Duration,
    /// `/metrics` answers only callers with a role on the home organisation.
    pub metrics_auth: bool,
}

/// The route a path belongs to, as span names spell it (`GET /v2/{name}/manifests/{reference}`):
/// the names and digests in a path would make every span name unique.
fn route_template(path: &str) -> String {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let v2 = |tail: &str| format!("/v2/{{name}}/{tail}");
    match segs.as_slice() {
        ["v2"] | [""] => path.to_string(),
        ["v2", "_catalog"] => "/v2/_catalog".into(),
        ["v2", .., "blobs", "uploads"] => v2("blobs/uploads/"),
        ["v2", .., "blobs", "uploads", _] => v2("blobs/uploads/{id}"),
        ["v2", .., "blobs", _] => v2("blobs/{digest}"),
        ["v2", .., "manifests", _] => v2("manifests/{reference}"),
        ["v2", .., "referrers", _] => v2("referrers/{digest}"),
        ["v2", .., "tags", "list"] => v2("tags/list"),
        ["api", "v1", resource, ..] => format!("/api/v1/{resource}"),
        ["ui", ..] => "/ui".into(),
        _ if segs.len() == 1 => path.to_string(),
        _ => "other".into(),
    }
}

struct SessionBody<'a> {
    session: &'a mut ServerSession,
}

#[async_trait]
impl RequestBody for SessionBody<'_> {
    async fn next(&mut self) -> ApiResult<Option<Bytes>> {
        self.session.read_request_body().await.map_err(|e| {
            ApiError::new(
                Code::BlobUploadInvalid,
                format!("the request body ended early or could not be read: {e}"),
            )
        })
    }
}

impl NodeApp {
    async fn route(&self, req: &Request, body: &mut dyn RequestBody) -> Reply {
        let p = req.path.as_str();
        let data = p == "/v2"
            || p.starts_with("/v2/")
            || (p.starts_with("/api/v1/") && !p.starts_with("/api/v1/cluster"));
        if data {
            // A removed node's replica is stale and will stay so; the region's status stays
            // readable, so an operator can see why.
            if let Some(why) = self.registry.meta.removed() {
                return Reply::error(&ApiError::new(Code::Unavailable, why));
            }
        }
        if p == "/v2" || p.starts_with("/v2/") {
            self.registry.handle(req, body).await
        } else if p.starts_with("/api/v1/") || p == "/api/v1" {
            self.api.handle(req, body).await
        } else if p == "/ui" || p.starts_with("/ui/") {
            self.console.handle(req, body).await
        } else if p == "/auth/token" {
            self.registry.auth.token(req, body).await
        } else if p == "/metrics" {
            if self.metrics_auth {
                if let Err(e) = self.registry.auth.operator(req).await {
                    return Reply::error(&e);
                }
            }
            crate::metrics::publish_raft(&self.registry.meta.cluster_status());
            crate::metrics::publish_storage(&self.registry.meta.storage_stats());
            Reply::new(StatusCode::OK)
                .header("Content-Type", "text/plain; version=0.0.4")
                .body(Body::Bytes(crate::metrics::render().into()))
        } else if p == "/healthz" {
            Reply::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
        } else if p == "/readyz" {
            match self.registry.meta.readiness() {
                Ok(()) => Reply::json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
                Err(why) => Reply::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "not ready", "reason": why}),
                ),
            }
        } else {
            Reply::error(&ApiError::new(
                Code::NotFound,
                format!("nothing is served at {p}"),
            ))
        }
    }

    /// Reads and drops what is left of the request body, up to `DRAIN_BEFORE_ERROR`.
    async fn drain_bounded(session: &mut ServerSession) {
        let mut drained = 0u64;
        while !session.is_body_done() && drained < DRAIN_BEFORE_ERROR {
            match session.read_request_body().await {
                Ok(Some(b)) => drained += b.len() as u64,
                _ => break,
            }
        }
    }

    /// Writes the reply; returns what was sent, or `None` if the connection must be dropped.
    async fn write(session: &mut ServerSession, reply: Reply, request_id: &str) -> Option<Sent> {
        let len = reply.content_length();
        let zero_copy = matches!(&reply.body, Body::Stream { len, file: Some(_), .. } if *len >= sendfile::MIN_LEN);
        if let (true, Some(socket)) = (zero_copy, sendfile::plain_socket(session)) {
            // The bytes go around Pingora, so the connection ends with this reply.
            session.set_keepalive(None);
            return Self::write_around(socket, reply, len, request_id).await;
        }
        let mut head =
            ResponseHeader::build(reply.status.as_u16(), Some(reply.headers.len() + 4)).ok()?;
        for (k, v) in &reply.headers {
            head.append_header(*k, v.as_ref()).ok()?;
        }
        head.insert_header("X-Request-Id", request_id).ok()?;
        head.set_content_length(len as usize).ok()?;
        session.write_response_header(Box::new(head)).await.ok()?;
        match reply.body {
            Body::Empty | Body::HeadOnly(_) => {
                session.write_response_body(Bytes::new(), true).await.ok()?;
                Some(Sent::reusable(0))
            }
            Body::Bytes(b) => {
                session.write_response_body(b, true).await.ok()?;
                Some(Sent::reusable(len))
            }
            Body::Stream {
                len, mut chunks, ..
            } => {
                let encrypted = is_encrypted(session);
                // Chunks of at least GATHER go out as they are (no copy); shorter ones are
                // gathered until there is that much.
                let mut sent = 0u64;
                let mut pending = BytesMut::new();
                while sent < len {
                    let chunk = next_chunk(&mut chunks, sent, len, request_id).await?;
                    sent += chunk.len() as u64;
                    if chunk.len() >= GATHER {
                        if !pending.is_empty() {
                            let gathered = pending.split().freeze();
                            send_chunk(session, gathered, encrypted).await?;
                        }
                        send_chunk(session, chunk, encrypted).await?;
                        continue;
                    }
                    // Less than GATHER pending and less than GATHER added: one reservation
                    // of twice that holds them, so gathering never grows a buffer.
                    if pending.capacity() - pending.len() < chunk.len() {
                        pending.reserve(2 * GATHER);
                    }
                    pending.extend_from_slice(&chunk);
                    if pending.len() >= GATHER || sent == len {
                        let gathered = pending.split().freeze();
                        send_chunk(session, gathered, encrypted).await?;
                    }
                }
                session.write_response_body(Bytes::new(), true).await.ok()?;
                Some(Sent::reusable(sent))
            }
        }
    }

    /// Writes a reply whose body is (or will be) a local file on the plain-TCP `socket`
    /// itself, head included (`sendfile::Raw`), saying `Connection: close`: a complete file
    /// goes out with `sendfile` at once; a fill's chunks go out as they come until its file
    /// is whole (`LocalFile::whole`), and then the rest with `sendfile` if 4 MiB or more
    /// are left.
    async fn write_around(
        socket: std::os::fd::RawFd,
        reply: Reply,
        len: u64,
        request_id: &str,
    ) -> Option<Sent> {
        let Body::Stream {
            mut chunks,
            file: Some(local),
            ..
        } = reply.body
        else {
            return None;
        };
        let length = len.to_string();
        let headers = reply.headers.iter().map(|(k, v)| (*k, v.as_ref())).chain([
            ("X-Request-Id", request_id),
            ("Content-Length", length.as_str()),
            ("Connection", "close"),
        ]);
        let Some(head) = sendfile::head_bytes(reply.status, headers) else {
            tracing::error!(
                request_id,
                "a reply header cannot be written; dropping the connection"
            );
            return None;
        };
        let failed = |e: std::io::Error| {
            tracing::warn!(%e, request_id, "sending a blob failed mid-response; dropping the connection");
        };
        let raw = sendfile::Raw::of(socket).map_err(failed).ok()?;
        raw.write_all(&head).await.map_err(failed).ok()?;
        let mut sent = 0u64;
        while sent < len {
            // A complete file at once; a fill's once it is whole, if enough is left.
            let switch = match &local.whole {
                None => true,
                Some(whole) => len - sent >= sendfile::MIN_LEN && whole(),
            };
            if switch {
                if local.whole.is_some() {
                    metrics::counter!(crate::metrics::FILL_HANDOVERS).increment(1);
                }
                drop(chunks);
                raw.send_file(&local.file, local.offset + sent, len - sent)
                    .await
                    .map_err(failed)
                    .ok()?;
                sent = len;
                break;
            }
            let chunk = next_chunk(&mut chunks, sent, len, request_id).await?;
            sent += chunk.len() as u64;
            raw.write_all(&chunk).await.map_err(failed).ok()?;
        }
        Some(Sent {
            bytes: sent,
            reusable: false,
        })
    }

    /// The request's span when this request is traced (`telemetry::sampled`; else none, so
    /// an untraced request pays for no span), the child of the client's `traceparent` if it sent
    /// one; its trace id goes into every log line written inside it. The HTTP attributes go
    /// to the exported span only: as log fields every line would repeat them.
    fn request_span(&self, req: &Request) -> tracing::Span {
        use shoal_origin::telemetry::attribute;
        if !shoal_origin::telemetry::sampled(req.header("traceparent")) {
            return tracing::Span::none();
        }
        let span = tracing::info_span!(
            "request",
            otel.name = format!("{} {}", req.method, route_template(&req.path)),
            otel.kind = "server",
            trace_id = tracing::field::Empty,
        );
        attribute(&span, "http.request.method", req.method.to_string());
        attribute(&span, "url.path", req.path.clone());
        attribute(&span, "shoal.request_id", req.id.clone());
        if let Some(parent) = req.header("traceparent") {
            shoal_origin::telemetry::adopt(&span, parent);
        }
        if let Some(id) = shoal_origin::telemetry::trace_id(&span) {
            span.record("trace_id", id);
        }
        span
    }

    /// Answers one request and writes its access line; `None` when the reply could not be
    /// sent whole.
    async fn serve(
        &self,
        session: &mut ServerSession,
        req: &Request,
        ip: Option<std::net::IpAddr>,
        peer: String,
        started: Instant,
    ) -> Option<Sent> {
        let request_id = &req.id;
        let signed_in = self.registry.auth.acts_for_principal(req);
        let reply = match self.edge.screen(req, ip, signed_in) {
            Some(early) => early,
            None => {
                let mut body = SessionBody { session };
                self.route(req, &mut body).await
            }
        };
        let mut reply = self.edge.decorate(req, reply);
        let status = reply.status.as_u16();
        shoal_origin::telemetry::attribute(
            &tracing::Span::current(),
            "http.response.status_code",
            i64::from(status),
        );
        if status >= 400 {
            Self::drain_bounded(session).await;
        }
        let when_sent = reply.when_sent.take();
        let sent = Self::write(session, reply, request_id).await;
        if let (Some(hook), Some(s)) = (when_sent, &sent) {
            hook(s.bytes);
        }
        tracing::info!(
            target: "shoal::access",
            request_id,
            method = %req.method,
            path = %req.path,
            status,
            bytes = sent.as_ref().map_or(0, |s| s.bytes),
            complete = sent.is_some(),
            duration_us = started.elapsed().as_micros() as u64,
            peer,
            client = ip.map(|i| i.to_string()).unwrap_or_default(),
            "request"
        );
        crate::metrics::count_request(&req.method, status, started.elapsed());
        sent
    }
}

/// Whether the session's bytes are encrypted in user space (TLS).
fn is_encrypted(session: &ServerSession) -> bool {
    match session {
        ServerSession::H1(s) => s.stream().get_ssl().is_some(),
        // HTTP/2 and the rest: taken as encrypted, which costs at most one small extra
        // write per chunk if they are not.
        _ => true,
    }
}

/// The next chunk of a body of `len` bytes of which `sent` went out; `None` (after logging
/// why) if it errs, ends early or runs past `len`, and the connection must be dropped.
async fn next_chunk(
    chunks: &mut shoal_origin::ByteChunks,
    sent: u64,
    len: u64,
    request_id: &str,
) -> Option<Bytes> {
    match chunks.next().await {
        Some(Ok(c)) if sent + c.len() as u64 <= len => Some(c),
        Some(Ok(c)) => {
            let sent = sent + c.len() as u64;
            tracing::error!(
                sent,
                len,
                request_id,
                "blob is longer than announced; dropping the connection"
            );
            None
        }
        Some(Err(e)) => {
            tracing::error!(%e, request_id, "reading a blob failed mid-response; dropping the connection");
            None
        }
        None => {
            tracing::error!(
                sent,
                len,
                request_id,
                "blob ended early; dropping the connection"
            );
            None
        }
    }
}

/// Writes one body chunk; over TLS, split where `tls_shift` says.
async fn send_chunk(session: &mut ServerSession, chunk: Bytes, encrypted: bool) -> Option<()> {
    let chunk = match tls_shift(encrypted, chunk.as_ptr() as usize, chunk.len()) {
        Some(head) => {
            session
                .write_response_body(chunk.slice(..head), false)
                .await
                .ok()?;
            chunk.slice(head..)
        }
        None => chunk,
    };
    session.write_response_body(chunk, false).await.ok()
}

/// Where to split a chunk at address `at` bound for TLS, so that its records are copied
/// fast. rustls copies each record's plaintext to 5 bytes past the start of a fresh buffer,
/// which the allocator places at a page boundary, and this machine's `memcpy` (glibc's
/// `rep movsb` path) runs 10-15x slower when the destination lies 1-15 bytes past the source
/// modulo 4 KiB (0.31 against 0.02 s/GiB, measured with a C loop; it was a third of a node's
/// CPU serving over TLS). A chunk that starts near a page boundary (a mapped or read file
/// chunk always does) goes out as a small head up to the middle of its first page, then the
/// rest, whose records then start mid-page.
fn tls_shift(encrypted: bool, at: usize, len: usize) -> Option<usize> {
    const PAGE: usize = 4096;
    let offset = at % PAGE;
    let head = (PAGE / 2).checked_sub(offset)?;
    (encrypted && offset < 64 && head < len).then_some(head)
}

#[async_trait]
impl HttpServerApp for NodeApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // A head that has not arrived in time (a slow-header client holding the socket, or
        // an idle keep-alive connection) ends the connection.
        match tokio::time::timeout(self.header_timeout, session.read_request()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return None,
            Ok(Err(e)) => {
                tracing::debug!(%e, "unreadable request");
                let _ = session.respond_error(400).await;
                return None;
            }
            Err(_) => {
                tracing::debug!("no request head within the header timeout; closing");
                crate::metrics::count_refused_connection("header_timeout");
                return None;
            }
        }
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        let started = Instant::now();
        let request_id = format!("{:x}", self.requests.fetch_add(1, Ordering::Relaxed));
        let head = session.req_header();
        let target = head
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let (peer, peer_ip) = match session.client_addr() {
            Some(a) => (a.to_string(), a.as_inet().map(|a| a.ip())),
            None => (String::new(), None),
        };
        let mut headers = head.headers.clone();
        self.edge
            .admit_forwarded(peer_ip, self.secure, &mut headers);
        let mut req = Request::new(head.method.clone(), &target, headers);
        if req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            && session.write_continue_response().await.is_err()
        {
            return None;
        }
        let ip = self.edge.client_ip(peer_ip, &req);
        req.client = ip;
        req.id = request_id.clone();
        req.via_trusted_proxy = peer_ip.is_some_and(|p| self.edge.trusts(p));
        let span = self.request_span(&req);
        let handled = self.serve(&mut session, &req, ip, peer, started);
        let sent = tracing::Instrument::instrument(handled, span).await;
        if !sent?.reusable {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(Some(stream)) => Some(ReusedHttpStream::from_reusable_stream(stream, settings)),
            _ => None,
        }
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}

#[cfg(test)]
mod tests {
    use super::tls_shift;

    #[test]
    fn chunks_near_a_page_start_are_split_mid_page_over_tls_only() {
        let check = |encrypted, at, len, expected| {
            assert_eq!(tls_shift(encrypted, at, len), expected, "at {at} len {len}");
        };
        check(true, 0x7f00_0000_0000, 1 << 20, Some(2048));
        check(true, 0x7f00_0000_1010, 1 << 20, Some(2048 - 16));
        check(true, 0x7f00_0000_0000 + 63, 1 << 20, Some(2048 - 63));
        // Far enough from a page start already.
        check(true, 0x7f00_0000_0000 + 64, 1 << 20, None);
        check(true, 0x7f00_0000_0800, 1 << 20, None);
        // Too short to split; plain HTTP never split.
        check(true, 0x7f00_0000_0000, 2048, None);
        check(true, 0x7f00_0000_0000, 2049, Some(2048));
        check(false, 0x7f00_0000_0000, 1 << 20, None);
    }
}
