//! Passwords and credential secrets: generation, argon2 hashing, and the one place a
//! password is checked (`VerifiedLogins::check`), with what guards it:
//!
//! - A short memory of logins that verified, so that Basic auth on every request (and every
//!   token request) does not run argon2 each time. It holds a hash of (login, secret) and
//!   the stored hash it matched, and answers only while the stored hash is unchanged and
//!   the entry is younger than `REMEMBER`, so a changed password is never accepted from
//!   memory. Revocation and expiry are checked by the caller, from the catalogue.
//! - The failed sign-in limit per (client IP, login): an attempt is counted *before* its
//!   check runs and given back if the password was right, so however guesses arrive (one
//!   by one or 100 in parallel), at most the configured number of wrong passwords are
//!   checked per window; the rest get 429 without a check.
//! - At most `CONCURRENT_HASHES` argon2 at once (each takes ~19 MiB and a core for tens of
//!   milliseconds), and at most one check at a time per (client IP, login): a burst of
//!   guesses for one login waits behind itself, not in front of everyone's sign-in.
//! - A login that does not exist (or has no password) is checked against a dummy hash, so a
//!   wrong password takes as long for an unknown login as for a real one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use lru::LruCache;
use parking_lot::Mutex;
use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::limits::{RateLimiter, RateSpec};

const REMEMBER: Duration = Duration::from_secs(60);
const REMEMBERED: usize = 10_000;
/// argon2 runs at most this many at once: each takes ~19 MiB and a core for tens of
/// milliseconds, and a burst of clients with the same login must not multiply that.
const CONCURRENT_HASHES: usize = 2;

/// What a password check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    Match,
    Mismatch,
    /// Too many wrong passwords for this login from this address: not checked; retry after.
    Limited(Duration),
}

/// A hash no secret matches in practice, made once with the same parameters as real ones,
/// for logins that do not exist.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash(&generate(32)))
}

type AttemptKey = (Option<IpAddr>, String);

/// A random string of ASCII letters and digits from the OS generator.
pub fn generate(len: usize) -> String {
    OsRng
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A fresh id for a principal or federated identity: 128 random bits, never reused, so a
/// namesake made after a deletion is told apart from the one deleted.
pub fn new_uid() -> String {
    generate(22)
}

/// argon2id with the crate's defaults and a random salt, as a PHC string. Slow on purpose:
/// call it off the async runtime.
pub fn hash(secret: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any input")
        .to_string()
}

pub fn verify(secret: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok()
    })
}

pub struct VerifiedLogins {
    seen: Mutex<LruCache<[u8; 32], (String, Instant)>>,
    hashing: tokio::sync::Semaphore,
    /// Password checks per (client IP, login) and window; `None`: unlimited.
    attempts: Option<RateLimiter<AttemptKey>>,
    /// One check at a time per (client IP, login); an entry lives while someone holds it.
    queues: Mutex<HashMap<AttemptKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl Default for VerifiedLogins {
    fn default() -> Self {
        VerifiedLogins::new(None)
    }
}

impl VerifiedLogins {
    pub fn new(failed_sign_ins: Option<RateSpec>) -> VerifiedLogins {
        VerifiedLogins {
            seen: Mutex::new(LruCache::new(
                NonZeroUsize::new(REMEMBERED).expect("non-zero"),
            )),
            hashing: tokio::sync::Semaphore::new(CONCURRENT_HASHES),
            attempts: failed_sign_ins.map(RateLimiter::new),
            queues: Mutex::new(HashMap::new()),
        }
    }

    fn remembered(&self, key: &[u8; 32], phc: &str) -> bool {
        self.seen
            .lock()
            .get(key)
            .is_some_and(|(known, at)| known == phc && at.elapsed() < REMEMBER)
    }

    fn key(login: &str, secret: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(login.as_bytes());
        h.update([0]);
        h.update(secret.as_bytes());
        h.finalize().into()
    }

    /// The queue of (client, login), made on first use.
    fn queue(&self, key: &AttemptKey) -> Arc<tokio::sync::Mutex<()>> {
        self.queues.lock().entry(key.clone()).or_default().clone()
    }

