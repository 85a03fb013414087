//! Repositories as the management API sees them (summaries, their own visibility, deletion)
//! and usage per namespace. Keys (`r/`, `v/`, `b/`, `m/`, `t/`, `s/`, `q/`) are drawn in
//! `catalog`'s doc.
//!
//! Usage counts come from every node: each adds what it served since its last report in one
//! `RecordUsage` command, so counting never puts a Raft write on the pull path. Stored bytes
//! are not counted but read from the blob links (each digest once per namespace).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use sled::Batch;

use crate::catalog::{encode, key, Catalog, Visibility};
use crate::command::{Command, ManifestRecord, Outcome, Rejection};
use crate::Result;

/// Pulls, pushes and bytes served in a namespace since it was created.
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

fn under(prefix: &str, repo: &str) -> Vec<u8> {
    let mut p = key(prefix, &[repo]);
    p.push(0);
    p
}

impl Catalog {
    pub fn repository_visibility(&self, repo: &str) -> Result<Option<Visibility>> {
        self.get(&key("v/", &[repo]))
    }

    /// The repositories of namespace `ns`, in lexical order.
    pub fn repositories_in(&self, ns: &str) -> Result<Vec<String>> {
        let mut prefix = key("r/", &[ns]);
        prefix.push(b'/');
        self.tree()
            .scan_prefix(&prefix)
            .map(|kv| Ok(String::from_utf8_lossy(&kv?.0[2..]).into_owned()))
            .collect()
    }

    /// `(digest, size)` of every blob linked to `repo`.
    pub fn blob_links(&self, repo: &str) -> Result<Vec<(String, u64)>> {
        let prefix = under("b/", repo);
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

    /// Every manifest of `repo`, in digest order.
    pub fn manifests_of(&self, repo: &str) -> Result<Vec<ManifestRecord>> {
        self.scan(&under("m/", repo))
    }

    /// `tag → digest` for every tag of `repo`.
    pub fn tag_map(&self, repo: &str) -> Result<BTreeMap<String, String>> {
        let prefix = under("t/", repo);
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

    pub fn repository_summary(&self, repo: &str) -> Result<Option<RepoSummary>> {
        if !self.repository_exists(repo)? {
            return Ok(None);
        }
        let manifests = self.manifests_of(repo)?;
        let blobs: u64 = self.blob_links(repo)?.iter().map(|(_, s)| s).sum();
        Ok(Some(RepoSummary {
            name: repo.into(),
            tags: self.tag_map(repo)?.len(),
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
        Ok(self.get(&key("q/", &[ns]))?.unwrap_or_default())
    }

    pub(crate) fn plan_repos(
        &self,
        cmd: &Command,
        batch: &mut Batch,
        unlinked: &mut Vec<String>,
    ) -> Result<Option<Outcome>> {
        let reject = |r| Ok(Some(Outcome::Rejected(r)));
        match cmd {
            Command::SetRepositoryVisibility { repo, visibility } => {
                if !self.repository_exists(repo)? {
                    return reject(Rejection::RepositoryUnknown(repo.clone()));
                }
                match visibility {
                    Some(v) => batch.insert(key("v/", &[repo]), encode(v)),
                    None => batch.remove(key("v/", &[repo])),
                }
            }
            Command::DeleteRepository { repo } => {
                if !self.repository_exists(repo)? {
                    return reject(Rejection::RepositoryUnknown(repo.clone()));
                }
                batch.remove(key("r/", &[repo]));
                batch.remove(key("v/", &[repo]));
                // `repo\0…` only: `repo/sub` is another repository and stays.
                for prefix in ["b/", "m/", "t/", "s/"] {
                    let p = under(prefix, repo);
                    for kv in self.tree().scan_prefix(&p) {
                        let (k, _) = kv?;
                        if prefix == "b/" {
                            unlinked.push(String::from_utf8_lossy(&k[p.len()..]).into_owned());
                        }
                        batch.remove(k);
                    }
                }
            }
            Command::RecordUsage { deltas } => {
                let mut totals: BTreeMap<&str, Usage> = BTreeMap::new();
                for d in deltas {
                    if self.namespace(&d.namespace)?.is_none() {
                        continue; // deleted since it was counted
                    }
                    let t = match totals.get(d.namespace.as_str()) {
                        Some(t) => *t,
                        None => self.usage(&d.namespace)?,
                    };
                    totals.insert(
                        &d.namespace,
                        Usage {
                            pulls: t.pulls + d.usage.pulls,
                            pushes: t.pushes + d.usage.pushes,
                            bytes_out: t.bytes_out + d.usage.bytes_out,
                        },
                    );
                }
                for (ns, usage) in totals {
                    batch.insert(key("q/", &[ns]), encode(&usage));
                }
            }
            _ => return Ok(None),
        }
        Ok(Some(Outcome::Done))
    }
}
