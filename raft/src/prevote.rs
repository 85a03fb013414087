//! Elections with a pre-vote (Raft thesis §9.6), built on openraft 0.9, which has none.
//!
//! Why: a voter cut off from the others (a partition, a process frozen by `SIGSTOP`, a long
//! pause) would raise its term at each of openraft's election timeouts, and when it came back
//! its higher term would depose a healthy leader: openraft answers the leader's next append
//! with `HigherVote` and the leader steps down. Pre-vote arrived only in openraft 0.10's
//! alphas, which change the storage and network traits; this file gives the same behaviour
//! on 0.9 with what 0.9 offers: switching its election timer off (`enable_elect(false)`) and
//! starting an election on demand (`Trigger::elect`).
//!
//! How: a voter that is not the leader watches how long it has heard nothing from a leader
//! (`Metadata::leader_silence_ms`). Past a randomised timeout, it asks the other voters
//! whether they would vote for it (`Request::PreVote`, with its last log id). A voter says
//! yes only if it has not heard from a leader for the leader lease either, is not the leader
//! itself, and the candidate's log is at least as up to date as its own (openraft's own
//! rule for votes). With a quorum of yeses, counting its own, the candidate starts a real
//! election; otherwise its term stays where it is and it asks again 50–100 ms later (the
//! others may have heard the dead leader a little after it did). A node that is the only
//! voter elects itself once its wait is over.
//!
//! The timings make failover short on a LAN: heartbeats every `HEARTBEAT_MS`, the lease
//! (`LEASE_MS`, which openraft takes from `election_timeout_max` and during which a
//! follower refuses any vote) and a candidate's wait of the lease plus up to `JITTER_MS`.
//! A leader killed is replaced about `LEASE_MS`–`LEASE_MS + JITTER_MS` later, plus a round
//! trip for the pre-vote and one for the vote.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::LogId;

use crate::node::Metadata;
use crate::plane::rpc::{Request, Response};
use crate::types::NodeId;

/// How often the leader sends heartbeats (openraft's `heartbeat_interval`).
pub(crate) const HEARTBEAT_MS: u64 = 100;
/// The leader lease: a follower that heard from a leader this recently refuses any vote
/// (openraft's `election_timeout_max`) and any pre-vote (`grants_pre_vote`).
pub(crate) const LEASE_MS: u64 = 500;
/// The most a candidate waits past the lease, drawn anew for each attempt, so that two
/// voters seldom ask at once and split the vote.
const JITTER_MS: u64 = 250;
/// How soon a lost pre-vote is asked again (plus up to a fifth of `JITTER_MS`).
const RETRY_MS: u64 = 50;
const TICK: Duration = Duration::from_millis(25);
const ASK_TIMEOUT: Duration = Duration::from_millis(300);

/// A random wait in `0..=JITTER_MS` ms (`RandomState` draws its keys from the OS).
fn jitter() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0u8) % (JITTER_MS + 1)
}

impl Metadata {
    /// Switches openraft's own election timer off and starts the task that runs elections
    /// with a pre-vote instead (a region node only: a node without the plane keeps
    /// openraft's timer, being its only voter).
    pub(crate) fn run_elections(self: &Arc<Self>) {
        if self.plane.is_none() {
            return;
        }
        self.raft.runtime_config().elect(false);
        let meta = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut wait = LEASE_MS + jitter();
            let mut next_try = Instant::now();
            loop {
                tokio::time::sleep(TICK).await;
                let Some(meta) = meta.upgrade() else { return };
                if meta.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                if meta.leader_silence_ms() < wait
                    || Instant::now() < next_try
                    || !meta.may_campaign()
                {
                    continue;
                }
                // A lost pre-vote changed nothing and is tried again soon: the other voters
                // may have heard the dead leader a few milliseconds after this one did. An
                // election started is given time to finish (a split vote waits a fresh,
                // random while).
                let pause = match meta.campaign().await {
                    true => LEASE_MS / 2 + jitter(),
                    false => RETRY_MS + jitter() / 5,
                };
                wait = LEASE_MS + jitter();
                next_try = Instant::now() + Duration::from_millis(pause);
            }
        });
    }

    /// A voter that does not lead.
    fn may_campaign(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.current_leader != Some(self.node_id)
            && m.membership_config
                .membership()
                .voter_ids()
                .any(|v| v == self.node_id)
    }

    /// Asks the other voters for a pre-vote and starts an election if a quorum would grant
    /// it; whether it started one.
    async fn campaign(&self) -> bool {
        let Some(plane) = &self.plane else {
            return false;
        };
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let quorum = voters.len() / 2 + 1;
        let mut granted = 1; // its own
        if granted < quorum {
            let Some(last_log) = self.last_log_id() else {
                return false;
            };
            let mut asks: futures::stream::FuturesUnordered<_> = voters
                .iter()
                .filter(|&&v| v != self.node_id)
                .filter_map(|&v| membership.get_node(&v).map(|n| (v, n.cluster.clone())))
                .map(|(v, addr)| async move {
                    let req = Request::PreVote { last_log };
                    matches!(
                        plane.call(v, &addr, &req, ASK_TIMEOUT).await,
                        Ok(Response::PreVote { granted: true })
                    )
                })
                .collect();
            // Counted as they come: a dead voter (often the leader that just died) must not
            // hold the election back by its timeout.
            while granted < quorum {
                match futures::StreamExt::next(&mut asks).await {
                    Some(true) => granted += 1,
                    Some(false) => {}
                    None => break,
                }
            }
        }
        if granted < quorum {
            tracing::debug!(granted, quorum, "pre-vote lost: the term stays");
            return false;
        }
        tracing::info!(
            granted,
            quorum,
            term = m.current_term,
            "pre-vote won: starting an election"
        );
        if let Err(e) = self.raft.trigger().elect().await {
            tracing::warn!(error = %e, "could not start an election");
        }
        true
    }

    /// The id of the last entry in this node's log (what openraft compares in a vote).
    fn last_log_id(&self) -> Option<Option<LogId<NodeId>>> {
        self.log.last_log_id().ok()
    }

    /// Whether this node would vote for a candidate whose log ends at `last_log`: it does not
    /// lead, has heard from no leader for the lease, and its own log is no further along.
    pub(crate) fn grants_pre_vote(&self, last_log: Option<LogId<NodeId>>) -> bool {
        if self.leads() || self.leader_silence_ms() < LEASE_MS {
            return false;
        }
        self.last_log_id().is_some_and(|mine| last_log >= mine)
    }
}
