//! `/api/v1/namespaces`: create (in an organisation or one of its projects), list, show,
//! configure (visibility, immutable tags), delete, and usage. Names are checked by `NamespaceName` and the
//! creation is a Raft command, so two nodes can never create the same name twice; a name is
//! unique in the whole region, since an image path names the namespace and nothing above it.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_raft::{Command, NamespaceRecord, Visibility};

use super::{description, json_body, time, Api};
use crate::auth::{place, Action, Need, Place};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::{NamespaceName, Slug};
use crate::wire::{Reply, Request, RequestBody};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateNamespace {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    visibility: VisibilityName,
    /// Default: the caller's own organisation.
    #[serde(default)]
    organisation: Option<String>,
    /// Make it a project-level namespace.
    #[serde(default)]
    project: Option<String>,
    /// Must be this cluster's region when given.
    #[serde(default)]
    region: Option<String>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Configure {
    #[serde(default)]
    visibility: Option<VisibilityName>,
    /// Tag patterns (`v*`) that make tags immutable; `[]` turns immutability off.
    #[serde(default)]
    immutable_tags: Option<Vec<String>>,
    /// Patterns excluded from `immutable_tags` (`*-rc*`).
    #[serde(default)]
    immutable_exclude: Option<Vec<String>>,
    /// A new description; `""` removes it.
    #[serde(default)]
    description: Option<String>,
}

/// Tag patterns: at most 32, each 1 to 128 printable characters.
fn tag_patterns(what: &str, list: Vec<String>) -> ApiResult<Vec<String>> {
    let bad = list
        .iter()
        .any(|p| p.is_empty() || p.chars().count() > 128 || p.chars().any(char::is_control));
    if list.len() > 32 || bad {
        return Err(ApiError::new(
            Code::BadRequest,
            format!("{what}: at most 32 patterns of 1 to 128 printable characters"),
        ));
    }
    Ok(list)
}

fn view(ns: &NamespaceRecord) -> Value {
    json!({
        "name": ns.name,
        "organisation": ns.organisation,
        "project": ns.project,
        "region": ns.region,
        "description": ns.description,
        "visibility": visibility_name(ns.visibility),
        "immutable_tags": ns.immutable.patterns,
        "immutable_exclude": ns.immutable.exclude,
        "created_at": time(Some(ns.created_at)),
    })
}

impl Api {
    /// The namespace `name` if the caller may list it; `NAME_UNKNOWN` alike for one that
    /// does not exist and one the caller may not see.
    pub(super) async fn listable_namespace(
        &self,
        caller: &crate::auth::Caller,
        name: &str,
    ) -> ApiResult<NamespaceRecord> {
        let name = NamespaceName::parse(name)?;
        let unknown = || {
            ApiError::new(
                Code::NameUnknown,
                format!("namespace {name} does not exist"),
            )
        };
        let catalog = self.meta.catalog();
        let ns = match catalog.namespace(name.as_str())? {
            Some(ns) => ns,
            None => {
                // It may have just been created through another node.
                self.meta.catch_up().await?;
                catalog.namespace(name.as_str())?.ok_or_else(unknown)?
            }
        };
        if !caller.may(Action::List, &Place::of_namespace(&ns)) {
            return Err(unknown());
        }
        Ok(ns)
    }

    /// Lists the namespaces the caller may list, optionally of one organisation or project.
    pub(super) async fn list_namespaces(&self, req: &Request) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let org = req.query("organisation");
        let project = req.query("project");
        let all: Vec<_> = self
            .meta
            .catalog()
            .namespaces()?
            .iter()
            .filter(|ns| org.is_none_or(|o| ns.organisation == o))
            .filter(|ns| project.is_none_or(|p| ns.project.as_deref() == Some(p)))
            .filter(|ns| caller.may(Action::List, &Place::of_namespace(ns)))
            .map(view)
            .collect();
        Ok(Reply::json(StatusCode::OK, &json!({"namespaces": all})))
    }

    pub(super) async fn get_namespace(&self, req: &Request, name: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let ns = self.listable_namespace(&caller, name).await?;
        Ok(Reply::json(StatusCode::OK, &view(&ns)))
    }

    /// Stored bytes (each linked blob once, plus manifests), pulls, pushes and bytes served.
    /// Pull and push counts reach the catalogue every few seconds from each node.
    pub(super) async fn namespace_usage(&self, req: &Request, name: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let ns = self.listable_namespace(&caller, name).await?;
        let catalog = self.meta.catalog();
        let usage = catalog.usage(&ns.name)?;
        Ok(Reply::json(
            StatusCode::OK,
            &json!({
                "namespace": ns.name,
                "repositories": catalog.repositories_in(&ns.name)?.len(),
                "stored_bytes": catalog.stored_bytes(&ns.name)?,
                "pulls": usage.pulls,
                "pushes": usage.pushes,
                "bytes_served": usage.bytes_out,
            }),
        ))
    }

    /// `PATCH /api/v1/namespaces/NAME` with `{"visibility": "public"|"private"}` and/or
    /// `immutable_tags`/`immutable_exclude` (given ones replace the lists); the name itself
    /// never changes.
    pub(super) async fn configure_namespace(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        name: &str,
    ) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let name = NamespaceName::parse(name)?;
        let at = place::namespace_or_home(&self.meta, name.as_str()).await?;
        self.auth.require(&caller, Action::ManageNamespaces, &at)?;
        let input: Configure = json_body(req, body).await?;
        // Checked before anything is committed: a bad field changes nothing.
        let new_description = input
            .description
            .map(|d| description(Some(d)))
            .transpose()?;
        if input.immutable_tags.is_some() || input.immutable_exclude.is_some() {
            let current = self
                .meta
                .catalog()
                .namespace(name.as_str())?
                .map(|n| n.immutable)
                .unwrap_or_default();
            let rules = shoal_raft::ImmutableTags {
                patterns: match input.immutable_tags {
                    Some(l) => tag_patterns("immutable_tags", l)?,
                    None => current.patterns,
                },
                exclude: match input.immutable_exclude {
                    Some(l) => tag_patterns("immutable_exclude", l)?,
                    None => current.exclude,
                },
            };
            let cmd = Command::SetImmutableTags {
                namespace: name.to_string(),
                rules,
            };
            crate::errors::commit(&self.meta, &caller, req, cmd).await?;
        }
        if let Some(d) = new_description {
            let cmd = Command::SetNamespaceDescription {
                namespace: name.to_string(),
                description: d,
            };
            crate::errors::commit(&self.meta, &caller, req, cmd).await?;
        }
        if let Some(v) = input.visibility {
            crate::errors::commit(
                &self.meta,
                &caller,
                req,
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
    /// role bindings on it, usage).
    pub(super) async fn delete_namespace(&self, req: &Request, name: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let name = NamespaceName::parse(name)?;
        let at = place::namespace_or_home(&self.meta, name.as_str()).await?;
        self.auth.require(&caller, Action::ManageNamespaces, &at)?;
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
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
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let input: CreateNamespace = json_body(req, body).await?;
        let name = NamespaceName::parse(&input.name)?;
        let organisation = match input.organisation {
            Some(o) => Slug::parse("organisation", &o)?.to_string(),
            None => self.own_organisation(&caller)?,
        };
        let project = input
            .project
            .map(|p| Slug::parse("project", &p).map(|p| p.to_string()))
            .transpose()?;
        if let Some(r) = input.region.filter(|r| *r != self.region) {
            return Err(ApiError::new(
                Code::BadRequest,
                format!(
                    "this cluster serves region {:?}; create namespaces of region {r:?} through a node of that region",
                    self.region
                ),
            ));
        }
        self.auth.require(
            &caller,
            Action::ManageNamespaces,
            &Place::project(&organisation, project.as_deref()),
        )?;
        let record = NamespaceRecord {
            name: name.to_string(),
            organisation,
            project,
            region: self.region.clone(),
            description: description(input.description)?,
            created_at: chrono::Utc::now().timestamp(),
            visibility: input.visibility.into(),
            immutable: Default::default(),
        };
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::CreateNamespace {
                record: record.clone(),
            },
        )
        .await?;
        Ok(Reply::json(StatusCode::CREATED, &view(&record))
            .header("Location", format!("/api/v1/namespaces/{name}")))
    }
}