    /// Forgets the queue of `key` once nobody but the map holds it.
    fn leave(&self, key: &AttemptKey, queue: Arc<tokio::sync::Mutex<()>>) {
        let mut queues = self.queues.lock();
        drop(queue);
        if queues.get(key).is_some_and(|q| Arc::strong_count(q) == 1) {
            queues.remove(key);
        }
    }

    /// Whether `secret` is the one `phc` was made from (`None`: the login does not exist or
    /// has no password; a dummy hash is checked so that the answer takes as long).
    pub async fn check(
        &self,
        login: &str,
        secret: &str,
        phc: Option<&str>,
        client: Option<IpAddr>,
    ) -> Checked {
        let key = Self::key(login, secret);
        if phc.is_some_and(|p| self.remembered(&key, p)) {
            return Checked::Match;
        }
        let attempt = (client, login.to_string());
        let queue = self.queue(&attempt);
        let checked = {
            let _mine = queue.lock().await;
            // A burst of requests with one login verifies once: the rest find it here, and
            // are not counted as attempts. Counting before queueing let a burst of right
            // passwords (CI with Basic credentials, each time `REMEMBER` ran out) use up the
            // failed-sign-in window before the first check could give its attempt back.
            if phc.is_some_and(|p| self.remembered(&key, p)) {
                Checked::Match
            } else {
                self.admitted(&attempt, login, secret, &key, phc).await
            }
        };
        self.leave(&attempt, queue);
        checked
    }

    /// Counts the attempt, then checks it; a right password gives the attempt back.
    async fn admitted(
        &self,
        attempt: &AttemptKey,
        login: &str,
        secret: &str,
        key: &[u8; 32],
        phc: Option<&str>,
    ) -> Checked {
        if let Some(limiter) = &self.attempts {
            if let Err(wait) = limiter.admit(attempt.clone(), Instant::now()) {
                metrics::counter!(crate::metrics::SIGN_IN_LIMITED).increment(1);
                tracing::warn!(client = ?attempt.0, login, "failed sign-in limit reached");
                return Checked::Limited(wait);
            }
        }
        let checked = self.verify_queued(key, secret, phc).await;
        if checked == Checked::Match {
            if let Some(limiter) = &self.attempts {
                limiter.refund(attempt);
            }
        }
        checked
    }

    async fn verify_queued(&self, key: &[u8; 32], secret: &str, phc: Option<&str>) -> Checked {
        let Ok(_permit) = self.hashing.acquire().await else {
            return Checked::Mismatch;
        };
        metrics::counter!(crate::metrics::PASSWORD_CHECKS).increment(1);
        let (secret, stored) = (secret.to_string(), phc.map(str::to_string));
        let ok = tokio::task::spawn_blocking(move || match stored {
            Some(p) => verify(&secret, &p),
            None => {
                verify(&secret, dummy_hash());
                false
            }
        })
        .await
        .unwrap_or(false);
        match phc {
            Some(p) if ok => {
                self.seen.lock().put(*key, (p.to_string(), Instant::now()));
                Checked::Match
            }
            _ => Checked::Mismatch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_only_their_secret() {
        let phc = hash("s3cret");
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify("s3cret", &phc));
        assert!(!verify("s3cret ", &phc));
        assert!(!verify("s3cret", "not a phc string"));
        let logins = VerifiedLogins::default();
        let check = |secret: &'static str, phc: String| {
            let logins = &logins;
            async move { logins.check("u", secret, Some(&phc), None).await }
        };
        assert_eq!(check("s3cret", phc.clone()).await, Checked::Match);
        assert_eq!(
            check("s3cret", phc.clone()).await,
            Checked::Match,
            "remembered"
        );
        assert_eq!(check("wrong", phc.clone()).await, Checked::Mismatch);
        assert_eq!(
            check("s3cret", hash("other")).await,
            Checked::Mismatch,
            "a changed hash is not answered from memory"
        );
        assert_eq!(
            logins.check("nobody", "s3cret", None, None).await,
            Checked::Mismatch,
            "an unknown login never matches"
        );
        assert_eq!(generate(24).len(), 24);
        assert_ne!(generate(24), generate(24));
    }

