//! Console sessions ended before their expiry (sign-out). A session is a signed token the
//! browser holds (`proxy::ui::session`), so nothing is stored while it lives; signing out
//! stores its id here until the token would have expired anyway, so every node of the
//! region refuses it from then on.
//!
//! ```text
//! E/<session id>                     i64   when the ended session would have expired
//! W/<expiry, 16 hex digits>\0<id>    ()    the same, ordered by expiry
//! ```
//!
//! Each `EndSession` also drops the records whose expiry has passed (by the command's own
//! time, so every replica drops the same ones), reading only those through the ordered
//! index: the set holds exactly the sessions that could still be presented, and no live
//! one is ever dropped to make room (that would bring a signed-out session back). What it
//! can hold is bounded by how fast sessions can be made (a password check each, under the
//! console's sign-in limit) times their lifetime.

use crate::batch::Batch;

use crate::catalog::{encode, Catalog};
use crate::command::{done, Outcome};
use crate::keys::{self, key};
use crate::Result;

/// An expiry as a key part that sorts as the number does (times before 1970 sort first).
fn expiry_part(t: i64) -> String {
    format!("{:016x}", t.max(0) as u64)
}

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
        let start = keys::ENDED_BY_EXPIRY.as_bytes().to_vec();
        let end = key(keys::ENDED_BY_EXPIRY, &[&expiry_part(at.saturating_add(1))]);
        for entry in self.tree().range(start..end) {
            let (k, _) = entry?;
            let rest = &k[keys::ENDED_BY_EXPIRY.len()..];
            if let Some(sep) = rest.iter().position(|b| *b == 0) {
                let expired = String::from_utf8_lossy(&rest[sep + 1..]).into_owned();
                batch.remove(key(keys::ENDED_SESSION, &[&expired]));
            }
            batch.remove(k);
        }
        if until > at {
            batch.insert(key(keys::ENDED_SESSION, &[id]), encode(&until));
            batch.insert(
                key(keys::ENDED_BY_EXPIRY, &[&expiry_part(until), id]),
                encode(&()),
            );
        }
        done()
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::tests::catalog;
    use crate::{keys, Command};

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
        end("long", 1_000_000, 10);
        assert!(c.session_ended("a").unwrap());
        assert!(!c.session_ended("b").unwrap());
        // Already expired: nothing to remember.
        end("b", 50, 60);
        assert!(!c.session_ended("b").unwrap());
        // A later sign-out drops what has expired since, and only that.
        end("c", 300, 150);
        assert!(!c.session_ended("a").unwrap());
        assert!(c.session_ended("c").unwrap());
        assert!(c.session_ended("long").unwrap());
        let index: Vec<_> = c
            .tree()
            .scan_prefix(keys::ENDED_BY_EXPIRY)
            .map(|e| e.unwrap().0)
            .collect();
        assert_eq!(index.len(), 2, "the index holds the live ones: c and long");
    }
}
