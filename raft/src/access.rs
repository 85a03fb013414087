//! Identity and access in the catalogue: principals (users and service accounts), access
//! credentials, role bindings and the token signing keys.
//!
//! ```text
//! u/<principal>                  Principal          users and service accounts share names
//! c/<credential id>              CredentialRecord
//! l/<login>                      credential id      a credential's generated username
//! g/<principal>\0<scope>         Role               scope: `org:<org>`, `proj:<org>/<project>`
//!                                                   or `ns:<namespace>`
//! k/<kid>                        SigningKey
//! ```
//!
//! The records are replicated like the rest of the catalogue, so every node can check a
//! password, verify a token and decide a request on its own. Secrets are stored only as
//! argon2 hashes, made by the node that takes the request (never while applying, which must
//! be cheap and deterministic). Policy (what a role may do) is not here: this module stores
//! facts, `proxy::auth` decides.

use crate::batch::Batch;
use serde::{Deserialize, Serialize};

use crate::catalog::{decode, encode, Catalog};
use crate::command::{done, rejected, Outcome, Rejection};
use crate::keys::{self, key};
use crate::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrincipalKind {
    User,
    ServiceAccount,
}

/// A user (who may log in with a password) or a service account (which only has credentials).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
    pub kind: PrincipalKind,
    /// The organisation whose administrators manage the principal. Its roles come from its
    /// bindings only, which may be anywhere.
    pub organisation: String,
    /// argon2 PHC string; `None` for service accounts.
    pub password_hash: Option<String>,
    pub created_at: i64,
    /// Unique to this principal, never reused: a principal deleted and made again under the
    /// same name gets another, so tokens and upload sessions of the old one do not carry over.
    pub uid: String,
}

