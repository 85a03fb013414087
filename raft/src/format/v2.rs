//! Format 2, frozen where format 3 differs: a proposal carried no time and no client
//! address. The step to format 3 rewrites the Raft log's entries with both unknown (`at` 0,
//! `from` none); the catalogue and snapshots are the same bytes in both formats (format 3
//! only adds the audit trail's keys, `keys::AUDIT`).
//!
//! Nothing here may change: postcard is not self-describing, so these definitions are the
//! bytes. `Command` is the live type because format 3 left it as it was (a variant appended
//! at the end reads old data unchanged); the format that changes it must freeze a copy here.
//! `golden-v2.txt` and `tests/fixtures/v2-single` hold these types to what format 2 wrote.

use std::io::Cursor;

use openraft::{Entry, EntryPayload};
use serde::{Deserialize, Serialize};

use super::{Lookup, Pair, Step};
use crate::command::{Actor, Command, Outcome};
use crate::types::{Member, NodeId, TypeConfig};
use crate::{Error, Result};

/// A format-2 log entry's payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub by: Actor,
    pub request_id: String,
    pub command: Command,
}

openraft::declare_raft_types!(
    /// The Raft types of format 2.
    pub V2Config:
        D = Proposal,
        R = Outcome,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<V2Config>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<V2Config>,
);

/// Format 2 → format 3.
pub struct ToV3;

impl Step for ToV3 {
    fn catalog_pairs(&self, _old: Lookup, key: &[u8], value: &[u8]) -> Result<Vec<Pair>> {
        Ok(vec![(key.to_vec(), value.to_vec())])
    }

    fn log_entry(&self, value: &[u8]) -> Result<Vec<u8>> {
        let old: Entry<V2Config> = postcard::from_bytes(value)
            .map_err(|e| Error::Corrupt(format!("format 2 log entry: {e}")))?;
        let payload = match old.payload {
            EntryPayload::Blank => EntryPayload::Blank,
            EntryPayload::Membership(m) => EntryPayload::Membership(m),
            EntryPayload::Normal(p) => EntryPayload::Normal(crate::Proposal {
                by: p.by,
                request_id: p.request_id,
                command: p.command,
                at: 0,
                from: None,
            }),
        };
        let new: Entry<TypeConfig> = Entry {
            log_id: old.log_id,
            payload,
        };
        Ok(postcard::to_stdvec(&new).expect("log entries serialise"))
    }

    fn snapshot_data(&self, data: &[u8]) -> Result<Vec<u8>> {
        Ok(data.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `golden-v2.txt` (name → hex).
    fn golden_v2() -> std::collections::BTreeMap<String, String> {
        include_str!("golden-v2.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.split_once(' '))
            .map(|(n, h)| (n.to_string(), h.trim().to_string()))
            .collect()
    }

    #[test]
    fn format_2_proposals_read_as_they_were_written() {
        let golden = golden_v2();
        let bytes = hex::decode(&golden["proposal.principal"]).unwrap();
        let p: Proposal = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            p.by,
            Actor::Principal {
                name: "alice".into(),
                via: Some("cred-abc".into())
            }
        );
        assert_eq!(p.request_id, "7f3a-12");
        assert_eq!(
            postcard::to_stdvec(&p).unwrap(),
            bytes,
            "frozen: same bytes back"
        );
    }

    #[test]
    fn a_format_2_log_entry_becomes_a_format_3_entry_without_time_or_address() {
        let golden = golden_v2();
        let bytes = hex::decode(&golden["log.entry"]).unwrap();
        let old: Entry<V2Config> = postcard::from_bytes(&bytes).unwrap();
        let new: Entry<TypeConfig> =
            postcard::from_bytes(&ToV3.log_entry(&bytes).unwrap()).unwrap();
        assert_eq!(new.log_id, old.log_id);
        let (EntryPayload::Normal(o), EntryPayload::Normal(n)) = (old.payload, new.payload) else {
            panic!("the sample is a normal entry");
        };
        assert_eq!(
            (n.by, n.request_id, n.command),
            (o.by, o.request_id, o.command)
        );
        assert_eq!((n.at, n.from), (0, None));
    }
}
