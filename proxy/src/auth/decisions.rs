//! A short memory of the gate's answers: who a request's `Authorization` header stands for
//! and that it may do what it asked, so that the next request with the same header and the
//! same need is not worked out again from the catalogue.
//!
//! Why: every registry request used to check its credentials and read the caller's role
//! bindings, the credential, the namespace and the repository's visibility from sled — 14 %
//! of a manifest GET's CPU at 40 000 requests/s, for an answer that changes only when the
//! catalogue does (`bench/RESULTS.md`, "Authorization decisions remembered").
//!
//! Why it cannot answer wrongly:
//! - An answer is kept with the catalogue's `version` read *before* it was worked out, and
//!   given again only while the version is the same: any change applied to the replica
//!   since (a credential revoked, a role removed, a namespace made private, a signing key
//!   rotated, or any other write) forgets every answer at once.
//! - It is kept no longer than `MAX_AGE`, nor past the moment the identity or its token
//!   expires (the credential's `expires_at`, the token's `exp`, checked on the wall clock at
//!   every use), which time alone brings.
//! - Nothing is kept while a snapshot loads (the catalogue is half there; `version` is
//!   `None`), nor an answer that placed a namespace this replica has not seen yet in the
//!   home organisation (the region may have made it elsewhere; `Keep::No`).
//! - Only answers that let the request in are kept. A wrong password, a refused token or a
//!   denial is worked out every time, so the failed sign-in limit and the audit of failures
//!   see every attempt. A right password is answered from memory even while its (client,
//!   login) has used up the failed sign-in limit, as `VerifiedLogins`' remembered logins
//!   already were: only a caller who holds the exact header gains by it.
//! - The key is a SHA-256 of the whole header and the need: only a request carrying the
//!   same secret, for the same thing, finds the answer. Console sessions and OIDC logins
//!   are never kept (their validity also depends on what lives outside the catalogue).
//! - At most `CAPACITY` answers, least recently used forgotten first: 10 000 distinct
//!   callers cost 10 000 full checks, as before, and no more memory than this.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::{Caller, Need};

/// How long an answer is given again at most, whatever else holds.
pub const MAX_AGE: Duration = Duration::from_secs(10);
const CAPACITY: usize = 4096;

pub type Key = [u8; 32];

struct Answer {
    version: u64,
    /// `MAX_AGE` after it was worked out.
    until: Instant,
    /// When the identity or its token ends (Unix seconds), checked on the wall clock at
    /// every use, as the uncached check would.
    expires: Option<i64>,
    caller: Arc<Caller>,
}

/// Whether an answer may be kept, and until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Not at all: it rests on something a change could make wrong without moving the
    /// catalogue's version here (a namespace this replica has not seen yet, placed in the
    /// home organisation until the region's write arrives).
    No,
    /// Until the identity or its token ends (Unix seconds), if it does.
    Until(Option<i64>),
}

pub struct Decisions {
    answers: Mutex<LruCache<Key, Answer>>,
}

impl Default for Decisions {
    fn default() -> Self {
        Decisions {
            answers: Mutex::new(LruCache::new(
                NonZeroUsize::new(CAPACITY).expect("non-zero"),
            )),
        }
    }
}

/// The key for a request with `authorization` (`None`: anonymous) that needs `need`
/// through the registry (`api` false) or the management API.
pub fn key(authorization: Option<&str>, api: bool, need: &Need) -> Key {
    let mut h = Sha256::new();
    match authorization {
        None => h.update([0u8]),
        Some(a) => {
            h.update([1u8]);
            h.update(a.as_bytes());
        }
    }
    h.update([0u8, u8::from(api)]);
    let (kind, repo) = match need {
        Need::Open => (0u8, None),
        Need::Ping => (1, None),
        Need::Pull(r) => (2, Some(r)),
        Need::Push(r) => (3, Some(r)),
        Need::Delete(r) => (4, Some(r)),
        Need::Catalog => (5, None),
        Need::SignedIn => (6, None),
    };
    h.update([kind]);
    if let Some(r) = repo {
        h.update(r.as_str().as_bytes());
    }
    h.finalize().into()
}

