//! Upstream registries mirrored into namespaces: the bindings, the manifests fetched from
//! them, and the blobs those manifests promise before their bytes were fetched.
//!
//! ```text
//! U/<namespace>              UpstreamRecord  the namespace mirrors this upstream (read-only)
//! P/<repo>\0<digest>         u64 BE          a blob a mirrored manifest lists, not fetched
//!                                            from the upstream yet: its size as the manifest says
//! F/<repo>\0<tag>            i64             when the tag was last fetched or revalidated upstream
//! ```
//!
//! A promised blob (`P/`) is not a link: nothing is served from the origin or a cache under
//! it, because a manifest naming a digest proves nothing about who holds its bytes (an
//! upstream could list another tenant's private digest). The node that fetches the bytes from
//! the upstream and verifies them turns the promise into an ordinary link (`LinkBlob`, which
//! drops the promise in the same batch); from then on the blob is ordinary content.
//! Deleting or collecting the last manifest that lists a promised blob ends its promise,
//! and deleting a tag ends its check time.

use crate::batch::Batch;
use serde::{Deserialize, Serialize};

use crate::catalog::{encode, namespace_of, Catalog};
use crate::command::{done, rejected, ManifestRecord, Outcome, Rejection};
use crate::keys::{self, key};
use crate::Result;

/// An upstream registry a namespace mirrors. Its `Debug` masks the password, so no log of
/// a command or record (openraft's debug logs included) carries it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRecord {
    /// Unique among upstreams.
    pub name: String,
    /// The namespace it is served under (`HOST/<namespace>/<path>`).
    pub namespace: String,
    /// Base URL of the registry (`https://registry-1.docker.io`).
    pub url: String,
    /// The registry host clients name in containerd's `?ns=` (`docker.io`).
    pub host: String,
    pub username: Option<String>,
    /// Kept only in the replicated catalogue; never returned by the API nor logged.
    pub password: Option<String>,
    /// How long a tag is served without asking the upstream again, in seconds.
    pub tag_ttl: i64,
    /// Concurrent connections a node opens to the upstream at most.
    pub max_connections: u32,
    /// One-segment paths get `library/` in front (Docker Hub's official images).
    pub library_prefix: bool,
    pub created_at: i64,
}

impl std::fmt::Debug for UpstreamRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamRecord")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("url", &self.url)
            .field("host", &self.host)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tag_ttl", &self.tag_ttl)
            .field("max_connections", &self.max_connections)
            .field("library_prefix", &self.library_prefix)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl UpstreamRecord {
    /// The upstream's repository path for `repo` (`<namespace>/<path>`), or `None` when
    /// `repo` names the namespace alone.
    pub fn remote_path(&self, repo: &str) -> Option<String> {
        let path = repo.strip_prefix(&self.namespace)?.strip_prefix('/')?;
        if self.library_prefix && !path.contains('/') {
            Some(format!("library/{path}"))
        } else {
            Some(path.to_string())
        }
    }
}

fn be_u64(v: &[u8]) -> u64 {
    let mut be = [0u8; 8];
    be.copy_from_slice(&v[..8]);
    u64::from_be_bytes(be)
}

impl Catalog {
    /// The upstream the namespace of `repo` (or the namespace `repo` itself) mirrors.
    pub fn upstream_of(&self, repo: &str) -> Result<Option<UpstreamRecord>> {
        self.get(&key(keys::UPSTREAM, &[namespace_of(repo)]))
    }

    pub fn upstreams(&self) -> Result<Vec<UpstreamRecord>> {
        self.scan(keys::UPSTREAM.as_bytes())
    }

    pub fn upstream_named(&self, name: &str) -> Result<Option<UpstreamRecord>> {
        Ok(self.upstreams()?.into_iter().find(|u| u.name == name))
    }

    /// The upstream serving registry host `host` (containerd's `?ns=`).
    pub fn upstream_for_host(&self, host: &str) -> Result<Option<UpstreamRecord>> {
        Ok(self
            .upstreams()?
            .into_iter()
            .find(|u| u.host.eq_ignore_ascii_case(host)))
    }

