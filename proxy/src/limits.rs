//! Fixed-window rate limits keyed by client address (or address and login), shared by the
//! edge's anonymous limit and the sign-in limit. Windows live in an LRU of bounded size, so
//! a flood of source addresses cannot grow memory.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;

/// Keys whose windows are remembered; the least recently seen are forgotten first.
const TRACKED_KEYS: usize = 100_000;

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
                NonZeroUsize::new(TRACKED_KEYS).expect("non-zero"),
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

    /// Gives back one request counted by `admit` in the current window (a sign-in whose
    /// password was right costs nothing).
    pub fn refund(&self, key: &K) {
        if let Some(entry) = self.windows.lock().get_mut(key) {
            entry.1 = entry.1.saturating_sub(1);
        }
    }

    /// `Some(wait)` while `key`'s window is used up; counts nothing.
    pub fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        let mut windows = self.windows.lock();
        let (start, n) = *windows.get(key)?;
        let elapsed = now.duration_since(start);
        (elapsed < self.spec.window && n >= self.spec.requests).then(|| self.spec.window - elapsed)
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
    fn a_refund_gives_back_one_request() {
        let limiter: RateLimiter<&str> = RateLimiter::new(RateSpec {
            requests: 1,
            window: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        limiter.admit("x", t0).unwrap();
        assert!(limiter.admit("x", t0).is_err());
        limiter.refund(&"x");
        assert!(limiter.admit("x", t0).is_ok());
        limiter.refund(&"never seen");
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
