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
use sled::{Batch, Tree};

use crate::command::{Command, ManifestRecord, Outcome, Rejection};
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

pub(crate) fn key(prefix: &str, parts: &[&str]) -> Vec<u8> {
    let mut k = prefix.as_bytes().to_vec();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
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

/// Read access to the catalogue. Cheap to clone; reads see whole applied commands only.
#[derive(Clone)]
pub struct Catalog {
    tree: Tree,
}

impl Catalog {
    pub fn new(tree: Tree) -> Catalog {
        Catalog { tree }
    }

    pub(crate) fn tree(&self) -> &Tree {
        &self.tree
    }

    fn has(&self, k: &[u8]) -> Result<bool> {
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
        self.get(&key("n/", &[name]))
    }

    pub fn namespaces(&self) -> Result<Vec<NamespaceRecord>> {
        self.scan(b"n/")
    }

    pub fn repository_exists(&self, repo: &str) -> Result<bool> {
        self.has(&key("r/", &[repo]))
    }

    /// Repositories in lexical order, after `last`, at most `n`.
    pub fn repositories(&self, last: Option<&str>, n: Option<usize>) -> Result<Vec<String>> {
        self.list_after(b"r/".to_vec(), last, n)
    }

    pub fn blob_size(&self, repo: &str, digest: &str) -> Result<Option<u64>> {
        Ok(self.tree.get(key("b/", &[repo, digest]))?.map(|v| {
            let mut be = [0u8; 8];
            be.copy_from_slice(&v[..8]);
            u64::from_be_bytes(be)
        }))
    }

    pub fn manifest(&self, repo: &str, digest: &str) -> Result<Option<ManifestRecord>> {
        self.tree
            .get(key("m/", &[repo, digest]))?
            .map(|v| decode(&v))
            .transpose()
    }

    pub fn tag(&self, repo: &str, tag: &str) -> Result<Option<String>> {
        Ok(self
            .tree
            .get(key("t/", &[repo, tag]))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Tags of `repo` in lexical order, after `last`, at most `n`.
    pub fn tags(&self, repo: &str, last: Option<&str>, n: Option<usize>) -> Result<Vec<String>> {
        let mut prefix = key("t/", &[repo]);
        prefix.push(0);
        self.list_after(prefix, last, n)
    }

    /// Manifests of `repo` whose subject is `subject`, in digest order.
    pub fn referrers(&self, repo: &str, subject: &str) -> Result<Vec<ManifestRecord>> {
        let mut prefix = key("s/", &[repo, subject]);
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

    /// Works out what `cmd` changes, without changing anything: the writes go into `batch`,
    /// and the digests it unlinks from a repository into `unlinked`.
    pub(crate) fn plan(
        &self,
        cmd: &Command,
        batch: &mut Batch,
        unlinked: &mut Vec<String>,
    ) -> Result<Outcome> {
        if let Some(outcome) = self.plan_access(cmd, batch)? {
            return Ok(outcome);
        }
        if let Some(outcome) = self.plan_tenancy(cmd, batch)? {
            return Ok(outcome);
        }
        if let Some(outcome) = self.plan_federation(cmd, batch)? {
            return Ok(outcome);
        }
        if let Some(outcome) = self.plan_repos(cmd, batch, unlinked)? {
            return Ok(outcome);
        }
        let reject = |r| Ok(Outcome::Rejected(r));
        match cmd {
            Command::CreateNamespace { record } => {
                if self.namespace(&record.name)?.is_some() {
                    return reject(Rejection::NamespaceExists(record.name.clone()));
                }
                if self.organisation(&record.organisation)?.is_none() {
                    return reject(Rejection::OrganisationUnknown(record.organisation.clone()));
                }
                if let Some(p) = &record.project {
                    if self.project(&record.organisation, p)?.is_none() {
                        return reject(Rejection::ProjectUnknown(p.clone()));
                    }
                }
                batch.insert(key("n/", &[&record.name]), encode(record));
            }
            Command::SetVisibility {
                namespace,
                visibility,
            } => {
                let Some(mut rec) = self.namespace(namespace)? else {
                    return reject(Rejection::NamespaceUnknown(namespace.clone()));
                };
                rec.visibility = *visibility;
                batch.insert(key("n/", &[namespace]), encode(&rec));
            }
            Command::DeleteNamespace { name } => {
                if self.namespace(name)?.is_none() {
                    return reject(Rejection::NamespaceUnknown(name.clone()));
                }
                batch.remove(key("n/", &[name]));
                batch.remove(key("q/", &[name]));
                // Repositories of `name` are `name` itself and `name/...`: the `\0` or `/`
                // after the name keeps `name-2` out.
                batch.remove(key("r/", &[name]));
                batch.remove(key("v/", &[name]));
                for prefix in ["r/", "v/", "b/", "m/", "t/", "s/"] {
                    for sep in [0, b'/'] {
                        let mut p = key(prefix, &[name]);
                        p.push(sep);
                        for kv in self.tree.scan_prefix(&p) {
                            let (k, _) = kv?;
                            if prefix == "b/" {
                                if let Some(d) = k.rsplit(|b| *b == 0).next() {
                                    unlinked.push(String::from_utf8_lossy(d).into_owned());
                                }
                            }
                            batch.remove(k);
                        }
                    }
                }
                self.unbind_scope(&crate::RoleScope::Namespace(name.clone()), batch)?;
                self.drop_restricted_to(name, batch)?;
            }
            Command::LinkBlob { repo, digest, size } => {
                if !self.has(&key("n/", &[namespace_of(repo)]))? {
                    return reject(Rejection::NamespaceUnknown(namespace_of(repo).into()));
                }
                batch.insert(key("r/", &[repo]), Vec::new());
                batch.insert(key("b/", &[repo, digest]), size.to_be_bytes().to_vec());
            }
            Command::UnlinkBlob { repo, digest } => {
                let k = key("b/", &[repo, digest]);
                if !self.has(&k)? {
                    return reject(Rejection::BlobUnknown(digest.clone()));
                }
                batch.remove(k);
                unlinked.push(digest.clone());
            }
            Command::PutManifest {
                repo,
                manifest,
                tag,
            } => {
                if !self.has(&key("n/", &[namespace_of(repo)]))? {
                    return reject(Rejection::NamespaceUnknown(namespace_of(repo).into()));
                }
                for b in &manifest.blobs {
                    if !self.has(&key("b/", &[repo, b]))? {
                        return reject(Rejection::ReferencedBlobUnknown(b.clone()));
                    }
                }
                for m in &manifest.manifests {
                    if !self.has(&key("m/", &[repo, m]))? && m != &manifest.digest {
                        return reject(Rejection::ReferencedManifestUnknown(m.clone()));
                    }
                }
                batch.insert(key("r/", &[repo]), Vec::new());
                batch.insert(key("m/", &[repo, &manifest.digest]), encode(manifest));
                if let Some(subject) = &manifest.subject {
                    batch.insert(key("s/", &[repo, subject, &manifest.digest]), Vec::new());
                }
                if let Some(tag) = tag {
                    batch.insert(key("t/", &[repo, tag]), manifest.digest.as_bytes());
                }
            }
            Command::DeleteTag { repo, tag } => {
                let k = key("t/", &[repo, tag]);
                if !self.has(&k)? {
                    return reject(Rejection::TagUnknown(tag.clone()));
                }
                batch.remove(k);
            }
            Command::DeleteManifest { repo, digest } => {
                let Some(m) = self.manifest(repo, digest)? else {
                    return reject(Rejection::ManifestUnknown(digest.clone()));
                };
                batch.remove(key("m/", &[repo, digest]));
                if let Some(subject) = &m.subject {
                    batch.remove(key("s/", &[repo, subject, digest]));
                }
                let mut tags = key("t/", &[repo]);
                tags.push(0);
                for kv in self.tree.scan_prefix(&tags) {
                    let (k, v) = kv?;
                    if v.as_ref() == digest.as_bytes() {
                        batch.remove(k);
                    }
                }
            }
            _ => {
                unreachable!("planned by plan_access, plan_tenancy, plan_federation or plan_repos")
            }
        }
        Ok(Outcome::Done)
    }

    /// Plans and applies one command atomically (used directly by tests; the state machine
    /// adds its bookkeeping to the same batch).
    #[cfg(test)]
    pub(crate) fn apply(&self, cmd: &Command) -> Result<Outcome> {
        let mut batch = Batch::default();
        let outcome = self.plan(cmd, &mut batch, &mut Vec::new())?;
        self.tree.apply_batch(batch)?;
        Ok(outcome)
    }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
pub(crate) mod tests;