    /// Regression: parallel guesses were all checked, since they were counted only after
    /// their check failed. Counted first, at most the limit run however they arrive.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_guesses_check_at_most_the_limit() {
        let logins = Arc::new(VerifiedLogins::new(Some(RateSpec {
            requests: 3,
            window: Duration::from_secs(60),
        })));
        let phc = Arc::new(hash("right"));
        let client: Option<IpAddr> = Some("10.1.1.1".parse().unwrap());
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (logins, phc) = (logins.clone(), phc.clone());
            tasks.push(tokio::spawn(async move {
                logins
                    .check("u", &format!("wrong-{i}"), Some(&phc), client)
                    .await
            }));
        }
        let mut checked = 0;
        let mut limited = 0;
        for t in tasks {
            match t.await.unwrap() {
                Checked::Mismatch => checked += 1,
                Checked::Limited(_) => limited += 1,
                Checked::Match => panic!("a wrong password matched"),
            }
        }
        assert_eq!((checked, limited), (3, 17));
        // The right password is limited too once the window is used up, from that address.
        assert!(matches!(
            logins.check("u", "right", Some(&phc), client).await,
            Checked::Limited(_)
        ));
        let elsewhere = Some("10.1.1.2".parse().unwrap());
        assert_eq!(
            logins.check("u", "right", Some(&phc), elsewhere).await,
            Checked::Match
        );
        assert!(logins.queues.lock().is_empty(), "queues are forgotten");
    }

    /// Regression: a burst of guesses for one login held both argon2 slots until it was
    /// done, delaying every other sign-in. A burst waits behind itself: another login's
    /// check runs after at most the one or two of the burst already under way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_for_one_login_does_not_queue_ahead_of_others() {
        let logins = Arc::new(VerifiedLogins::new(None));
        let phc = Arc::new(hash("right"));
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let attacker: Option<IpAddr> = Some("10.9.9.9".parse().unwrap());
        let mut burst = Vec::new();
        for i in 0..16 {
            let (logins, phc, done) = (logins.clone(), phc.clone(), done.clone());
            burst.push(tokio::spawn(async move {
                logins
                    .check("victim", &format!("guess-{i}"), Some(&phc), attacker)
                    .await;
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }));
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        let honest = hash("mine");
        let me: Option<IpAddr> = Some("10.1.2.3".parse().unwrap());
        assert_eq!(
            logins.check("alice", "mine", Some(&honest), me).await,
            Checked::Match
        );
        let ahead = done.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            ahead <= 8,
            "{ahead} of the burst's 16 checks ran before the honest one"
        );
        for t in burst {
            t.await.unwrap();
        }
    }

    /// Regression: a burst of right passwords once the remembered check had expired was
    /// counted whole against the failed-sign-in limit before the first check gave its
    /// attempt back, so a CI fleet with Basic credentials got 429 every minute. The burst
    /// now verifies once and the rest find the password remembered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_right_passwords_is_never_limited() {
        let logins = Arc::new(VerifiedLogins::new(Some(RateSpec {
            requests: 3,
            window: Duration::from_secs(60),
        })));
        let phc = Arc::new(hash("right"));
        let client: Option<IpAddr> = Some("10.1.1.1".parse().unwrap());
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (logins, phc) = (logins.clone(), phc.clone());
                tokio::spawn(async move { logins.check("u", "right", Some(&phc), client).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Checked::Match);
        }
        assert!(logins.queues.lock().is_empty(), "queues are forgotten");
    }

    /// A right password gives its attempt back: honest sign-ins never use up the window.
    #[tokio::test]
    async fn right_passwords_cost_nothing() {
        let logins = VerifiedLogins::new(Some(RateSpec {
            requests: 1,
            window: Duration::from_secs(60),
        }));
        for secret in ["a", "b", "c"] {
            let phc = hash(secret);
            assert_eq!(
                logins.check("u", secret, Some(&phc), None).await,
                Checked::Match,
                "{secret}"
            );
        }
    }
}
