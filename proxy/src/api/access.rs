//! `/api/v1/users`, `/api/v1/service-accounts` and `/api/v1/role-bindings`: principals and
//! the roles they hold on the organisation or on one namespace. All of it needs the
//! access-management permission (Owner or Admin).

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_raft::{Command, Principal, PrincipalKind, Role, RoleBinding, RoleScope};

use super::{json_body, Api};
use crate::auth::bootstrap::DEFAULT_ORG;
use crate::auth::{secrets, Need};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::NamespaceName;
use crate::wire::{Reply, Request, RequestBody};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePrincipal {
    name: String,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Binding {
    principal: String,
    #[serde(default)]
    role: Option<String>,
    /// Bind on this namespace; without it, on the organisation.
    #[serde(default)]
    namespace: Option<String>,
}

/// Principal names: 1–64 of `[a-z0-9._-]`, starting with a letter or digit.
fn check_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::BadRequest,
            format!("principal names are 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit; got {name:?}"),
        ))
    }
}

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

fn principal_view(p: &Principal) -> Value {
    json!({
        "name": p.name,
        "kind": match p.kind { PrincipalKind::User => "user", PrincipalKind::ServiceAccount => "service-account" },
    })
}

fn binding_view(b: &RoleBinding) -> Value {
    let (org, ns) = match &b.scope {
        RoleScope::Organisation(o) => (Some(o.as_str()), None),
        RoleScope::Namespace(n) => (None, Some(n.as_str())),
    };
    json!({"principal": b.principal, "role": role_name(b.role), "organisation": org, "namespace": ns})
}

impl Binding {
    fn scope(&self) -> ApiResult<RoleScope> {
        Ok(match &self.namespace {
            Some(n) => RoleScope::Namespace(NamespaceName::parse(n)?.to_string()),
            None => RoleScope::Organisation(DEFAULT_ORG.into()),
        })
    }
}

impl Api {
    pub(super) async fn create_principal(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        kind: PrincipalKind,
    ) -> ApiResult<Reply> {
        self.auth.authorize(req, &Need::ManageAccess).await?;
        let input: CreatePrincipal = json_body(req, body).await?;
        check_name(&input.name)?;
        let password_hash = match (kind, input.password) {
            (PrincipalKind::User, Some(p)) if p.len() >= 12 => Some(
                tokio::task::spawn_blocking(move || secrets::hash(&p))
                    .await
                    .map_err(|e| ApiError::internal("hashing a password", e))?,
            ),
            (PrincipalKind::User, _) => {
                return Err(ApiError::new(
                    Code::BadRequest,
                    "a user needs a password of at least 12 characters",
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
            name: input.name,
            kind,
            password_hash,
            created_at: chrono::Utc::now().timestamp(),
        };
        crate::errors::commit(
            &self.meta,
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

    pub(super) async fn list_principals(&self, req: &Request) -> ApiResult<Reply> {
        self.auth.authorize(req, &Need::ManageAccess).await?;
        let all: Vec<Value> = self
            .meta
            .catalog()
            .principals()?
            .iter()
            .map(principal_view)
            .collect();
        Ok(Reply::json(StatusCode::OK, &json!({"principals": all})))
    }

    pub(super) async fn list_bindings(&self, req: &Request) -> ApiResult<Reply> {
        self.auth.authorize(req, &Need::ManageAccess).await?;
        let all: Vec<Value> = self
            .meta
            .catalog()
            .bindings()?
            .iter()
            .map(binding_view)
            .collect();
        Ok(Reply::json(StatusCode::OK, &json!({"role_bindings": all})))
    }

    pub(super) async fn bind(&self, req: &Request, body: &mut dyn RequestBody) -> ApiResult<Reply> {
        self.auth.authorize(req, &Need::ManageAccess).await?;
        let input: Binding = json_body(req, body).await?;
        let role = parse_role(input.role.as_deref().unwrap_or_default())?;
        let binding = RoleBinding {
            principal: input.principal.clone(),
            scope: input.scope()?,
            role,
        };
        crate::errors::commit(
            &self.meta,
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
        self.auth.authorize(req, &Need::ManageAccess).await?;
        let input: Binding = json_body(req, body).await?;
        crate::errors::commit(
            &self.meta,
            Command::Unbind {
                principal: input.principal.clone(),
                scope: input.scope()?,
            },
        )
        .await?;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }
}
