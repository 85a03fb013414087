//! Planning the commands on namespaces and their content: namespaces, blob links, manifests
//! (with the referrers index) and tags. The keys are drawn in `catalog`'s doc.

use sled::Batch;

use crate::catalog::{encode, namespace_of, Catalog, NamespaceRecord, Visibility};
use crate::command::{done, rejected, ManifestRecord, Outcome, Rejection};
use crate::keys::{self, key, under};
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

    pub(crate) fn set_visibility(
        &self,
        namespace: &str,
        visibility: Visibility,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        let Some(mut rec) = self.namespace(namespace)? else {
            return rejected(Rejection::NamespaceUnknown(namespace.into()));
        };
        rec.visibility = visibility;
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
        let content = [
            keys::REPOSITORY,
            keys::REPOSITORY_VISIBILITY,
            keys::BLOB_LINK,
            keys::MANIFEST,
            keys::TAG,
            keys::REFERRER,
        ];
        for prefix in content {
            for sep in [0, b'/'] {
                let mut p = key(prefix, &[name]);
                p.push(sep);
                for kv in self.tree().scan_prefix(&p) {
                    let (k, _) = kv?;
                    if prefix == keys::BLOB_LINK {
                        if let Some(d) = k.rsplit(|b| *b == 0).next() {
                            unlinked.push(String::from_utf8_lossy(d).into_owned());
                        }
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
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if !self.has(&key(keys::NAMESPACE, &[namespace_of(repo)]))? {
            return rejected(Rejection::NamespaceUnknown(namespace_of(repo).into()));
        }
        batch.insert(key(keys::REPOSITORY, &[repo]), Vec::new());
        batch.insert(
            key(keys::BLOB_LINK, &[repo, digest]),
            size.to_be_bytes().to_vec(),
        );
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
        let k = key(keys::BLOB_LINK, &[repo, digest]);
        if !self.has(&k)? {
            return rejected(Rejection::BlobUnknown(digest.into()));
        }
        batch.remove(k);
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
        batch.insert(key(keys::REPOSITORY, &[repo]), Vec::new());
        batch.insert(
            key(keys::MANIFEST, &[repo, &manifest.digest]),
            encode(manifest),
        );
        if let Some(subject) = &manifest.subject {
            batch.insert(
                key(keys::REFERRER, &[repo, subject, &manifest.digest]),
                Vec::new(),
            );
        }
        if let Some(tag) = tag {
            batch.insert(key(keys::TAG, &[repo, tag]), manifest.digest.as_bytes());
        }
        done()
    }

    pub(crate) fn delete_tag(&self, repo: &str, tag: &str, batch: &mut Batch) -> Result<Outcome> {
        let k = key(keys::TAG, &[repo, tag]);
        if !self.has(&k)? {
            return rejected(Rejection::TagUnknown(tag.into()));
        }
        batch.remove(k);
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
        batch.remove(key(keys::MANIFEST, &[repo, digest]));
        if let Some(subject) = &m.subject {
            batch.remove(key(keys::REFERRER, &[repo, subject, digest]));
        }
        for kv in self.tree().scan_prefix(under(keys::TAG, &[repo])) {
            let (k, v) = kv?;
            if v.as_ref() == digest.as_bytes() {
                batch.remove(k);
            }
        }
        done()
    }
}