/// What a credential may do at most; the owner's roles still apply on top.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialScope {
    /// `containerRegistry` / `containerRegistry:all`: push and pull.
    All,
    /// `containerRegistry:pull`.
    Pull,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CredentialRecord {
    pub id: String,
    pub name: String,
    /// The generated username clients log in with.
    pub login: String,
    /// argon2 PHC string of the secret; the secret itself is shown once and never stored.
    pub secret_hash: String,
    /// The principal the credential acts for.
    pub owner: String,
    pub scope: CredentialScope,
    /// When set, the credential is good for this namespace only.
    pub namespace: Option<String>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

impl CredentialRecord {
    pub fn usable_at(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Reader,
    Developer,
    Admin,
    Owner,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoleScope {
    Organisation(String),
    Project {
        organisation: String,
        project: String,
    },
    Namespace(String),
}

impl RoleScope {
    /// The scope as keys and messages spell it: `org:<org>`, `proj:<org>/<project>`,
    /// `ns:<namespace>` (names never contain `/` or `:`).
    pub fn key_part(&self) -> String {
        match self {
            RoleScope::Organisation(o) => format!("org:{o}"),
            RoleScope::Project {
                organisation,
                project,
            } => format!("proj:{organisation}/{project}"),
            RoleScope::Namespace(n) => format!("ns:{n}"),
        }
    }

    fn from_key_part(s: &str) -> Option<RoleScope> {
        if let Some(o) = s.strip_prefix("org:") {
            Some(RoleScope::Organisation(o.into()))
        } else if let Some(p) = s.strip_prefix("proj:") {
            let (organisation, project) = p.split_once('/')?;
            Some(RoleScope::Project {
                organisation: organisation.into(),
                project: project.into(),
            })
        } else {
            s.strip_prefix("ns:")
                .map(|n| RoleScope::Namespace(n.into()))
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleBinding {
    pub principal: String,
    pub scope: RoleScope,
    pub role: Role,
}

/// A token signing key pair (ECDSA P-256, PEM). Every key stays until removed, so tokens
/// signed before a rotation still verify until they expire; the newest key signs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SigningKey {
    pub kid: String,
    pub private_pem: String,
    pub public_pem: String,
    pub created_at: i64,
}

impl Catalog {
    pub fn principal(&self, name: &str) -> Result<Option<Principal>> {
        self.get(&key(keys::PRINCIPAL, &[name]))
    }

    pub fn principals(&self) -> Result<Vec<Principal>> {
        self.scan(keys::PRINCIPAL.as_bytes())
    }

    pub fn credential(&self, id: &str) -> Result<Option<CredentialRecord>> {
        self.get(&key(keys::CREDENTIAL, &[id]))
    }

    pub fn credential_by_login(&self, login: &str) -> Result<Option<CredentialRecord>> {
        match self.tree().get(key(keys::LOGIN, &[login]))? {
            Some(id) => self.credential(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    pub fn credentials(&self) -> Result<Vec<CredentialRecord>> {
        self.scan(keys::CREDENTIAL.as_bytes())
    }

    /// Every binding of `principal`.
    pub fn bindings_of(&self, principal: &str) -> Result<Vec<RoleBinding>> {
        let mut prefix = key(keys::BINDING, &[principal]);
        prefix.push(0);
        self.bindings_under(&prefix)
    }

    pub fn bindings(&self) -> Result<Vec<RoleBinding>> {
        self.bindings_under(keys::BINDING.as_bytes())
    }

    fn bindings_under(&self, prefix: &[u8]) -> Result<Vec<RoleBinding>> {
        let mut out = Vec::new();
        for kv in self.tree().scan_prefix(prefix) {
            let (k, v) = kv?;
            let rest = String::from_utf8_lossy(&k[2..]).into_owned();
            let Some((principal, scope)) = rest.split_once('\0') else {
                continue;
            };
            let Some(scope) = RoleScope::from_key_part(scope) else {
                continue;
            };
            out.push(RoleBinding {
                principal: principal.into(),
                scope,
                role: decode(&v)?,
            });
        }
        Ok(out)
    }

    /// Signing keys, oldest first by creation time.
    pub fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        let mut found: Vec<SigningKey> = self.scan(keys::SIGNING_KEY.as_bytes())?;
        found.sort_by_key(|k| (k.created_at, k.kid.clone()));
        Ok(found)
    }

    /// How many principals are Owner of organisation `org`.
    fn owners_of(&self, org: &str) -> Result<usize> {
        let scope = RoleScope::Organisation(org.into());
        Ok(self
            .bindings()?
            .iter()
            .filter(|b| b.scope == scope && b.role == Role::Owner)
            .count())
    }

    pub(crate) fn binding_key(&self, principal: &str, scope: &RoleScope) -> Vec<u8> {
        key(keys::BINDING, &[principal, &scope.key_part()])
    }

    /// Removes every binding on `scope` (part of deleting what it names).
    pub(crate) fn unbind_scope(&self, scope: &RoleScope, batch: &mut Batch) -> Result<()> {
        let scope = scope.key_part();
        for kv in self.tree().scan_prefix(keys::BINDING.as_bytes()) {
            let (k, _) = kv?;
            if k.ends_with(scope.as_bytes()) && k[..k.len() - scope.len()].ends_with(&[0]) {
                batch.remove(k);
            }
        }
        Ok(())
    }

    /// The organisation other than `except` whose every Owner is in `leaving`, if any:
    /// removing them all would leave it with nobody to manage it.
    pub(crate) fn orphaned_by(
        &self,
        leaving: &[&str],
        except: Option<&str>,
    ) -> Result<Option<String>> {
        let mut someone_stays: std::collections::BTreeMap<String, bool> = Default::default();
        for b in self.bindings()? {
            if let (RoleScope::Organisation(org), Role::Owner) = (&b.scope, b.role) {
                if Some(org.as_str()) != except {
                    *someone_stays.entry(org.clone()).or_default() |=
                        !leaving.contains(&b.principal.as_str());
                }
            }
        }
        Ok(someone_stays
            .into_iter()
            .find(|(_, stays)| !stays)
            .map(|(org, _)| org))
    }

    /// Removes principal `name` with its role bindings, its credentials (and their logins)
    /// and the federated identities acting as it.
    pub(crate) fn drop_principal(&self, name: &str, batch: &mut Batch) -> Result<()> {
        batch.remove(key(keys::PRINCIPAL, &[name]));
        for b in self.bindings_of(name)? {
            batch.remove(self.binding_key(name, &b.scope));
        }
        self.drop_acting(batch, |c| c.owner == name, |f| f.service_account == name)
    }

    /// Credentials and federated identities restricted to `namespace` go with it: they could
    /// do nothing any more, and a namespace created later under the same name must not
    /// inherit them. Tokens already issued to them stop working, since every request looks
    /// the credential up again.
    pub(crate) fn drop_restricted_to(&self, namespace: &str, batch: &mut Batch) -> Result<()> {
        let here = Some(namespace);
        self.drop_acting(
            batch,
            |c| c.namespace.as_deref() == here,
            |f| f.namespace.as_deref() == here,
        )
    }

    /// Removes the credentials (with their logins) and federated identities that match.
    fn drop_acting(
        &self,
        batch: &mut Batch,
        credential: impl Fn(&CredentialRecord) -> bool,
        federation: impl Fn(&crate::FederationRecord) -> bool,
    ) -> Result<()> {
        for c in self.credentials()?.iter().filter(|c| credential(c)) {
            batch.remove(key(keys::CREDENTIAL, &[&c.id]));
            batch.remove(key(keys::LOGIN, &[&c.login]));
        }
        for f in self.federations()?.iter().filter(|f| federation(f)) {
            batch.remove(key(keys::FEDERATION, &[&f.name]));
        }
        Ok(())
    }

    pub(crate) fn bootstrap(
        &self,
        org: &crate::OrgRecord,
        admin: &Principal,
        k: &SigningKey,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if !self.organisations()?.is_empty() {
            return rejected(Rejection::AlreadyInitialised);
        }
        let org = crate::OrgRecord {
            home: true,
            ..org.clone()
        };
        batch.insert(key(keys::ORGANISATION, &[&org.name]), encode(&org));
        batch.insert(key(keys::PRINCIPAL, &[&admin.name]), encode(admin));
        let owner = RoleScope::Organisation(org.name.clone());
        batch.insert(self.binding_key(&admin.name, &owner), encode(&Role::Owner));
        batch.insert(key(keys::SIGNING_KEY, &[&k.kid]), encode(k));
        done()
    }

    pub(crate) fn create_principal(
        &self,
        principal: &Principal,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if self.principal(&principal.name)?.is_some() {
            return rejected(Rejection::PrincipalExists(principal.name.clone()));
        }
        if self.organisation(&principal.organisation)?.is_none() {
            return rejected(Rejection::OrganisationUnknown(
                principal.organisation.clone(),
            ));
        }
        batch.insert(key(keys::PRINCIPAL, &[&principal.name]), encode(principal));
        done()
    }

    pub(crate) fn create_credential(
        &self,
        c: &CredentialRecord,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if self.principal(&c.owner)?.is_none() {
            return rejected(Rejection::PrincipalUnknown(c.owner.clone()));
        }
        if let Some(ns) = &c.namespace {
            if self.namespace(ns)?.is_none() {
                return rejected(Rejection::NamespaceUnknown(ns.clone()));
            }
        }
        if self.tree().contains_key(key(keys::LOGIN, &[&c.login]))? {
            return rejected(Rejection::CredentialExists(c.login.clone()));
        }
        batch.insert(key(keys::CREDENTIAL, &[&c.id]), encode(c));
        batch.insert(key(keys::LOGIN, &[&c.login]), c.id.as_bytes());
        done()
    }

    pub(crate) fn revoke_credential(
        &self,
        id: &str,
        revoked_at: i64,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        let Some(mut c) = self.credential(id)? else {
            return rejected(Rejection::CredentialUnknown(id.into()));
        };
        c.revoked_at.get_or_insert(revoked_at);
        batch.insert(key(keys::CREDENTIAL, &[id]), encode(&c));
        done()
    }

    pub(crate) fn rotate_credential_secret(
        &self,
        id: &str,
        secret_hash: &str,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        let Some(mut c) = self.credential(id)? else {
            return rejected(Rejection::CredentialUnknown(id.into()));
        };
        if c.revoked_at.is_some() {
            return rejected(Rejection::CredentialRevoked(id.into()));
        }
        c.secret_hash = secret_hash.into();
        batch.insert(key(keys::CREDENTIAL, &[id]), encode(&c));
        done()
    }

    pub(crate) fn bind(&self, b: &RoleBinding, batch: &mut Batch) -> Result<Outcome> {
        if self.principal(&b.principal)?.is_none() {
            return rejected(Rejection::PrincipalUnknown(b.principal.clone()));
        }
        let known = match &b.scope {
            RoleScope::Organisation(o) => self.organisation(o)?.is_some(),
            RoleScope::Project {
                organisation,
                project,
            } => self.project(organisation, project)?.is_some(),
            RoleScope::Namespace(n) => self.namespace(n)?.is_some(),
        };
        if !known {
            return rejected(Rejection::ScopeUnknown(b.scope.key_part()));
        }
        let k = self.binding_key(&b.principal, &b.scope);
        if let (RoleScope::Organisation(org), Some(was)) = (&b.scope, self.tree().get(&k)?) {
            let demoted = decode::<Role>(&was)? == Role::Owner && b.role != Role::Owner;
            if demoted && self.owners_of(org)? == 1 {
                return rejected(Rejection::LastOwner(org.clone()));
            }
        }
        batch.insert(k, encode(&b.role));
        done()
    }

    pub(crate) fn unbind(
        &self,
        principal: &str,
        scope: &RoleScope,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        let k = self.binding_key(principal, scope);
        let Some(role) = self.tree().get(&k)? else {
            return rejected(Rejection::BindingUnknown);
        };
        if let RoleScope::Organisation(org) = scope {
            if decode::<Role>(&role)? == Role::Owner && self.owners_of(org)? == 1 {
                return rejected(Rejection::LastOwner(org.clone()));
            }
        }
        batch.remove(k);
        done()
    }

    pub(crate) fn delete_principal(
        &self,
        name: &str,
        organisation: &str,
        kind: PrincipalKind,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        let seen = |p: &Principal| p.organisation == organisation && p.kind == kind;
        if !self.principal(name)?.as_ref().is_some_and(seen) {
            return rejected(Rejection::PrincipalUnknown(name.into()));
        }
        if let Some(org) = self.orphaned_by(&[name], None)? {
            return rejected(Rejection::LastOwner(org));
        }
        self.drop_principal(name, batch)?;
        done()
    }

    pub(crate) fn rotate_signing_key(
        &self,
        k: &SigningKey,
        retire_after: i64,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        let existing = self.signing_keys()?;
        // The new key signs from now on, so it must sort last even when its clock reads the
        // same second as (or earlier than) the newest key's.
        let newest = existing.last().map_or(i64::MIN, |n| n.created_at);
        let k = SigningKey {
            created_at: k.created_at.max(newest.saturating_add(1)),
            ..k.clone()
        };
        for (old, successor) in existing.iter().zip(existing.iter().skip(1)) {
            if successor.created_at.saturating_add(retire_after) < k.created_at {
                batch.remove(key(keys::SIGNING_KEY, &[&old.kid]));
            }
        }
        batch.insert(key(keys::SIGNING_KEY, &[&k.kid]), encode(&k));
        done()
    }
}

#[cfg(test)]
#[path = "access_tests.rs"]
pub(crate) mod tests;
