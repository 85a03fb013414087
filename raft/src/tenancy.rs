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

use crate::batch::Batch;
use serde::{Deserialize, Serialize};

use crate::access::{Role, RoleScope};
use crate::catalog::{encode, Catalog};
use crate::command::{done, rejected, Outcome, Rejection};
use crate::keys::{self, key};
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
        self.get(&key(keys::ORGANISATION, &[name]))
    }

    pub fn organisations(&self) -> Result<Vec<OrgRecord>> {
        self.scan(keys::ORGANISATION.as_bytes())
    }

    /// The organisation the cluster was bootstrapped with (`None` before the bootstrap).
    pub fn home_organisation(&self) -> Result<Option<OrgRecord>> {
        Ok(self.organisations()?.into_iter().find(|o| o.home))
    }

    pub fn project(&self, organisation: &str, name: &str) -> Result<Option<ProjectRecord>> {
        self.get(&key(keys::PROJECT, &[organisation, name]))
    }

    /// The projects of `organisation`, by name.
    pub fn projects(&self, organisation: &str) -> Result<Vec<ProjectRecord>> {
        let mut prefix = key(keys::PROJECT, &[organisation]);
        prefix.push(0);
        self.scan(&prefix)
    }

    pub(crate) fn create_organisation(
        &self,
        org: &OrgRecord,
        owner: &str,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if self.organisation(&org.name)?.is_some() {
            return rejected(Rejection::OrganisationExists(org.name.clone()));
        }
        if self.principal(owner)?.is_none() {
            return rejected(Rejection::PrincipalUnknown(owner.into()));
        }
        let org = OrgRecord {
            home: false,
            ..org.clone()
        };
        batch.insert(key(keys::ORGANISATION, &[&org.name]), encode(&org));
        let scope = RoleScope::Organisation(org.name.clone());
        batch.insert(self.binding_key(owner, &scope), encode(&Role::Owner));
        done()
    }

    pub(crate) fn create_project(&self, p: &ProjectRecord, batch: &mut Batch) -> Result<Outcome> {
        if self.organisation(&p.organisation)?.is_none() {
            return rejected(Rejection::OrganisationUnknown(p.organisation.clone()));
        }
        if self.project(&p.organisation, &p.name)?.is_some() {
            return rejected(Rejection::ProjectExists(p.name.clone()));
        }
        batch.insert(key(keys::PROJECT, &[&p.organisation, &p.name]), encode(p));
        done()
    }

    pub(crate) fn delete_project(
        &self,
        organisation: &str,
        name: &str,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if self.project(organisation, name)?.is_none() {
            return rejected(Rejection::ProjectUnknown(name.into()));
        }
        let in_project = |ns: &crate::NamespaceRecord| {
            ns.organisation == organisation && ns.project.as_deref() == Some(name)
        };
        if self.namespaces()?.iter().any(in_project) {
            return rejected(Rejection::ProjectNotEmpty(name.into()));
        }
        batch.remove(key(keys::PROJECT, &[organisation, name]));
        let scope = RoleScope::Project {
            organisation: organisation.into(),
            project: name.into(),
        };
        self.unbind_scope(&scope, batch)?;
        done()
    }

    pub(crate) fn delete_organisation(&self, name: &str, batch: &mut Batch) -> Result<Outcome> {
        let Some(org) = self.organisation(name)? else {
            return rejected(Rejection::OrganisationUnknown(name.into()));
        };
        if org.home {
            return rejected(Rejection::HomeOrganisation(name.into()));
        }
        let holds_namespace = self.namespaces()?.iter().any(|n| n.organisation == name);
        if holds_namespace || !self.projects(name)?.is_empty() {
            return rejected(Rejection::OrganisationNotEmpty(name.into()));
        }
        let members: Vec<String> = self
            .principals()?
            .into_iter()
            .filter(|p| p.organisation == name)
            .map(|p| p.name)
            .collect();
        let leaving: Vec<&str> = members.iter().map(String::as_str).collect();
        if let Some(other) = self.orphaned_by(&leaving, Some(name))? {
            return rejected(Rejection::LastOwner(other));
        }
        for m in &members {
            self.drop_principal(m, batch)?;
        }
        self.unbind_scope(&RoleScope::Organisation(name.into()), batch)?;
        batch.remove(key(keys::ORGANISATION, &[name]));
        done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::{bind, catalog, check, ns_in, organisation, principal, project};
    use crate::Command;
    use crate::PrincipalKind;

    fn web(organisation: &str) -> RoleScope {
        RoleScope::Project {
            organisation: organisation.into(),
            project: "web".into(),
        }
    }

    fn delete_web(organisation: &str) -> Command {
        Command::DeleteProject {
            organisation: organisation.into(),
            name: "web".into(),
        }
    }

    #[test]
    fn a_new_organisation_binds_its_owner_and_is_never_home() {
        let c = catalog();
        check(
            &c,
            organisation("acme", "alice"),
            Outcome::Rejected(Rejection::PrincipalUnknown("alice".into())),
        );
        check(&c, principal("alice", PrincipalKind::User), Outcome::Done);
        check(
            &c,
            organisation("default", "alice"),
            Outcome::Rejected(Rejection::OrganisationExists("default".into())),
        );
        let claims_home = Command::CreateOrganisation {
            org: OrgRecord {
                name: "acme".into(),
                description: Some("Acme".into()),
                home: true,
                created_at: 2,
            },
            owner: "alice".into(),
        };
        check(&c, claims_home, Outcome::Done);
        let acme = c.organisation("acme").unwrap().unwrap();
        assert!(!acme.home, "only the bootstrap makes a home organisation");
        assert_eq!(acme.description.as_deref(), Some("Acme"));
        assert_eq!(c.home_organisation().unwrap().unwrap().name, "default");
        let bindings = c.bindings_of("alice").unwrap();
        assert_eq!(bindings.len(), 1);
        assert_eq!(bindings[0].scope, RoleScope::Organisation("acme".into()));
        assert_eq!(bindings[0].role, Role::Owner);
    }

    #[test]
    fn projects_live_in_a_known_organisation_under_names_unique_there() {
        let c = catalog();
        check(&c, principal("alice", PrincipalKind::User), Outcome::Done);
        check(
            &c,
            project("acme", "web"),
            Outcome::Rejected(Rejection::OrganisationUnknown("acme".into())),
        );
        check(&c, organisation("acme", "alice"), Outcome::Done);
        check(&c, project("default", "web"), Outcome::Done);
        check(
            &c,
            project("default", "web"),
            Outcome::Rejected(Rejection::ProjectExists("web".into())),
        );
        check(&c, project("acme", "web"), Outcome::Done);
        check(&c, project("acme", "api"), Outcome::Done);
        let names = |org: &str| -> Vec<String> {
            c.projects(org)
                .unwrap()
                .into_iter()
                .map(|p| p.name)
                .collect()
        };
        assert_eq!(names("default"), ["web"]);
        assert_eq!(names("acme"), ["api", "web"]);
        assert_eq!(
            c.project("acme", "web").unwrap().unwrap().organisation,
            "acme"
        );
    }

    #[test]
    fn a_project_is_deleted_only_when_empty_and_takes_its_bindings() {
        let c = catalog();
        check(&c, principal("alice", PrincipalKind::User), Outcome::Done);
        check(&c, organisation("acme", "alice"), Outcome::Done);
        check(
            &c,
            delete_web("default"),
            Outcome::Rejected(Rejection::ProjectUnknown("web".into())),
        );
        for org in ["default", "acme"] {
            check(&c, project(org, "web"), Outcome::Done);
            check(&c, bind("alice", web(org)), Outcome::Done);
        }
        check(&c, ns_in("site", "default", Some("web")), Outcome::Done);
        check(&c, ns_in("shop", "acme", Some("web")), Outcome::Done);
        let scope = RoleScope::Namespace("site".into());
        check(&c, bind("alice", scope), Outcome::Done);
        check(
            &c,
            delete_web("default"),
            Outcome::Rejected(Rejection::ProjectNotEmpty("web".into())),
        );
        check(
            &c,
            Command::DeleteNamespace {
                name: "site".into(),
            },
            Outcome::Done,
        );
        let scopes = || -> Vec<RoleScope> {
            let mut s: Vec<_> = c
                .bindings_of("alice")
                .unwrap()
                .into_iter()
                .map(|b| b.scope)
                .collect();
            s.sort_by_key(RoleScope::key_part);
            s
        };
        let acme = RoleScope::Organisation("acme".into());
        assert_eq!(
            scopes(),
            [acme.clone(), web("acme"), web("default")],
            "deleting a namespace leaves its project's bindings"
        );

        // acme's `shop` is in acme's `web`, not in default's.
        check(&c, delete_web("default"), Outcome::Done);
        assert_eq!(c.project("default", "web").unwrap(), None);
        assert_eq!(
            scopes(),
            [acme, web("acme")],
            "the project's bindings went with it, the same-named project's stayed"
        );
    }

    #[test]
    fn an_empty_organisation_is_deleted_with_its_principals_but_never_home_or_orphaning() {
        let c = catalog();
        check(&c, principal("alice", PrincipalKind::User), Outcome::Done);
        check(&c, organisation("acme", "alice"), Outcome::Done);
        let member = |name: &str| Command::CreatePrincipal {
            principal: crate::Principal {
                name: name.into(),
                kind: PrincipalKind::User,
                organisation: "acme".into(),
                password_hash: None,
                created_at: 4,
                uid: format!("uid-{name}"),
            },
        };
        check(&c, member("bob"), Outcome::Done);
        check(&c, member("carol"), Outcome::Done);
        let delete = |name: &str| Command::DeleteOrganisation { name: name.into() };

        check(
            &c,
            delete("default"),
            Outcome::Rejected(Rejection::HomeOrganisation("default".into())),
        );
        check(
            &c,
            delete("nope"),
            Outcome::Rejected(Rejection::OrganisationUnknown("nope".into())),
        );
        for holding in [project("acme", "web"), ns_in("acme-ns", "acme", None)] {
            check(&c, holding, Outcome::Done);
            check(
                &c,
                delete("acme"),
                Outcome::Rejected(Rejection::OrganisationNotEmpty("acme".into())),
            );
            let undo = match c.project("acme", "web").unwrap() {
                Some(_) => delete_web("acme"),
                None => Command::DeleteNamespace {
                    name: "acme-ns".into(),
                },
            };
            check(&c, undo, Outcome::Done);
        }
        // bob and carol (acme's own) are the only Owners of organisation "other": deleting
        // acme would leave it with none.
        check(&c, organisation("other", "bob"), Outcome::Done);
        let owner = |who: &str, org: &str| Command::Bind {
            binding: crate::RoleBinding {
                principal: who.into(),
                scope: RoleScope::Organisation(org.into()),
                role: Role::Owner,
            },
        };
        check(&c, owner("carol", "other"), Outcome::Done);
        check(
            &c,
            delete("acme"),
            Outcome::Rejected(Rejection::LastOwner("other".into())),
        );
        // alice, of default, is acme's Owner (she created it) and now other's too.
        check(&c, owner("alice", "other"), Outcome::Done);

        check(&c, delete("acme"), Outcome::Done);
        assert!(c.organisation("acme").unwrap().is_none());
        for gone in ["bob", "carol"] {
            assert!(
                c.principal(gone).unwrap().is_none(),
                "{gone} went with acme"
            );
            assert!(c.bindings_of(gone).unwrap().is_empty());
        }
        let alice: Vec<RoleScope> = c
            .bindings_of("alice")
            .unwrap()
            .into_iter()
            .map(|b| b.scope)
            .collect();
        assert_eq!(
            alice,
            vec![RoleScope::Organisation("other".into())],
            "her role on acme went, on other stayed"
        );
    }
}