    /// The size a mirrored manifest gives blob `digest` of `repo`, while its bytes were not
    /// fetched from the upstream yet.
    pub fn promised_blob(&self, repo: &str, digest: &str) -> Result<Option<u64>> {
        Ok(self
            .tree()
            .get(key(keys::PROMISED_BLOB, &[repo, digest]))?
            .map(|v| be_u64(&v)))
    }

    /// When tag `tag` of mirrored `repo` was last fetched or revalidated upstream.
    pub fn tag_checked_at(&self, repo: &str, tag: &str) -> Result<Option<i64>> {
        self.get(&key(keys::TAG_CHECKED, &[repo, tag]))
    }

    pub(crate) fn create_upstream(
        &self,
        upstream: &UpstreamRecord,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if self.namespace(&upstream.namespace)?.is_none() {
            return rejected(Rejection::NamespaceUnknown(upstream.namespace.clone()));
        }
        for u in self.upstreams()? {
            if u.name == upstream.name
                || u.namespace == upstream.namespace
                || u.host.eq_ignore_ascii_case(&upstream.host)
            {
                return rejected(Rejection::UpstreamExists(u.name));
            }
        }
        batch.insert(
            key(keys::UPSTREAM, &[&upstream.namespace]),
            encode(upstream),
        );
        done()
    }

    /// Removes the binding; what was mirrored stays, as an ordinary namespace's content.
    pub(crate) fn delete_upstream(&self, name: &str, batch: &mut Batch) -> Result<Outcome> {
        let Some(u) = self.upstream_named(name)? else {
            return rejected(Rejection::UpstreamUnknown(name.into()));
        };
        batch.remove(key(keys::UPSTREAM, &[&u.namespace]));
        done()
    }

    /// Stores a manifest fetched from the upstream of `repo`'s namespace: like a push, but
    /// its blobs and child manifests need not be here (they are fetched when asked for); the
    /// blobs not linked yet are promised with the sizes the manifest gives.
    pub(crate) fn mirror_manifest(
        &self,
        repo: &str,
        manifest: &ManifestRecord,
        tag: Option<&str>,
        blobs: &[(String, u64)],
        fetched_at: i64,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if self.upstream_of(repo)?.is_none() {
            return rejected(Rejection::NotAMirror(namespace_of(repo).into()));
        }
        if let Some(r) = self.moving_immutable_tag(repo, &manifest.digest, tag)? {
            return rejected(r);
        }
        self.store_manifest(repo, manifest, tag, batch)?;
        for (digest, size) in blobs {
            if !self.has(&key(keys::BLOB_LINK, &[repo, digest]))? {
                batch.insert(
                    key(keys::PROMISED_BLOB, &[repo, digest]),
                    size.to_be_bytes().to_vec(),
                );
            }
        }
        if let Some(t) = tag {
            batch.insert(key(keys::TAG_CHECKED, &[repo, t]), encode(&fetched_at));
        }
        done()
    }

    /// Ends the promises of blobs that the manifests `dropped` (removed from `repo` in this
    /// batch) listed and no manifest left in `repo` lists: the repository no longer names
    /// them, so they must not stay fetchable from the upstream under it (nor their keys stay
    /// forever).
    pub(crate) fn end_orphaned_promises(
        &self,
        repo: &str,
        dropped: &[ManifestRecord],
        batch: &mut Batch,
    ) -> Result<()> {
        let gone: std::collections::BTreeSet<&str> =
            dropped.iter().map(|m| m.digest.as_str()).collect();
        for blob in dropped.iter().flat_map(|m| &m.blobs) {
            if self.promised_blob(repo, blob)?.is_none() {
                continue;
            }
            let listed_by = self.referenced_by(repo, blob)?;
            if listed_by.iter().all(|by| gone.contains(by.as_str())) {
                batch.remove(key(keys::PROMISED_BLOB, &[repo, blob]));
            }
        }
        Ok(())
    }

