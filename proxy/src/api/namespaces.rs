//! `/api/v1/namespaces`: create, list, show. Names are checked by `NamespaceName` and the
//! creation is a Raft command, so two nodes can never create the same name twice.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use shoal_raft::{Command, NamespaceRecord, Visibility};

use super::{json_body, Api};
use crate::auth::{Action, Need, Target};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::NamespaceName;
use crate::wire::{Reply, Request, RequestBody};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateNamespace {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    visibility: VisibilityName,
}

/// Visibility as the API spells it.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum VisibilityName {
    #[default]
    Private,
    Public,
}

impl From<VisibilityName> for Visibility {
    fn from(v: VisibilityName) -> Visibility {
        match v {
            VisibilityName::Private => Visibility::Private,
            VisibilityName::Public => Visibility::Public,
        }
    }
}

pub(super) fn visibility_name(v: Visibility) -> &'static str {
    match v {
        Visibility::Private => "private",
        Visibility::Public => "public",
    }
}

const MAX_DESCRIPTION: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Configure {
    #[serde(default)]
    visibility: Option<VisibilityName>,
}

fn target(ns: &NamespaceRecord) -> Target<'_> {
    Target {
        namespace: &ns.name,
        visibility: ns.visibility,
    }
}

fn view(ns: &NamespaceRecord) -> serde_json::Value {
    let created = chrono::DateTime::from_timestamp(ns.created_at, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    json!({
        "name": ns.name,
        "description": ns.description,
        "visibility": visibility_name(ns.visibility),
        "created_at": created,
    })
}

impl Api {
    /// Lists the namespaces the caller may list.
    pub(super) async fn list_namespaces(&self, req: &Request) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let all: Vec<_> = self
            .meta
            .catalog()
            .namespaces()?
            .iter()
            .filter(|ns| caller.grants.permits(Action::List, Some(target(ns))))
            .map(view)
            .collect();
        Ok(Reply::json(StatusCode::OK, &json!({"namespaces": all})))
    }

    pub(super) async fn get_namespace(&self, req: &Request, name: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let name = NamespaceName::parse(name)?;
        let unknown = || {
            ApiError::new(
                Code::NameUnknown,
                format!("namespace {name} does not exist"),
            )
        };
        let ns = self
            .meta
            .catalog()
            .namespace(name.as_str())?
            .ok_or_else(unknown)?;
        if !caller.grants.permits(Action::List, Some(target(&ns))) {
            return Err(unknown());
        }
        Ok(Reply::json(StatusCode::OK, &view(&ns)))
    }

    /// `PATCH /api/v1/namespaces/NAME` with `{"visibility": "public"|"private"}`; the name
    /// itself never changes.
    pub(super) async fn configure_namespace(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        name: &str,
    ) -> ApiResult<Reply> {
        let name = NamespaceName::parse(name)?;
        self.auth
            .authorize(req, &Need::ManageNamespaces(Some(name.clone())))
            .await?;
        let input: Configure = json_body(req, body).await?;
        if let Some(v) = input.visibility {
            crate::errors::commit(
                &self.meta,
                Command::SetVisibility {
                    namespace: name.to_string(),
                    visibility: v.into(),
                },
            )
            .await?;
        }
        let ns = self
            .meta
            .catalog()
            .namespace(name.as_str())?
            .ok_or_else(|| {
                ApiError::new(
                    Code::NameUnknown,
                    format!("namespace {name} does not exist"),
                )
            })?;
        Ok(Reply::json(StatusCode::OK, &view(&ns)))
    }

    /// Deletes the namespace and everything in it (repositories, tags, manifests, blob links,
    /// role bindings on it).
    pub(super) async fn delete_namespace(&self, req: &Request, name: &str) -> ApiResult<Reply> {
        let name = NamespaceName::parse(name)?;
        self.auth
            .authorize(req, &Need::ManageNamespaces(Some(name.clone())))
            .await?;
        crate::errors::commit(
            &self.meta,
            Command::DeleteNamespace {
                name: name.to_string(),
            },
        )
        .await?;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }

    pub(super) async fn create_namespace(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
    ) -> ApiResult<Reply> {
        self.auth
            .authorize(req, &Need::ManageNamespaces(None))
            .await?;
        let input: CreateNamespace = json_body(req, body).await?;
        let name = NamespaceName::parse(&input.name)?;
        if input
            .description
            .as_ref()
            .is_some_and(|d| d.len() > MAX_DESCRIPTION)
        {
            return Err(ApiError::new(
                Code::BadRequest,
                format!("the description is longer than {MAX_DESCRIPTION} bytes"),
            ));
        }
        let cmd = Command::CreateNamespace {
            name: name.to_string(),
            description: input.description.filter(|d| !d.is_empty()),
            created_at: chrono::Utc::now().timestamp(),
            visibility: input.visibility.into(),
        };
        crate::errors::commit(&self.meta, cmd).await?;
        let ns = self
            .meta
            .catalog()
            .namespace(name.as_str())?
            .ok_or_else(|| ApiError::internal("namespace vanished after creation", &name))?;
        Ok(Reply::json(StatusCode::CREATED, &view(&ns))
            .header("Location", format!("/api/v1/namespaces/{name}")))
    }
}
