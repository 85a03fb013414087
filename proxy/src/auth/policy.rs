//! What each role may do: a pure function of the caller's grants, the action and the target
//! namespace. No IO, so the whole permission matrix is tested in one table below.
//!
//! | role      | pull | list | push | delete | namespaces | access (users, roles, others' credentials) |
//! |-----------|------|------|------|--------|------------|--------------------------------------------|
//! | Owner     | yes  | yes  | yes  | yes    | yes        | yes                                        |
//! | Admin     | yes  | yes  | yes  | yes    | yes        | yes                                        |
//! | Developer | yes  | yes  | yes  | yes    | yes        | no                                         |
//! | Reader    | yes  | yes  | no   | no     | no         | no                                         |
//! | anonymous | public namespaces only | no | no | no | no | no                                     |
//!
//! A role bound on the organisation applies to every namespace; a role bound on a namespace
//! only there. A credential never does more than its owner, and further limits it: scope
//! `containerRegistry:pull` allows pull and list only; a namespace restriction allows that
//! namespace only; credentials never manage access (a leaked one cannot mint more).

use shoal_raft::{CredentialScope, Role, RoleBinding, RoleScope, Visibility};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pull,
    List,
    Push,
    Delete,
    /// Create, configure and delete namespaces.
    ManageNamespaces,
    /// Users, service accounts, role bindings, other principals' credentials, the cluster.
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

/// How a credential narrows its owner's roles.
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

/// The namespace an action is on, if any.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub namespace: &'a str,
    pub visibility: Visibility,
}

impl Grants {
    pub fn anonymous() -> Grants {
        Grants::default()
    }

    pub fn permits(&self, action: Action, target: Option<Target>) -> bool {
        if action == Action::Pull && target.is_some_and(|t| t.visibility == Visibility::Public) {
            return true;
        }
        if !self.authenticated {
            return false;
        }
        if let Some(limit) = &self.limit {
            if action == Action::ManageAccess {
                return false;
            }
            if limit.scope == CredentialScope::Pull
                && !matches!(action, Action::Pull | Action::List)
            {
                return false;
            }
            if let Some(only) = &limit.namespace {
                if target.is_none_or(|t| t.namespace != only) {
                    return false;
                }
            }
        }
        self.bindings
            .iter()
            .filter(|b| match &b.scope {
                RoleScope::Organisation(_) => true,
                RoleScope::Namespace(n) => target.is_some_and(|t| t.namespace == n),
            })
            .map(|b| b.role)
            .max()
            .is_some_and(|role| role_allows(role, action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    fn grants(role: Option<(Role, RoleScope)>, limit: Option<Limit>) -> Grants {
        Grants {
            authenticated: true,
            bindings: role
                .into_iter()
                .map(|(role, scope)| RoleBinding {
                    principal: "p".into(),
                    scope,
                    role,
                })
                .collect(),
            limit,
        }
    }

    fn org(role: Role) -> Option<(Role, RoleScope)> {
        Some((role, RoleScope::Organisation("default".into())))
    }

    const PRIVATE_A: Target = Target {
        namespace: "a",
        visibility: Visibility::Private,
    };
    const PUBLIC_B: Target = Target {
        namespace: "b",
        visibility: Visibility::Public,
    };

    /// `expected` lists the actions allowed on (private a, public b, no namespace).
    fn check(g: Grants, expected: [&[Action]; 3]) {
        let all = [Pull, List, Push, Delete, ManageNamespaces, ManageAccess];
        for (target, allowed) in [Some(PRIVATE_A), Some(PUBLIC_B), None].iter().zip(expected) {
            for action in all {
                assert_eq!(
                    g.permits(action, *target),
                    allowed.contains(&action),
                    "{g:?} {action:?} on {:?}",
                    target.map(|t| t.namespace)
                );
            }
        }
    }

    #[test]
    fn the_permission_matrix() {
        let everything: &[Action] = &[Pull, List, Push, Delete, ManageNamespaces, ManageAccess];
        let developer: &[Action] = &[Pull, List, Push, Delete, ManageNamespaces];
        let reader: &[Action] = &[Pull, List];
        for role in [Role::Owner, Role::Admin] {
            check(grants(org(role), None), [everything; 3]);
        }
        check(grants(org(Role::Developer), None), [developer; 3]);
        check(grants(org(Role::Reader), None), [reader; 3]);
        check(Grants::anonymous(), [&[], &[Pull], &[]]);
        check(grants(None, None), [&[], &[Pull], &[]]);
        // A namespace binding applies to that namespace only.
        let on_a = Some((Role::Developer, RoleScope::Namespace("a".into())));
        check(grants(on_a, None), [developer, &[Pull], &[]]);
        // Credentials narrow their owner.
        let pull_only = Limit {
            scope: CredentialScope::Pull,
            namespace: None,
        };
        check(grants(org(Role::Owner), Some(pull_only)), [reader; 3]);
        let only_a = Limit {
            scope: CredentialScope::All,
            namespace: Some("a".into()),
        };
        check(
            grants(org(Role::Owner), Some(only_a)),
            [developer, &[Pull], &[]],
        );
        let all = Limit {
            scope: CredentialScope::All,
            namespace: None,
        };
        check(grants(org(Role::Admin), Some(all.clone())), [developer; 3]);
        check(grants(org(Role::Reader), Some(all)), [reader; 3]);
    }
}
