//! What each console page shows. Pages read the local replica directly (the same reads
//! the registry API serves from) and decide visibility with the same `Place` checks: a
//! namespace or repository is shown to whoever may list it or pull from it (so anonymous
//! visitors see public ones only), and one that may not be seen is "not found", exactly like
//! one that does not exist. Lists that can be long (namespaces' repositories, a repository's
//! tags) are paged on the server: only the rows of the page shown are read in full.

use std::sync::Arc;

use http::{Method, StatusCode};
use minijinja::context;
use serde::Serialize;
use shoal_raft::{NamespaceRecord, Visibility};

use super::views::{self, Page, TagOrder, TagRow, PAGE_SIZE};
use super::{Console, Visitor};
use crate::auth::{place, Action, Caller, Place};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::RepoName;
use crate::wire::{Reply, Request};

/// Image configs larger than this are not read for a page.
const MAX_CONFIG: u64 = 256 << 10;
/// How long one page may wait for the origin's image configs in all (a cold or unreachable
/// origin leaves the platforms it did not read blank instead of holding the page).
const CONFIG_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Serialize)]
struct NamespaceRow {
    name: String,
    visibility: &'static str,
    description: Option<String>,
    organisation: String,
    project: Option<String>,
    repositories: usize,
    /// `None` for visitors who may only pull (they see no totals).
    stored: Option<String>,
    pulls: Option<u64>,
}

#[derive(Serialize)]
struct RepoRow {
    name: String,
    short: String,
    tags: usize,
    size: String,
    last_push: Option<String>,
    last_push_at: Option<String>,
}

#[derive(Serialize)]
struct TagView {
    name: String,
    digest: String,
    short_digest: String,
    size: String,
    platforms: Vec<String>,
    kind: &'static str,
    pushed: String,
    pushed_at: String,
    pulled: Option<String>,
}

#[derive(Serialize)]
struct ReferrerView {
    digest: String,
    artifact_type: Option<String>,
    size: String,
    pushed: String,
}

fn visibility_name(v: Visibility) -> &'static str {
    match v {
        Visibility::Public => "public",
        Visibility::Private => "private",
    }
}

/// Whether `caller` may see what is at `place` in the console.
fn sees(caller: &Caller, place: &Place) -> bool {
    caller.may(Action::List, place) || caller.may(Action::Pull, place)
}

fn kind_of(media_type: &str) -> &'static str {
    if media_type.contains("index") || media_type.contains("manifest.list") {
        "index"
    } else {
        "image"
    }
}

impl Console {
    pub(super) async fn namespaces(&self, req: &Request, v: &Visitor) -> ApiResult<Reply> {
        let catalog = self.api.meta.catalog();
        let mut rows = Vec::new();
        for ns in catalog.namespaces()? {
            let at = Place::of_namespace(&ns);
            let lists = v.caller.may(Action::List, &at);
            let seen = lists || v.caller.may(Action::Pull, &at);
            let repositories = self.visible_repositories(&v.caller, &ns)?.len();
            // A namespace the visitor may not see is listed only for the public
            // repositories it holds, by its name alone.
            if seen || repositories > 0 {
                rows.push(self.namespace_row(&ns, lists, seen, repositories)?);
            }
        }
        let ctx = context! {
            ..self.base(req, v, "Namespaces"),
            ..context! { namespaces => rows, session_ended => v.session_ended },
        };
        self.render(StatusCode::OK, "namespaces.html", ctx)
    }

    fn namespace_row(
        &self,
        ns: &NamespaceRecord,
        lists: bool,
        seen: bool,
        repositories: usize,
    ) -> ApiResult<NamespaceRow> {
        let catalog = self.api.meta.catalog();
        Ok(NamespaceRow {
            name: ns.name.clone(),
            visibility: visibility_name(ns.visibility),
            description: ns.description.clone().filter(|_| seen),
            organisation: if seen {
                ns.organisation.clone()
            } else {
                String::new()
            },
            project: ns.project.clone().filter(|_| seen),
            repositories,
            stored: lists
                .then(|| catalog.stored_bytes(&ns.name).map(views::human_size))
                .transpose()?,
            pulls: lists
                .then(|| catalog.usage(&ns.name).map(|u| u.pulls))
                .transpose()?,
        })
    }

