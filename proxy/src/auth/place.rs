//! Where a request's action happens, read from the catalogue: the owned form of
//! `policy::Target`. A repository's visibility is its own setting, else its namespace's.
//!
//! A namespace that does not exist is placed, private, in the home organisation: anonymous
//! callers learn nothing about which names exist, and callers with a role there get the
//! precise `NAME_UNKNOWN` from the handler instead of a denial. Before a missing namespace
//! is placed there, this replica catches up with the region (read-index), so a namespace
//! just created through another node is found in its own organisation.

use shoal_raft::{Catalog, Metadata, NamespaceRecord, Visibility};

use super::policy::Target;
use crate::errors::{ApiError, ApiResult};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub organisation: String,
    pub project: Option<String>,
    pub namespace: Option<String>,
    pub visibility: Visibility,
}

impl Place {
    pub fn target(&self) -> Target<'_> {
        Target {
            organisation: &self.organisation,
            project: self.project.as_deref(),
            namespace: self.namespace.as_deref(),
            visibility: self.visibility,
        }
    }

    pub fn organisation(org: &str) -> Place {
        Place {
            organisation: org.into(),
            project: None,
            namespace: None,
            visibility: Visibility::Private,
        }
    }

    pub fn project(org: &str, project: Option<&str>) -> Place {
        Place {
            project: project.map(str::to_string),
            ..Place::organisation(org)
        }
    }

    pub fn of_namespace(ns: &NamespaceRecord) -> Place {
        Place {
            organisation: ns.organisation.clone(),
            project: ns.project.clone(),
            namespace: Some(ns.name.clone()),
            visibility: ns.visibility,
        }
    }
}

/// The home organisation's name (the one the cluster was bootstrapped with).
pub fn home(catalog: &Catalog) -> ApiResult<String> {
    catalog
        .home_organisation()?
        .map(|o| o.name)
        .ok_or_else(|| ApiError::internal("placing a request", "the registry is not initialised"))
}

/// The place of namespace `ns`, or `None` while it does not exist (after catching up).
pub async fn namespace(meta: &Metadata, ns: &str) -> ApiResult<Option<Place>> {
    let catalog = meta.catalog();
    if let Some(rec) = catalog.namespace(ns)? {
        return Ok(Some(Place::of_namespace(&rec)));
    }
    meta.catch_up().await?;
    Ok(catalog.namespace(ns)?.map(|rec| Place::of_namespace(&rec)))
}

/// The place of namespace `ns`, a missing one placed privately in the home organisation.
pub async fn namespace_or_home(meta: &Metadata, ns: &str) -> ApiResult<Place> {
    match namespace(meta, ns).await? {
        Some(p) => Ok(p),
        None => at_home(meta, ns),
    }
}

/// A namespace that does not exist, placed privately in the home organisation.
fn at_home(meta: &Metadata, ns: &str) -> ApiResult<Place> {
    Ok(Place {
        namespace: Some(ns.into()),
        ..Place::organisation(&home(meta.catalog())?)
    })
}

/// The place of repository `repo` (in namespace `ns`): its namespace's, with the
/// repository's own visibility when it has one.
pub async fn repository(meta: &Metadata, ns: &str, repo: &str) -> ApiResult<Place> {
    Ok(repository_found(meta, ns, repo).await?.0)
}

/// `repository`, and whether the namespace was found (`false`: placed in the home
/// organisation, which the region may contradict once this replica hears of it).
pub async fn repository_found(meta: &Metadata, ns: &str, repo: &str) -> ApiResult<(Place, bool)> {
    let (mut place, found) = match namespace(meta, ns).await? {
        Some(p) => (p, true),
        None => (at_home(meta, ns)?, false),
    };
    if let Some(v) = meta.catalog().repository_visibility(repo)? {
        place.visibility = v;
    }
    Ok((place, found))
}

/// `repository` for readers of the local replica that already hold the namespace's record
/// (the catalogue listing).
pub fn repository_known(catalog: &Catalog, ns: &NamespaceRecord, repo: &str) -> ApiResult<Place> {
    let mut place = Place::of_namespace(ns);
    if let Some(v) = catalog.repository_visibility(repo)? {
        place.visibility = v;
    }
    Ok(place)
}
