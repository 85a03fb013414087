//! The console's forms. Each POST checks its CSRF token first, then makes its change
//! through the management API (or, for a manifest, the registry API) on behalf of the
//! session, so it is refused exactly when the same person's API request would be; hidden
//! buttons are a convenience, never the protection. A change answers with a redirect
//! (post/redirect/get), so reloading a page never repeats it.

use http::{Method, StatusCode};
use minijinja::context;
use serde_json::{json, Value};

use super::session::{self, field, Visitor};
use super::{redirect, Console};
use crate::auth::{Action, Place};
use crate::errors::{ApiError, ApiResult, Code};
use crate::wire::{Body, Reply, Request, RequestBody};

/// Forms are small; a larger body is refused before it is parsed.
const MAX_FORM: usize = 64 * 1024;

/// The fields of an `application/x-www-form-urlencoded` body.
pub(super) async fn read_form(
    req: &Request,
    body: &mut dyn RequestBody,
) -> ApiResult<Vec<(String, String)>> {
    let ct = req.header("content-type").unwrap_or("");
    if ct.split(';').next().map(str::trim) != Some("application/x-www-form-urlencoded") {
        return Err(ApiError::new(
            Code::Unsupported,
            "console forms are sent as application/x-www-form-urlencoded",
        ));
    }
    let bytes = crate::wire::read_limited(body, MAX_FORM)
        .await?
        .ok_or_else(|| ApiError::new(Code::SizeInvalid, "the form is larger than 64 KiB"))?;
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// Where to go after signing in: a console path only (never another site).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.contains("//") && !n.contains('\\') => n,
        _ => "/ui/",
    }
}

/// Patterns typed one per line or separated by commas.
fn patterns(text: Option<&str>) -> Vec<String> {
    text.unwrap_or("")
        .split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// A repository name as one path segment of the management API, which decodes it.
fn repo_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A credential id or tag as a path segment of the management API, which takes them as
/// they are: only names that need no encoding pass; anything else is not found.
fn plain_segment<'a>(what: &str, s: &'a str) -> ApiResult<&'a str> {
    let plain = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if plain {
        Ok(s)
    } else {
        Err(ApiError::new(
            Code::NotFound,
            format!("there is no {what} {s:?}"),
        ))
    }
}

impl Console {
    pub(super) fn sign_in_page(
        &self,
        req: &Request,
        v: &Visitor,
        failed: Option<&ApiError>,
    ) -> ApiResult<Reply> {
        let token = crate::auth::secrets::generate(24);
        let next = safe_next(req.query("next").or_else(|| req.query("next_form")));
        let ctx = minijinja::context! {
            ..self.base(req, v, "Sign in"),
            ..minijinja::context! {
                sign_in_csrf => token.clone(),
                next => next,
                error => failed.map(|e| e.message.clone()),
                session_ended => v.session_ended,
            },
        };
        let status = failed.map_or(StatusCode::OK, |e| e.status());
        let mut reply = self.render(status, "sign_in.html", ctx)?.header(
            "Set-Cookie",
            session::set_cookie(req, session::SIGN_IN_COOKIE, &token, 3600),
        );
        if v.session_ended {
            reply = reply.header(
                "Set-Cookie",
                session::set_cookie(req, session::SESSION_COOKIE, "", 0),
            );
        }
        if let Some(e) = failed {
            for (k, val) in &e.headers {
                if *k == "Retry-After" {
                    reply = reply.header(k, val.clone());
                }
            }
        }
        Ok(reply)
    }