    /// The repositories of `ns` the caller may see, sorted by name.
    fn visible_repositories(
        &self,
        caller: &Caller,
        ns: &NamespaceRecord,
    ) -> ApiResult<Vec<String>> {
        let catalog = self.api.meta.catalog();
        let names = catalog.repositories_in(&ns.name)?;
        if caller.may(Action::List, &Place::of_namespace(ns)) {
            return Ok(names);
        }
        let mut out = Vec::new();
        for name in names {
            if sees(caller, &place::repository_known(catalog, ns, &name)?) {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// The namespace `name` if the visitor may see anything in it.
    pub(super) fn seen_namespace(&self, v: &Visitor, name: &str) -> ApiResult<NamespaceRecord> {
        let ns = self.api.meta.catalog().namespace(name)?.ok_or_else(|| {
            ApiError::new(Code::NotFound, format!("namespace {name} does not exist"))
        })?;
        if sees(&v.caller, &Place::of_namespace(&ns))
            || !self.visible_repositories(&v.caller, &ns)?.is_empty()
        {
            Ok(ns)
        } else {
            Err(ApiError::new(
                Code::NotFound,
                format!("namespace {name} does not exist"),
            ))
        }
    }

    pub(super) async fn namespace(
        &self,
        req: &Request,
        v: &Visitor,
        name: &str,
    ) -> ApiResult<Reply> {
        let ns = self.seen_namespace(v, name)?;
        let names = self.visible_repositories(&v.caller, &ns)?;
        let query = req.query("q").map(str::trim).filter(|q| !q.is_empty());
        let path = req
            .query("path")
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
            .map(|p| format!("{p}/"))
            .unwrap_or_default();
        let level = match query {
            Some(q) => views::Level {
                folders: Vec::new(),
                repositories: names.iter().filter(|n| n.contains(q)).cloned().collect(),
            },
            None => views::folder_level(&ns.name, &names, &path),
        };
        let page = Page::new(req.query("page"), level.len(), PAGE_SIZE);
        let (folders, shown) = level.on_page(&page);
        let now = chrono::Utc::now().timestamp();
        let catalog = self.api.meta.catalog();
        let mut repos = Vec::new();
        for name in shown {
            let Some(s) = catalog.repository_summary(name)? else {
                continue;
            };
            repos.push(RepoRow {
                short: name
                    .strip_prefix(&format!("{}/{path}", ns.name))
                    .unwrap_or(name)
                    .to_string(),
                name: name.clone(),
                tags: s.tags,
                size: views::human_size(s.size),
                last_push: s.last_push.map(|t| views::ago(t, now)),
                last_push_at: s.last_push.map(views::rfc3339),
            });
        }
        let crumbs: Vec<(String, String)> = {
            let mut acc = String::new();
            path.split('/')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    acc.push_str(p);
                    acc.push('/');
                    (p.to_string(), acc.clone())
                })
                .collect()
        };
        let at = Place::of_namespace(&ns);
        // Seen only for its public repositories: its name, nothing about it.
        let seen = sees(&v.caller, &at);
        let ctx = context! {
            ..self.base(req, v, &ns.name),
            ..context! {
                ns => context! {
                    name => ns.name.clone(),
                    visibility => visibility_name(ns.visibility),
                    description => ns.description.clone().filter(|_| seen),
                    organisation => if seen { ns.organisation.clone() } else { String::new() },
                    project => ns.project.clone().filter(|_| seen),
                },
                path => path,
                crumbs => crumbs,
                query => query,
                folders => folders,
                repositories => repos,
                page => page,
                manages => v.caller.may(Action::ManageNamespaces, &at),
                lists => v.caller.may(Action::List, &at),
            },
        };
        self.render(StatusCode::OK, "namespace.html", ctx)
    }

    /// The repository `name` and its place, if the visitor may see it; not found otherwise.
    pub(super) async fn seen_repository(
        &self,
        v: &Visitor,
        name: &str,
    ) -> ApiResult<(RepoName, Place)> {
        let unknown = || ApiError::new(Code::NotFound, format!("repository {name} does not exist"));
        let repo = RepoName::parse(name).map_err(|_| unknown())?;
        let at =
            place::repository(&self.api.meta, repo.namespace().as_str(), repo.as_str()).await?;
        if !sees(&v.caller, &at) || !self.api.meta.catalog().repository_exists(repo.as_str())? {
            return Err(unknown());
        }
        Ok((repo, at))
    }

    pub(super) async fn repository(
        &self,
        req: &Request,
        v: &Visitor,
        name: &str,
    ) -> ApiResult<Reply> {
        let (repo, at) = self.seen_repository(v, name).await?;
        let catalog = self.api.meta.catalog();
        let order = TagOrder::parse(req.query("sort"));
        let rows = self.tag_list(repo.as_str(), order).await?;
        let page = Page::new(req.query("page"), rows.len(), PAGE_SIZE);
        let now = chrono::Utc::now().timestamp();
        let mut tags = Vec::new();
        let deadline = tokio::time::Instant::now() + CONFIG_BUDGET;
        for row in page.slice(&rows) {
            let Some(m) = catalog.manifest(repo.as_str(), &row.digest)? else {
                continue;
            };
            let view = views::ManifestView::parse(&m.bytes);
            let kind = kind_of(&m.media_type);
            let (size, platforms) = match kind {
                "index" => (self.index_size(repo.as_str(), &view)?, view.platforms()),
                _ => {
                    let platform = match &view.config {
                        Some(c) => self
                            .image_config(repo.as_str(), &c.digest, c.size, deadline)
                            .await
                            .and_then(|c| c.platform),
                        None => None,
                    };
                    (
                        m.bytes.len() as u64 + view.content_size,
                        platform.into_iter().collect(),
                    )
                }
            };
            tags.push(TagView {
                name: row.name.clone(),
                short_digest: views::short_digest(&row.digest),
                digest: row.digest.clone(),
                size: views::human_size(size),
                platforms,
                kind,
                pushed: views::ago(row.pushed_at, now),
                pushed_at: views::rfc3339(row.pushed_at),
                pulled: row.pulled_at.map(|t| views::ago(t, now)),
            });
        }
        let host = self.registry_host(req);
        let secure = self.registry_secure(req);
        let featured = rows
            .iter()
            .find(|r| r.name == "latest")
            .or_else(|| rows.first());
        let (by_tag, by_digest) = match featured {
            Some(r) => (
                views::pull_commands(&format!("{host}/{repo}:{}", r.name), secure),
                views::pull_commands(&format!("{host}/{repo}@{}", r.digest), secure),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let ctx = context! {
            ..self.base(req, v, repo.as_str()),
            ..context! {
                repo => repo.as_str(),
                namespace => repo.namespace().as_str(),
                address => format!("{host}/{repo}"),
                tags => tags,
                page => page,
                sort => order,
                featured => featured.map(|r| r.name.clone()),
                by_tag => by_tag,
                by_digest => by_digest,
                deletes => v.caller.may(Action::Delete, &at),
            },
        };
        self.render(StatusCode::OK, "repository.html", ctx)
    }

    /// Every tag of `repo` in `order`. Reading them costs a scan of every tag (18 ms for
    /// 10 000), so the list is kept until the replica applies anything new, built off the
    /// async threads, and at most two are built at once.
    async fn tag_list(&self, repo: &str, order: TagOrder) -> ApiResult<Arc<Vec<TagRow>>> {
        let key = (repo.to_string(), order);
        let applied = || self.api.meta.status().last_applied.unwrap_or(0);
        let cached = |at: u64| {
            self.tag_lists
                .lock()
                .get(&key)
                .filter(|(when, _)| *when == at)
                .map(|(_, rows)| rows.clone())
        };
        if let Some(rows) = cached(applied()) {
            return Ok(rows);
        }
        let _permit = self
            .tag_list_builds
            .acquire()
            .await
            .map_err(|e| ApiError::internal("listing tags", e))?;
        let at = applied();
        if let Some(rows) = cached(at) {
            return Ok(rows);
        }
        let meta = self.api.meta.clone();
        let name = repo.to_string();
        let rows = tokio::task::spawn_blocking(move || -> ApiResult<Vec<TagRow>> {
            let catalog = meta.catalog();
            let times: std::collections::HashMap<String, shoal_raft::TagTimes> =
                catalog.tag_times_in(&name)?.into_iter().collect();
            let mut rows: Vec<TagRow> = catalog
                .tag_map(&name)?
                .into_iter()
                .map(|(tag, digest)| {
                    let t = times.get(&tag).copied().unwrap_or_default();
                    TagRow {
                        name: tag,
                        digest,
                        pushed_at: t.pushed_at,
                        pulled_at: t.pulled_at,
                    }
                })
                .collect();
            views::sort_tags(&mut rows, order);
            Ok(rows)
        })
        .await
        .map_err(|e| ApiError::internal("listing tags", e))??;
        let rows = Arc::new(rows);
        self.tag_lists.lock().put(key, (at, rows.clone()));
        Ok(rows)
    }

    /// What an index's images add up to: each child manifest and what it lists.
    fn index_size(&self, repo: &str, index: &views::ManifestView) -> ApiResult<u64> {
        let catalog = self.api.meta.catalog();
        let mut total = 0;
        for child in &index.manifests {
            total += match catalog.manifest(repo, &child.digest)? {
                Some(m) => m.bytes.len() as u64 + views::ManifestView::parse(&m.bytes).content_size,
                None => child.size,
            };
        }
        Ok(total)
    }

    /// The image config `digest` of `repo`, read from the origin when it is linked there and
    /// small; `None` when it is not an image config or cannot be read now.
    async fn image_config(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        deadline: tokio::time::Instant,
    ) -> Option<views::ImageConfig> {
        // The link first: the cache is by digest, and this repository may not hold it.
        let linked = self.api.meta.catalog().blob_size(repo, digest).ok()?;
        if linked.is_none() || size > MAX_CONFIG {
            return None;
        }
        if let Some(c) = self.configs.lock().get(digest) {
            return c.clone();
        }
        let d: shoal_origin::Digest = digest.parse().ok()?;
        let reader = tokio::time::timeout_at(deadline, self.api.store.read(&d, None))
            .await
            .ok()?
            .ok()?;
        use tokio::io::AsyncReadExt;
        let mut bytes = Vec::new();
        let mut limited = reader.into_async_read().take(MAX_CONFIG);
        let read = limited.read_to_end(&mut bytes);
        tokio::time::timeout_at(deadline, read).await.ok()?.ok()?;
        let config = views::ImageConfig::parse(&bytes);
        self.configs.lock().put(digest.to_string(), config.clone());
        config
    }

    pub(super) async fn artifact(
        &self,
        req: &Request,
        v: &Visitor,
        name: &str,
        digest: &str,
    ) -> ApiResult<Reply> {
        let (repo, at) = self.seen_repository(v, name).await?;
        let catalog = self.api.meta.catalog();
        let m = catalog.manifest(repo.as_str(), digest)?.ok_or_else(|| {
            ApiError::new(Code::NotFound, format!("{repo} holds no manifest {digest}"))
        })?;
        let view = views::ManifestView::parse(&m.bytes);
        let kind = kind_of(&m.media_type);
        let config = match &view.config {
            Some(c) if kind == "image" => {
                let deadline = tokio::time::Instant::now() + CONFIG_BUDGET;
                self.image_config(repo.as_str(), &c.digest, c.size, deadline)
                    .await
            }
            _ => None,
        };
        let size = match kind {
            "index" => self.index_size(repo.as_str(), &view)?,
            _ => m.bytes.len() as u64 + view.content_size,
        };
        let now = chrono::Utc::now().timestamp();
        let referrers: Vec<ReferrerView> = catalog
            .referrers(repo.as_str(), digest)?
            .into_iter()
            .map(|r| ReferrerView {
                size: views::human_size(
                    r.bytes.len() as u64 + views::ManifestView::parse(&r.bytes).content_size,
                ),
                digest: r.digest,
                artifact_type: r.artifact_type,
                pushed: views::ago(r.pushed_at, now),
            })
            .collect();
        let host = self.registry_host(req);
        let secure = self.registry_secure(req);
        let ctx = context! {
            ..self.base(req, v, &format!("{repo}@{}", views::short_digest(digest))),
            ..context! {
                repo => repo.as_str(),
                namespace => repo.namespace().as_str(),
                digest => digest,
                media_type => m.media_type.clone(),
                artifact_type => m.artifact_type.clone(),
                kind => kind,
                size => views::human_size(size),
                manifest_size => m.bytes.len(),
                pushed => views::ago(m.pushed_at, now),
                pushed_at => views::rfc3339(m.pushed_at),
                subject => m.subject.clone(),
                tags => catalog.tags_of(repo.as_str(), digest)?,
                manifest => view,
                config => config,
                referrers => referrers,
                pull => views::pull_commands(&format!("{host}/{repo}@{digest}"), secure),
                deletes => v.caller.may(Action::Delete, &at),
            },
        };
        self.render(StatusCode::OK, "artifact.html", ctx)
    }

    pub(super) async fn access(&self, req: &Request, v: &Visitor, name: &str) -> ApiResult<Reply> {
        let ns = self.seen_namespace(v, name)?;
        let all = self
            .call(req, v, Method::GET, "/role-bindings", None)
            .await?;
        let bindings: Vec<&serde_json::Value> = all["role_bindings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|b| {
                        b["namespace"] == ns.name.as_str()
                            || (b["namespace"].is_null()
                                && b["organisation"] == ns.organisation.as_str()
                                && (b["project"].is_null()
                                    || b["project"].as_str() == ns.project.as_deref()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ctx = context! {
            ..self.base(req, v, &format!("{} access", ns.name)),
            ..context! { namespace => ns.name.clone(), bindings => bindings },
        };
        self.render(StatusCode::OK, "access.html", ctx)
    }

    pub(super) async fn credentials(&self, req: &Request, v: &Visitor) -> ApiResult<Reply> {
        let list = self.call(req, v, Method::GET, "/credentials", None).await?;
        let catalog = self.api.meta.catalog();
        let namespaces: Vec<String> = catalog
            .namespaces()?
            .into_iter()
            .filter(|ns| sees(&v.caller, &Place::of_namespace(ns)))
            .map(|ns| ns.name)
            .collect();
        let ctx = context! {
            ..self.base(req, v, "Access credentials"),
            ..context! { credentials => list["credentials"].clone(), namespaces => namespaces },
        };
        self.render(StatusCode::OK, "credentials.html", ctx)
    }

    pub(super) async fn region(&self, req: &Request, v: &Visitor) -> ApiResult<Reply> {
        let status = self.call(req, v, Method::GET, "/cluster", None).await?;
        let metrics = crate::metrics::render();
        let sum = |name: &str, label: Option<&str>| crate::metrics::sum_of(&metrics, name, label);
        let hits = sum(crate::metrics::CACHE_HITS, None);
        let misses = sum(crate::metrics::CACHE_MISSES, None);
        let by_source: Vec<(String, String)> = ["cache", "peer", "origin"]
            .iter()
            .map(|s| {
                let label = format!("source=\"{s}\"");
                (
                    s.to_string(),
                    views::human_size(sum(crate::metrics::BLOB_BYTES, Some(&label)) as u64),
                )
            })
            .collect();
        let started = std::time::Instant::now();
        let probe = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            self.api.store.list(None, 1),
        )
        .await;
        let origin = match probe {
            Ok(Ok(_)) => format!("answering ({} ms)", started.elapsed().as_millis()),
            Ok(Err(e)) => format!("failing: {e}"),
            Err(_) => "not answering within 3 s".to_string(),
        };
        let ratio = if hits + misses > 0.0 {
            format!("{:.1} %", 100.0 * hits / (hits + misses))
        } else {
            "no blob reads yet".to_string()
        };
        let ctx = context! {
            ..self.base(req, v, "Region"),
            ..context! {
                status => status,
                hit_ratio => ratio,
                hits => hits as u64,
                misses => misses as u64,
                cached => views::human_size(sum(crate::metrics::CACHE_BYTES, None) as u64),
                entries => sum(crate::metrics::CACHE_ENTRIES, None) as u64,
                by_source => by_source,
                origin => origin,
            },
        };
        self.render(StatusCode::OK, "region.html", ctx)
    }

    pub(super) async fn people(&self, req: &Request, v: &Visitor) -> ApiResult<Reply> {
        self.session_of(v)?;
        self.api.auth.require_cluster_admin(&v.caller)?;
        let get = |path: &'static str| self.call(req, v, Method::GET, path, None);
        let organisations = get("/organisations").await?;
        let users = get("/users").await?;
        let accounts = get("/service-accounts").await?;
        let bindings = get("/role-bindings").await?;
        let ctx = context! {
            ..self.base(req, v, "Organisations and people"),
            ..context! {
                organisations => organisations["organisations"].clone(),
                users => users["users"].clone(),
                service_accounts => accounts["service_accounts"].clone(),
                bindings => bindings["role_bindings"].clone(),
            },
        };
        self.render(StatusCode::OK, "people.html", ctx)
    }

    /// A management API request for the visitor's session (`Api::call`); 401 without one,
    /// which sends the visitor to sign in.
    pub(super) async fn call(
        &self,
        req: &Request,
        v: &Visitor,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> ApiResult<serde_json::Value> {
        let session = self.session_of(v)?;
        self.api.call(req, Some(session), method, path, body).await
    }

    /// The session token, or 401 (which sends the visitor to sign in).
    pub(super) fn session_of<'a>(&self, v: &'a Visitor) -> ApiResult<&'a str> {
        v.session
            .as_ref()
            .map(|s| s.token.as_str())
            .ok_or_else(|| ApiError::new(Code::Unauthorized, "sign in to see this page"))
    }
}
