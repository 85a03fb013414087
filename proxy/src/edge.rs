//! Edge protection, applied to every request before it is routed and to every reply after:
//! a rate limit per client IP for anonymous requests, a limit on failed sign-ins per client
//! IP and login, CORS for configured origins, and security headers.
//!
//! The limit counts requests that carry no `Authorization` header in a fixed window per IP
//! (default 500 per 10 minutes, as the product documents); signed-in clients are not limited,
//! since a Kubernetes fleet behind one NAT address pulls with credentials. Windows live in an
//! LRU of bounded size, so a flood of source addresses cannot grow memory. Health, readiness
//! and metrics are never limited: probes must not be turned away.
//!
//! Failed sign-ins (a 401 to Basic credentials) are counted per (IP, login), default 30 per
//! minute; past that, Basic requests for that login from that IP get 429 without their
//! password being checked, so guessing is slow and cannot keep argon2 busy. Keying on the
//! login too means one misconfigured client behind a NAT does not lock out the others.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use lru::LruCache;
use parking_lot::Mutex;

use crate::errors::{ApiError, Code};
use crate::forwarded::TrustedProxies;
use crate::wire::{Reply, Request};

/// Addresses whose windows are remembered; the least recently seen are forgotten first.
const TRACKED_ADDRESSES: usize = 100_000;

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

/// `N/WINDOW` (e.g. `500/10m`), or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSpec {
    pub requests: u32,
    pub window: Duration,
}

/// Parses a `--anonymous-rate-limit` value; `None` for `off`.
pub fn parse_rate(s: &str) -> Result<Option<RateSpec>, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    RateSpec::from_str(s).map(Some)
}

impl FromStr for RateSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a rate like 500/10m (or off)");
        let (n, w) = s.trim().split_once('/').ok_or_else(bad)?;
        let requests: u32 = n.trim().parse().map_err(|_| bad())?;
        let window = humantime::parse_duration(w.trim()).map_err(|_| bad())?;
        if requests == 0 || window.is_zero() {
            return Err(bad());
        }
        Ok(RateSpec { requests, window })
    }
}

pub struct RateLimiter<K = IpAddr> {
    spec: RateSpec,
    windows: Mutex<LruCache<K, (Instant, u32)>>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    pub fn new(spec: RateSpec) -> RateLimiter<K> {
        RateLimiter {
            spec,
            windows: Mutex::new(LruCache::new(
                NonZeroUsize::new(TRACKED_ADDRESSES).expect("non-zero"),
            )),
        }
    }

    /// Counts one request from `key` at `now`; `Err(wait)` when the window is used up.
    pub fn admit(&self, key: K, now: Instant) -> Result<(), Duration> {
        let mut windows = self.windows.lock();
        let entry = windows.get_or_insert_mut(key, || (now, 0));
        if now.duration_since(entry.0) >= self.spec.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.spec.requests {
            return Err(self.spec.window - now.duration_since(entry.0));
        }
        entry.1 += 1;
        Ok(())
    }

    /// `Some(wait)` while `key`'s window is used up; counts nothing.
    pub fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        let mut windows = self.windows.lock();
        let (start, n) = *windows.get(key)?;
        let elapsed = now.duration_since(start);
        (elapsed < self.spec.window && n >= self.spec.requests).then(|| self.spec.window - elapsed)
    }
}

fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[derive(Clone, Debug, Default)]
pub struct EdgeConfig {
    /// Limit for requests without credentials; `None` turns it off.
    pub anonymous_rate: Option<RateSpec>,
    /// Failed sign-ins allowed per client IP and login; `None` turns it off.
    pub failed_login_rate: Option<RateSpec>,
    /// Origins allowed to call the API from a browser (`*` for any).
    pub cors_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` names the client (see `forwarded`).
    pub trusted_proxies: TrustedProxies,
}

pub struct Edge {
    anonymous: Option<RateLimiter>,
    failed_logins: Option<RateLimiter<(IpAddr, String)>>,
    cors_origins: Vec<String>,
    proxies: TrustedProxies,
}

/// The login of a request's Basic credentials.
fn basic_login(req: &Request) -> Option<String> {
    crate::auth::basic_credentials(req.header("authorization")?).map(|(login, _)| login)
}

impl Edge {
    pub fn new(config: &EdgeConfig) -> Edge {
        Edge {
            anonymous: config.anonymous_rate.map(RateLimiter::new),
            failed_logins: config.failed_login_rate.map(RateLimiter::new),
            cors_origins: config.cors_origins.clone(),
            proxies: config.trusted_proxies.clone(),
        }
    }

    /// Keeps in `headers` only what may be believed about how the client reached us: on a
    /// TLS listener the scheme is https, whatever was sent; on plain HTTP `X-Forwarded-Proto`
    /// stays only when the TCP peer is a trusted proxy (see `forwarded`).
    pub fn admit_forwarded(&self, peer: Option<IpAddr>, tls: bool, headers: &mut HeaderMap) {
        if tls {
            headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        } else if !peer.is_some_and(|p| self.proxies.trusts(p)) {
            headers.remove("x-forwarded-proto");
        }
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

    /// Counts a failed sign-in: a 401 to Basic credentials. (A bearer token lacking a scope
    /// also gets 401, but bearer tokens cannot be guessed and are not counted.)
    pub fn observe(&self, req: &Request, ip: Option<IpAddr>, reply: &Reply) {
        let (Some(limiter), Some(ip)) = (&self.failed_logins, ip) else {
            return;
        };
        if reply.status != StatusCode::UNAUTHORIZED {
            return;
        }
        if let Some(login) = basic_login(req) {
            if limiter.admit((ip, login.clone()), Instant::now()).is_err() {
                tracing::warn!(%ip, login, "failed sign-ins limit reached");
            }
        }
    }

    /// A reply that ends the request before routing (429, or a CORS preflight), if any.
    pub fn screen(&self, req: &Request, ip: Option<IpAddr>) -> Option<Reply> {
        if req.method == Method::OPTIONS && req.header("origin").is_some() {
            return Some(Reply::new(StatusCode::NO_CONTENT));
        }
        let probe = matches!(req.path.as_str(), "/healthz" | "/readyz" | "/metrics");
        if let (Some(limiter), Some(ip), Some(login)) = (&self.failed_logins, ip, basic_login(req))
        {
            if let Some(wait) = limiter.blocked(&(ip, login.clone()), Instant::now()) {
                let secs = retry_after(wait);
                let err = ApiError::new(
                    Code::TooManyRequests,
                    format!("too many failed sign-ins as {login:?} from {ip}; retry in {secs} s"),
                )
                .header("Retry-After", secs.to_string());
                return Some(Reply::error(&err));
            }
        }
        let (Some(limiter), Some(ip)) = (&self.anonymous, ip) else {
            return None;
        };
        if probe || req.header("authorization").is_some() {
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
        for (k, v) in SECURITY_HEADERS {
            reply = reply.header(k, *v);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        let check = |s: &str, expected: Result<Option<(u32, u64)>, ()>| {
            let got = parse_rate(s).map(|r| r.map(|r| (r.requests, r.window.as_secs())));
            assert_eq!(got.map_err(|_| ()), expected, "{s}");
        };
        check("500/10m", Ok(Some((500, 600))));
        check(" 5 / 1s ", Ok(Some((5, 1))));
        check("off", Ok(None));
        check("0/10m", Err(()));
        check("500", Err(()));
        check("x/10m", Err(()));
        check("5/never", Err(()));
    }

    #[test]
    fn a_window_admits_its_quota_then_waits_for_its_end() {
        let limiter = RateLimiter::new(RateSpec {
            requests: 2,
            window: Duration::from_secs(10),
        });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert!(limiter.admit(a, t0).is_ok());
        assert!(limiter.admit(a, t0 + Duration::from_secs(1)).is_ok());
        assert_eq!(
            limiter.admit(a, t0 + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );
        assert!(
            limiter.admit(b, t0 + Duration::from_secs(4)).is_ok(),
            "per address"
        );
        assert!(
            limiter.admit(a, t0 + Duration::from_secs(10)).is_ok(),
            "a new window"
        );
    }

    #[test]
    fn blocked_peeks_without_counting() {
        let limiter: RateLimiter<&str> = RateLimiter::new(RateSpec {
            requests: 2,
            window: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        assert_eq!(limiter.blocked(&"x", t0), None, "never seen");
        limiter.admit("x", t0).unwrap();
        assert_eq!(limiter.blocked(&"x", t0), None);
        assert_eq!(limiter.blocked(&"x", t0), None, "peeking counts nothing");
        limiter.admit("x", t0).unwrap();
        assert_eq!(
            limiter.blocked(&"x", t0 + Duration::from_secs(3)),
            Some(Duration::from_secs(7))
        );
        assert_eq!(limiter.blocked(&"x", t0 + Duration::from_secs(10)), None);
    }
}