    pub(super) async fn sign_in(
        &self,
        req: &Request,
        v: &Visitor,
        form: &[(String, String)],
    ) -> ApiResult<Reply> {
        let sent = field(form, "csrf").unwrap_or("");
        let expected = session::cookie(req, session::SIGN_IN_COOKIE).unwrap_or("");
        if expected.is_empty() || !session::same_token(sent, expected) {
            return Err(ApiError::new(
                Code::Denied,
                "the sign-in form expired or came from elsewhere; reload it and try again",
            ));
        }
        let login = field(form, "login").unwrap_or("").trim();
        let password = field(form, "password").unwrap_or("");
        let next = safe_next(field(form, "next")).to_string();
        let fail = |e: ApiError| {
            let mut again = req.clone();
            again.query = vec![("next".into(), next.clone())];
            self.sign_in_page(&again, v, Some(&e))
        };
        if login.is_empty() || password.is_empty() {
            return fail(ApiError::new(
                Code::Unauthorized,
                "enter a username and a password",
            ));
        }
        if login == crate::auth::OIDC_LOGIN {
            return fail(ApiError::new(
                Code::Unauthorized,
                "CI identities cannot sign in to the console; use a password or an access credential",
            ));
        }
        let caller = match self.api.auth.login(login, password, req).await {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let principal = caller.principal().unwrap_or_default().to_string();
        if let Err(wait) = self.sign_ins.admit(principal, std::time::Instant::now()) {
            let secs = crate::edge::retry_after(wait);
            return fail(
                ApiError::new(
                    Code::TooManyRequests,
                    format!("too many console sign-ins as {login:?}; retry in {secs} s"),
                )
                .header("Retry-After", secs.to_string()),
            );
        }
        // Signing in over a session ends that one.
        if let Some(old) = &v.session {
            if let Err(e) = self.api.auth.end_session(&v.caller, &old.claims, req).await {
                tracing::warn!(err = %e.message, "ending the session signed in over");
            }
        }
        let issued = self.api.auth.start_session(&caller, self.session_ttl)?;
        tracing::info!(target: "shoal::access", login, "console sign-in");
        self.api.auth.audit().record(
            req,
            crate::audit::NodeEvent {
                action: "console.signin",
                actor: caller.principal(),
                login: Some(login),
                result: "ok",
                ..Default::default()
            },
        );
        Ok(redirect(&next)
            .header(
                "Set-Cookie",
                session::set_cookie(
                    req,
                    session::SESSION_COOKIE,
                    &issued.token,
                    issued.expires_in,
                ),
            )
            .header(
                "Set-Cookie",
                session::set_cookie(req, session::SIGN_IN_COOKIE, "", 0),
            ))
    }

    pub(super) async fn sign_out(
        &self,
        req: &Request,
        v: &Visitor,
        form: &[(String, String)],
    ) -> ApiResult<Reply> {
        let clear = session::set_cookie(req, session::SESSION_COOKIE, "", 0);
        let Some(s) = &v.session else {
            return Ok(redirect("/ui/").header("Set-Cookie", clear));
        };
        v.check_csrf(form)?;
        // The browser forgets the cookie even when the region could not record the end.
        self.api
            .auth
            .end_session(&v.caller, &s.claims, req)
            .await
            .map_err(|e| e.header("Set-Cookie", clear.clone()))?;
        Ok(redirect("/ui/").header("Set-Cookie", clear))
    }

    pub(super) async fn confirm_delete_tag(
        &self,
        req: &Request,
        v: &Visitor,
        repo: &str,
        tag: &str,
    ) -> ApiResult<Reply> {
        let (repo, at) = self.seen_repository(v, repo).await?;
        self.api.auth.require(&v.caller, Action::Delete, &at)?;
        let digest = self
            .api
            .meta
            .catalog()
            .tag(repo.as_str(), tag)?
            .ok_or_else(|| ApiError::new(Code::NotFound, format!("{repo} has no tag {tag}")))?;
        self.confirm(
            req,
            v,
            &format!("Delete tag {tag}?"),
            &format!(
                "{repo}:{tag} will no longer resolve. The image stays reachable by its digest {digest} until nothing refers to it."
            ),
            &format!("/ui/r/{repo}"),
        )
    }

    pub(super) async fn delete_tag(
        &self,
        req: &Request,
        v: &Visitor,
        repo: &str,
        tag: &str,
    ) -> ApiResult<Reply> {
        let path = format!(
            "/repositories/{}/tags/{}",
            repo_segment(repo),
            plain_segment("tag", tag)?
        );
        self.call(req, v, Method::DELETE, &path, None).await?;
        Ok(redirect(&format!("/ui/r/{repo}")))
    }

    pub(super) async fn confirm_delete_manifest(
        &self,
        req: &Request,
        v: &Visitor,
        repo: &str,
        digest: &str,
    ) -> ApiResult<Reply> {
        let (repo, at) = self.seen_repository(v, repo).await?;
        self.api.auth.require(&v.caller, Action::Delete, &at)?;
        let digest = checked_digest(digest)?;
        if self
            .api
            .meta
            .catalog()
            .manifest(repo.as_str(), &digest)?
            .is_none()
        {
            return Err(ApiError::new(
                Code::NotFound,
                format!("{repo} holds no manifest {digest}"),
            ));
        }
        let tags = self.api.meta.catalog().tags_of(repo.as_str(), &digest)?;
        let also = if tags.is_empty() {
            String::new()
        } else {
            format!(" Its tags go with it: {}.", tags.join(", "))
        };
        self.confirm(
            req,
            v,
            "Delete this manifest?",
            &format!("{repo}@{digest} will be deleted.{also} This cannot be undone."),
            &format!("/ui/r/{repo}/@{digest}"),
        )
    }

    pub(super) async fn delete_manifest(
        &self,
        req: &Request,
        v: &Visitor,
        repo: &str,
        digest: &str,
    ) -> ApiResult<Reply> {
        let session = self.session_of(v)?;
        let digest = checked_digest(digest)?;
        let mut api_req = Request::new(
            Method::DELETE,
            &format!("/v2/{repo}/manifests/{digest}"),
            http::HeaderMap::new(),
        );
        api_req.id = req.id.clone();
        api_req.client = req.client;
        api_req.session = Some(session.to_string());
        self.registry
            .dispatch(&api_req, &mut crate::wire::BytesBody(None))
            .await?;
        Ok(redirect(&format!("/ui/r/{repo}")))
    }

    fn confirm(
        &self,
        req: &Request,
        v: &Visitor,
        question: &str,
        consequence: &str,
        cancel: &str,
    ) -> ApiResult<Reply> {
        let ctx = context! {
            ..self.base(req, v, question),
            ..context! { question => question, consequence => consequence, cancel => cancel, action => req.path.clone() },
        };
        self.render(StatusCode::OK, "confirm.html", ctx)
    }

    /// A namespace's settings, for those who manage it.
    pub(super) async fn settings(
        &self,
        req: &Request,
        v: &Visitor,
        name: &str,
        preview: Option<Value>,
    ) -> ApiResult<Reply> {
        let ns = self.seen_namespace(v, name)?;
        self.api.auth.require(
            &v.caller,
            Action::ManageNamespaces,
            &Place::of_namespace(&ns),
        )?;
        let path = format!("/namespaces/{}/retention", ns.name);
        let policy = match self.call(req, v, Method::GET, &path, None).await {
            // No rules is no policy: the box stays empty.
            Ok(p) if p["rules"].as_array().is_none_or(|r| r.is_empty()) => String::new(),
            Ok(p) => serde_json::to_string_pretty(&p).unwrap_or_default(),
            Err(e) if e.status() == StatusCode::NOT_FOUND => String::new(),
            Err(e) => return Err(e),
        };
        let ctx = context! {
            ..self.base(req, v, &format!("{} settings", ns.name)),
            ..context! {
                namespace => ns.name.clone(),
                description => ns.description.clone().unwrap_or_default(),
                public => ns.visibility == shoal_raft::Visibility::Public,
                immutable_tags => ns.immutable.patterns.join("\n"),
                immutable_exclude => ns.immutable.exclude.join("\n"),
                policy => policy,
                preview => preview,
                saved => req.query("saved").is_some(),
            },
        };
        self.render(StatusCode::OK, "settings.html", ctx)
    }

    pub(super) async fn save_settings(
        &self,
        req: &Request,
        v: &Visitor,
        name: &str,
        form: &[(String, String)],
    ) -> ApiResult<Reply> {
        let ns = self.seen_namespace(v, name)?;
        let visibility = match field(form, "visibility") {
            Some("public") => "public",
            _ => "private",
        };
        let body = json!({
            "visibility": visibility,
            "description": field(form, "description").unwrap_or("").trim(),
            "immutable_tags": patterns(field(form, "immutable_tags")),
            "immutable_exclude": patterns(field(form, "immutable_exclude")),
        });
        // The policy first: it is what a person most likely gets wrong, and a refused form
        // then changes nothing else.
        let retention = format!("/namespaces/{}/retention", ns.name);
        match field(form, "policy").map(str::trim) {
            None => {}
            Some("") => match self.call(req, v, Method::DELETE, &retention, None).await {
                Ok(_) => {}
                Err(e) if e.status() == StatusCode::NOT_FOUND => {}
                Err(e) => return Err(e),
            },
            Some(text) => {
                let policy: Value = serde_json::from_str(text).map_err(|e| {
                    ApiError::new(
                        Code::BadRequest,
                        format!("the retention policy is not valid JSON: {e}"),
                    )
                })?;
                self.call(req, v, Method::PUT, &retention, Some(policy))
                    .await?;
            }
        }
        let path = format!("/namespaces/{}", ns.name);
        self.call(req, v, Method::PATCH, &path, Some(body)).await?;
        Ok(redirect(&format!("/ui/n/{}/-/settings?saved=1", ns.name)))
    }

    pub(super) async fn preview_retention(
        &self,
        req: &Request,
        v: &Visitor,
        name: &str,
    ) -> ApiResult<Reply> {
        let path = format!("/namespaces/{name}/retention/preview");
        let plan = self
            .call(req, v, Method::POST, &path, Some(json!({})))
            .await?;
        self.settings(req, v, name, Some(plan)).await
    }

    pub(super) async fn create_credential(
        &self,
        req: &Request,
        v: &Visitor,
        form: &[(String, String)],
    ) -> ApiResult<Reply> {
        let mut body = json!({
            "name": field(form, "name").unwrap_or("").trim(),
            "scope": field(form, "scope").unwrap_or("containerRegistry:pull"),
        });
        for key in ["namespace", "expires"] {
            if let Some(val) = field(form, key).map(str::trim).filter(|s| !s.is_empty()) {
                body[key] = json!(val);
            }
        }
        let created = self
            .call(req, v, Method::POST, "/credentials", Some(body))
            .await?;
        let ctx = context! {
            ..self.base(req, v, "Credential created"),
            ..context! { credential => created },
        };
        self.render(StatusCode::CREATED, "created.html", ctx)
    }

    pub(super) async fn revoke(&self, req: &Request, v: &Visitor, id: &str) -> ApiResult<Reply> {
        let path = format!("/credentials/{}", plain_segment("credential", id)?);
        self.call(req, v, Method::DELETE, &path, None).await?;
        Ok(redirect("/ui/credentials"))
    }

    /// A Kubernetes pull secret for a credential, as a YAML file to download.
    pub(super) async fn pull_secret(
        &self,
        req: &Request,
        v: &Visitor,
        id: &str,
        form: &[(String, String)],
    ) -> ApiResult<Reply> {
        let namespace = field(form, "k8s_namespace").unwrap_or("default").trim();
        let path = format!(
            "/credentials/{}/pull-secret",
            plain_segment("credential", id)?
        );
        let secret = self
            .call(
                req,
                v,
                Method::POST,
                &path,
                Some(json!({ "namespace": namespace })),
            )
            .await?;
        let name = secret["metadata"]["name"].as_str().unwrap_or("pull-secret");
        let yaml = pull_secret_yaml(&secret);
        Ok(Reply::new(StatusCode::OK)
            .header("Content-Type", "application/yaml")
            .header(
                "Content-Disposition",
                format!("attachment; filename=\"{name}.yaml\""),
            )
            .body(Body::Bytes(yaml.into_bytes().into())))
    }
}

/// A manifest digest from a path, checked before it goes into another path.
fn checked_digest(d: &str) -> ApiResult<String> {
    d.parse::<shoal_origin::Digest>()
        .map(|d| d.to_string())
        .map_err(|_| ApiError::new(Code::NotFound, format!("{d:?} is not a digest")))
}

/// The pull secret the API answers, as the YAML `kubectl apply -f` takes. Every value is
/// written as a JSON string, which YAML reads as a double-quoted scalar.
pub fn pull_secret_yaml(secret: &Value) -> String {
    let q = |v: &Value| serde_json::to_string(v.as_str().unwrap_or_default()).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {}\n  namespace: {}\ntype: {}\ndata:\n  .dockerconfigjson: {}\n",
        q(&secret["metadata"]["name"]),
        q(&secret["metadata"]["namespace"]),
        q(&secret["type"]),
        q(&secret["data"][".dockerconfigjson"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_sign_in_only_console_paths() {
        assert_eq!(safe_next(Some("/ui/r/acme/api")), "/ui/r/acme/api");
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui//evil",
            "/api/v1/me",
            "/ui/\\\\evil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn patterns_split_on_lines_and_commas() {
        assert_eq!(
            patterns(Some("v*, release-*\n\n  prod \n")),
            ["v*", "release-*", "prod"]
        );
        assert!(patterns(None).is_empty());
    }

    #[test]
    fn a_pull_secret_reads_as_yaml() {
        let secret = json!({"apiVersion":"v1","kind":"Secret",
            "metadata":{"name":"shoal-ci","namespace":"apps"},
            "type":"kubernetes.io/dockerconfigjson","data":{".dockerconfigjson":"eyJh"}});
        assert_eq!(
            pull_secret_yaml(&secret),
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: \"shoal-ci\"\n  namespace: \"apps\"\ntype: \"kubernetes.io/dockerconfigjson\"\ndata:\n  .dockerconfigjson: \"eyJh\"\n"
        );
    }
}
