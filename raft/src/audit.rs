//! The audit trail of metadata changes: who changed what, when, from where, and whether the
//! change took effect. The state machine writes one event per audited proposal in the same
//! batch as the change itself, so every replica holds the same trail, any node can answer
//! for it, and an event exists exactly when its command was applied.
//!
//! ```text
//! A/<at: u64 BE, ms><index: u64 BE>  → AuditEvent    time order, then log order
//! ```
//!
//! The time is the proposer's clock (`Proposal::at`), never the applier's, so replicas agree.
//! Which commands are audited, and what each one names, is decided in one exhaustive `match`
//! (`describe`): a new command does not compile until someone says whether it is audited.
//! Bookkeeping (usage, pull times, leases, upload sessions, the collector's progress) is not:
//! it would drown the events people look for. The trail is bounded by `ExpireAudit`, which
//! the leader proposes for events older than the retention.

use serde::{Deserialize, Serialize};

use crate::access::RoleScope;
use crate::catalog::{namespace_of, Catalog};
use crate::command::{Actor, Command, Outcome, Proposal};
use crate::keys;
use crate::Result;

/// Events removed by one `ExpireAudit` at most, so one command never builds a huge batch.
pub(crate) const EXPIRE_BATCH: usize = 10_000;

/// One audited change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The Raft log index that carried it: unique, and the tie-breaker at equal times.
    pub index: u64,
    /// Milliseconds since the Unix epoch, on the proposing node's clock.
    pub at: i64,
    pub actor: Actor,
    pub request_id: String,
    /// The client's address, when a client's request caused it.
    pub from: Option<String>,
    /// What was done, `noun.verb` (`manifest.push`, `tag.delete`, `credential.create`).
    pub action: String,
    /// The organisation the change belongs to, when it belongs to one: its admins may read
    /// the event. Changes to the cluster itself belong to none (cluster admins only).
    pub organisation: Option<String>,
    pub namespace: Option<String>,
    pub repository: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
    /// The principal, credential, project, upstream or federation the change is about.
    pub subject: Option<String>,
    /// What a collection or a retention run deleted (tags as `tag@digest`, or digests).
    pub items: Vec<String>,
    /// `None`: applied. `Some(why)`: the command was refused and changed nothing.
    pub refused: Option<String>,
}

/// What a command is about, before the catalogue answers who owns it.
#[derive(Default)]
struct About {
    action: &'static str,
    organisation: Option<String>,
    namespace: Option<String>,
    repository: Option<String>,
    tag: Option<String>,
    digest: Option<String>,
    subject: Option<String>,
    items: Vec<String>,
}

impl About {
    fn new(action: &'static str) -> About {
        About {
            action,
            ..About::default()
        }
    }
    fn org(mut self, o: &str) -> About {
        self.organisation = Some(o.to_string());
        self
    }
    fn ns(mut self, n: &str) -> About {
        self.namespace = Some(n.to_string());
        self
    }
    fn repo(mut self, r: &str) -> About {
        self.namespace = Some(namespace_of(r).to_string());
        self.repository = Some(r.to_string());
        self
    }
    fn tag(mut self, t: Option<&str>) -> About {
        self.tag = t.map(str::to_string);
        self
    }
    fn digest(mut self, d: &str) -> About {
        self.digest = Some(d.to_string());
        self
    }
    fn subject(mut self, s: &str) -> About {
        self.subject = Some(s.to_string());
        self
    }
    fn items(mut self, items: Vec<String>) -> About {
        self.items = items;
        self
    }
}

