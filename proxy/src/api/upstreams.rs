//! `/api/v1/upstreams`: namespaces bound to upstream registries they mirror (`mirror`).
//!
//! Creating or deleting a binding needs namespace management on the namespace; listing and
//! showing need list there, and show only bindings of namespaces the caller may see. The
//! upstream password is write-only: it is stored in the replicated catalogue and never
//! returned (`has_password` says whether there is one).

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_raft::{Command, KeepRule, RetentionPolicy, UpstreamRecord};

use super::lifecycle::parse_duration;
use super::{json_body, time, Api};
use crate::auth::{Action, Need, Place};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::{NamespaceName, Slug};
use crate::wire::{Reply, Request, RequestBody};

/// Docker Hub's registry host, and the name clients (and containerd's `?ns=`) give it.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const DOCKER_HUB: &str = "docker.io";
/// The longest tag TTL: a day (ECR's revalidation window).
const MAX_TAG_TTL: u64 = 86_400;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUpstream {
    name: String,
    url: String,
    namespace: String,
    /// The registry host containerd names in `?ns=`; default: the URL's host[:port]
    /// (`docker.io` for Docker Hub).
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// Default `5m`.
    #[serde(default)]
    tag_ttl: Option<String>,
    /// Default 16.
    #[serde(default)]
    max_connections: Option<u32>,
    /// Default: on for Docker Hub.
    #[serde(default)]
    library_prefix: Option<bool>,
    /// Give a namespace without a retention policy the mirror default (keep tags pulled
    /// within 30 days or fetched within 7, and manifests fetched by digest for 7). Default
    /// true.
    #[serde(default)]
    default_retention: Option<bool>,
}

fn view(u: &UpstreamRecord) -> Value {
    json!({
        "name": u.name,
        "namespace": u.namespace,
        "url": u.url,
        "host": u.host,
        "username": u.username,
        "has_password": u.password.is_some(),
        "tag_ttl": humantime::format_duration(std::time::Duration::from_secs(u.tag_ttl.max(0) as u64)).to_string(),
        "max_connections": u.max_connections,
        "library_prefix": u.library_prefix,
        "created_at": time(Some(u.created_at)),
    })
}

/// The default policy of a mirror namespace.
pub(crate) fn mirror_retention() -> RetentionPolicy {
    RetentionPolicy {
        repositories: Vec::new(),
        rules: vec![
            KeepRule {
                pulled_within: Some(30 * 86_400),
                ..KeepRule::default()
            },
            KeepRule {
                pushed_within: Some(7 * 86_400),
                ..KeepRule::default()
            },
            // What nodes pull by digest only (pinned images) is untagged here.
            KeepRule {
                untagged: true,
                pushed_within: Some(7 * 86_400),
                ..KeepRule::default()
            },
        ],
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::BadRequest, msg)
}

/// The form a registry base URL must have: the OpenAPI document's `pattern` for it, checked
/// on the text as given (a URL parser would also take upper case, `*` or `_` in a host,
/// and normalise them away).
const URL_FORM: &str = r"^https?://[a-z0-9]+([.-][a-z0-9]+)*(:[1-9][0-9]{0,4})?/?$";

/// A registry base URL: http(s), a lower-case host name or IPv4 address, an optional port,
/// no credentials, path, query or fragment. Gives the URL without a trailing `/` and its
/// host[:port].
fn registry_url(s: &str) -> ApiResult<(String, String)> {
    static FORM: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(URL_FORM).expect("a valid pattern"));
    let u = url::Url::parse(s).map_err(|e| bad(format!("url: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("url: must be http or https"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad(
            "url: credentials go in username and password, never in the URL",
        ));
    }
    if u.query().is_some() || u.fragment().is_some() || u.path() != "/" {
        return Err(bad(
            "url: the registry's base URL only (https://host[:port]), without path or query",
        ));
    }
    let host = u.host_str().ok_or_else(|| bad("url: no host"))?;
    if !FORM.is_match(s) {
        return Err(bad(
            "url: http(s)://host[:port] with a lower-case host name (letters, digits, '.' and '-') or an IPv4 address",
        ));
    }
    let host = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    Ok((s.trim_end_matches('/').to_string(), host))
}

/// Free text of at most 255 printable characters.
fn short_text(what: &str, s: &str) -> ApiResult<()> {
    if s.is_empty() || s.chars().count() > 255 || s.chars().any(char::is_control) {
        return Err(bad(format!("{what}: 1 to 255 printable characters")));
    }
    Ok(())
}

impl CreateUpstream {
    fn record(self) -> ApiResult<UpstreamRecord> {
        let name = Slug::parse("upstream", &self.name)?;
        let namespace = NamespaceName::parse(&self.namespace)?;
        let (url, url_host) = registry_url(&self.url)?;
        let hub = url_host.eq_ignore_ascii_case(DOCKER_HUB_API);
        let host = match self.host {
            Some(h) => {
                short_text("host", &h)?;
                if h.contains(['/', ' ', '?', '#']) {
                    return Err(bad("host: a registry host[:port], such as docker.io"));
                }
                h
            }
            None if hub => DOCKER_HUB.to_string(),
            None => url_host,
        };
        if let Some(u) = &self.username {
            short_text("username", u)?;
        }
        if let Some(p) = &self.password {
            if self.username.is_none() {
                return Err(bad("password: needs a username"));
            }
            if p.len() > 4096 {
                return Err(bad("password: at most 4096 bytes"));
            }
        }
        let tag_ttl = match &self.tag_ttl {
            Some(t) => parse_duration("tag_ttl", t)?,
            None => 300,
        };
        if tag_ttl > MAX_TAG_TTL {
            return Err(bad("tag_ttl: at most 1d"));
        }
        let max_connections = self.max_connections.unwrap_or(16);
        if !(1..=256).contains(&max_connections) {
            return Err(bad("max_connections: 1 to 256"));
        }
        Ok(UpstreamRecord {
            name: name.as_str().to_string(),
            namespace: namespace.to_string(),
            url,
            host,
            username: self.username,
            password: self.password,
            tag_ttl: tag_ttl as i64,
            max_connections,
            library_prefix: self.library_prefix.unwrap_or(hub),
            created_at: chrono::Utc::now().timestamp(),
        })
    }
}

