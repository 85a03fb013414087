//! Tenancy in the catalogue: organisations and their projects, the places namespaces and
//! role bindings live in.
//!
//! ```text
//! o/<org>                        OrgRecord
//! p/<org>\0<project>             ProjectRecord
//! ```
//!
//! The organisation created by the cluster's bootstrap is its *home*: roles bound there
//! also run the cluster itself (organisations, members, signing keys). A namespace belongs
//! to one organisation, directly or through one of its projects; its name is still unique
//! in the whole region, because an image path (`<namespace>/<repo>`) names the namespace
//! and nothing above it.

use serde::{Deserialize, Serialize};
use sled::Batch;

use crate::access::{Role, RoleScope};
use crate::catalog::{encode, key, Catalog};
use crate::command::{Command, Outcome, Rejection};
use crate::Result;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub name: String,
    pub description: Option<String>,
    /// Set on the organisation the cluster was bootstrapped with, only.
    pub home: bool,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectRecord {
    pub organisation: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: i64,
}

impl Catalog {
    pub fn organisation(&self, name: &str) -> Result<Option<OrgRecord>> {
        self.get(&key("o/", &[name]))
    }

    pub fn organisations(&self) -> Result<Vec<OrgRecord>> {
        self.scan(b"o/")
    }

    /// The organisation the cluster was bootstrapped with (`None` before the bootstrap).
    pub fn home_organisation(&self) -> Result<Option<OrgRecord>> {
        Ok(self.organisations()?.into_iter().find(|o| o.home))
    }

    pub fn project(&self, organisation: &str, name: &str) -> Result<Option<ProjectRecord>> {
        self.get(&key("p/", &[organisation, name]))
    }

    /// The projects of `organisation`, by name.
    pub fn projects(&self, organisation: &str) -> Result<Vec<ProjectRecord>> {
        let mut prefix = key("p/", &[organisation]);
        prefix.push(0);
        self.scan(&prefix)
    }

    pub(crate) fn plan_tenancy(&self, cmd: &Command, batch: &mut Batch) -> Result<Option<Outcome>> {
        let reject = |r| Ok(Some(Outcome::Rejected(r)));
        match cmd {
            Command::CreateOrganisation { org, owner } => {
                if self.organisation(&org.name)?.is_some() {
                    return reject(Rejection::OrganisationExists(org.name.clone()));
                }
                if self.principal(owner)?.is_none() {
                    return reject(Rejection::PrincipalUnknown(owner.clone()));
                }
                let org = OrgRecord {
                    home: false,
                    ..org.clone()
                };
                batch.insert(key("o/", &[&org.name]), encode(&org));
                let scope = RoleScope::Organisation(org.name.clone());
                batch.insert(self.binding_key(owner, &scope), encode(&Role::Owner));
            }
            Command::CreateProject { project: p } => {
                if self.organisation(&p.organisation)?.is_none() {
                    return reject(Rejection::OrganisationUnknown(p.organisation.clone()));
                }
                if self.project(&p.organisation, &p.name)?.is_some() {
                    return reject(Rejection::ProjectExists(p.name.clone()));
                }
                batch.insert(key("p/", &[&p.organisation, &p.name]), encode(p));
            }
            Command::DeleteProject { organisation, name } => {
                if self.project(organisation, name)?.is_none() {
                    return reject(Rejection::ProjectUnknown(name.clone()));
                }
                let in_project = |ns: &crate::NamespaceRecord| {
                    ns.organisation == *organisation && ns.project.as_deref() == Some(name)
                };
                if self.namespaces()?.iter().any(in_project) {
                    return reject(Rejection::ProjectNotEmpty(name.clone()));
                }
                batch.remove(key("p/", &[organisation, name]));
                let scope = RoleScope::Project {
                    organisation: organisation.clone(),
                    project: name.clone(),
                };
                self.unbind_scope(&scope, batch)?;
            }
            _ => return Ok(None),
        }
        Ok(Some(Outcome::Done))
    }
}
