//! What each role may do: a pure function of the caller's grants, the action and where it
//! happens (`Target`). No IO, so the whole permission matrix is tested in one table below.
//!
//! | role      | pull | list | push | delete | namespaces | access (principals, roles, credentials, federations) |
//! |-----------|------|------|------|--------|------------|--------------------------------------------------------|
//! | Owner     | yes  | yes  | yes  | yes    | yes        | yes                                                    |
//! | Admin     | yes  | yes  | yes  | yes    | yes        | yes                                                    |
//! | Developer | yes  | yes  | yes  | yes    | yes        | no                                                     |
//! | Reader    | yes  | yes  | no   | no     | no         | no                                                     |
//! | anonymous | public repositories only | no | no | no | no | no                                               |
//!
//! A role applies where it is bound and below: on an organisation, to everything in it; on
//! a project, to the project and its namespaces; on a namespace, to that namespace. Access
//! to the cluster itself (organisations, members, signing keys) is access on the *home*
//! organisation, the one the cluster was bootstrapped with.
//!
//! A credential (or a federated CI identity) never does more than its owner, and further
//! limits it: scope `containerRegistry:pull` allows pull and list only; a namespace
//! restriction allows that namespace only; it never manages namespaces (create, configure
//! visibility, delete them or whole repositories) nor access (a leaked one cannot mint
//! more). `containerRegistry` is registry access: push, pull, and deleting tags and
//! manifests through the registry API, as docker and skopeo do.

use shoal_raft::{CredentialScope, Role, RoleBinding, RoleScope, Visibility};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pull,
    List,
    Push,
    Delete,
    /// Create, configure and delete namespaces (and projects).
    ManageNamespaces,
    /// Principals, role bindings, other principals' credentials, federations; on the home
    /// organisation also organisations, cluster members and signing keys.
    ManageAccess,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::List => "list",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::ManageNamespaces => "manage namespaces",
            Action::ManageAccess => "manage access",
        }
    }
}

pub fn role_allows(role: Role, action: Action) -> bool {
    match action {
        Action::Pull | Action::List => true,
        Action::Push | Action::Delete | Action::ManageNamespaces => role >= Role::Developer,
        Action::ManageAccess => role >= Role::Admin,
    }
}

/// How a credential or federated identity narrows its owner's roles.
#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    pub scope: CredentialScope,
    pub namespace: Option<String>,
}

/// Everything a decision needs about the caller, read from the catalogue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Grants {
    pub authenticated: bool,
    pub bindings: Vec<RoleBinding>,
    pub limit: Option<Limit>,
}

/// Where an action happens: an organisation, perhaps one of its projects, perhaps a
/// namespace. `visibility` is what anonymous pulls see there (a repository's own, else its
/// namespace's; private above namespaces).
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub organisation: &'a str,
    pub project: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub visibility: Visibility,
}

impl Target<'_> {
    /// Whether a role bound on `scope` reaches this target.
    fn under(&self, scope: &RoleScope) -> bool {
        match scope {
            RoleScope::Organisation(o) => o == self.organisation,
            RoleScope::Project {
                organisation,
                project,
            } => organisation == self.organisation && self.project == Some(project.as_str()),
            RoleScope::Namespace(n) => self.namespace == Some(n.as_str()),
        }
    }
}

impl Grants {
    pub fn anonymous() -> Grants {
        Grants::default()
    }

    pub fn permits(&self, action: Action, target: Target) -> bool {
        if action == Action::Pull
            && target.namespace.is_some()
            && target.visibility == Visibility::Public
        {
            return true;
        }
        if !self.authenticated {
            return false;
        }
        if let Some(limit) = &self.limit {
            // A credential is registry access (push, pull, deleting images); namespaces and
            // access are managed by a signed-in principal or a service account's role.
            if matches!(action, Action::ManageAccess | Action::ManageNamespaces) {
                return false;
            }
            if limit.scope == CredentialScope::Pull
                && !matches!(action, Action::Pull | Action::List)
            {
                return false;
            }
            if let Some(only) = &limit.namespace {
                if target.namespace != Some(only.as_str()) {
                    return false;
                }
            }
        }
        self.bindings
            .iter()
            .filter(|b| target.under(&b.scope))
            .map(|b| b.role)
            .max()
            .is_some_and(|role| role_allows(role, action))
    }

