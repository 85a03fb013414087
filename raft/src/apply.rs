//! Applying a command: one exhaustive `match` over `Command` that hands each variant to the
//! planner of what it changes. A variant that no code applies does not compile, so a command
//! in the log can never find every replica without a way to apply it.
//!
//! Planning reads the catalogue and fills a `Batch` (`batch`) without writing: the state machine
//! adds its bookkeeping to the same batch and applies it atomically. A rejected command
//! leaves the batch without catalogue writes.

use crate::batch::Batch;

use crate::catalog::Catalog;
use crate::command::{Command, Outcome};
use crate::Result;

impl Catalog {
    /// Works out what `cmd` changes, without changing anything: the writes go into `batch`,
    /// and the digests it unlinks from a repository into `unlinked`.
    pub(crate) fn plan(
        &self,
        cmd: &Command,
        batch: &mut Batch,
        unlinked: &mut Vec<String>,
    ) -> Result<Outcome> {
        use Command as C;
        match cmd {
            C::CreateNamespace { record } => self.create_namespace(record, batch),
            C::SetVisibility {
                namespace,
                visibility,
            } => self.update_namespace(namespace, batch, |ns| ns.visibility = *visibility),
            C::DeleteNamespace { name } => self.delete_namespace(name, batch, unlinked),
            C::CreateOrganisation { org, owner } => self.create_organisation(org, owner, batch),
            C::CreateProject { project } => self.create_project(project, batch),
            C::DeleteProject { organisation, name } => {
                self.delete_project(organisation, name, batch)
            }
            C::SetRepositoryVisibility { repo, visibility } => {
                self.set_repository_visibility(repo, *visibility, batch)
            }
            C::DeleteRepository { repo } => self.delete_repository(repo, batch, unlinked),
            C::RecordUsage { deltas } => self.record_usage(deltas, batch),
            C::CreateFederation { federation } => self.create_federation(federation, batch),
            C::DeleteFederation { name } => self.delete_federation(name, batch),
            C::Bootstrap { org, admin, key } => self.bootstrap(org, admin, key, batch),
            C::CreatePrincipal { principal } => self.create_principal(principal, batch),
            C::CreateCredential { credential } => self.create_credential(credential, batch),
            C::RevokeCredential { id, revoked_at } => {
                self.revoke_credential(id, *revoked_at, batch)
            }
            C::RotateCredentialSecret { id, secret_hash } => {
                self.rotate_credential_secret(id, secret_hash, batch)
            }
            C::Bind { binding } => self.bind(binding, batch),
            C::Unbind { principal, scope } => self.unbind(principal, scope, batch),
            C::RotateSigningKey { key, retire_after } => {
                self.rotate_signing_key(key, *retire_after, batch)
            }
            C::LinkBlob {
                repo,
                digest,
                size,
                upload,
                at,
            } => self.link_blob(repo, digest, *size, upload.as_deref(), *at, batch),
            C::UnlinkBlob { repo, digest } => self.unlink_blob(repo, digest, batch, unlinked),
            C::PutManifest {
                repo,
                manifest,
                tag,
            } => self.put_manifest(repo, manifest, tag.as_deref(), batch),
            C::DeleteTag { repo, tag } => self.delete_tag(repo, tag, batch),
            C::DeleteManifest { repo, digest } => self.delete_manifest(repo, digest, batch),
            C::DeletePrincipal {
                name,
                organisation,
                kind,
            } => self.delete_principal(name, organisation, *kind, batch),
            C::DeleteOrganisation { name } => self.delete_organisation(name, batch),
            C::OpenUpload { id, upload, limit } => self.open_upload(id, upload, *limit, batch),
            C::CloseUploads { ids } => self.close_uploads(ids, batch),
            C::TouchContent { repo, digests, at } => self.touch_content(repo, digests, *at, batch),
            C::RecordPulls { pulls } => self.record_pulls(pulls, batch),
            C::CollectManifests {
                repo,
                digests,
                now,
                grace,
            } => self.collect_manifests(repo, digests, *now, *grace, batch),
            C::CollectBlobs {
                repo,
                digests,
                now,
                grace,
            } => self.collect_blobs(repo, digests, *now, *grace, batch, unlinked),
            C::CondemnDigests { digests, now } => self.condemn_digests(digests, *now, batch),
            C::ForgetDigests { digests } => self.forget_digests(digests, batch),
            C::SetRetention { namespace, policy } => {
                self.set_retention(namespace, policy.as_ref(), batch)
            }
            C::SetImmutableTags { namespace, rules } => {
                self.update_namespace(namespace, batch, |ns| ns.immutable = rules.clone())
            }
            C::RetainTags { repo, delete } => self.retain_tags(repo, delete, batch),
            C::RequestGc { at } => self.request_gc(*at, batch),
            C::RecordGc { run } => self.record_gc(run, batch),
            C::CreateUpstream { upstream } => self.create_upstream(upstream, batch),
            C::DeleteUpstream { name } => self.delete_upstream(name, batch),
            C::MirrorManifest {
                repo,
                manifest,
                tag,
                blobs,
                fetched_at,
            } => self.mirror_manifest(repo, manifest, tag.as_deref(), blobs, *fetched_at, batch),
            C::TagChecked {
                repo,
                tag,
                digest,
                at,
            } => self.tag_checked(repo, tag, digest, *at, batch),
            C::EndSession { id, until, at } => self.end_session(id, *until, *at, batch),
            C::SetNamespaceDescription {
                namespace,
                description,
            } => self.update_namespace(namespace, batch, |ns| ns.description = description.clone()),
            C::ExpireAudit { before } => self.expire_audit(*before, batch),
        }
    }
}
