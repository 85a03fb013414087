//! One upstream registry, spoken to as a registry client would: the Docker token flow
//! (anonymous or with the configured credentials; tokens cached per scope until they
//! expire), Basic where the upstream asks for it, a bound on concurrent connections, and a
//! pause while the upstream's `Retry-After` runs.
//!
//! Every failure becomes an `UpstreamError` saying what happened, within the configured
//! timeout: a dead upstream never hangs a client longer than that.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, RANGE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use shoal_raft::UpstreamRecord;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics as m;

/// The manifest media types a mirror asks for (every one Shoal stores).
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
/// How long a token without `expires_in` is used (the token spec's default).
const DEFAULT_TOKEN_LIFE: u64 = 60;
/// How long an upstream that said 429 without `Retry-After` is left alone.
const DEFAULT_RETRY_AFTER: u64 = 30;
/// The largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// The upstream has no such manifest or blob.
    NotFound,
    /// The upstream said 429; it is not asked again for this many seconds.
    RateLimited(u64),
    /// Unreachable, timed out, or a 5xx.
    Unavailable(String),
    /// The upstream refused the mirror's credentials (or asked for some it has none of).
    Denied(String),
    /// The upstream answered something a registry would not.
    Invalid(String),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::NotFound => write!(f, "the upstream does not have it"),
            UpstreamError::RateLimited(s) => {
                write!(f, "the upstream is rate-limiting; retry in {s} s")
            }
            UpstreamError::Unavailable(m) => write!(f, "the upstream is unavailable: {m}"),
            UpstreamError::Denied(m) => write!(f, "the upstream refused access: {m}"),
            UpstreamError::Invalid(m) => write!(f, "the upstream answered badly: {m}"),
        }
    }
}

/// A manifest as the upstream served it.
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: Option<String>,
    /// `Docker-Content-Digest`, when the upstream sent one.
    pub digest: Option<String>,
}

/// A blob's bytes from the upstream, in the chunks the HTTP client received them (handed
/// on as they are, not copied), holding the connection permit until dropped.
pub struct UpstreamBlob {
    inner: shoal_origin::ByteChunks,
    _permit: OwnedSemaphorePermit,
}

impl futures::Stream for UpstreamBlob {
    type Item = std::io::Result<bytes::Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

pub struct UpstreamClient {
    pub record: UpstreamRecord,
    http: reqwest::Client,
    timeout: Duration,
    permits: Arc<Semaphore>,
    /// Bearer tokens by scope, with when they stop being used.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// The upstream asked for Basic: send it from the first request on.
    basic: Mutex<bool>,
    /// The upstream said 429: not asked again before this.
    paused_until: Mutex<Option<Instant>>,
}

impl UpstreamClient {
    pub fn new(record: UpstreamRecord, timeout: Duration) -> anyhow::Result<UpstreamClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(UpstreamClient {
            permits: Arc::new(Semaphore::new(record.max_connections.max(1) as usize)),
            record,
            http,
            timeout,
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(false),
            paused_until: Mutex::new(None),
        })
    }

    fn url(&self, remote: &str, kind: &str, reference: &str) -> String {
        format!(
            "{}/v2/{remote}/{kind}/{reference}",
            self.record.url.trim_end_matches('/')
        )
    }

