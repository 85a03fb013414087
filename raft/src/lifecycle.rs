//! What keeping storage in check needs in the catalogue: reverse indexes, leases, tombstones,
//! tag and pull times, retention policies, tag immutability, and the garbage collector's
//! state; and the planners of the commands that collect.
//!
//! ```text
//! d/<digest>\0<repo>                  (empty)      repo links digest (reverse of b/)
//! e/<repo>\0<digest>\0<manifest>      (empty)      manifest lists digest (a blob or a child)
//! a/<repo>\0<digest>\0<tag>           (empty)      tag points at digest (reverse of t/)
//! i/<repo>\0<tag>                     TagTimes     when the tag was last pushed and pulled
//! w/<repo>\0<digest>                  i64          when the manifest was last pulled
//! h/<repo>\0<digest>                  i64          lease: when the blob link or manifest was
//!                                                  last written or touched by a pusher
//! j/<digest>                          i64          tombstone: the digest's bytes are being
//!                                                  deleted from the origin since then
//! z/<namespace>                       RetentionPolicy
//! ~gc                                 GcStatus
//! ```
//!
//! Collecting never races a push, because every decision is checked again here, in the
//! order of the log, against the state the push left:
//! - a manifest is collected only if no tag points at it, every manifest listing it is
//!   collected with it, its subject (if any) is gone or collected with it, and its lease is
//!   older than the grace period;
//! - a blob link is collected only if no manifest of its repository lists it and its lease
//!   is older than the grace period (an upload, a mount, a re-upload and a HEAD by a pusher
//!   renew it);
//! - a digest's bytes are deleted from the origin only under a tombstone, which is written
//!   only while no repository links the digest, and while it stands no link to the digest
//!   is committed (`BlobBeingCollected`). So a push finishing the digest at that moment ends
//!   with an error to its client, never with a link whose bytes are gone.

use std::collections::{BTreeMap, BTreeSet};

use crate::batch::Batch;
use serde::{Deserialize, Serialize};

use crate::catalog::{decode, encode, Catalog};
use crate::command::{done, rejected, Outcome, Rejection};
use crate::keys::{self, key, under};
use crate::Result;

/// When a tag was last pushed (pointed at a manifest) and last pulled by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagTimes {
    pub pushed_at: i64,
    pub pulled_at: Option<i64>,
}

/// A pull counted on a node, reported in a batch (`RecordPulls`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pulled {
    pub repo: String,
    pub digest: String,
    /// The tag the manifest was pulled by, if it was.
    pub tag: Option<String>,
    pub at: i64,
}

/// Which tags of a namespace stay: a tag that no rule keeps is deleted by retention, then
/// the garbage collector reclaims what it leaves. Rules combine with OR; the conditions of
/// one rule with AND.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Repositories the policy covers (globs on the full name, `team/**`); none: all.
    pub repositories: Vec<String>,
    pub rules: Vec<KeepRule>,
}

/// One keep rule. A tag (or, with `untagged`, a manifest no tag points at) is kept by the
/// rule when it matches a pattern (any, when none is given), no exclusion, and every
/// condition given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepRule {
    /// The rule is about untagged manifests, not tags (patterns do not apply).
    pub untagged: bool,
    pub tags: Vec<String>,
    pub tags_regex: Vec<String>,
    pub exclude: Vec<String>,
    pub exclude_regex: Vec<String>,
    /// Among what the rest of the rule selects, the N most recently pushed.
    pub newest_pushed: Option<u32>,
    /// Among what the rest of the rule selects, the N most recently pulled.
    pub newest_pulled: Option<u32>,
    /// Pushed within this many seconds.
    pub pushed_within: Option<u64>,
    /// Pulled within this many seconds.
    pub pulled_within: Option<u64>,
}

/// Tags that can never move to another digest, be deleted, or have their manifest deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImmutableTags {
    /// Patterns (`v*`); a tag matching one and no exclusion is immutable.
    pub patterns: Vec<String>,
    pub exclude: Vec<String>,
}

impl ImmutableTags {
    /// The pattern that makes `tag` immutable, if one does (`*` any run of characters, `?`
    /// one character).
    pub fn rule_for(&self, tag: &str) -> Option<&str> {
        let matches = |p: &String| wildmatch::WildMatch::new(p).matches(tag);
        if self.exclude.iter().any(matches) {
            return None;
        }
        self.patterns
            .iter()
            .find(|p| matches(p))
            .map(String::as_str)
    }
}

