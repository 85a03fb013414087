//! A removed node finds out, and stops serving its replica.
//!
//! A voter removed from the region usually applies the membership change that removes it,
//! but a learner never sees one (the leader simply stops replicating to it), and a voter
//! cut off at the moment of its removal may not either. Such a node would go on answering
//! from an ever staler replica as if nothing had happened. So while nothing comes from a
//! leader, the node asks the other members it knows, once a second, whether it is still
//! one of them, and believes the first that hears from a leader itself (or leads). A
//! joining node, which hears from the leader while it catches up, is never taken for a
//! removed one, even while the snapshot it installed predates its own addition. A node
//! that reaches no such member cannot tell removal from a partition and keeps serving:
//! reads on a cut-off replica are allowed to be stale by design.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::node::Metadata;
use crate::plane::rpc::{Request, Response};
use crate::types::NodeId;

const TICK: Duration = Duration::from_secs(1);
const ASK_TIMEOUT: Duration = Duration::from_millis(500);

impl Metadata {
    /// Starts the task that asks the other members whether this node is still one of them
    /// while it hears nothing from a leader (a region node only).
    pub fn watch_removal(self: &Arc<Self>) {
        let meta = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                let Some(meta) = meta.upgrade() else { return };
                meta.check_removal().await;
            }
        });
    }

    /// Why this node must not answer from its replica: it was removed from the region.
    /// `None` while it is a member, or while it cannot tell. One atomic load: it is asked
    /// on every request.
    pub fn removed(&self) -> Option<String> {
        self.removed.load(Ordering::Relaxed).then(|| {
            format!(
                "node {} was removed from the region: it serves nothing until it joins again; use another node",
                self.node_id
            )
        })
    }

    async fn check_removal(&self) {
        let Some(plane) = &self.plane else { return };
        // Its own membership is no proof: a joining node applies a snapshot taken before
        // it was added, and a removed voter learns nothing more once it is out. Only a
        // member that hears a leader is asked, and only while this node hears none.
        if self.hears_a_leader() {
            self.set_removed(false);
            return;
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let others: Vec<(NodeId, String)> = membership
            .nodes()
            .filter(|(id, _)| **id != self.node_id)
            .map(|(id, n)| (*id, n.cluster.clone()))
            .collect();
        for (id, addr) in others {
            let answer = plane
                .call(id, &addr, &Request::Membership, ASK_TIMEOUT)
                .await;
            if let Ok(Response::Membership {
                member,
                knows_leader: true,
            }) = answer
            {
                self.set_removed(!member);
                return;
            }
        }
    }

    fn set_removed(&self, removed: bool) {
        if self.removed.swap(removed, Ordering::Relaxed) != removed {
            match removed {
                true => tracing::warn!(
                    node_id = self.node_id,
                    "the region says this node is no longer a member: serving nothing until it joins again"
                ),
                false => tracing::info!(node_id = self.node_id, "a member of the region again"),
            }
        }
    }

    /// The plane's answer to `peer` asking whether it is a member.
    pub(crate) fn membership_of(&self, peer: NodeId) -> Response {
        let m = self.raft.metrics().borrow().clone();
        Response::Membership {
            member: m.membership_config.membership().get_node(&peer).is_some(),
            knows_leader: self.hears_a_leader(),
        }
    }
}