    /// The manifest `reference` of `remote`; with `head`, its digest only (a `HEAD`, which
    /// Docker Hub does not count as a pull).
    #[tracing::instrument(
        name = "upstream manifest",
        level = "debug",
        skip_all,
        fields(remote, reference)
    )]
    pub async fn manifest(
        &self,
        remote: &str,
        reference: &str,
        head: bool,
    ) -> Result<FetchedManifest, UpstreamError> {
        let method = if head { Method::HEAD } else { Method::GET };
        let url = self.url(remote, "manifests", reference);
        let (resp, _permit) = self.send(method, &url, remote, "manifest", None).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let digest = header("docker-content-digest");
        let media_type = header("content-type");
        if head {
            return Ok(FetchedManifest {
                bytes: Vec::new(),
                media_type,
                digest,
            });
        }
        let limit = crate::registry::manifest::MAX_MANIFEST_BYTES;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(UpstreamError::Invalid(format!(
                "a manifest larger than {limit} bytes"
            )));
        }
        let mut bytes = Vec::new();
        let mut stream = resp.bytes_stream();
        let read = async {
            while let Some(chunk) = stream.try_next().await? {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > limit {
                    return Ok::<bool, reqwest::Error>(false);
                }
            }
            Ok(true)
        };
        match tokio::time::timeout(self.timeout, read).await {
            Err(_) => return Err(self.unavailable("the manifest body did not arrive in time")),
            Ok(Err(e)) => return Err(self.unavailable(&format!("reading the manifest: {e}"))),
            Ok(Ok(false)) => {
                return Err(UpstreamError::Invalid(format!(
                    "a manifest larger than {limit} bytes"
                )))
            }
            Ok(Ok(true)) => {}
        }
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Blob `digest` of `remote` from byte `from` on, as a stream, and the bytes it holds.
    pub async fn blob(
        &self,
        remote: &str,
        digest: &str,
        from: u64,
    ) -> Result<UpstreamBlob, UpstreamError> {
        let url = self.url(remote, "blobs", digest);
        let range = (from > 0).then(|| format!("bytes={from}-"));
        let (resp, permit) = self.send(Method::GET, &url, remote, "blob", range).await?;
        if from > 0 && resp.status() != StatusCode::PARTIAL_CONTENT {
            return Err(UpstreamError::Invalid(format!(
                "asked for bytes from {from}, got {}",
                resp.status()
            )));
        }
        let name = self.record.name.clone();
        let stream = resp
            .bytes_stream()
            .inspect_ok(move |b| {
                metrics::counter!(m::UPSTREAM_BYTES, "upstream" => name.clone())
                    .increment(b.len() as u64)
            })
            .map_err(std::io::Error::other);
        Ok(UpstreamBlob {
            inner: Box::pin(stream),
            _permit: permit,
        })
    }

    fn unavailable(&self, why: &str) -> UpstreamError {
        UpstreamError::Unavailable(format!("{} ({}): {why}", self.record.name, self.record.url))
    }

    /// Sends a request with the credentials the upstream wants, answering its challenge
    /// once; a success holds a connection permit for as long as the caller keeps it.
    async fn send(
        &self,
        method: Method,
        url: &str,
        remote: &str,
        kind: &'static str,
        range: Option<String>,
    ) -> Result<(reqwest::Response, OwnedSemaphorePermit), UpstreamError> {
        if let Some(until) = *self.paused_until.lock() {
            let now = Instant::now();
            if until > now {
                metrics::counter!(m::UPSTREAM_RATE_LIMITED, "upstream" => self.record.name.clone())
                    .increment(1);
                return Err(UpstreamError::RateLimited((until - now).as_secs().max(1)));
            }
        }
        let permit = tokio::time::timeout(self.timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                self.unavailable(&format!(
                    "all {} connections stayed busy",
                    self.record.max_connections
                ))
            })?
            .expect("the semaphore is never closed");
        let scope = format!("repository:{remote}:pull");
        let mut answered_challenge = false;
        loop {
            let mut headers = HeaderMap::new();
            if kind == "manifest" {
                headers.insert(ACCEPT, MANIFEST_ACCEPT.parse().expect("a valid header"));
            }
            if let Some(r) = &range {
                headers.insert(RANGE, r.parse().expect("a valid header"));
            }
            if let Some(auth) = self.authorization(&scope) {
                headers.insert(AUTHORIZATION, auth);
            }
            let sent = self
                .http
                .request(method.clone(), url)
                .headers(headers)
                .send();
            let resp = match tokio::time::timeout(self.timeout, sent).await {
                Err(_) => {
                    self.count(kind, "error");
                    return Err(self.unavailable(&format!("no answer within {:?}", self.timeout)));
                }
                Ok(Err(e)) => {
                    self.count(kind, "error");
                    return Err(self.unavailable(&e.to_string()));
                }
                Ok(Ok(r)) => r,
            };
            let status = resp.status();
            self.count(kind, status.as_str());
            match status {
                s if s.is_success() => return Ok((resp, permit)),
                StatusCode::UNAUTHORIZED if !answered_challenge => {
                    answered_challenge = true;
                    self.answer_challenge(resp.headers(), &scope).await?;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(UpstreamError::Denied(format!(
                        "{} answered {status} for {remote}",
                        self.record.name
                    )))
                }
                StatusCode::NOT_FOUND => return Err(UpstreamError::NotFound),
                StatusCode::TOO_MANY_REQUESTS => {
                    let secs = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(DEFAULT_RETRY_AFTER)
                        .clamp(1, 3600);
                    *self.paused_until.lock() = Some(Instant::now() + Duration::from_secs(secs));
                    metrics::counter!(m::UPSTREAM_RATE_LIMITED, "upstream" => self.record.name.clone())
                        .increment(1);
                    tracing::warn!(upstream = %self.record.name, retry_after = secs, "the upstream is rate-limiting");
                    return Err(UpstreamError::RateLimited(secs));
                }
                s if s.is_server_error() => {
                    return Err(self.unavailable(&format!("it answered {s}")))
                }
                s => {
                    return Err(UpstreamError::Invalid(format!(
                        "{} answered {s} for {remote}",
                        self.record.name
                    )))
                }
            }
        }
    }

    fn count(&self, kind: &'static str, status: &str) {
        metrics::counter!(m::UPSTREAM_REQUESTS, "upstream" => self.record.name.clone(), "kind" => kind, "status" => status.to_string())
            .increment(1);
    }

    /// What to send for `scope`: a cached token, else Basic once the upstream asked for it.
    fn authorization(&self, scope: &str) -> Option<reqwest::header::HeaderValue> {
        if let Some((token, until)) = self.tokens.lock().get(scope) {
            if *until > Instant::now() {
                return format!("Bearer {token}").parse().ok();
            }
        }
        if *self.basic.lock() {
            return self.basic_credentials();
        }
        None
    }

    fn basic_credentials(&self) -> Option<reqwest::header::HeaderValue> {
        use base64::Engine as _;
        let user = self.record.username.as_deref()?;
        let pass = self.record.password.as_deref().unwrap_or("");
        let text = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        let mut v: reqwest::header::HeaderValue = format!("Basic {text}").parse().ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// Acts on a 401's `WWW-Authenticate`: Basic is remembered, Bearer fetches a token.
    async fn answer_challenge(
        &self,
        headers: &HeaderMap,
        scope: &str,
    ) -> Result<(), UpstreamError> {
        let challenge = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            if self.record.username.is_none() {
                return Err(UpstreamError::Denied(format!(
                    "{} wants credentials and the mirror has none",
                    self.record.name
                )));
            }
            *self.basic.lock() = true;
            return Ok(());
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(UpstreamError::Invalid(format!(
                "an unknown challenge {challenge:?}"
            )));
        }
        let params = parse_params(params);
        let realm = params
            .get("realm")
            .ok_or_else(|| UpstreamError::Invalid("a Bearer challenge without a realm".into()))?;
        let realm_url = url::Url::parse(realm)
            .map_err(|e| UpstreamError::Invalid(format!("a bad token realm {realm:?}: {e}")))?;
        let mut token_url = realm_url.clone();
        {
            let mut q = token_url.query_pairs_mut();
            if let Some(service) = params.get("service") {
                q.append_pair("service", service);
            }
            q.append_pair("scope", scope);
        }
        let mut req = self.http.get(token_url);
        // Credentials go only to a realm on the upstream's own host or over HTTPS.
        let upstream_host = url::Url::parse(&self.record.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string));
        let trusted =
            realm_url.scheme() == "https" || realm_url.host_str() == upstream_host.as_deref();
        if trusted {
            if let Some(basic) = self.basic_credentials() {
                req = req.header(AUTHORIZATION, basic);
            }
        }
        let fetch = async {
            let resp = req.send().await?;
            let status = resp.status();
            let mut body = Vec::new();
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.try_next().await? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_TOKEN_RESPONSE {
                    break;
                }
            }
            Ok::<_, reqwest::Error>((status, body))
        };
        let (status, body) = match tokio::time::timeout(self.timeout, fetch).await {
            Err(_) => return Err(self.unavailable("the token service did not answer in time")),
            Ok(Err(e)) => return Err(self.unavailable(&format!("the token service: {e}"))),
            Ok(Ok(r)) => r,
        };
        self.count("token", status.as_str());
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(UpstreamError::Denied(format!(
                "{}'s token service refused the mirror's credentials",
                self.record.name
            )));
        }
        if !status.is_success() {
            return Err(self.unavailable(&format!("the token service answered {status}")));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Invalid(format!("a token response: {e}")))?;
        let token = t
            .token
            .or(t.access_token)
            .ok_or_else(|| UpstreamError::Invalid("a token response without a token".into()))?;
        let life = t.expires_in.unwrap_or(DEFAULT_TOKEN_LIFE).max(10);
        // Used until a little before it expires.
        let until = Instant::now() + Duration::from_secs(life - life / 10);
        metrics::counter!(m::UPSTREAM_TOKENS, "upstream" => self.record.name.clone()).increment(1);
        self.tokens.lock().insert(scope.to_string(), (token, until));
        Ok(())
    }
}

/// `key="value", key2=value2` of an authentication challenge.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let key = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_string());
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parameters_quoted_or_not() {
        let p = parse_params(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#,
        );
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/nginx:pull,push");
        let p = parse_params("realm=http://h/auth, service=h");
        assert_eq!(p["realm"], "http://h/auth");
        assert_eq!(p["service"], "h");
    }
}