/// The garbage collector's state, replicated so that `shoal gc status` answers on every
/// node and a new leader knows what was asked of the old one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcStatus {
    /// A run asked for (`shoal gc run`) and not started yet: when it was asked.
    pub requested_at: Option<i64>,
    /// The run under way: when it started, and what it is doing.
    pub running: Option<GcRun>,
    /// The last run that finished.
    pub last: Option<GcRun>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcRun {
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// What it is doing (`manifests`, `blob links`, `origin`), or how it ended.
    pub phase: String,
    pub manifests: u64,
    pub blob_links: u64,
    pub blobs_deleted: u64,
    pub bytes_reclaimed: u64,
    /// Candidates left alone because their lease was younger than the grace period.
    pub protected: u64,
    pub error: Option<String>,
}

impl Catalog {
    /// The repositories that link `digest`.
    pub fn linked_in(&self, digest: &str) -> Result<Vec<String>> {
        let prefix = under(keys::LINKED_IN, &[digest]);
        self.tree()
            .scan_prefix(&prefix)
            .map(|kv| Ok(String::from_utf8_lossy(&kv?.0[prefix.len()..]).into_owned()))
            .collect()
    }

    fn is_linked_anywhere(&self, digest: &str) -> Result<bool> {
        Ok(self
            .tree()
            .scan_prefix(under(keys::LINKED_IN, &[digest]))
            .next()
            .transpose()?
            .is_some())
    }

    /// The manifests of `repo` that list `digest` (as a blob or a child manifest).
    pub fn referenced_by(&self, repo: &str, digest: &str) -> Result<Vec<String>> {
        let prefix = under(keys::REFERENCED_BY, &[repo, digest]);
        self.tree()
            .scan_prefix(&prefix)
            .map(|kv| Ok(String::from_utf8_lossy(&kv?.0[prefix.len()..]).into_owned()))
            .collect()
    }

    /// The tags of `repo` that point at `digest`.
    pub fn tags_of(&self, repo: &str, digest: &str) -> Result<Vec<String>> {
        let prefix = under(keys::TAGGED_AS, &[repo, digest]);
        self.tree()
            .scan_prefix(&prefix)
            .map(|kv| Ok(String::from_utf8_lossy(&kv?.0[prefix.len()..]).into_owned()))
            .collect()
    }

    fn is_tagged(&self, repo: &str, digest: &str) -> Result<bool> {
        Ok(self
            .tree()
            .scan_prefix(under(keys::TAGGED_AS, &[repo, digest]))
            .next()
            .transpose()?
            .is_some())
    }

    pub fn tag_times(&self, repo: &str, tag: &str) -> Result<TagTimes> {
        Ok(self
            .get(&key(keys::TAG_TIMES, &[repo, tag]))?
            .unwrap_or_default())
    }

    /// Every tag's times in `repo`, by tag name, in one scan (the console sorts a page of
    /// 10 000 tags by push time).
    pub fn tag_times_in(&self, repo: &str) -> Result<Vec<(String, TagTimes)>> {
        let prefix = keys::under(keys::TAG_TIMES, &[repo]);
        let mut out = Vec::new();
        for entry in self.tree().scan_prefix(&prefix) {
            let (k, v) = entry?;
            let tag = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((tag, crate::catalog::decode(&v)?));
        }
        Ok(out)
    }

    pub fn manifest_pulled_at(&self, repo: &str, digest: &str) -> Result<Option<i64>> {
        self.get(&key(keys::MANIFEST_PULLED, &[repo, digest]))
    }

    /// When the blob link or manifest `digest` of `repo` was last written or touched (0 for
    /// what predates leases).
    pub fn lease(&self, repo: &str, digest: &str) -> Result<i64> {
        Ok(self.get(&key(keys::LEASE, &[repo, digest]))?.unwrap_or(0))
    }

    /// Digests whose bytes are being deleted from the origin, with since when.
    pub fn tombstones(&self) -> Result<Vec<(String, i64)>> {
        self.tree()
            .scan_prefix(keys::TOMBSTONE.as_bytes())
            .map(|kv| {
                let (k, v) = kv?;
                let digest = String::from_utf8_lossy(&k[keys::TOMBSTONE.len()..]).into_owned();
                Ok((digest, decode(&v)?))
            })
            .collect()
    }

    pub fn tombstone(&self, digest: &str) -> Result<Option<i64>> {
        self.get(&key(keys::TOMBSTONE, &[digest]))
    }

    pub fn retention(&self, namespace: &str) -> Result<Option<RetentionPolicy>> {
        self.get(&key(keys::RETENTION, &[namespace]))
    }

