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

use serde::{Deserialize, Serialize};
use sled::Batch;

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
pub(crate) mod tests {
    use super::*;
    use crate::catalog::NamespaceRecord;
    use crate::Command;
    use crate::OrgRecord;

    fn catalog() -> Catalog {
        let db = sled::Config::new().temporary(true).open().unwrap();
        Catalog::new(db.open_tree("catalog").unwrap())
    }

    fn apply(c: &Catalog, cmd: Command) -> Outcome {
        let mut batch = Batch::default();
        let out = c.plan(&cmd, &mut batch, &mut Vec::new()).unwrap();
        c.tree().apply_batch(batch).unwrap();
        out
    }

    fn principal(name: &str) -> Principal {
        Principal {
            name: name.into(),
            kind: PrincipalKind::User,
            organisation: "default".into(),
            password_hash: Some("$argon2id$x".into()),
            created_at: 1,
            uid: format!("uid-{name}"),
        }
    }

    fn key(kid: &str) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            private_pem: String::new(),
            public_pem: String::new(),
            created_at: 1,
        }
    }

    pub(crate) fn credential(
        login: &str,
        owner: &str,
        namespace: Option<&str>,
    ) -> CredentialRecord {
        CredentialRecord {
            id: format!("id-{login}"),
            name: "n".into(),
            login: login.into(),
            secret_hash: "h".into(),
            owner: owner.into(),
            scope: CredentialScope::Pull,
            namespace: namespace.map(Into::into),
            expires_at: Some(10),
            revoked_at: None,
            created_at: 1,
        }
    }

    #[test]
    fn identity_commands_check_their_preconditions() {
        let c = catalog();
        let bootstrap = |kid: &str| Command::Bootstrap {
            org: OrgRecord {
                name: "default".into(),
                description: None,
                home: false,
                created_at: 1,
            },
            admin: principal("admin"),
            key: key(kid),
        };
        assert_eq!(apply(&c, bootstrap("k1")), Outcome::Done);
        assert_eq!(
            apply(&c, bootstrap("k2")),
            Outcome::Rejected(Rejection::AlreadyInitialised)
        );
        assert_eq!(
            c.signing_keys().unwrap().len(),
            1,
            "the second bootstrap changed nothing"
        );
        assert_eq!(c.bindings_of("admin").unwrap()[0].role, Role::Owner);
        assert!(c
            .home_organisation()
            .unwrap()
            .is_some_and(|o| o.name == "default"));

        let create = |cred| Command::CreateCredential { credential: cred };
        assert_eq!(
            apply(&c, create(credential("l1", "ghost", None))),
            Outcome::Rejected(Rejection::PrincipalUnknown("ghost".into()))
        );
        assert_eq!(
            apply(&c, create(credential("l1", "admin", Some("ns")))),
            Outcome::Rejected(Rejection::NamespaceUnknown("ns".into()))
        );
        let ns = Command::CreateNamespace {
            record: NamespaceRecord::for_test("ns"),
        };
        assert_eq!(apply(&c, ns), Outcome::Done);
        assert_eq!(
            apply(&c, create(credential("l1", "admin", Some("ns")))),
            Outcome::Done
        );
        assert_eq!(
            apply(&c, create(credential("l1", "admin", None))),
            Outcome::Rejected(Rejection::CredentialExists("l1".into()))
        );
        let cred = c.credential_by_login("l1").unwrap().unwrap();
        assert!(cred.usable_at(9) && !cred.usable_at(10), "expiry");
        let revoke = |at| Command::RevokeCredential {
            id: cred.id.clone(),
            revoked_at: at,
        };
        assert_eq!(apply(&c, revoke(5)), Outcome::Done);
        assert_eq!(apply(&c, revoke(7)), Outcome::Done);
        let revoked = c.credential(&cred.id).unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(5), "the first revocation stands");
        assert!(!revoked.usable_at(1));
        let rotate = Command::RotateCredentialSecret {
            id: cred.id.clone(),
            secret_hash: "new".into(),
        };
        assert_eq!(
            apply(&c, rotate),
            Outcome::Rejected(Rejection::CredentialRevoked(cred.id.clone()))
        );

        assert_eq!(
            apply(
                &c,
                Command::CreatePrincipal {
                    principal: principal("dev")
                }
            ),
            Outcome::Done
        );
        let bind = |scope| Command::Bind {
            binding: RoleBinding {
                principal: "dev".into(),
                scope,
                role: Role::Developer,
            },
        };
        assert_eq!(
            apply(&c, bind(RoleScope::Namespace("other".into()))),
            Outcome::Rejected(Rejection::ScopeUnknown("ns:other".into()))
        );
        assert_eq!(
            apply(&c, bind(RoleScope::Namespace("ns".into()))),
            Outcome::Done
        );
        assert_eq!(c.bindings_of("dev").unwrap().len(), 1);
        assert_eq!(
            apply(&c, Command::DeleteNamespace { name: "ns".into() }),
            Outcome::Done
        );
        assert!(
            c.bindings_of("dev").unwrap().is_empty(),
            "bindings go with the namespace"
        );
        assert_eq!(c.bindings_of("admin").unwrap().len(), 1);
    }

    /// Rotates in a key made at `now` over keys made at `existing` (kid `k<time>`) and
    /// expects the kids left, oldest first.
    fn check_rotation(existing: &[i64], now: i64, retire_after: i64, expected: &[&str]) {
        let c = catalog();
        let made_at = |at: i64| SigningKey {
            kid: format!("k{at}"),
            created_at: at,
            ..key("")
        };
        for &at in existing {
            let cmd = Command::RotateSigningKey {
                key: made_at(at),
                retire_after: i64::MAX / 2,
            };
            assert_eq!(apply(&c, cmd), Outcome::Done);
        }
        let rotate = Command::RotateSigningKey {
            key: made_at(now),
            retire_after,
        };
        assert_eq!(apply(&c, rotate), Outcome::Done);
        let kids: Vec<String> = c
            .signing_keys()
            .unwrap()
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(
            kids, expected,
            "{existing:?} rotated at {now}, retiring after {retire_after}"
        );
    }

    #[test]
    fn rotation_retires_only_keys_replaced_longer_ago_than_the_window() {
        // k0 was replaced at 100 and k100 at 200, both before the window [150, 300].
        check_rotation(&[0, 100, 200], 300, 150, &["k100", "k200", "k300"]);
        check_rotation(&[0, 100, 200], 300, 50, &["k200", "k300"]);
        // Replaced exactly `retire_after` ago: a token it signed may still be valid.
        check_rotation(&[0, 100, 200], 300, 200, &["k0", "k100", "k200", "k300"]);
        check_rotation(&[0, 100, 200], 300, 199, &["k100", "k200", "k300"]);
        check_rotation(&[], 300, 0, &["k300"]);
    }

    #[test]
    fn rotation_never_retires_the_key_it_replaces() {
        // The newest key signed until now, so its tokens are all still in the window.
        check_rotation(&[0], 1000, 0, &["k0", "k1000"]);
        check_rotation(&[0, 10, 20], 1000, 0, &["k20", "k1000"]);
    }

    #[test]
    fn a_key_rotated_in_the_same_second_still_signs_next() {
        // Regression: keys sort by creation time, so a key made in the same second as the
        // newest (or on a node whose clock is behind) once sorted before it by kid.
        let c = catalog();
        for (kid, at) in [("zzz", 50), ("aaa", 50), ("mmm", 10)] {
            let k = SigningKey {
                kid: kid.into(),
                ..key(kid)
            };
            let cmd = Command::RotateSigningKey {
                key: SigningKey {
                    created_at: at,
                    ..k
                },
                retire_after: 1000,
            };
            assert_eq!(apply(&c, cmd), Outcome::Done);
            assert_eq!(c.signing_keys().unwrap().last().unwrap().kid, kid);
        }
    }

    #[test]
    fn the_last_owner_of_an_organisation_stays() {
        let c = crate::catalog::tests::catalog();
        for p in ["admin", "other"] {
            let cmd = Command::CreatePrincipal {
                principal: principal(p),
            };
            assert_eq!(apply(&c, cmd), Outcome::Done);
        }
        let org = RoleScope::Organisation("default".into());
        let bind = |who: &str, role| Command::Bind {
            binding: RoleBinding {
                principal: who.into(),
                scope: org.clone(),
                role,
            },
        };
        let unbind = |who: &str| Command::Unbind {
            principal: who.into(),
            scope: org.clone(),
        };
        let last = Outcome::Rejected(Rejection::LastOwner("default".into()));
        assert_eq!(apply(&c, bind("admin", Role::Owner)), Outcome::Done);
        assert_eq!(apply(&c, unbind("admin")), last);
        assert_eq!(
            apply(&c, bind("admin", Role::Reader)),
            last,
            "no demotion either"
        );
        assert_eq!(c.bindings_of("admin").unwrap()[0].role, Role::Owner);
        assert_eq!(apply(&c, bind("other", Role::Owner)), Outcome::Done);
        assert_eq!(apply(&c, bind("admin", Role::Reader)), Outcome::Done);
        assert_eq!(apply(&c, unbind("other")), last);
        assert_eq!(apply(&c, bind("admin", Role::Owner)), Outcome::Done);
        assert_eq!(apply(&c, unbind("other")), Outcome::Done);
    }

    #[test]
    fn deleting_a_principal_takes_what_acts_for_it_and_never_the_last_owner() {
        let c = crate::catalog::tests::catalog();
        for p in ["admin", "bob"] {
            let cmd = Command::CreatePrincipal {
                principal: principal(p),
            };
            assert_eq!(apply(&c, cmd), Outcome::Done);
        }
        let ci = Principal {
            kind: PrincipalKind::ServiceAccount,
            password_hash: None,
            ..principal("ci")
        };
        assert_eq!(
            apply(&c, Command::CreatePrincipal { principal: ci }),
            Outcome::Done
        );
        let org = RoleScope::Organisation("default".into());
        for (who, role) in [("admin", Role::Owner), ("bob", Role::Developer)] {
            let cmd = Command::Bind {
                binding: RoleBinding {
                    principal: who.into(),
                    scope: org.clone(),
                    role,
                },
            };
            assert_eq!(apply(&c, cmd), Outcome::Done);
        }
        for (login, owner) in [("lb", "bob"), ("la", "admin")] {
            let cmd = Command::CreateCredential {
                credential: credential(login, owner, None),
            };
            assert_eq!(apply(&c, cmd), Outcome::Done);
        }
        let gh = crate::federation::tests::federation("gh", "ci", None);
        assert_eq!(apply(&c, gh), Outcome::Done);
        let delete = |name: &str| Command::DeletePrincipal {
            name: name.into(),
            organisation: "default".into(),
            kind: if name == "ci" {
                PrincipalKind::ServiceAccount
            } else {
                PrincipalKind::User
            },
        };

        assert_eq!(apply(&c, delete("bob")), Outcome::Done);
        assert!(c.principal("bob").unwrap().is_none());
        assert!(c.bindings_of("bob").unwrap().is_empty());
        assert!(c.credential_by_login("lb").unwrap().is_none());
        assert!(
            c.credential_by_login("la").unwrap().is_some(),
            "others' stay"
        );
        assert_eq!(
            apply(&c, delete("bob")),
            Outcome::Rejected(Rejection::PrincipalUnknown("bob".into()))
        );

        let as_user = Command::DeletePrincipal {
            name: "ci".into(),
            organisation: "default".into(),
            kind: PrincipalKind::User,
        };
        assert_eq!(
            apply(&c, as_user),
            Outcome::Rejected(Rejection::PrincipalUnknown("ci".into())),
            "not the principal the proposer saw"
        );
        assert_eq!(apply(&c, delete("ci")), Outcome::Done);
        assert_eq!(c.federation("gh").unwrap(), None, "its federations go too");

        crate::catalog::tests::check(
            &c,
            delete("admin"),
            Outcome::Rejected(Rejection::LastOwner("default".into())),
        );
        // A name made again later starts with nothing of the old one.
        let again = Command::CreatePrincipal {
            principal: principal("bob"),
        };
        assert_eq!(apply(&c, again), Outcome::Done);
        assert!(c.bindings_of("bob").unwrap().is_empty());
    }
}
