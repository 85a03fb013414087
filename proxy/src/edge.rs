//! Edge protection, applied to every request before it is routed and to every reply after:
//! a rate limit per client IP for anonymous requests, CORS for configured origins, and
//! security headers. (Failed sign-ins are limited where passwords are checked, in
//! `auth::secrets`, so that an attempt is counted before its check runs.)
//!
//! The limit counts requests that act for no principal in a fixed window per IP (default
//! 500 per 10 minutes, as the product documents): no `Authorization` header, or a bearer
//! token that names no principal (an anonymous token from `/auth/token`, or one that does
//! not verify). Signed-in clients are not limited, since a Kubernetes fleet behind one NAT
//! address pulls with credentials; wrong Basic passwords are the sign-in limit's business.
//! Health, readiness and metrics are never limited: probes must not be turned away.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::errors::{ApiError, Code};
use crate::forwarded::TrustedProxies;
pub use crate::limits::{parse_rate, RateLimiter, RateSpec};
use crate::wire::{Reply, Request};

/// Sent on every reply. No `Strict-Transport-Security`: the node speaks plain HTTP until a
/// TLS listener exists, and HSTS belongs on the TLS terminator.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

/// Response headers a browser client of the registry needs to read.
const EXPOSED: &str = "Docker-Content-Digest, Docker-Distribution-Api-Version, Location, Link, Range, Content-Range, WWW-Authenticate, OCI-Subject, OCI-Filters-Applied, Docker-Upload-UUID, Retry-After";

/// Whole seconds to wait, rounded up (for `Retry-After`).
pub fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[derive(Clone, Debug, Default)]
pub struct EdgeConfig {
    /// Limit for requests without credentials; `None` turns it off.
    pub anonymous_rate: Option<RateSpec>,
    /// Failed sign-ins allowed per client IP and login; `None` turns it off (applied by
    /// `auth::secrets::VerifiedLogins` where passwords are checked).
    pub failed_login_rate: Option<RateSpec>,
    /// Origins allowed to call the API from a browser (`*` for any).
    pub cors_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` names the client (see `forwarded`).
    pub trusted_proxies: TrustedProxies,
    /// How long a connection may take to send a request head (slow-header clients are cut).
    pub header_timeout: Duration,
    /// Open connections allowed per client address (trusted proxies excepted); `None`: no bound.
    pub connections_per_ip: Option<usize>,
}

pub struct Edge {
    anonymous: Option<RateLimiter>,
    cors_origins: Vec<String>,
    proxies: TrustedProxies,
}

impl Edge {
    pub fn new(config: &EdgeConfig) -> Edge {
        Edge {
            anonymous: config.anonymous_rate.map(RateLimiter::new),
            cors_origins: config.cors_origins.clone(),
            proxies: config.trusted_proxies.clone(),
        }
    }

    /// Keeps in `headers` only what may be believed about how the client reached us:
    /// `X-Forwarded-Proto` and `X-Forwarded-Host` stay only when the TCP peer is a trusted
    /// proxy (see `forwarded`), and on a TLS listener the scheme is https, whatever was sent.
    pub fn admit_forwarded(&self, peer: Option<IpAddr>, tls: bool, headers: &mut HeaderMap) {
        if !peer.is_some_and(|p| self.proxies.trusts(p)) {
            headers.remove("x-forwarded-proto");
            headers.remove("x-forwarded-host");
        }
        if tls {
            headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        }
    }

    /// Whether `peer` is a trusted proxy, whose forwarding headers may be believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.proxies.trusts(peer)
    }

    /// The address the limits count `req` against: the TCP peer, or behind trusted proxies
    /// the client they forwarded for.
    pub fn client_ip(&self, peer: Option<IpAddr>, req: &Request) -> Option<IpAddr> {
        let forwarded: Vec<&str> = req
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        peer.map(|p| self.proxies.client(p, &forwarded))
    }

    /// A reply that ends the request before routing (429, or a CORS preflight), if any.
    /// `signed_in` says whether the request acts for a principal (Basic credentials, or a
    /// bearer token that verified and names one); only requests that do not are counted.
    pub fn screen(&self, req: &Request, ip: Option<IpAddr>, signed_in: bool) -> Option<Reply> {
        if req.method == Method::OPTIONS && req.header("origin").is_some() {
            return Some(Reply::new(StatusCode::NO_CONTENT));
        }
        let probe = matches!(req.path.as_str(), "/healthz" | "/readyz" | "/metrics");
        let (Some(limiter), Some(ip)) = (&self.anonymous, ip) else {
            return None;
        };
        if probe || signed_in {
            return None;
        }
        let wait = limiter.admit(ip, Instant::now()).err()?;
        let secs = retry_after(wait);
        tracing::warn!(%ip, "anonymous rate limit reached");
        let err = ApiError::new(
            Code::TooManyRequests,
            format!(
                "too many requests without credentials from {ip}; retry in {secs} s or sign in"
            ),
        )
        .header("Retry-After", secs.to_string());
        Some(Reply::error(&err))
    }

    /// Adds the security headers and, for an allowed origin, the CORS headers.
    pub fn decorate(&self, req: &Request, mut reply: Reply) -> Reply {
        // A reply that chose its own policy (a console page) keeps it.
        for (k, v) in SECURITY_HEADERS {
            if !reply.has_header(k) {
                reply = reply.header(k, *v);
            }
        }
        // Console pages are for this origin's own pages only: no other origin may read them
        // with the visitor's cookie.
        if req.path == "/ui" || req.path.starts_with("/ui/") {
            return reply;
        }
        let Some(origin) = req.header("origin") else {
            return reply;
        };
        if !self.cors_origins.iter().any(|o| o == "*" || o == origin) {
            return reply;
        }
        reply = reply
            .header("Access-Control-Allow-Origin", origin.to_string())
            .header("Vary", "Origin")
            .header("Access-Control-Allow-Credentials", "true")
            .header("Access-Control-Expose-Headers", EXPOSED);
        if req.method == Method::OPTIONS {
            reply = reply
                .header(
                    "Access-Control-Allow-Methods",
                    "GET, HEAD, POST, PUT, PATCH, DELETE",
                )
                .header(
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type, Content-Range, Range, Accept",
                )
                .header("Access-Control-Max-Age", "600");
        }
        reply
    }
}
