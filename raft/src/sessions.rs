//! Console sessions ended before their expiry (sign-out). A session is a signed token the
//! browser holds (`proxy::ui::session`), so nothing is stored while it lives; signing out
//! stores its id here until the token would have expired anyway, so every node of the
//! region refuses it from then on.
//!
//! ```text
//! E/<session id>             i64             when the ended session would have expired
//! ```
//!
//! Each `EndSession` also drops the records whose expiry has passed (by the command's own
//! time, so every replica drops the same ones): the set holds only sessions that could
//! still be presented.

use sled::Batch;

use crate::catalog::{encode, Catalog};
use crate::command::{done, Outcome};
use crate::keys::{self, key};
use crate::Result;

/// At most this many ended sessions are kept; past it the ones nearest their expiry go
/// first (signing out needs a live session, so this bounds what a flood of sign-outs stores).
const MAX_ENDED: usize = 100_000;

impl Catalog {
    /// Whether the session `id` was ended.
    pub fn session_ended(&self, id: &str) -> Result<bool> {
        Ok(self.get::<i64>(&key(keys::ENDED_SESSION, &[id]))?.is_some())
    }

    pub(crate) fn end_session(
        &self,
        id: &str,
        until: i64,
        at: i64,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        let mut live: Vec<(i64, sled::IVec)> = Vec::new();
        for entry in self.tree().scan_prefix(keys::ENDED_SESSION.as_bytes()) {
            let (k, v) = entry?;
            let expiry: i64 = crate::catalog::decode(&v)?;
            if expiry <= at {
                batch.remove(k);
            } else {
                live.push((expiry, k));
            }
        }
        if live.len() >= MAX_ENDED {
            live.sort();
            for (_, k) in live.iter().take(live.len() + 1 - MAX_ENDED) {
                batch.remove(k.clone());
            }
        }
        if until > at {
            batch.insert(key(keys::ENDED_SESSION, &[id]), encode(&until));
        }
        done()
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::tests::catalog;
    use crate::Command;

    #[test]
    fn an_ended_session_is_remembered_until_it_would_have_expired() {
        let c = catalog();
        let end = |id: &str, until, at| {
            c.apply(&Command::EndSession {
                id: id.into(),
                until,
                at,
            })
            .unwrap()
        };
        end("a", 100, 10);
        assert!(c.session_ended("a").unwrap());
        assert!(!c.session_ended("b").unwrap());
        // Already expired: nothing to remember.
        end("b", 50, 60);
        assert!(!c.session_ended("b").unwrap());
        // A later sign-out drops what has expired since.
        end("c", 300, 150);
        assert!(!c.session_ended("a").unwrap());
        assert!(c.session_ended("c").unwrap());
    }
}