    /// The upstream still gives tag `tag` the digest `digest`: served fresh for another TTL.
    pub(crate) fn tag_checked(
        &self,
        repo: &str,
        tag: &str,
        digest: &str,
        at: i64,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if self.tag(repo, tag)?.as_deref() != Some(digest) {
            return rejected(Rejection::TagUnknown(tag.into()));
        }
        batch.insert(key(keys::TAG_CHECKED, &[repo, tag]), encode(&at));
        done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::{catalog, check, manifest, ns};
    use crate::Command;

    fn upstream(name: &str, namespace: &str, host: &str) -> UpstreamRecord {
        UpstreamRecord {
            name: name.into(),
            namespace: namespace.into(),
            url: format!("https://{host}"),
            host: host.into(),
            username: None,
            password: None,
            tag_ttl: 300,
            max_connections: 16,
            library_prefix: false,
            created_at: 1,
        }
    }

    fn create(u: UpstreamRecord) -> Command {
        Command::CreateUpstream { upstream: u }
    }

    fn mirrored(repo: &str, digest: &str, tag: Option<&str>, blobs: &[(&str, u64)]) -> Command {
        Command::MirrorManifest {
            repo: repo.into(),
            manifest: manifest(digest, &blobs.iter().map(|b| b.0).collect::<Vec<_>>(), None),
            tag: tag.map(Into::into),
            blobs: blobs.iter().map(|(d, s)| (d.to_string(), *s)).collect(),
            fetched_at: 100,
        }
    }

    #[test]
    fn debug_masks_the_password() {
        let mut u = upstream("hub", "hub", "docker.io");
        u.password = Some("hunter2".into());
        let shown = format!("{:?}", Command::CreateUpstream { upstream: u });
        assert!(
            !shown.contains("hunter2") && shown.contains("***"),
            "{shown}"
        );
    }

    #[test]
    fn one_binding_per_namespace_name_and_host() {
        let c = catalog();
        check(
            &c,
            create(upstream("hub", "hub", "docker.io")),
            Outcome::Rejected(Rejection::NamespaceUnknown("hub".into())),
        );
        check(&c, ns("hub"), Outcome::Done);
        check(&c, ns("ghcr"), Outcome::Done);
        check(
            &c,
            create(upstream("hub", "hub", "docker.io")),
            Outcome::Done,
        );
        for dup in [
            upstream("hub", "ghcr", "ghcr.io"),
            upstream("other", "hub", "ghcr.io"),
            upstream("other", "ghcr", "DOCKER.IO"),
        ] {
            check(
                &c,
                create(dup),
                Outcome::Rejected(Rejection::UpstreamExists("hub".into())),
            );
        }
        assert_eq!(
            c.upstream_for_host("Docker.io").unwrap().unwrap().namespace,
            "hub"
        );
        assert_eq!(
            c.upstream_of("hub/library/nginx").unwrap().unwrap().name,
            "hub"
        );
        assert!(c.upstream_of("ghcr/x").unwrap().is_none());
        check(
            &c,
            Command::DeleteUpstream {
                name: "nope".into(),
            },
            Outcome::Rejected(Rejection::UpstreamUnknown("nope".into())),
        );
        check(
            &c,
            Command::DeleteUpstream { name: "hub".into() },
            Outcome::Done,
        );
        assert!(c.upstreams().unwrap().is_empty());
        // Deleting the namespace takes its binding along.
        check(&c, create(upstream("g", "ghcr", "ghcr.io")), Outcome::Done);
        check(
            &c,
            Command::DeleteNamespace {
                name: "ghcr".into(),
            },
            Outcome::Done,
        );
        assert!(c.upstreams().unwrap().is_empty());
    }

    #[test]
    fn a_mirrored_manifest_promises_its_blobs_until_they_are_linked() {
        let c = catalog();
        check(&c, ns("hub"), Outcome::Done);
        let repo = "hub/library/nginx";
        check(
            &c,
            mirrored(repo, "sha256:m1", Some("latest"), &[("sha256:b1", 10)]),
            Outcome::Rejected(Rejection::NotAMirror("hub".into())),
        );
        check(
            &c,
            create(upstream("hub", "hub", "docker.io")),
            Outcome::Done,
        );
        check(
            &c,
            mirrored(
                repo,
                "sha256:m1",
                Some("latest"),
                &[("sha256:b1", 10), ("sha256:b2", 20)],
            ),
            Outcome::Done,
        );
        assert_eq!(c.tag(repo, "latest").unwrap().as_deref(), Some("sha256:m1"));
        assert_eq!(c.tag_checked_at(repo, "latest").unwrap(), Some(100));
        assert_eq!(c.promised_blob(repo, "sha256:b1").unwrap(), Some(10));
        assert_eq!(
            c.blob_size(repo, "sha256:b1").unwrap(),
            None,
            "a promise is no link"
        );
        let link = Command::LinkBlob {
            repo: repo.into(),
            digest: "sha256:b1".into(),
            size: 10,
            upload: None,
            at: 5,
        };
        check(&c, link, Outcome::Done);
        assert_eq!(
            c.promised_blob(repo, "sha256:b1").unwrap(),
            None,
            "the link ends the promise"
        );
        assert_eq!(c.blob_size(repo, "sha256:b1").unwrap(), Some(10));
        // A manifest listing a linked blob promises nothing for it.
        check(
            &c,
            mirrored(repo, "sha256:m2", None, &[("sha256:b1", 10)]),
            Outcome::Done,
        );
        assert_eq!(c.promised_blob(repo, "sha256:b1").unwrap(), None);
        // Revalidation: only while the tag still names the digest.
        let checked = |digest: &str, at| Command::TagChecked {
            repo: repo.into(),
            tag: "latest".into(),
            digest: digest.into(),
            at,
        };
        check(&c, checked("sha256:m1", 200), Outcome::Done);
        assert_eq!(c.tag_checked_at(repo, "latest").unwrap(), Some(200));
        check(
            &c,
            checked("sha256:m2", 300),
            Outcome::Rejected(Rejection::TagUnknown("latest".into())),
        );
        // Deleting a manifest ends the promises no other manifest keeps.
        check(
            &c,
            mirrored(
                repo,
                "sha256:m3",
                Some("old"),
                &[("sha256:b2", 20), ("sha256:b3", 30)],
            ),
            Outcome::Done,
        );
        let delete = |digest: &str| Command::DeleteManifest {
            repo: repo.into(),
            digest: digest.into(),
        };
        check(&c, delete("sha256:m3"), Outcome::Done);
        assert_eq!(
            c.promised_blob(repo, "sha256:b3").unwrap(),
            None,
            "only the deleted manifest listed it"
        );
        assert_eq!(
            c.promised_blob(repo, "sha256:b2").unwrap(),
            Some(20),
            "m1 still lists it"
        );
        assert_eq!(
            c.tag_checked_at(repo, "old").unwrap(),
            None,
            "the deleted tag's check time goes with it"
        );
        // The collector dropping two untagged manifests in one entry ends the promise they
        // shared, though each still listed it when the other was dropped.
        for m in ["sha256:m4", "sha256:m5"] {
            check(
                &c,
                mirrored(repo, m, None, &[("sha256:b4", 40)]),
                Outcome::Done,
            );
        }
        check(
            &c,
            Command::CollectManifests {
                repo: repo.into(),
                digests: vec!["sha256:m4".into(), "sha256:m5".into()],
                now: 1_000_000,
                grace: 0,
            },
            Outcome::Done,
        );
        assert!(c.manifest(repo, "sha256:m5").unwrap().is_none());
        assert_eq!(c.promised_blob(repo, "sha256:b4").unwrap(), None);
        // Deleting the repository takes promises and check times along.
        check(
            &c,
            Command::DeleteRepository { repo: repo.into() },
            Outcome::Done,
        );
        assert_eq!(c.promised_blob(repo, "sha256:b2").unwrap(), None);
        assert_eq!(c.tag_checked_at(repo, "latest").unwrap(), None);
    }
}
