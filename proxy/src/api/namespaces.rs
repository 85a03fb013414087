//! `/api/v1/namespaces`: create, list, show. Names are checked by `NamespaceName` and the
//! creation is a Raft command, so two nodes can never create the same name twice.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use shoal_raft::{Command, NamespaceRecord, Outcome};

use super::{json_body, Api};
use crate::auth::Need;
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::NamespaceName;
use crate::wire::{Reply, Request, RequestBody};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateNamespace {
    name: String,
    #[serde(default)]
    description: Option<String>,
}

const MAX_DESCRIPTION: usize = 1024;

fn view(ns: &NamespaceRecord) -> serde_json::Value {
    let created = chrono::DateTime::from_timestamp(ns.created_at, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    json!({"name": ns.name, "description": ns.description, "created_at": created})
}

impl Api {
    pub(super) fn list_namespaces(&self, req: &Request) -> ApiResult<Reply> {
        self.auth.authorize(req, &Need::List)?;
        let all: Vec<_> = self.meta.catalog().namespaces()?.iter().map(view).collect();
        Ok(Reply::json(StatusCode::OK, &json!({"namespaces": all})))
    }

    pub(super) fn get_namespace(&self, req: &Request, name: &str) -> ApiResult<Reply> {
        self.auth.authorize(req, &Need::List)?;
        let name = NamespaceName::parse(name)?;
        match self.meta.catalog().namespace(name.as_str())? {
            Some(ns) => Ok(Reply::json(StatusCode::OK, &view(&ns))),
            None => Err(ApiError::new(
                Code::NameUnknown,
                format!("namespace {name} does not exist"),
            )),
        }
    }

    pub(super) async fn create_namespace(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
    ) -> ApiResult<Reply> {
        self.auth.authorize(req, &Need::Admin)?;
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
        };
        if let Outcome::Rejected(r) = self.meta.write(cmd).await? {
            return Err(r.into());
        }
        let ns = self
            .meta
            .catalog()
            .namespace(name.as_str())?
            .ok_or_else(|| ApiError::internal("namespace vanished after creation", &name))?;
        Ok(Reply::json(StatusCode::CREATED, &view(&ns))
            .header("Location", format!("/api/v1/namespaces/{name}")))
    }
}