    /// Whether any binding gives at least `role` somewhere in `organisation`.
    pub fn any_in(&self, organisation: &str, role: Role) -> bool {
        self.bindings.iter().any(|b| {
            b.role >= role
                && match &b.scope {
                    RoleScope::Organisation(o) => o == organisation,
                    RoleScope::Project {
                        organisation: o, ..
                    } => o == organisation,
                    RoleScope::Namespace(_) => false,
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    fn grants(roles: &[(Role, RoleScope)], limit: Option<Limit>) -> Grants {
        Grants {
            authenticated: true,
            bindings: roles
                .iter()
                .map(|(role, scope)| RoleBinding {
                    principal: "p".into(),
                    scope: scope.clone(),
                    role: *role,
                })
                .collect(),
            limit,
        }
    }

    fn org(o: &str) -> RoleScope {
        RoleScope::Organisation(o.into())
    }

    fn project(p: &str) -> RoleScope {
        RoleScope::Project {
            organisation: "acme".into(),
            project: p.into(),
        }
    }

    fn ns(n: &str) -> RoleScope {
        RoleScope::Namespace(n.into())
    }

    const fn target(
        project: Option<&'static str>,
        namespace: Option<&'static str>,
        visibility: Visibility,
    ) -> Target<'static> {
        Target {
            organisation: "acme",
            project,
            namespace,
            visibility,
        }
    }

    /// The targets every case is checked on, all in organisation `acme`.
    const TARGETS: [Target; 5] = [
        // private namespace a, at organisation level
        target(None, Some("a"), Visibility::Private),
        // public namespace b, at organisation level
        target(None, Some("b"), Visibility::Public),
        // private namespace c in project web
        target(Some("web"), Some("c"), Visibility::Private),
        // the project web itself
        target(Some("web"), None, Visibility::Private),
        // the organisation itself
        target(None, None, Visibility::Private),
    ];

    /// `expected` lists the actions allowed on each of `TARGETS`, in order.
    fn check(g: Grants, expected: [&[Action]; 5]) {
        let all = [Pull, List, Push, Delete, ManageNamespaces, ManageAccess];
        for (target, allowed) in TARGETS.iter().zip(expected) {
            for action in all {
                assert_eq!(
                    g.permits(action, *target),
                    allowed.contains(&action),
                    "{g:?} {action:?} on {target:?}",
                );
            }
        }
    }

    const EVERYTHING: &[Action] = &[Pull, List, Push, Delete, ManageNamespaces, ManageAccess];
    const DEVELOPER: &[Action] = &[Pull, List, Push, Delete, ManageNamespaces];
    /// What a push credential of a Developer or more may do: registry access only.
    const PUSH: &[Action] = &[Pull, List, Push, Delete];
    const READER: &[Action] = &[Pull, List];
    const NOTHING: &[Action] = &[];
    const PUBLIC_PULL: &[Action] = &[Pull];

    #[test]
    fn the_permission_matrix() {
        for role in [Role::Owner, Role::Admin] {
            check(grants(&[(role, org("acme"))], None), [EVERYTHING; 5]);
        }
        check(
            grants(&[(Role::Developer, org("acme"))], None),
            [DEVELOPER; 5],
        );
        check(grants(&[(Role::Reader, org("acme"))], None), [READER; 5]);
        let public_only = [NOTHING, PUBLIC_PULL, NOTHING, NOTHING, NOTHING];
        check(Grants::anonymous(), public_only);
        check(grants(&[], None), public_only);
        // A role in another organisation reaches nothing here.
        check(grants(&[(Role::Owner, org("other"))], None), public_only);
        // A namespace binding applies to that namespace only.
        check(
            grants(&[(Role::Developer, ns("a"))], None),
            [DEVELOPER, PUBLIC_PULL, NOTHING, NOTHING, NOTHING],
        );
        // A project binding applies to the project and its namespaces.
        check(
            grants(&[(Role::Admin, project("web"))], None),
            [NOTHING, PUBLIC_PULL, EVERYTHING, EVERYTHING, NOTHING],
        );
        check(
            grants(&[(Role::Reader, project("other"))], None),
            public_only,
        );
        // The strongest binding that reaches the target decides.
        check(
            grants(
                &[(Role::Reader, org("acme")), (Role::Developer, ns("c"))],
                None,
            ),
            [READER, READER, DEVELOPER, READER, READER],
        );
    }

    #[test]
    fn credentials_narrow_their_owner() {
        let limit = |scope, namespace: Option<&str>| {
            Some(Limit {
                scope,
                namespace: namespace.map(str::to_string),
            })
        };
        let owner = [(Role::Owner, org("acme"))];
        check(
            grants(&owner, limit(CredentialScope::Pull, None)),
            [READER; 5],
        );
        check(
            grants(&owner, limit(CredentialScope::All, Some("a"))),
            [PUSH, PUBLIC_PULL, NOTHING, NOTHING, NOTHING],
        );
        check(
            grants(&owner, limit(CredentialScope::Pull, Some("c"))),
            [NOTHING, PUBLIC_PULL, READER, NOTHING, NOTHING],
        );
        check(
            grants(
                &[(Role::Admin, org("acme"))],
                limit(CredentialScope::All, None),
            ),
            [PUSH; 5],
        );
        check(
            grants(
                &[(Role::Reader, org("acme"))],
                limit(CredentialScope::All, None),
            ),
            [READER; 5],
        );
    }

    #[test]
    fn any_in_finds_organisation_and_project_roles() {
        let g = grants(
            &[(Role::Reader, project("web")), (Role::Admin, ns("a"))],
            None,
        );
        assert!(g.any_in("acme", Role::Reader));
        assert!(!g.any_in("acme", Role::Developer));
        assert!(!g.any_in("other", Role::Reader));
    }
}
