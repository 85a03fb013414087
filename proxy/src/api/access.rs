//! `/api/v1/me`, `/api/v1/users`, `/api/v1/service-accounts` and `/api/v1/role-bindings`:
//! who is calling, principals, and the roles they hold on an organisation, a project or a
//! namespace.
//!
//! A principal belongs to one organisation, whose admins manage it; its roles come from its
//! bindings only, which may be anywhere. A binding is made or removed by whoever may manage
//! access where it applies (an organisation's admins; a project's or namespace's admins
//! there).

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_raft::{Command, Principal, PrincipalKind, Role, RoleBinding, RoleScope};

use super::{json_body, time, Api};
use crate::auth::{place, secrets, Action, Caller, Need, Place, Subject};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::{NamespaceName, Slug};
use crate::wire::{Reply, Request, RequestBody};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePrincipal {
    name: String,
    #[serde(default)]
    password: Option<String>,
    /// Default: the caller's own organisation.
    #[serde(default)]
    organisation: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Binding {
    principal: String,
    #[serde(default)]
    role: Option<String>,
    /// The organisation bound on, or holding the project (default: the caller's own).
    #[serde(default)]
    organisation: Option<String>,
    /// Bind on this project of the organisation.
    #[serde(default)]
    project: Option<String>,
    /// Bind on this namespace (organisation and project are then not given).
    #[serde(default)]
    namespace: Option<String>,
}

pub(super) const MIN_PASSWORD: usize = 12;

fn parse_role(s: &str) -> ApiResult<Role> {
    match s.to_ascii_lowercase().as_str() {
        "owner" => Ok(Role::Owner),
        "admin" => Ok(Role::Admin),
        "developer" => Ok(Role::Developer),
        "reader" => Ok(Role::Reader),
        _ => Err(ApiError::new(
            Code::BadRequest,
            format!("role must be owner, admin, developer or reader, got {s:?}"),
        )),
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Owner => "owner",
        Role::Admin => "admin",
        Role::Developer => "developer",
        Role::Reader => "reader",
    }
}

fn kind_name(k: PrincipalKind) -> &'static str {
    match k {
        PrincipalKind::User => "user",
        PrincipalKind::ServiceAccount => "service-account",
    }
}

fn principal_view(p: &Principal) -> Value {
    json!({
        "name": p.name,
        "kind": kind_name(p.kind),
        "organisation": p.organisation,
        "created_at": time(Some(p.created_at)),
    })
}

fn binding_view(b: &RoleBinding) -> Value {
    let (org, project, ns) = match &b.scope {
        RoleScope::Organisation(o) => (Some(o.as_str()), None, None),
        RoleScope::Project {
            organisation,
            project,
        } => (Some(organisation.as_str()), Some(project.as_str()), None),
        RoleScope::Namespace(n) => (None, None, Some(n.as_str())),
    };
    json!({
        "principal": b.principal,
        "role": role_name(b.role),
        "organisation": org,
        "project": project,
        "namespace": ns,
    })
}

impl Api {
    /// The scope a binding request names, checked for shape (not for existence: the state
    /// machine rejects scopes that do not exist).
    fn scope_of(&self, caller: &Caller, b: &Binding) -> ApiResult<RoleScope> {
        match (&b.namespace, &b.organisation, &b.project) {
            (Some(n), None, None) => Ok(RoleScope::Namespace(NamespaceName::parse(n)?.to_string())),
            (Some(_), _, _) => Err(ApiError::new(
                Code::BadRequest,
                "bind on a namespace, a project or an organisation, not several",
            )),
            (None, org, project) => {
                let organisation = match org {
                    Some(o) => Slug::parse("organisation", o)?.to_string(),
                    None => self.own_organisation(caller)?,
                };
                Ok(match project {
                    Some(p) => RoleScope::Project {
                        organisation,
                        project: Slug::parse("project", p)?.to_string(),
                    },
                    None => RoleScope::Organisation(organisation),
                })
            }
        }
    }