    pub fn gc_status(&self) -> Result<GcStatus> {
        Ok(self.get(keys::GC_STATUS)?.unwrap_or_default())
    }

    /// The rule that makes `tag` of `repo` immutable, if one does.
    pub fn immutable_rule(&self, repo: &str, tag: &str) -> Result<Option<String>> {
        let ns = crate::catalog::namespace_of(repo);
        Ok(self
            .namespace(ns)?
            .and_then(|n| n.immutable.rule_for(tag).map(str::to_string)))
    }

    /// Fails with `ImmutableTag` when a tag of `digest` in `repo` is immutable.
    pub(crate) fn no_immutable_tag_on(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Option<Rejection>> {
        for tag in self.tags_of(repo, digest)? {
            if let Some(rule) = self.immutable_rule(repo, &tag)? {
                return Ok(Some(Rejection::ImmutableTag { tag, rule }));
            }
        }
        Ok(None)
    }

    pub(crate) fn touch_content(
        &self,
        repo: &str,
        digests: &[String],
        at: i64,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        for d in digests {
            let linked = self.has(&key(keys::BLOB_LINK, &[repo, d]))?;
            let manifest = self.has(&key(keys::MANIFEST, &[repo, d]))?;
            if (linked || manifest) && self.lease(repo, d)? < at {
                batch.insert(key(keys::LEASE, &[repo, d]), encode(&at));
            }
        }
        done()
    }

    pub(crate) fn record_pulls(&self, pulls: &[Pulled], batch: &mut Batch) -> Result<Outcome> {
        // The latest time per manifest and per tag first: the batch is written at the end,
        // so two pulls of one manifest must not each compare with the stored time alone.
        let mut manifests: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        let mut tags: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for p in pulls {
            if !self.has(&key(keys::MANIFEST, &[&p.repo, &p.digest]))? {
                continue; // deleted since it was pulled
            }
            let t = manifests.entry((&p.repo, &p.digest)).or_insert(p.at);
            *t = (*t).max(p.at);
            let Some(tag) = &p.tag else { continue };
            if self.tag(&p.repo, tag)?.as_deref() != Some(p.digest.as_str()) {
                continue; // the tag moved since
            }
            let t = tags.entry((&p.repo, tag)).or_insert(p.at);
            *t = (*t).max(p.at);
        }
        for ((repo, digest), at) in manifests {
            let k = key(keys::MANIFEST_PULLED, &[repo, digest]);
            if self.get::<i64>(&k)?.is_none_or(|t| t < at) {
                batch.insert(k, encode(&at));
            }
        }
        for ((repo, tag), at) in tags {
            let mut times = self.tag_times(repo, tag)?;
            if times.pulled_at.is_none_or(|t| t < at) {
                times.pulled_at = Some(at);
                batch.insert(key(keys::TAG_TIMES, &[repo, tag]), encode(&times));
            }
        }
        done()
    }

    fn old(&self, repo: &str, digest: &str, now: i64, grace: i64) -> Result<bool> {
        Ok(self.lease(repo, digest)?.saturating_add(grace) < now)
    }

    pub(crate) fn collect_manifests(
        &self,
        repo: &str,
        digests: &[String],
        now: i64,
        grace: i64,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        let going: BTreeSet<&str> = digests.iter().map(String::as_str).collect();
        let mut dropped = Vec::new();
        for d in digests {
            let Some(m) = self.manifest(repo, d)? else {
                continue;
            };
            if self.is_tagged(repo, d)? || !self.old(repo, d, now, grace)? {
                continue;
            }
            let listed_by = self.referenced_by(repo, d)?;
            if listed_by.iter().any(|by| !going.contains(by.as_str())) {
                continue;
            }
            let subject_stays = match m.subject.as_deref() {
                Some(s) if !going.contains(s) => self.has(&key(keys::MANIFEST, &[repo, s]))?,
                _ => false,
            };
            if subject_stays {
                continue;
            }
            self.drop_manifest(repo, &m, batch)?;
            dropped.push(m);
        }
        self.end_orphaned_promises(repo, &dropped, batch)?;
        done()
    }

    /// Removes manifest `m` of `repo` with its indexes (not its tags: callers check or
    /// remove those).
    pub(crate) fn drop_manifest(
        &self,
        repo: &str,
        m: &crate::ManifestRecord,
        batch: &mut Batch,
    ) -> Result<()> {
        batch.remove(key(keys::MANIFEST, &[repo, &m.digest]));
        if let Some(subject) = &m.subject {
            batch.remove(key(keys::REFERRER, &[repo, subject, &m.digest]));
        }
        for r in m.blobs.iter().chain(&m.manifests) {
            batch.remove(key(keys::REFERENCED_BY, &[repo, r, &m.digest]));
        }
        batch.remove(key(keys::LEASE, &[repo, &m.digest]));
        batch.remove(key(keys::MANIFEST_PULLED, &[repo, &m.digest]));
        Ok(())
    }

    pub(crate) fn collect_blobs(
        &self,
        repo: &str,
        digests: &[String],
        now: i64,
        grace: i64,
        batch: &mut Batch,
        unlinked: &mut Vec<String>,
    ) -> Result<Outcome> {
        for d in digests {
            if !self.has(&key(keys::BLOB_LINK, &[repo, d]))? {
                continue;
            }
            if !self.referenced_by(repo, d)?.is_empty() || !self.old(repo, d, now, grace)? {
                continue;
            }
            self.drop_link(repo, d, batch);
            unlinked.push(d.clone());
        }
        done()
    }

    /// Removes blob link `digest` of `repo` with its reverse index entry and lease.
    pub(crate) fn drop_link(&self, repo: &str, digest: &str, batch: &mut Batch) {
        batch.remove(key(keys::BLOB_LINK, &[repo, digest]));
        batch.remove(key(keys::LINKED_IN, &[digest, repo]));
        batch.remove(key(keys::LEASE, &[repo, digest]));
    }

    pub(crate) fn condemn_digests(
        &self,
        digests: &[String],
        now: i64,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        for d in digests {
            if self.is_linked_anywhere(d)? || self.tombstone(d)?.is_some() {
                continue;
            }
            batch.insert(key(keys::TOMBSTONE, &[d]), encode(&now));
        }
        done()
    }

    pub(crate) fn forget_digests(&self, digests: &[String], batch: &mut Batch) -> Result<Outcome> {
        for d in digests {
            batch.remove(key(keys::TOMBSTONE, &[d]));
        }
        done()
    }

    pub(crate) fn set_retention(
        &self,
        namespace: &str,
        policy: Option<&RetentionPolicy>,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if self.namespace(namespace)?.is_none() {
            return rejected(Rejection::NamespaceUnknown(namespace.into()));
        }
        match policy {
            Some(p) => batch.insert(key(keys::RETENTION, &[namespace]), encode(p)),
            None => batch.remove(key(keys::RETENTION, &[namespace])),
        }
        done()
    }

    /// Deletes each tag that still points at the digest retention saw and is not immutable;
    /// the others stay (a push moved them, or a rule now protects them).
    pub(crate) fn retain_tags(
        &self,
        repo: &str,
        delete: &[(String, String)],
        batch: &mut Batch,
    ) -> Result<Outcome> {
        for (tag, digest) in delete {
            if self.tag(repo, tag)?.as_deref() != Some(digest.as_str()) {
                continue;
            }
            if self.immutable_rule(repo, tag)?.is_some() {
                continue;
            }
            self.drop_tag(repo, tag, digest, batch);
        }
        done()
    }

    /// Removes tag `tag` (pointing at `digest`) of `repo` with its reverse entry and times.
    pub(crate) fn drop_tag(&self, repo: &str, tag: &str, digest: &str, batch: &mut Batch) {
        batch.remove(key(keys::TAG, &[repo, tag]));
        batch.remove(key(keys::TAGGED_AS, &[repo, digest, tag]));
        batch.remove(key(keys::TAG_TIMES, &[repo, tag]));
        batch.remove(key(keys::TAG_CHECKED, &[repo, tag]));
    }

    pub(crate) fn request_gc(&self, at: i64, batch: &mut Batch) -> Result<Outcome> {
        let mut status = self.gc_status()?;
        status.requested_at.get_or_insert(at);
        batch.insert(keys::GC_STATUS, encode(&status));
        done()
    }

    /// Records the collector's progress: `running` set while it works (clearing the
    /// request it answers), `last` when it finished.
    pub(crate) fn record_gc(&self, run: &GcRun, batch: &mut Batch) -> Result<Outcome> {
        let mut status = self.gc_status()?;
        if status
            .requested_at
            .is_some_and(|asked| asked <= run.started_at)
        {
            status.requested_at = None;
        }
        if run.finished_at.is_some() {
            status.running = None;
            status.last = Some(run.clone());
        } else {
            status.running = Some(run.clone());
        }
        batch.insert(keys::GC_STATUS, encode(&status));
        done()
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
