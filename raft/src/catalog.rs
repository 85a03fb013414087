//! The registry catalogue: the state machine's data, in one sled tree, and the only code that
//! knows its key layout.
//!
//! ```text
//! n/<namespace>                       NamespaceRecord
//! r/<repo>                            (empty)        the repository exists
//! v/<repo>                            Visibility     the repository's own (absent: inherit)
//! q/<namespace>                       Usage          pulls, pushes, bytes served
//! b/<repo>\0<digest>                  u64 BE         blob linked to the repo, its size
//! m/<repo>\0<digest>                  ManifestRecord
//! t/<repo>\0<tag>                     digest
//! s/<repo>\0<subject>\0<digest>       (empty)        referrers index: digest has that subject
//! ~applied, ~membership               Raft bookkeeping, written by `sm` in the same batch
//! ```
//!
//! Identity (`access`), tenancy (`tenancy`), repositories and usage (`repos`) and federated
//! identities (`federation`) keep their own prefixes in the same tree, drawn in their docs.
//!
//! Names never contain `\0`, so keys cannot collide and prefix scans are exact; sled orders
//! keys bytewise, which gives the lexical order the tags and catalogue APIs promise.
//! Applying a command reads first and then writes one atomic `Batch`: the state machine is
//! the only writer and applies entries one at a time, so no transaction is needed.

use serde::{Deserialize, Serialize};
use sled::Tree;

use crate::command::ManifestRecord;
use crate::keys::{self, key};
use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub name: String,
    pub organisation: String,
    /// Set for a project-level namespace.
    pub project: Option<String>,
    /// The region the namespace was created in (the cluster's `--region`).
    pub region: String,
    pub description: Option<String>,
    pub created_at: i64,
    pub visibility: Visibility,
    /// Tags that cannot be moved, deleted, or have their manifest deleted.
    pub immutable: crate::lifecycle::ImmutableTags,
}

impl NamespaceRecord {
    #[cfg(test)]
    pub(crate) fn for_test(name: &str) -> NamespaceRecord {
        NamespaceRecord {
            name: name.into(),
            organisation: "default".into(),
            project: None,
            region: "local".into(),
            description: None,
            created_at: 1,
            visibility: Visibility::Private,
            immutable: Default::default(),
        }
    }
}

/// Who may pull from a namespace without credentials.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Visibility {
    /// Only principals with a role (the default until configured).
    #[default]
    Private,
    /// Anyone, anonymously; pushing still needs a role.
    Public,
}

pub(crate) fn namespace_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("catalogue records always serialise")
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::Corrupt(e.to_string()))
}

