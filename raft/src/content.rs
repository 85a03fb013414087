//! Planning the commands on namespaces and their content: namespaces, blob links, manifests
//! (with the referrers index) and tags. The keys are drawn in `catalog`'s doc; the reverse
//! indexes, leases and tag times these commands keep in the same batch in `lifecycle`'s.

use crate::batch::Batch;

use crate::catalog::{encode, namespace_of, Catalog, NamespaceRecord};
use crate::command::{done, rejected, ManifestRecord, Outcome, Rejection};
use crate::keys::{self, key};
use crate::Result;

impl Catalog {
    pub(crate) fn create_namespace(
        &self,
        record: &NamespaceRecord,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if self.namespace(&record.name)?.is_some() {
            return rejected(Rejection::NamespaceExists(record.name.clone()));
        }
        if self.organisation(&record.organisation)?.is_none() {
            return rejected(Rejection::OrganisationUnknown(record.organisation.clone()));
        }
        if let Some(p) = &record.project {
            if self.project(&record.organisation, p)?.is_none() {
                return rejected(Rejection::ProjectUnknown(p.clone()));
            }
        }
        batch.insert(key(keys::NAMESPACE, &[&record.name]), encode(record));
        done()
    }

    /// Rewrites namespace `namespace`'s record as `change` leaves it (its visibility,
    /// description, immutable tags); rejected for a namespace that does not exist.
    pub(crate) fn update_namespace(
        &self,
        namespace: &str,
        batch: &mut Batch,
        change: impl FnOnce(&mut NamespaceRecord),
    ) -> Result<Outcome> {
        let Some(mut rec) = self.namespace(namespace)? else {
            return rejected(Rejection::NamespaceUnknown(namespace.into()));
        };
        change(&mut rec);
        batch.insert(key(keys::NAMESPACE, &[namespace]), encode(&rec));
        done()
    }

    pub(crate) fn delete_namespace(
        &self,
        name: &str,
        batch: &mut Batch,
        unlinked: &mut Vec<String>,
    ) -> Result<Outcome> {
        if self.namespace(name)?.is_none() {
            return rejected(Rejection::NamespaceUnknown(name.into()));
        }
        batch.remove(key(keys::NAMESPACE, &[name]));
        batch.remove(key(keys::USAGE, &[name]));
        // Repositories of `name` are `name` itself and `name/...`: the `\0` or `/` after the
        // name keeps `name-2` out.
        batch.remove(key(keys::REPOSITORY, &[name]));
        batch.remove(key(keys::REPOSITORY_VISIBILITY, &[name]));
        batch.remove(key(keys::RETENTION, &[name]));
        batch.remove(key(keys::UPSTREAM, &[name]));
        for prefix in keys::REPOSITORY_CONTENT {
            for sep in [0, b'/'] {
                let mut p = key(prefix, &[name]);
                p.push(sep);
                for kv in self.tree().scan_prefix(&p) {
                    let (k, _) = kv?;
                    if prefix == keys::BLOB_LINK {
                        let (repo, digest) = split_link(&k);
                        batch.remove(key(keys::LINKED_IN, &[&digest, &repo]));
                        unlinked.push(digest);
                    }
                    batch.remove(k);
                }
            }
        }
        self.unbind_scope(&crate::RoleScope::Namespace(name.into()), batch)?;
        self.drop_restricted_to(name, batch)?;
        done()
    }

    pub(crate) fn link_blob(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        upload: Option<&str>,
        at: i64,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if !self.has(&key(keys::NAMESPACE, &[namespace_of(repo)]))? {
            return rejected(Rejection::NamespaceUnknown(namespace_of(repo).into()));
        }
        if self.tombstone(digest)?.is_some() {
            return rejected(Rejection::BlobBeingCollected(digest.into()));
        }
        batch.insert(key(keys::REPOSITORY, &[repo]), Vec::new());
        batch.insert(
            key(keys::BLOB_LINK, &[repo, digest]),
            size.to_be_bytes().to_vec(),
        );
        batch.insert(key(keys::LINKED_IN, &[digest, repo]), Vec::new());
        batch.insert(key(keys::LEASE, &[repo, digest]), encode(&at));
        // A mirrored blob's promise ends where its link begins (`mirror`).
        batch.remove(key(keys::PROMISED_BLOB, &[repo, digest]));
        if let Some(id) = upload {
            self.drop_upload(id, batch)?;
        }
        done()
    }

    pub(crate) fn unlink_blob(
        &self,
        repo: &str,
        digest: &str,
        batch: &mut Batch,
        unlinked: &mut Vec<String>,
    ) -> Result<Outcome> {
        if !self.has(&key(keys::BLOB_LINK, &[repo, digest]))? {
            return rejected(Rejection::BlobUnknown(digest.into()));
        }
        self.drop_link(repo, digest, batch);
        unlinked.push(digest.into());
        done()
    }

