//! Repositories as the management API sees them (summaries, their own visibility, deletion)
//! and usage per namespace. Keys (`r/`, `v/`, `b/`, `m/`, `t/`, `s/`, `q/`) are drawn in
//! `catalog`'s doc.
//!
//! Usage counts come from every node: each adds what it served since its last report in one
//! `RecordUsage` command, so counting never puts a Raft write on the pull path. Stored bytes
//! are not counted but read from the blob links (each digest once per namespace).

use std::collections::{BTreeMap, HashSet};

use crate::batch::Batch;
use serde::{Deserialize, Serialize};

use crate::catalog::{encode, Catalog, Visibility};
use crate::command::{done, rejected, ManifestRecord, Outcome, Rejection};
use crate::keys::{self, key, under};
use crate::Result;

/// Pulls, pushes and bytes served in a namespace since it was created (each count stops at
/// `u64::MAX` rather than wrap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Manifest GETs (what Docker Hub counts as a pull).
    pub pulls: u64,
    /// Manifest PUTs.
    pub pushes: u64,
    /// Blob and manifest bytes sent to clients.
    pub bytes_out: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDelta {
    pub namespace: String,
    pub usage: Usage,
}

/// One repository at a glance.
#[derive(Clone, Debug, PartialEq)]
pub struct RepoSummary {
    pub name: String,
    pub tags: usize,
    pub manifests: usize,
    /// Bytes of the blobs linked to the repository, plus its manifests.
    pub size: u64,
    pub last_push: Option<i64>,
    /// The repository's own visibility; `None` inherits the namespace's.
    pub visibility: Option<Visibility>,
}

impl Catalog {
    pub fn repository_visibility(&self, repo: &str) -> Result<Option<Visibility>> {
        self.get(&key(keys::REPOSITORY_VISIBILITY, &[repo]))
    }

    /// The repositories of namespace `ns` (`ns` itself, a valid repository name, and
    /// `ns/...`), in lexical order.
    pub fn repositories_in(&self, ns: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if self.repository_exists(ns)? {
            out.push(ns.to_string());
        }
        let mut prefix = key(keys::REPOSITORY, &[ns]);
        prefix.push(b'/');
        for kv in self.tree().scan_prefix(&prefix) {
            out.push(String::from_utf8_lossy(&kv?.0[2..]).into_owned());
        }
        Ok(out)
    }

    /// `(digest, size)` of every blob linked to `repo`.
    pub fn blob_links(&self, repo: &str) -> Result<Vec<(String, u64)>> {
        let prefix = under(keys::BLOB_LINK, &[repo]);
        let mut out = Vec::new();
        for kv in self.tree().scan_prefix(&prefix) {
            let (k, v) = kv?;
            let mut be = [0u8; 8];
            be.copy_from_slice(&v[..8]);
            let digest = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((digest, u64::from_be_bytes(be)));
        }
        Ok(out)
    }