/// The key of the event at `at` ms carried by log entry `index`.
pub(crate) fn key(at: i64, index: u64) -> Vec<u8> {
    let mut k = keys::AUDIT.as_bytes().to_vec();
    k.extend_from_slice(&(at.max(0) as u64).to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

impl Catalog {
    /// The event `proposal` makes at log `index`, if it is audited; read before the
    /// command is applied, so a deletion still finds what it deletes.
    pub(crate) fn audit_event(
        &self,
        proposal: &Proposal,
        index: u64,
    ) -> Result<Option<AuditEvent>> {
        let Some(about) = self.describe(&proposal.command)? else {
            return Ok(None);
        };
        let organisation = match (&about.organisation, &about.namespace) {
            (Some(o), _) => Some(o.clone()),
            (None, Some(ns)) => self.namespace(ns)?.map(|n| n.organisation),
            (None, None) => None,
        };
        Ok(Some(AuditEvent {
            index,
            at: proposal.at,
            actor: proposal.by.clone(),
            request_id: proposal.request_id.clone(),
            from: proposal.from.clone(),
            action: about.action.to_string(),
            organisation,
            namespace: about.namespace,
            repository: about.repository,
            tag: about.tag,
            digest: about.digest,
            subject: about.subject,
            items: about.items,
            refused: None,
        }))
    }

    /// Adds `event`, with the command's outcome, to `batch`.
    pub(crate) fn record_audit(
        &self,
        mut event: AuditEvent,
        outcome: &Outcome,
        batch: &mut crate::batch::Batch,
    ) {
        if let Outcome::Rejected(r) = outcome {
            event.refused = Some(r.to_string());
        }
        batch.insert(key(event.at, event.index), crate::catalog::encode(&event));
    }

    /// Events after the event `after` (its `at` and `index`) or from `since` ms, in time
    /// order, at most `scan` of them: the caller filters, so a bounded scan keeps a query
    /// that matches nothing from reading the whole trail.
    pub fn audit_events(
        &self,
        since: i64,
        after: Option<(i64, u64)>,
        scan: usize,
    ) -> Result<Vec<AuditEvent>> {
        let start = match after {
            Some((at, index)) => {
                let mut k = key(at, index);
                k.push(0);
                k
            }
            None => key(since, 0),
        };
        let end = {
            let mut e = keys::AUDIT.as_bytes().to_vec();
            e.extend_from_slice(&[0xff; 17]);
            e
        };
        let mut out = Vec::new();
        for kv in self.tree().range(start..end).take(scan) {
            let (_, v) = kv?;
            out.push(crate::catalog::decode(&v)?);
        }
        Ok(out)
    }

    /// The events older than `before` ms, oldest first.
    fn audit_before(&self, before: i64) -> sled::Iter {
        self.tree()
            .range(keys::AUDIT.as_bytes().to_vec()..key(before, 0))
    }

    /// Whether any event is older than `before` ms.
    pub fn has_audit_before(&self, before: i64) -> Result<bool> {
        Ok(self.audit_before(before).next().transpose()?.is_some())
    }

    /// Removes up to `EXPIRE_BATCH` events older than `before` ms.
    pub(crate) fn expire_audit(
        &self,
        before: i64,
        batch: &mut crate::batch::Batch,
    ) -> Result<Outcome> {
        for kv in self.audit_before(before).take(EXPIRE_BATCH) {
            batch.remove(kv?.0);
        }
        crate::command::done()
    }

    /// What `cmd` is about, or `None` when it is not audited.
    fn describe(&self, cmd: &Command) -> Result<Option<About>> {
        use Command as C;
        let a = match cmd {
            C::CreateNamespace { record } => About::new("namespace.create")
                .org(&record.organisation)
                .ns(&record.name),
            C::SetVisibility { namespace, .. } => About::new("namespace.visibility").ns(namespace),
            C::DeleteNamespace { name } => About::new("namespace.delete").ns(name),
            C::SetNamespaceDescription { namespace, .. } => {
                About::new("namespace.describe").ns(namespace)
            }
            C::SetImmutableTags { namespace, .. } => {
                About::new("namespace.immutable-tags").ns(namespace)
            }
            C::SetRetention { namespace, policy } => {
                let action = if policy.is_some() {
                    "retention.set"
                } else {
                    "retention.delete"
                };
                About::new(action).ns(namespace)
            }
            C::CreateOrganisation { org, owner } => About::new("organisation.create")
                .org(&org.name)
                .subject(owner),
            C::DeleteOrganisation { name } => About::new("organisation.delete").org(name),
            C::CreateProject { project } => About::new("project.create")
                .org(&project.organisation)
                .subject(&project.name),
            C::DeleteProject { organisation, name } => {
                About::new("project.delete").org(organisation).subject(name)
            }
            C::SetRepositoryVisibility { repo, .. } => {
                About::new("repository.visibility").repo(repo)
            }
            C::DeleteRepository { repo } => About::new("repository.delete").repo(repo),
            C::PutManifest {
                repo,
                manifest,
                tag,
            } => About::new("manifest.push")
                .repo(repo)
                .tag(tag.as_deref())
                .digest(&manifest.digest),
            C::DeleteTag { repo, tag } => About::new("tag.delete").repo(repo).tag(Some(tag)),
            C::DeleteManifest { repo, digest } => {
                About::new("manifest.delete").repo(repo).digest(digest)
            }
            C::UnlinkBlob { repo, digest } => About::new("blob.delete").repo(repo).digest(digest),
            C::RetainTags { repo, delete } => About::new("retention.delete-tags")
                .repo(repo)
                .items(delete.iter().map(|(t, d)| format!("{t}@{d}")).collect()),
            C::CollectManifests { repo, digests, .. } => About::new("gc.collect-manifests")
                .repo(repo)
                .items(digests.clone()),
            C::CollectBlobs { repo, digests, .. } => About::new("gc.collect-blobs")
                .repo(repo)
                .items(digests.clone()),
            C::RequestGc { .. } => About::new("gc.request"),
            C::Bootstrap { org, admin, .. } => About::new("cluster.bootstrap")
                .org(&org.name)
                .subject(&admin.name),
            C::CreatePrincipal { principal } => About::new("principal.create")
                .org(&principal.organisation)
                .subject(&principal.name),
            C::DeletePrincipal {
                name, organisation, ..
            } => About::new("principal.delete")
                .org(organisation)
                .subject(name),
            C::CreateCredential { credential } => {
                let a = About::new("credential.create").subject(&credential.id);
                self.owned_by(a, &credential.owner)?
            }
            C::RevokeCredential { id, .. } => self.credential_about("credential.revoke", id)?,
            C::RotateCredentialSecret { id, .. } => {
                self.credential_about("credential.rotate", id)?
            }
            C::Bind { binding } => scoped(
                About::new("role.bind").subject(&binding.principal),
                &binding.scope,
            ),
            C::Unbind { principal, scope } => {
                scoped(About::new("role.unbind").subject(principal), scope)
            }
            C::RotateSigningKey { key, .. } => About::new("signing-key.rotate").subject(&key.kid),
            C::CreateFederation { federation } => {
                let a = About::new("federation.create").subject(&federation.name);
                self.owned_by(a, &federation.service_account)?
            }
            C::DeleteFederation { name } => {
                let a = About::new("federation.delete").subject(name);
                match self.federation(name)? {
                    Some(f) => self.owned_by(a, &f.service_account)?,
                    None => a,
                }
            }
            C::CreateUpstream { upstream } => About::new("upstream.create")
                .ns(&upstream.namespace)
                .subject(&upstream.name),
            C::DeleteUpstream { name } => {
                let a = About::new("upstream.delete").subject(name);
                match self.upstream_named(name)? {
                    Some(u) => a.ns(&u.namespace),
                    None => a,
                }
            }
            C::EndSession { .. } => About::new("session.end"),
            C::RecordUsage { .. }
            | C::LinkBlob { .. }
            | C::OpenUpload { .. }
            | C::CloseUploads { .. }
            | C::TouchContent { .. }
            | C::RecordPulls { .. }
            | C::CondemnDigests { .. }
            | C::ForgetDigests { .. }
            | C::RecordGc { .. }
            | C::MirrorManifest { .. }
            | C::TagChecked { .. }
            | C::ExpireAudit { .. } => return Ok(None),
        };
        Ok(Some(a))
    }

    /// `a`, belonging to the organisation of principal `owner`.
    fn owned_by(&self, a: About, owner: &str) -> Result<About> {
        Ok(match self.principal(owner)? {
            Some(p) => a.org(&p.organisation),
            None => a,
        })
    }

    fn credential_about(&self, action: &'static str, id: &str) -> Result<About> {
        let a = About::new(action).subject(id);
        match self.credential(id)? {
            Some(c) => self.owned_by(a, &c.owner),
            None => Ok(a),
        }
    }
}

/// `a`, placed where a role binding on `scope` applies.
fn scoped(a: About, scope: &RoleScope) -> About {
    match scope {
        RoleScope::Organisation(o) => a.org(o),
        RoleScope::Project { organisation, .. } => a.org(organisation),
        RoleScope::Namespace(n) => a.ns(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::catalog;
    use crate::catalog::NamespaceRecord;

    /// Applies `p` as the state machine does: the event is read before the change.
    fn apply(c: &Catalog, p: &Proposal, index: u64) -> Outcome {
        let event = c.audit_event(p, index).unwrap();
        let mut batch = crate::batch::Batch::default();
        let outcome = c.plan(&p.command, &mut batch, &mut Vec::new()).unwrap();
        if let Some(e) = event {
            c.record_audit(e, &outcome, &mut batch);
        }
        c.tree().apply_batch(batch.into_sled()).unwrap();
        outcome
    }

    fn by(name: &str, at: i64, cmd: Command) -> Proposal {
        Proposal {
            at,
            ..Proposal::new(
                Actor::Principal {
                    name: name.into(),
                    via: None,
                },
                format!("req-{at}"),
                cmd,
            )
            .from_client(Some([192, 0, 2, 1].into()))
        }
    }

    fn namespace(name: &str) -> Command {
        Command::CreateNamespace {
            record: NamespaceRecord::for_test(name),
        }
    }

    #[test]
    fn changes_are_recorded_with_who_when_where_and_their_organisation() {
        let c = catalog();
        apply(&c, &by("alice", 1_000, namespace("team")), 1);
        let delete = Command::DeleteNamespace {
            name: "team".into(),
        };
        apply(&c, &by("bob", 2_000, delete.clone()), 2);
        // Deleting it again is refused, and the refusal is recorded too.
        apply(&c, &by("bob", 3_000, delete), 3);
        let events = c.audit_events(0, None, 100).unwrap();
        let seen: Vec<_> = events
            .iter()
            .map(|e| (e.action.as_str(), e.at, e.refused.is_some()))
            .collect();
        assert_eq!(
            seen,
            [
                ("namespace.create", 1_000, false),
                ("namespace.delete", 2_000, false),
                ("namespace.delete", 3_000, true)
            ]
        );
        let deleted = &events[1];
        let org = NamespaceRecord::for_test("team").organisation;
        assert_eq!(
            deleted.organisation.as_deref(),
            Some(org.as_str()),
            "found before it went"
        );
        assert_eq!(deleted.from.as_deref(), Some("192.0.2.1"));
        assert_eq!(deleted.request_id, "req-2000");
        assert_eq!(deleted.index, 2);
    }

    #[test]
    fn bookkeeping_is_not_recorded() {
        let c = catalog();
        let usage = Command::RecordUsage { deltas: vec![] };
        apply(&c, &Proposal::system("usage", usage), 1);
        assert!(c.audit_events(0, None, 100).unwrap().is_empty());
    }

    #[test]
    fn queries_page_from_a_time_or_an_event_and_expiry_removes_the_oldest() {
        let c = catalog();
        for i in 1..=5u64 {
            let p = by("alice", i as i64 * 1_000, namespace(&format!("ns{i}")));
            apply(&c, &p, i);
        }
        let from_3s = c.audit_events(3_000, None, 100).unwrap();
        assert_eq!(
            from_3s.iter().map(|e| e.index).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        let first_two = c.audit_events(0, None, 2).unwrap();
        let after = (first_two[1].at, first_two[1].index);
        let rest = c.audit_events(0, Some(after), 100).unwrap();
        assert_eq!(rest.iter().map(|e| e.index).collect::<Vec<_>>(), [3, 4, 5]);
        let expire = Proposal::system("audit", Command::ExpireAudit { before: 3_000 });
        apply(&c, &expire, 6);
        let left = c.audit_events(0, None, 100).unwrap();
        assert_eq!(left.iter().map(|e| e.index).collect::<Vec<_>>(), [3, 4, 5]);
    }
}