    pub(crate) fn put_manifest(
        &self,
        repo: &str,
        manifest: &ManifestRecord,
        tag: Option<&str>,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if !self.has(&key(keys::NAMESPACE, &[namespace_of(repo)]))? {
            return rejected(Rejection::NamespaceUnknown(namespace_of(repo).into()));
        }
        for b in &manifest.blobs {
            if !self.has(&key(keys::BLOB_LINK, &[repo, b]))? {
                return rejected(Rejection::ReferencedBlobUnknown(b.clone()));
            }
        }
        for m in &manifest.manifests {
            if !self.has(&key(keys::MANIFEST, &[repo, m]))? && m != &manifest.digest {
                return rejected(Rejection::ReferencedManifestUnknown(m.clone()));
            }
        }
        if let Some(r) = self.moving_immutable_tag(repo, &manifest.digest, tag)? {
            return rejected(r);
        }
        self.store_manifest(repo, manifest, tag, batch)?;
        done()
    }

    /// The refusal for pointing `tag` of `repo` at `digest` when it points elsewhere now
    /// and is immutable.
    pub(crate) fn moving_immutable_tag(
        &self,
        repo: &str,
        digest: &str,
        tag: Option<&str>,
    ) -> Result<Option<Rejection>> {
        let Some(t) = tag else { return Ok(None) };
        if self.tag(repo, t)?.is_none_or(|d| d == digest) {
            return Ok(None);
        }
        Ok(self
            .immutable_rule(repo, t)?
            .map(|rule| Rejection::ImmutableTag {
                tag: t.into(),
                rule,
            }))
    }

    /// Writes a manifest with its indexes and lease, and points `tag` at it.
    pub(crate) fn store_manifest(
        &self,
        repo: &str,
        manifest: &ManifestRecord,
        tag: Option<&str>,
        batch: &mut Batch,
    ) -> Result<()> {
        let moved_from = match tag {
            Some(t) => self.tag(repo, t)?.filter(|d| *d != manifest.digest),
            None => None,
        };
        let digest = manifest.digest.as_str();
        batch.insert(key(keys::REPOSITORY, &[repo]), Vec::new());
        batch.insert(key(keys::MANIFEST, &[repo, digest]), encode(manifest));
        if let Some(subject) = &manifest.subject {
            batch.insert(key(keys::REFERRER, &[repo, subject, digest]), Vec::new());
        }
        for r in manifest.blobs.iter().chain(&manifest.manifests) {
            batch.insert(key(keys::REFERENCED_BY, &[repo, r, digest]), Vec::new());
        }
        batch.insert(
            key(keys::LEASE, &[repo, digest]),
            encode(&manifest.pushed_at),
        );
        if let Some(tag) = tag {
            if let Some(old) = &moved_from {
                batch.remove(key(keys::TAGGED_AS, &[repo, old, tag]));
            }
            batch.insert(key(keys::TAG, &[repo, tag]), digest.as_bytes());
            batch.insert(key(keys::TAGGED_AS, &[repo, digest, tag]), Vec::new());
            let times = crate::lifecycle::TagTimes {
                pushed_at: manifest.pushed_at,
                pulled_at: None,
            };
            batch.insert(key(keys::TAG_TIMES, &[repo, tag]), encode(&times));
        }
        Ok(())
    }

    pub(crate) fn delete_tag(&self, repo: &str, tag: &str, batch: &mut Batch) -> Result<Outcome> {
        let Some(digest) = self.tag(repo, tag)? else {
            return rejected(Rejection::TagUnknown(tag.into()));
        };
        if let Some(rule) = self.immutable_rule(repo, tag)? {
            return rejected(Rejection::ImmutableTag {
                tag: tag.into(),
                rule,
            });
        }
        self.drop_tag(repo, tag, &digest, batch);
        done()
    }

    pub(crate) fn delete_manifest(
        &self,
        repo: &str,
        digest: &str,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        let Some(m) = self.manifest(repo, digest)? else {
            return rejected(Rejection::ManifestUnknown(digest.into()));
        };
        if let Some(r) = self.no_immutable_tag_on(repo, digest)? {
            return rejected(r);
        }
        self.drop_manifest(repo, &m, batch)?;
        self.end_orphaned_promises(repo, std::slice::from_ref(&m), batch)?;
        for tag in self.tags_of(repo, digest)? {
            self.drop_tag(repo, &tag, digest, batch);
        }
        done()
    }
}

/// `(repo, digest)` of a blob link key `b/<repo>\0<digest>`.
pub(crate) fn split_link(k: &[u8]) -> (String, String) {
    let rest = &k[keys::BLOB_LINK.len()..];
    let nul = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let repo = String::from_utf8_lossy(&rest[..nul]).into_owned();
    let digest = String::from_utf8_lossy(rest.get(nul + 1..).unwrap_or_default()).into_owned();
    (repo, digest)
}
