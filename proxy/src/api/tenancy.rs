//! `/api/v1/organisations` and their projects: the places namespaces and role bindings live
//! in. Creating an organisation runs the cluster (access on the home organisation) and
//! makes its owner an Owner of it; projects are made and removed by an organisation's
//! admins, and a project that still holds namespaces is not removed.
//!
//! A caller sees an organisation where it has a role (on it or on one of its projects),
//! the one its principal belongs to, or every one when it runs the cluster.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_raft::{Command, OrgRecord, ProjectRecord, Role};

use super::{description, json_body, time, Api};
use crate::auth::{Action, Caller, Need, Place};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::Slug;
use crate::wire::{Reply, Request, RequestBody};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrganisation {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// The user bound as Owner (default: the caller).
    #[serde(default)]
    owner: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProject {
    name: String,
    #[serde(default)]
    description: Option<String>,
}

fn org_view(o: &OrgRecord) -> Value {
    json!({
        "name": o.name,
        "description": o.description,
        "home": o.home,
        "created_at": time(Some(o.created_at)),
    })
}

fn project_view(p: &ProjectRecord) -> Value {
    json!({
        "organisation": p.organisation,
        "name": p.name,
        "description": p.description,
        "created_at": time(Some(p.created_at)),
    })
}

impl Api {
    /// The organisation of the caller's principal (where its namespaces and principals go
    /// by default); the home organisation for anonymous callers.
    pub(super) fn own_organisation(&self, caller: &Caller) -> ApiResult<String> {
        let catalog = self.meta.catalog();
        match caller.principal() {
            Some(p) => match catalog.principal(p)? {
                Some(rec) => Ok(rec.organisation),
                None => crate::auth::place::home(catalog),
            },
            None => crate::auth::place::home(catalog),
        }
    }

    pub(super) fn runs_cluster(&self, caller: &Caller) -> bool {
        self.auth.require_cluster_admin(caller).is_ok()
    }

    fn sees_organisation(&self, caller: &Caller, org: &str) -> ApiResult<bool> {
        Ok(self.runs_cluster(caller)
            || caller.grants.any_in(org, Role::Reader)
            || self.own_organisation(caller)? == org)
    }

    /// The organisation `org` if the caller sees it; `NOT_FOUND` alike for one that does not
    /// exist and one hidden from the caller.
    fn visible_organisation(&self, caller: &Caller, org: &str) -> ApiResult<OrgRecord> {
        let unknown = || {
            ApiError::new(
                Code::NotFound,
                format!("organisation {org:?} does not exist"),
            )
        };
        let rec = self.meta.catalog().organisation(org)?.ok_or_else(unknown)?;
        if !self.sees_organisation(caller, org)? {
            return Err(unknown());
        }
        Ok(rec)
    }

    pub(super) async fn list_organisations(&self, req: &Request) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let mut list = Vec::new();
        for o in self.meta.catalog().organisations()? {
            if self.sees_organisation(&caller, &o.name)? {
                list.push(org_view(&o));
            }
        }
        Ok(Reply::json(StatusCode::OK, &json!({"organisations": list})))
    }

    pub(super) async fn get_organisation(&self, req: &Request, org: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let rec = self.visible_organisation(&caller, org)?;
        Ok(Reply::json(StatusCode::OK, &org_view(&rec)))
    }

    pub(super) async fn create_organisation(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
    ) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        self.auth.require_cluster_admin(&caller)?;
        let input: CreateOrganisation = json_body(req, body).await?;
        let name = Slug::parse("organisation", &input.name)?;
        let owner = match input.owner {
            Some(o) => Slug::parse("principal", &o)?.to_string(),
            None => caller.principal().unwrap_or_default().to_string(),
        };
        let org = OrgRecord {
            name: name.to_string(),
            description: description(input.description)?,
            home: false,
            created_at: chrono::Utc::now().timestamp(),
        };
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::CreateOrganisation {
                org: org.clone(),
                owner,
            },
        )
        .await?;
        Ok(Reply::json(StatusCode::CREATED, &org_view(&org))
            .header("Location", format!("/api/v1/organisations/{name}")))
    }

    /// Deletes an empty organisation (cluster admins); the state machine refuses the home
    /// one, one still holding projects or namespaces, and one whose principals are the
    /// last Owners of another.
    pub(super) async fn delete_organisation(&self, req: &Request, org: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        self.auth.require_cluster_admin(&caller)?;
        let name = Slug::parse("organisation", org)?;
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::DeleteOrganisation {
                name: name.to_string(),
            },
        )
        .await?;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }

    pub(super) async fn list_projects(&self, req: &Request, org: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        self.visible_organisation(&caller, org)?;
        let list: Vec<Value> = self
            .meta
            .catalog()
            .projects(org)?
            .iter()
            .map(project_view)
            .collect();
        Ok(Reply::json(StatusCode::OK, &json!({"projects": list})))
    }

    pub(super) async fn create_project(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        org: &str,
    ) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        self.visible_organisation(&caller, org)?;
        self.auth
            .require(&caller, Action::ManageAccess, &Place::organisation(org))?;
        let input: CreateProject = json_body(req, body).await?;
        let name = Slug::parse("project", &input.name)?;
        let project = ProjectRecord {
            organisation: org.to_string(),
            name: name.to_string(),
            description: description(input.description)?,
            created_at: chrono::Utc::now().timestamp(),
        };
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::CreateProject {
                project: project.clone(),
            },
        )
        .await?;
        Ok(Reply::json(StatusCode::CREATED, &project_view(&project)))
    }

    pub(super) async fn delete_project(
        &self,
        req: &Request,
        org: &str,
        project: &str,
    ) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        self.visible_organisation(&caller, org)?;
        self.auth
            .require(&caller, Action::ManageAccess, &Place::organisation(org))?;
        let project = Slug::parse("project", project)?;
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::DeleteProject {
                organisation: org.to_string(),
                name: project.to_string(),
            },
        )
        .await?;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }
}