/// A snapshot load under way (`Catalog::loading`).
pub(crate) struct Loading(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Drop for Loading {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Read access to the catalogue. Cheap to clone; reads see whole applied commands only.
#[derive(Clone)]
pub struct Catalog {
    tree: Tree,
    /// Counts the changes written to `tree` (`changed`); clones share it.
    version: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Catalog {
    pub fn new(tree: Tree) -> Catalog {
        Catalog {
            tree,
            version: Default::default(),
        }
    }

    /// A number that differs from every earlier one once a change has been written to the
    /// catalogue since: what was derived from it at version V (an authorization decision)
    /// still holds while `version()` is V. Read it *before* deriving, so that a change
    /// written meanwhile makes the result stale rather than wrongly fresh. `None` while a
    /// snapshot is being loaded: the catalogue is then half empty, and nothing derived
    /// from it may be kept.
    pub fn version(&self) -> Option<u64> {
        let v = self.version.load(std::sync::atomic::Ordering::Acquire);
        v.is_multiple_of(2).then_some(v)
    }

    /// Called by the state machine's `apply` after it wrote (the version stays even).
    pub(crate) fn changed(&self) {
        self.version
            .fetch_add(2, std::sync::atomic::Ordering::AcqRel);
    }

    /// Marks the catalogue as being replaced by a snapshot until the guard is dropped: the
    /// version is odd meanwhile (`version` says `None`), and moves on when it ends, however
    /// the install ends.
    pub(crate) fn loading(&self) -> Loading {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Loading(self.version.clone())
    }

    pub(crate) fn tree(&self) -> &Tree {
        &self.tree
    }

    pub(crate) fn has(&self, k: &[u8]) -> Result<bool> {
        Ok(self.tree.contains_key(k)?)
    }

    pub(crate) fn get<T: for<'de> Deserialize<'de>>(&self, k: &[u8]) -> Result<Option<T>> {
        self.tree.get(k)?.map(|v| decode(&v)).transpose()
    }

    pub(crate) fn scan<T: for<'de> Deserialize<'de>>(&self, prefix: &[u8]) -> Result<Vec<T>> {
        self.tree
            .scan_prefix(prefix)
            .map(|kv| decode(&kv?.1))
            .collect()
    }

    pub fn namespace(&self, name: &str) -> Result<Option<NamespaceRecord>> {
        self.get(&key(keys::NAMESPACE, &[name]))
    }

    pub fn namespaces(&self) -> Result<Vec<NamespaceRecord>> {
        self.scan(keys::NAMESPACE.as_bytes())
    }

    pub fn repository_exists(&self, repo: &str) -> Result<bool> {
        self.has(&key(keys::REPOSITORY, &[repo]))
    }

    /// Repositories in lexical order, after `last`, at most `n`.
    pub fn repositories(&self, last: Option<&str>, n: Option<usize>) -> Result<Vec<String>> {
        self.list_after(keys::REPOSITORY.as_bytes().to_vec(), last, n)
    }

    pub fn blob_size(&self, repo: &str, digest: &str) -> Result<Option<u64>> {
        Ok(self
            .tree
            .get(key(keys::BLOB_LINK, &[repo, digest]))?
            .map(|v| {
                let mut be = [0u8; 8];
                be.copy_from_slice(&v[..8]);
                u64::from_be_bytes(be)
            }))
    }

    pub fn manifest(&self, repo: &str, digest: &str) -> Result<Option<ManifestRecord>> {
        self.tree
            .get(key(keys::MANIFEST, &[repo, digest]))?
            .map(|v| decode(&v))
            .transpose()
    }

    pub fn tag(&self, repo: &str, tag: &str) -> Result<Option<String>> {
        Ok(self
            .tree
            .get(key(keys::TAG, &[repo, tag]))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Tags of `repo` in lexical order, after `last`, at most `n`.
    pub fn tags(&self, repo: &str, last: Option<&str>, n: Option<usize>) -> Result<Vec<String>> {
        let mut prefix = key(keys::TAG, &[repo]);
        prefix.push(0);
        self.list_after(prefix, last, n)
    }

    /// Manifests of `repo` whose subject is `subject`, in digest order.
    pub fn referrers(&self, repo: &str, subject: &str) -> Result<Vec<ManifestRecord>> {
        let mut prefix = key(keys::REFERRER, &[repo, subject]);
        prefix.push(0);
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(&prefix) {
            let (k, _) = kv?;
            let digest = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some(m) = self.manifest(repo, &digest)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    fn list_after(
        &self,
        prefix: Vec<u8>,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<Vec<String>> {
        let mut start = prefix.clone();
        if let Some(last) = last {
            start.extend_from_slice(last.as_bytes());
            // The smallest key strictly greater than `last` itself.
            start.push(0);
        }
        let mut out = Vec::new();
        for kv in self.tree.range(start..) {
            if n.is_some_and(|n| out.len() >= n) {
                break;
            }
            let (k, _) = kv?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        Ok(out)
    }

    /// Plans and applies one command atomically (used directly by tests; the state machine
    /// adds its bookkeeping to the same batch).
    #[cfg(test)]
    pub(crate) fn apply(&self, cmd: &crate::Command) -> Result<crate::Outcome> {
        let mut batch = crate::batch::Batch::default();
        let outcome = self.plan(cmd, &mut batch, &mut Vec::new())?;
        self.tree.apply_batch(batch.into_sled())?;
        self.changed();
        Ok(outcome)
    }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
pub(crate) mod tests;