impl Api {
    /// The upstream `name` if the caller may see its namespace (`NOT_FOUND` alike otherwise).
    async fn visible_upstream(
        &self,
        caller: &crate::auth::Caller,
        name: &str,
    ) -> ApiResult<UpstreamRecord> {
        let unknown = || ApiError::new(Code::NotFound, format!("upstream {name:?} does not exist"));
        let u = self
            .meta
            .catalog()
            .upstream_named(name)?
            .ok_or_else(unknown)?;
        self.listable_namespace(caller, &u.namespace)
            .await
            .map_err(|_| unknown())?;
        Ok(u)
    }

    pub(super) async fn list_upstreams(&self, req: &Request) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let catalog = self.meta.catalog();
        let mut out = Vec::new();
        for u in catalog.upstreams()? {
            let Some(ns) = catalog.namespace(&u.namespace)? else {
                continue;
            };
            if caller.may(Action::List, &Place::of_namespace(&ns)) {
                out.push(view(&u));
            }
        }
        Ok(Reply::json(StatusCode::OK, &json!({"upstreams": out})))
    }

    pub(super) async fn get_upstream(&self, req: &Request, name: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let u = self.visible_upstream(&caller, name).await?;
        Ok(Reply::json(StatusCode::OK, &view(&u)))
    }

    pub(super) async fn create_upstream(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
    ) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let input: CreateUpstream = json_body(req, body).await?;
        let default_retention = input.default_retention.unwrap_or(true);
        let record = input.record()?;
        let ns = self.listable_namespace(&caller, &record.namespace).await?;
        self.auth
            .require(&caller, Action::ManageNamespaces, &Place::of_namespace(&ns))?;
        let cmd = Command::CreateUpstream {
            upstream: record.clone(),
        };
        crate::errors::commit(&self.meta, &caller, req, cmd).await?;
        if default_retention && self.meta.catalog().retention(&ns.name)?.is_none() {
            let cmd = Command::SetRetention {
                namespace: ns.name.clone(),
                policy: Some(mirror_retention()),
            };
            crate::errors::commit(&self.meta, &caller, req, cmd).await?;
        }
        tracing::info!(upstream = %record.name, namespace = %record.namespace, url = %record.url, host = %record.host, "upstream created");
        Ok(Reply::json(StatusCode::CREATED, &view(&record)))
    }

    pub(super) async fn delete_upstream(&self, req: &Request, name: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let u = self.visible_upstream(&caller, name).await?;
        let ns = self.listable_namespace(&caller, &u.namespace).await?;
        self.auth
            .require(&caller, Action::ManageNamespaces, &Place::of_namespace(&ns))?;
        let cmd = Command::DeleteUpstream {
            name: u.name.clone(),
        };
        crate::errors::commit(&self.meta, &caller, req, cmd).await?;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_urls() {
        assert_eq!(
            registry_url("https://registry-1.docker.io/").unwrap(),
            (
                "https://registry-1.docker.io".into(),
                "registry-1.docker.io".into()
            )
        );
        assert_eq!(
            registry_url("http://127.0.0.1:5000").unwrap().1,
            "127.0.0.1:5000"
        );
        assert_eq!(
            registry_url("http://localhost:65535").unwrap().1,
            "localhost:65535"
        );
        for bad in [
            "ftp://x",
            "https://u:p@x",
            "https://x/v2/",
            "https://x?y=1",
            "not a url",
            "http://a.b*",
            "http://Registry.example",
            "HTTP://x",
            "http://a_b",
            "http://x:0",
            "http://x:99999",
            "http://[::1]:5000",
        ] {
            assert!(registry_url(bad).is_err(), "{bad}");
        }
    }

    /// The server checks the very pattern the OpenAPI document gives clients (schemathesis
    /// sent `http://….8*`, which the URL parser took and the pattern refuses).
    #[test]
    fn the_url_form_is_the_documents_pattern() {
        let doc: Value = serde_json::from_str(crate::api::OPENAPI).unwrap();
        let pattern =
            &doc["components"]["schemas"]["CreateUpstream"]["properties"]["url"]["pattern"];
        assert_eq!(pattern.as_str(), Some(URL_FORM));
    }

    #[test]
    fn docker_hub_defaults() {
        let input = CreateUpstream {
            name: "hub".into(),
            url: "https://registry-1.docker.io".into(),
            namespace: "hub".into(),
            host: None,
            username: None,
            password: None,
            tag_ttl: None,
            max_connections: None,
            library_prefix: None,
            default_retention: None,
        };
        let r = input.record().unwrap();
        assert_eq!(r.host, "docker.io");
        assert!(r.library_prefix);
        assert_eq!(r.tag_ttl, 300);
        assert_eq!(r.remote_path("hub/nginx").as_deref(), Some("library/nginx"));
        assert_eq!(
            r.remote_path("hub/bitnami/redis").as_deref(),
            Some("bitnami/redis")
        );
        assert_eq!(r.remote_path("hub"), None);
        assert_eq!(r.remote_path("hubx/nginx"), None);
    }
}
