//! Federated identities in the catalogue: OIDC issuers whose tokens (a CI job's, for
//! example) are exchanged for registry tokens.
//!
//! ```text
//! f/<name>                       FederationRecord
//! ```
//!
//! A federated identity acts as a service account, narrowed like a credential (scope and an
//! optional namespace), so policy treats it exactly as it treats credentials. Checking a
//! token's signature against the issuer's keys is the node's job (`proxy::auth::oidc`):
//! only the configuration is replicated.

use std::collections::BTreeMap;

use crate::batch::Batch;
use serde::{Deserialize, Serialize};

use crate::access::{CredentialScope, PrincipalKind};
use crate::catalog::{encode, Catalog};
use crate::command::{done, rejected, Outcome, Rejection};
use crate::keys::{self, key};
use crate::Result;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FederationRecord {
    pub name: String,
    /// Must equal the token's `iss`; its keys are found through
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// Must be one of the token's `aud` values.
    pub audience: String,
    /// Claim → pattern (`*` matches any run of characters); every one must match.
    pub conditions: BTreeMap<String, String>,
    /// The service account the exchanged token acts as.
    pub service_account: String,
    pub scope: CredentialScope,
    pub namespace: Option<String>,
    pub created_at: i64,
    /// Unique to this federated identity, never reused (as `Principal::uid`).
    pub uid: String,
}

impl Catalog {
    pub fn federation(&self, name: &str) -> Result<Option<FederationRecord>> {
        self.get(&key(keys::FEDERATION, &[name]))
    }

    pub fn federations(&self) -> Result<Vec<FederationRecord>> {
        self.scan(keys::FEDERATION.as_bytes())
    }

    pub(crate) fn create_federation(
        &self,
        f: &FederationRecord,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if self.federation(&f.name)?.is_some() {
            return rejected(Rejection::FederationExists(f.name.clone()));
        }
        match self.principal(&f.service_account)? {
            None => return rejected(Rejection::PrincipalUnknown(f.service_account.clone())),
            Some(p) if p.kind != PrincipalKind::ServiceAccount => {
                return rejected(Rejection::NotAServiceAccount(p.name))
            }
            Some(_) => {}
        }
        if let Some(ns) = &f.namespace {
            if self.namespace(ns)?.is_none() {
                return rejected(Rejection::NamespaceUnknown(ns.clone()));
            }
        }
        batch.insert(key(keys::FEDERATION, &[&f.name]), encode(f));
        done()
    }

    pub(crate) fn delete_federation(&self, name: &str, batch: &mut Batch) -> Result<Outcome> {
        if self.federation(name)?.is_none() {
            return rejected(Rejection::FederationUnknown(name.into()));
        }
        batch.remove(key(keys::FEDERATION, &[name]));
        done()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalog::tests::{catalog, check, ns, principal};
    use crate::Command;
    use crate::PrincipalKind;

    pub(crate) fn federation(
        name: &str,
        service_account: &str,
        namespace: Option<&str>,
    ) -> Command {
        Command::CreateFederation {
            federation: FederationRecord {
                name: name.into(),
                issuer: "https://token.actions.githubusercontent.com".into(),
                audience: "shoal".into(),
                conditions: BTreeMap::from([("repository".into(), "acme/*".into())]),
                service_account: service_account.into(),
                scope: CredentialScope::Pull,
                namespace: namespace.map(Into::into),
                created_at: 5,
                uid: format!("uid-{name}"),
            },
        }
    }

    #[test]
    fn a_federation_acts_as_a_known_service_account_in_a_known_namespace() {
        let c = catalog();
        check(&c, principal("alice", PrincipalKind::User), Outcome::Done);
        check(
            &c,
            principal("ci", PrincipalKind::ServiceAccount),
            Outcome::Done,
        );
        let cases = [
            (
                federation("gh", "ghost", None),
                Rejection::PrincipalUnknown("ghost".into()),
            ),
            (
                federation("gh", "alice", None),
                Rejection::NotAServiceAccount("alice".into()),
            ),
            (
                federation("gh", "ci", Some("acme")),
                Rejection::NamespaceUnknown("acme".into()),
            ),
        ];
        for (cmd, rejection) in cases {
            check(&c, cmd, Outcome::Rejected(rejection));
        }
        check(&c, ns("acme"), Outcome::Done);
        let create = federation("gh", "ci", Some("acme"));
        check(&c, create.clone(), Outcome::Done);
        let Command::CreateFederation { federation: stored } = create else {
            unreachable!()
        };
        assert_eq!(c.federation("gh").unwrap(), Some(stored.clone()));
        check(
            &c,
            federation("gh", "ci", None),
            Outcome::Rejected(Rejection::FederationExists("gh".into())),
        );
        check(&c, federation("gitlab", "ci", None), Outcome::Done);
        let names: Vec<String> = c
            .federations()
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["gh", "gitlab"]);
    }

    #[test]
    fn deleting_a_federation_removes_it_alone() {
        let c = catalog();
        check(
            &c,
            principal("ci", PrincipalKind::ServiceAccount),
            Outcome::Done,
        );
        let delete = |name: &str| Command::DeleteFederation { name: name.into() };
        check(
            &c,
            delete("gh"),
            Outcome::Rejected(Rejection::FederationUnknown("gh".into())),
        );
        check(&c, federation("gh", "ci", None), Outcome::Done);
        check(&c, federation("gitlab", "ci", None), Outcome::Done);
        check(&c, delete("gh"), Outcome::Done);
        assert_eq!(c.federation("gh").unwrap(), None);
        assert!(c.federation("gitlab").unwrap().is_some());
        assert!(
            c.principal("ci").unwrap().is_some(),
            "the service account stays"
        );
        check(
            &c,
            delete("gh"),
            Outcome::Rejected(Rejection::FederationUnknown("gh".into())),
        );
    }

    #[test]
    fn deleting_a_namespace_drops_the_credentials_and_federations_restricted_to_it() {
        let c = catalog();
        check(
            &c,
            principal("ci", PrincipalKind::ServiceAccount),
            Outcome::Done,
        );
        check(&c, ns("acme"), Outcome::Done);
        check(&c, ns("acme-2"), Outcome::Done);
        for (name, namespace) in [("gh", Some("acme")), ("gl", Some("acme-2")), ("all", None)] {
            check(&c, federation(name, "ci", namespace), Outcome::Done);
        }
        let credential = |login: &str, namespace: Option<&str>| Command::CreateCredential {
            credential: crate::access::tests::credential(login, "ci", namespace),
        };
        for (login, namespace) in [("la", Some("acme")), ("lb", Some("acme-2")), ("lc", None)] {
            check(&c, credential(login, namespace), Outcome::Done);
        }

        check(
            &c,
            Command::DeleteNamespace {
                name: "acme".into(),
            },
            Outcome::Done,
        );
        assert_eq!(c.federation("gh").unwrap(), None);
        assert!(c.credential("id-la").unwrap().is_none());
        assert!(c.credential_by_login("la").unwrap().is_none());
        for f in ["gl", "all"] {
            assert!(
                c.federation(f).unwrap().is_some(),
                "{f} is not restricted to acme"
            );
        }
        for l in ["lb", "lc"] {
            assert!(
                c.credential_by_login(l).unwrap().is_some(),
                "{l} is not restricted to acme"
            );
        }
        // A namespace made later under the same name starts without them.
        check(&c, ns("acme"), Outcome::Done);
        assert!(c.credential_by_login("la").unwrap().is_none());
        assert_eq!(c.federation("gh").unwrap(), None);
    }
}
