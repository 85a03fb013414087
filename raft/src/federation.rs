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

use serde::{Deserialize, Serialize};
use sled::Batch;

use crate::access::{CredentialScope, PrincipalKind};
use crate::catalog::{encode, key, Catalog};
use crate::command::{Command, Outcome, Rejection};
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
}

impl Catalog {
    pub fn federation(&self, name: &str) -> Result<Option<FederationRecord>> {
        self.get(&key("f/", &[name]))
    }

    pub fn federations(&self) -> Result<Vec<FederationRecord>> {
        self.scan(b"f/")
    }

    pub(crate) fn plan_federation(
        &self,
        cmd: &Command,
        batch: &mut Batch,
    ) -> Result<Option<Outcome>> {
        let reject = |r| Ok(Some(Outcome::Rejected(r)));
        match cmd {
            Command::CreateFederation { federation: f } => {
                if self.federation(&f.name)?.is_some() {
                    return reject(Rejection::FederationExists(f.name.clone()));
                }
                match self.principal(&f.service_account)? {
                    None => return reject(Rejection::PrincipalUnknown(f.service_account.clone())),
                    Some(p) if p.kind != PrincipalKind::ServiceAccount => {
                        return reject(Rejection::NotAServiceAccount(p.name))
                    }
                    Some(_) => {}
                }
                if let Some(ns) = &f.namespace {
                    if self.namespace(ns)?.is_none() {
                        return reject(Rejection::NamespaceUnknown(ns.clone()));
                    }
                }
                batch.insert(key("f/", &[&f.name]), encode(f));
            }
            Command::DeleteFederation { name } => {
                if self.federation(name)?.is_none() {
                    return reject(Rejection::FederationUnknown(name.clone()));
                }
                batch.remove(key("f/", &[name]));
            }
            _ => return Ok(None),
        }
        Ok(Some(Outcome::Done))
    }
}