    /// `(digest, size in bytes)` of every manifest of `repo`, in digest order, one record
    /// decoded at a time.
    pub fn manifest_digests(&self, repo: &str) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for kv in self.tree().scan_prefix(under(keys::MANIFEST, &[repo])) {
            let m: ManifestRecord = crate::catalog::decode(&kv?.1)?;
            out.push((m.digest, m.bytes.len() as u64));
        }
        Ok(out)
    }

    /// Every manifest of `repo`, in digest order.
    pub fn manifests_of(&self, repo: &str) -> Result<Vec<ManifestRecord>> {
        self.scan(&under(keys::MANIFEST, &[repo]))
    }

    /// `tag → digest` for every tag of `repo`.
    pub fn tag_map(&self, repo: &str) -> Result<BTreeMap<String, String>> {
        let prefix = under(keys::TAG, &[repo]);
        let mut out = BTreeMap::new();
        for kv in self.tree().scan_prefix(&prefix) {
            let (k, v) = kv?;
            out.insert(
                String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
        Ok(out)
    }

    /// How many tags `repo` has, counted without reading them (a summary of a repository
    /// with 10 000 tags is listed among others).
    pub fn tag_count(&self, repo: &str) -> Result<usize> {
        let mut n = 0;
        for kv in self.tree().scan_prefix(under(keys::TAG, &[repo])) {
            kv?;
            n += 1;
        }
        Ok(n)
    }

    pub fn repository_summary(&self, repo: &str) -> Result<Option<RepoSummary>> {
        if !self.repository_exists(repo)? {
            return Ok(None);
        }
        let manifests = self.manifests_of(repo)?;
        let blobs: u64 = self.blob_links(repo)?.iter().map(|(_, s)| s).sum();
        Ok(Some(RepoSummary {
            name: repo.into(),
            tags: self.tag_count(repo)?,
            manifests: manifests.len(),
            size: blobs + manifests.iter().map(|m| m.bytes.len() as u64).sum::<u64>(),
            last_push: manifests.iter().map(|m| m.pushed_at).max(),
            visibility: self.repository_visibility(repo)?,
        }))
    }

    /// Bytes stored for namespace `ns`: each linked blob once, however many repositories
    /// link it, plus the manifests.
    pub fn stored_bytes(&self, ns: &str) -> Result<u64> {
        let mut seen = HashSet::new();
        let mut total = 0;
        for repo in self.repositories_in(ns)? {
            for (digest, size) in self.blob_links(&repo)? {
                if seen.insert(digest) {
                    total += size;
                }
            }
            for m in self.manifests_of(&repo)? {
                total += m.bytes.len() as u64;
            }
        }
        Ok(total)
    }

    pub fn usage(&self, ns: &str) -> Result<Usage> {
        Ok(self.get(&key(keys::USAGE, &[ns]))?.unwrap_or_default())
    }

    pub(crate) fn set_repository_visibility(
        &self,
        repo: &str,
        visibility: Option<Visibility>,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if !self.repository_exists(repo)? {
            return rejected(Rejection::RepositoryUnknown(repo.into()));
        }
        match visibility {
            Some(v) => batch.insert(key(keys::REPOSITORY_VISIBILITY, &[repo]), encode(&v)),
            None => batch.remove(key(keys::REPOSITORY_VISIBILITY, &[repo])),
        }
        done()
    }

    pub(crate) fn delete_repository(
        &self,
        repo: &str,
        batch: &mut Batch,
        unlinked: &mut Vec<String>,
    ) -> Result<Outcome> {
        if !self.repository_exists(repo)? {
            return rejected(Rejection::RepositoryUnknown(repo.into()));
        }
        for (tag, _) in self.tag_map(repo)? {
            if let Some(rule) = self.immutable_rule(repo, &tag)? {
                return rejected(Rejection::ImmutableTag { tag, rule });
            }
        }
        batch.remove(key(keys::REPOSITORY, &[repo]));
        batch.remove(key(keys::REPOSITORY_VISIBILITY, &[repo]));
        // `repo\0…` only: `repo/sub` is another repository and stays.
        for prefix in &keys::REPOSITORY_CONTENT[2..] {
            let p = under(prefix, &[repo]);
            for kv in self.tree().scan_prefix(&p) {
                let (k, _) = kv?;
                if *prefix == keys::BLOB_LINK {
                    let digest = String::from_utf8_lossy(&k[p.len()..]).into_owned();
                    batch.remove(key(keys::LINKED_IN, &[&digest, repo]));
                    unlinked.push(digest);
                }
                batch.remove(k);
            }
        }
        done()
    }

    pub(crate) fn record_usage(&self, deltas: &[UsageDelta], batch: &mut Batch) -> Result<Outcome> {
        let mut totals: BTreeMap<&str, Usage> = BTreeMap::new();
        for d in deltas {
            if self.namespace(&d.namespace)?.is_none() {
                continue; // deleted since it was counted
            }
            let t = match totals.get(d.namespace.as_str()) {
                Some(t) => *t,
                None => self.usage(&d.namespace)?,
            };
            // Saturating: an overflow would panic (or wrap) on every member that applies
            // the entry.
            totals.insert(
                &d.namespace,
                Usage {
                    pulls: t.pulls.saturating_add(d.usage.pulls),
                    pushes: t.pushes.saturating_add(d.usage.pushes),
                    bytes_out: t.bytes_out.saturating_add(d.usage.bytes_out),
                },
            );
        }
        for (ns, usage) in totals {
            batch.insert(key(keys::USAGE, &[ns]), encode(&usage));
        }
        done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::{catalog, check, contents, fill, link, manifest, ns, unlinking};
    use crate::Command;

    /// Pushes `digest` of `bytes` bytes at time `at`, linking `blobs`, tagged `tag`.
    fn push_at(
        repo: &str,
        digest: &str,
        blobs: &[&str],
        bytes: usize,
        at: i64,
        tag: Option<&str>,
    ) -> Command {
        Command::PutManifest {
            repo: repo.into(),
            manifest: ManifestRecord {
                bytes: vec![b' '; bytes],
                pushed_at: at,
                ..manifest(digest, blobs, None)
            },
            tag: tag.map(Into::into),
        }
    }

    /// Namespace, pulls, pushes, bytes out.
    type Delta<'a> = (&'a str, u64, u64, u64);

    fn record(deltas: &[Delta]) -> Command {
        Command::RecordUsage {
            deltas: deltas
                .iter()
                .map(|&(ns, pulls, pushes, bytes_out)| UsageDelta {
                    namespace: ns.into(),
                    usage: Usage {
                        pulls,
                        pushes,
                        bytes_out,
                    },
                })
                .collect(),
        }
    }

    fn usage(pulls: u64, pushes: u64, bytes_out: u64) -> Usage {
        Usage {
            pulls,
            pushes,
            bytes_out,
        }
    }

    fn apply_all(c: &Catalog, cmds: impl IntoIterator<Item = Command>) {
        for cmd in cmds {
            check(c, cmd, Outcome::Done);
        }
    }

    #[test]
    fn repository_visibility_is_set_and_cleared_on_known_repositories_only() {
        let c = catalog();
        apply_all(&c, [ns("a"), link("a/x", "sha256:b", 1)]);
        let set = |repo: &str, visibility| Command::SetRepositoryVisibility {
            repo: repo.into(),
            visibility,
        };
        check(
            &c,
            set("a/y", Some(Visibility::Public)),
            Outcome::Rejected(Rejection::RepositoryUnknown("a/y".into())),
        );
        assert_eq!(c.repository_visibility("a/x").unwrap(), None, "inherits");
        for visibility in [Some(Visibility::Public), Some(Visibility::Private), None] {
            check(&c, set("a/x", visibility), Outcome::Done);
            assert_eq!(c.repository_visibility("a/x").unwrap(), visibility);
            let summary = c.repository_summary("a/x").unwrap().unwrap();
            assert_eq!(summary.visibility, visibility);
        }
    }

    #[test]
    fn deleting_a_repository_leaves_nested_and_sibling_repositories_and_usage() {
        let c = catalog();
        check(
            &c,
            Command::DeleteRepository { repo: "a/x".into() },
            Outcome::Rejected(Rejection::RepositoryUnknown("a/x".into())),
        );
        check(&c, ns("a"), Outcome::Done);
        for repo in ["a", "a/x/y", "a/x-2", "a/xy"] {
            fill(&c, repo);
        }
        check(&c, record(&[("a", 1, 2, 3)]), Outcome::Done);
        let before = contents(&c);
        fill(&c, "a/x");
        check(&c, link("a/x", "sha256:a/x/y-blob", 4), Outcome::Done);
        let delete = Command::DeleteRepository { repo: "a/x".into() };
        assert_eq!(
            unlinking(&c, &delete),
            ["sha256:a/x-blob", "sha256:a/x/y-blob"],
            "a digest is unlinked from this repository even if others still link it"
        );
        check(&c, delete.clone(), Outcome::Done);
        assert_eq!(contents(&c), before);
        check(
            &c,
            delete,
            Outcome::Rejected(Rejection::RepositoryUnknown("a/x".into())),
        );
    }

    #[test]
    fn recorded_usage_adds_up_per_namespace_and_skips_unknown_namespaces() {
        let c = catalog();
        apply_all(&c, [ns("a"), ns("b")]);
        check(&c, record(&[]), Outcome::Done);
        assert_eq!(c.usage("a").unwrap(), Usage::default());
        let cases: [(&[Delta], Usage, Usage); 3] = [
            (&[("a", 1, 0, 10)], usage(1, 0, 10), Usage::default()),
            // Two nodes' deltas in one command, and a namespace deleted since it was counted.
            (
                &[
                    ("a", 2, 1, 5),
                    ("ghost", 9, 9, 9),
                    ("b", 0, 1, 0),
                    ("a", 1, 0, 1),
                ],
                usage(4, 1, 16),
                usage(0, 1, 0),
            ),
            (&[("b", 3, 0, 7)], usage(4, 1, 16), usage(3, 1, 7)),
        ];
        for (deltas, a, b) in cases {
            check(&c, record(deltas), Outcome::Done);
            assert_eq!(
                (c.usage("a").unwrap(), c.usage("b").unwrap()),
                (a, b),
                "{deltas:?}"
            );
        }
        assert_eq!(c.usage("ghost").unwrap(), Usage::default());
        assert!(
            !contents(&c).contains_key("q/ghost"),
            "no usage is kept for a namespace that does not exist"
        );
    }

    /// Deltas come from members, not clients, but an overflow would panic every member
    /// applying the entry, again on every restart.
    #[test]
    fn recorded_usage_saturates_instead_of_overflowing() {
        let c = catalog();
        check(&c, ns("a"), Outcome::Done);
        check(
            &c,
            record(&[("a", u64::MAX, 1, u64::MAX - 1)]),
            Outcome::Done,
        );
        check(&c, record(&[("a", 1, 1, 2)]), Outcome::Done);
        assert_eq!(c.usage("a").unwrap(), usage(u64::MAX, 2, u64::MAX));
    }

    #[test]
    fn repository_reads_see_only_that_repository() {
        let c = catalog();
        apply_all(
            &c,
            [
                ns("a"),
                link("a/x", "sha256:b1", 10),
                link("a/x", "sha256:b2", 20),
                push_at("a/x", "sha256:m1", &["sha256:b1"], 100, 5, Some("v1")),
                push_at("a/x", "sha256:m2", &["sha256:b2"], 200, 9, Some("latest")),
                // Nested and prefixed neighbours, which must not be counted.
                link("a/x/y", "sha256:b3", 1000),
                push_at("a/x/y", "sha256:m3", &["sha256:b3"], 1, 50, Some("v1")),
                link("a/x-2", "sha256:b4", 1000),
            ],
        );
        assert_eq!(
            c.blob_links("a/x").unwrap(),
            [("sha256:b1".to_string(), 10), ("sha256:b2".to_string(), 20)]
        );
        assert_eq!(
            c.tag_map("a/x").unwrap(),
            BTreeMap::from([
                ("latest".to_string(), "sha256:m2".to_string()),
                ("v1".to_string(), "sha256:m1".to_string()),
            ])
        );
        let digests: Vec<String> = c
            .manifests_of("a/x")
            .unwrap()
            .into_iter()
            .map(|m| m.digest)
            .collect();
        assert_eq!(digests, ["sha256:m1", "sha256:m2"]);
        assert_eq!(
            c.repository_summary("a/x").unwrap(),
            Some(RepoSummary {
                name: "a/x".into(),
                tags: 2,
                manifests: 2,
                size: 10 + 20 + 100 + 200,
                last_push: Some(9),
                visibility: None,
            })
        );
        let only_blobs = c.repository_summary("a/x-2").unwrap().unwrap();
        assert_eq!((only_blobs.size, only_blobs.last_push), (1000, None));
        assert_eq!(c.repository_summary("a/z").unwrap(), None);
        assert!(c.blob_links("a/z").unwrap().is_empty());
        assert!(c.tag_map("a/z").unwrap().is_empty());
        assert!(c.manifests_of("a/z").unwrap().is_empty());
    }

    #[test]
    fn namespace_reads_count_each_blob_once_and_only_their_own_repositories() {
        let c = catalog();
        apply_all(
            &c,
            [
                ns("a"),
                ns("a-2"),
                ns("ab"),
                link("a", "sha256:shared", 10),
                link("a/x", "sha256:shared", 10),
                link("a/x/y", "sha256:shared", 10),
                link("a/x/y", "sha256:own", 5),
                push_at("a/x", "sha256:m1", &["sha256:shared"], 100, 1, None),
                // The same manifest in a second repository is stored (and counted) twice.
                push_at("a/x/y", "sha256:m1", &["sha256:shared"], 100, 1, None),
                link("a-2/x", "sha256:other", 1000),
                link("ab", "sha256:other", 1000),
            ],
        );
        assert_eq!(c.repositories_in("a").unwrap(), ["a", "a/x", "a/x/y"]);
        assert_eq!(c.repositories_in("ab").unwrap(), ["ab"]);
        assert_eq!(c.repositories_in("a-2").unwrap(), ["a-2/x"]);
        assert!(c.repositories_in("ghost").unwrap().is_empty());
        assert_eq!(c.stored_bytes("a").unwrap(), 10 + 5 + 100 + 100);
        assert_eq!(c.stored_bytes("a-2").unwrap(), 1000);
        assert_eq!(c.stored_bytes("ghost").unwrap(), 0);
    }
}
