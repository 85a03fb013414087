//! Passwords and credential secrets: generation, argon2 hashing, and a short memory of
//! logins that verified, so that Basic auth on every request (and every token request)
//! does not run argon2 each time.
//!
//! The memory holds a hash of (login, secret) and the stored hash it matched; it answers
//! only while the stored hash is unchanged and the entry is younger than `REMEMBER`, so a
//! changed password is never accepted from memory. Revocation and expiry are checked by the
//! caller on every request, from the catalogue, never remembered.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use lru::LruCache;
use parking_lot::Mutex;
use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use rand::Rng;
use sha2::{Digest, Sha256};

const REMEMBER: Duration = Duration::from_secs(60);
const REMEMBERED: usize = 10_000;
/// argon2 runs at most this many at once: each takes ~19 MiB and a core for tens of
/// milliseconds, and a burst of clients with the same login must not multiply that.
const CONCURRENT_HASHES: usize = 2;

/// A random string of ASCII letters and digits from the OS generator.
pub fn generate(len: usize) -> String {
    OsRng
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
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
}

impl Default for VerifiedLogins {
    fn default() -> Self {
        VerifiedLogins {
            seen: Mutex::new(LruCache::new(
                NonZeroUsize::new(REMEMBERED).expect("non-zero"),
            )),
            hashing: tokio::sync::Semaphore::new(CONCURRENT_HASHES),
        }
    }
}

impl VerifiedLogins {
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

    /// Whether `secret` is the one `phc` was made from; argon2 runs on the blocking pool
    /// unless this login verified against the same `phc` within the last minute.
    pub async fn check(&self, login: &str, secret: &str, phc: &str) -> bool {
        let key = Self::key(login, secret);
        if self.remembered(&key, phc) {
            return true;
        }
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        // A burst of requests with one login verifies once: the rest find it here.
        if self.remembered(&key, phc) {
            return true;
        }
        let (s, p) = (secret.to_string(), phc.to_string());
        let ok = tokio::task::spawn_blocking(move || verify(&s, &p))
            .await
            .unwrap_or(false);
        if ok {
            self.seen.lock().put(key, (phc.to_string(), Instant::now()));
        }
        ok
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
        assert!(logins.check("u", "s3cret", &phc).await);
        assert!(logins.check("u", "s3cret", &phc).await, "remembered");
        assert!(!logins.check("u", "wrong", &phc).await);
        let other = hash("other");
        assert!(
            !logins.check("u", "s3cret", &other).await,
            "a changed hash is not answered from memory"
        );
        assert_eq!(generate(24).len(), 24);
        assert_ne!(generate(24), generate(24));
    }
}