/// Whether an identity ending at `expires` (Unix seconds) is still good: whole seconds,
/// one taken off, since the clock's fraction of a second is not known.
fn alive(expires: Option<i64>) -> bool {
    expires.is_none_or(|at| chrono::Utc::now().timestamp() + 1 < at)
}

impl Decisions {
    /// The caller kept for `key` at catalogue `version`, if it is still good now.
    pub fn get(&self, key: &Key, version: u64) -> Option<Caller> {
        let caller = {
            let mut answers = self.answers.lock();
            let answer = answers.get(key)?;
            if answer.version == version && Instant::now() < answer.until && alive(answer.expires) {
                Some(answer.caller.clone())
            } else {
                answers.pop(key);
                None
            }
        };
        caller.map(|c| Caller::clone(&c))
    }

    /// Keeps `caller` for `key`, worked out from catalogue `version`, for at most `MAX_AGE`
    /// and as `keep` allows.
    pub fn put(&self, key: Key, version: u64, caller: &Caller, keep: Keep) {
        let Keep::Until(expires) = keep else { return };
        if !alive(expires) {
            return;
        }
        let answer = Answer {
            version,
            until: Instant::now() + MAX_AGE,
            expires,
            caller: Arc::new(caller.clone()),
        };
        self.answers.lock().put(key, answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Subject;
    use crate::names::RepoName;

    fn user(name: &str) -> Caller {
        Caller {
            subject: Subject::User(name.into()),
            ..Caller::anonymous()
        }
    }

    fn pull(repo: &str) -> Need {
        Need::Pull(RepoName::parse(repo).unwrap())
    }

    #[test]
    fn an_answer_is_given_again_only_for_the_same_header_need_and_version() {
        let d = Decisions::default();
        let k = key(Some("Basic YWxpY2U6cHc="), false, &pull("ns/app"));
        d.put(k, 7, &user("alice"), Keep::Until(None));
        assert_eq!(d.get(&k, 7).unwrap().subject, Subject::User("alice".into()));
        // A change to the catalogue forgets it, and it stays forgotten.
        assert!(d.get(&k, 8).is_none());
        assert!(d.get(&k, 7).is_none());
    }

    #[test]
    fn keys_differ_by_header_need_repository_and_surface() {
        let base = key(Some("Bearer a"), false, &pull("ns/app"));
        let others = [
            key(Some("Bearer b"), false, &pull("ns/app")),
            key(None, false, &pull("ns/app")),
            key(Some("Bearer a"), true, &pull("ns/app")),
            key(Some("Bearer a"), false, &pull("ns/other")),
            key(
                Some("Bearer a"),
                false,
                &Need::Push(RepoName::parse("ns/app").unwrap()),
            ),
            key(Some("Bearer a"), false, &Need::Catalog),
        ];
        for o in others {
            assert_ne!(base, o);
        }
        assert_eq!(base, key(Some("Bearer a"), false, &pull("ns/app")));
    }

    #[test]
    fn an_identity_that_ends_is_not_answered_for() {
        let d = Decisions::default();
        let k = key(Some("Bearer t"), false, &Need::Ping);
        let now = chrono::Utc::now().timestamp();
        d.put(k, 1, &user("bob"), Keep::Until(Some(now + 1)));
        assert!(d.get(&k, 1).is_none(), "ends within a second");
        d.put(k, 1, &user("bob"), Keep::Until(Some(now - 5)));
        assert!(d.get(&k, 1).is_none(), "ended");
        d.put(k, 1, &user("bob"), Keep::No);
        assert!(d.get(&k, 1).is_none(), "not to be kept");
        d.put(k, 1, &user("bob"), Keep::Until(Some(now + 3)));
        assert!(d.get(&k, 1).is_some());
        // Checked again at every use, on the wall clock.
        d.answers.lock().get_mut(&k).unwrap().expires = Some(now);
        assert!(d.get(&k, 1).is_none(), "ended since it was kept");
    }

    #[test]
    fn an_answer_older_than_its_life_is_forgotten() {
        let d = Decisions::default();
        let k = key(None, false, &pull("pub/app"));
        d.put(k, 1, &Caller::anonymous(), Keep::Until(None));
        // Age it by hand rather than sleeping MAX_AGE.
        d.answers.lock().get_mut(&k).unwrap().until = Instant::now();
        assert!(d.get(&k, 1).is_none());
    }
}