    /// Where managing bindings on `scope` is decided.
    async fn place_of_scope(&self, scope: &RoleScope) -> ApiResult<Place> {
        Ok(match scope {
            RoleScope::Organisation(o) => Place::organisation(o),
            RoleScope::Project {
                organisation,
                project,
            } => Place::project(organisation, Some(project)),
            RoleScope::Namespace(n) => place::namespace_or_home(&self.meta, n).await?,
        })
    }

    /// Whether `caller` may manage principal `name` (an admin of its organisation).
    pub(super) fn manages_principal(&self, caller: &Caller, name: &str) -> ApiResult<bool> {
        Ok(match self.meta.catalog().principal(name)? {
            Some(p) => caller.may(Action::ManageAccess, &Place::organisation(&p.organisation)),
            None => false,
        })
    }

    /// Whether `caller` may hand out a way to act as principal `name` (a credential, a pull
    /// secret's fresh secret, a federated identity): it must manage the principal *and*
    /// manage access wherever the principal holds a role, since whatever acts as it acts
    /// with all of those roles. An organisation's admin cannot mint a key to another
    /// organisation where its member was given a role (the rule deletion follows too).
    pub(super) async fn may_act_for(&self, caller: &Caller, name: &str) -> ApiResult<bool> {
        if !self.manages_principal(caller, name)? {
            return Ok(false);
        }
        for b in self.meta.catalog().bindings_of(name)? {
            let at = self.place_of_scope(&b.scope).await?;
            if !caller.may(Action::ManageAccess, &at) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub(super) async fn me(&self, req: &Request) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let (via, id) = match &caller.subject {
            Subject::Credential { id, .. } => ("credential", Some(id.as_str())),
            Subject::Federated { federation, .. } => ("federation", Some(federation.as_str())),
            _ => ("password", None),
        };
        let principal = caller.principal().unwrap_or_default();
        let rec = self.meta.catalog().principal(principal)?;
        let bindings: Vec<Value> = caller.grants.bindings.iter().map(binding_view).collect();
        let limit = caller.grants.limit.as_ref().map(|l| {
            json!({
                "scope": super::credentials::scope_name(l.scope),
                "namespace": l.namespace,
            })
        });
        Ok(Reply::json(
            StatusCode::OK,
            &json!({
                "principal": principal,
                "kind": rec.as_ref().map(|p| kind_name(p.kind)),
                "organisation": rec.as_ref().map(|p| p.organisation.clone()),
                "via": via,
                "id": id,
                "limit": limit,
                "role_bindings": bindings,
                "runs_cluster": self.runs_cluster(&caller),
            }),
        ))
    }

    pub(super) async fn create_principal(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        kind: PrincipalKind,
    ) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let input: CreatePrincipal = json_body(req, body).await?;
        let organisation = match &input.organisation {
            Some(o) => Slug::parse("organisation", o)?.to_string(),
            None => self.own_organisation(&caller)?,
        };
        self.auth.require(
            &caller,
            Action::ManageAccess,
            &Place::organisation(&organisation),
        )?;
        let name = Slug::parse("principal", &input.name)?;
        if name.as_str() == crate::auth::OIDC_LOGIN {
            return Err(ApiError::new(
                Code::BadRequest,
                "the name oidc is reserved for CI jobs signing in with an OIDC token",
            ));
        }
        let password_hash = match (kind, input.password) {
            (PrincipalKind::User, Some(p)) if p.chars().count() >= MIN_PASSWORD => Some(
                tokio::task::spawn_blocking(move || secrets::hash(&p))
                    .await
                    .map_err(|e| ApiError::internal("hashing a password", e))?,
            ),
            (PrincipalKind::User, _) => {
                return Err(ApiError::new(
                    Code::BadRequest,
                    format!("a user needs a password of at least {MIN_PASSWORD} characters"),
                ))
            }
            (PrincipalKind::ServiceAccount, None) => None,
            (PrincipalKind::ServiceAccount, Some(_)) => {
                return Err(ApiError::new(
                    Code::BadRequest,
                    "service accounts have no password; create a credential for them",
                ))
            }
        };
        let principal = Principal {
            name: name.to_string(),
            kind,
            organisation,
            password_hash,
            created_at: chrono::Utc::now().timestamp(),
            uid: secrets::new_uid(),
        };
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::CreatePrincipal {
                principal: principal.clone(),
            },
        )
        .await?;
        Ok(Reply::json(
            StatusCode::CREATED,
            &principal_view(&principal),
        ))
    }

    /// Deletes a user or service account with its credentials, role bindings and federated
    /// identities; one the caller does not manage is reported missing.
    pub(super) async fn delete_principal(
        &self,
        req: &Request,
        name: &str,
        kind: PrincipalKind,
    ) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let name = Slug::parse("principal", name)?;
        let unknown = || {
            ApiError::new(
                Code::NotFound,
                format!("{} {name} does not exist", kind_name(kind)),
            )
        };
        let p = self
            .meta
            .catalog()
            .principal(name.as_str())?
            .filter(|p| p.kind == kind)
            .ok_or_else(unknown)?;
        if !caller.may(Action::ManageAccess, &Place::organisation(&p.organisation)) {
            return Err(unknown());
        }
        // Deleting takes every role it holds, so the caller must manage access wherever one
        // is bound: an organisation's admin cannot strip a role held elsewhere.
        if !self.may_act_for(&caller, name.as_str()).await? {
            return Err(ApiError::new(
                Code::Denied,
                format!("{name} holds roles where you do not manage access"),
            ));
        }
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::DeletePrincipal {
                name: name.to_string(),
                organisation: p.organisation.clone(),
                kind,
            },
        )
        .await?;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }

    /// The users (or service accounts) of the organisations the caller manages.
    pub(super) async fn list_principals(
        &self,
        req: &Request,
        kind: PrincipalKind,
    ) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let all: Vec<Value> = self
            .meta
            .catalog()
            .principals()?
            .iter()
            .filter(|p| p.kind == kind)
            .filter(|p| caller.may(Action::ManageAccess, &Place::organisation(&p.organisation)))
            .map(principal_view)
            .collect();
        let key = match kind {
            PrincipalKind::User => "users",
            PrincipalKind::ServiceAccount => "service_accounts",
        };
        Ok(Reply::json(StatusCode::OK, &json!({ key: all })))
    }

    /// The bindings on places where the caller may manage access, and the caller's own.
    pub(super) async fn list_bindings(&self, req: &Request) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let mut all = Vec::new();
        for b in self.meta.catalog().bindings()? {
            let at = self.place_of_scope(&b.scope).await?;
            if caller.principal() == Some(b.principal.as_str())
                || caller.may(Action::ManageAccess, &at)
            {
                all.push(binding_view(&b));
            }
        }
        Ok(Reply::json(StatusCode::OK, &json!({"role_bindings": all})))
    }

    pub(super) async fn bind(&self, req: &Request, body: &mut dyn RequestBody) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let input: Binding = json_body(req, body).await?;
        let scope = self.scope_of(&caller, &input)?;
        self.auth.require(
            &caller,
            Action::ManageAccess,
            &self.place_of_scope(&scope).await?,
        )?;
        let role = parse_role(input.role.as_deref().unwrap_or_default())?;
        let binding = RoleBinding {
            principal: Slug::parse("principal", &input.principal)?.to_string(),
            scope,
            role,
        };
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::Bind {
                binding: binding.clone(),
            },
        )
        .await?;
        Ok(Reply::json(StatusCode::CREATED, &binding_view(&binding)))
    }

    pub(super) async fn unbind(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
    ) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let input: Binding = json_body(req, body).await?;
        let scope = self.scope_of(&caller, &input)?;
        self.auth.require(
            &caller,
            Action::ManageAccess,
            &self.place_of_scope(&scope).await?,
        )?;
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::Unbind {
                principal: Slug::parse("principal", &input.principal)?.to_string(),
                scope,
            },
        )
        .await?;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }
}
