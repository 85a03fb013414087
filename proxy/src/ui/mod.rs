//! The web console under `/ui/`: server-rendered pages (minijinja templates compiled into
//! the binary; no JavaScript build step, and every page works with JavaScript off), served
//! by every node of the region.
//!
//! - `session`: who is looking (the session cookie, CSRF tokens);
//! - `views`: the pure view models (sizes, tag orders, the folder tree, paging, pull commands);
//! - `pages`: what each page shows, read from the local replica with the same `Place` checks
//!   the APIs make;
//! - `actions`: the forms (sign-in, sign-out, deletions, settings, credentials). Every change
//!   goes through the management API (`Api::call`) on behalf of the session, so the console
//!   can do nothing the API would not let the same person do; the CSRF token is checked
//!   first.
//!
//! Pages get their own Content-Security-Policy (styles and the one script from `/ui/static/`
//! only, forms posting to this origin only); the APIs keep `default-src 'none'`. Errors are
//! pages: a page that needs a session sends the visitor to sign in and back, 403 and 404
//! explain themselves and link home.

mod actions;
mod pages;
pub mod session;
pub mod views;

use std::sync::Arc;

use http::{Method, StatusCode};
use minijinja::{context, Environment, Value};
use parking_lot::Mutex;

use crate::api::Api;
use crate::auth::Subject;
use crate::errors::{ApiError, ApiResult, Code};
use crate::wire::{Body, Reply, Request, RequestBody};
use session::Visitor;

/// The policy of console pages: nothing from elsewhere, no inline script or style, forms
/// post only here, never framed.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("error.html", include_str!("templates/error.html")),
    ("sign_in.html", include_str!("templates/sign_in.html")),
    ("namespaces.html", include_str!("templates/namespaces.html")),
    ("namespace.html", include_str!("templates/namespace.html")),
    ("repository.html", include_str!("templates/repository.html")),
    ("artifact.html", include_str!("templates/artifact.html")),
    ("confirm.html", include_str!("templates/confirm.html")),
    ("settings.html", include_str!("templates/settings.html")),
    ("access.html", include_str!("templates/access.html")),
    (
        "credentials.html",
        include_str!("templates/credentials.html"),
    ),
    ("created.html", include_str!("templates/created.html")),
    ("region.html", include_str!("templates/region.html")),
    ("people.html", include_str!("templates/people.html")),
];

const STYLE: &str = include_str!("static/console.css");
const SCRIPT: &str = include_str!("static/console.js");

pub struct Console {
    api: Arc<Api>,
    /// For deleting a manifest, which the registry API does.
    registry: Arc<crate::registry::Registry>,
    templates: Environment<'static>,
    session_ttl: i64,
    /// Image configs by digest, as pages show them (content never changes under a digest).
    configs: Mutex<lru::LruCache<String, Option<views::ImageConfig>>>,
    /// Successful sign-ins per principal on this node: each stores nothing while it lives,
    /// but each sign-out is a record until its expiry (`raft::sessions`).
    sign_ins: crate::limits::RateLimiter<String>,
    /// Repositories' tags in each order, by the replica's applied index (`pages`).
    tag_lists: Mutex<lru::LruCache<(String, views::TagOrder), TagList>>,
    /// Tag lists built at once (each reads every tag of a repository).
    tag_list_builds: tokio::sync::Semaphore,
}

/// A repository's tags in one order, and the applied log index they were read at.
type TagList = (u64, Arc<Vec<views::TagRow>>);

/// Successful console sign-ins allowed per principal and node.
const SIGN_INS: crate::limits::RateSpec = crate::limits::RateSpec {
    requests: 30,
    window: std::time::Duration::from_secs(600),
};

/// The session token a console request carries, for the edge's rate limit (`/ui` only: the
/// cookie is scoped there).
pub fn session_cookie(req: &Request) -> Option<&str> {
    if !req.path.starts_with("/ui") {
        return None;
    }
    session::cookie(req, session::SESSION_COOKIE)
}

impl Console {
    pub fn new(
        api: Arc<Api>,
        registry: Arc<crate::registry::Registry>,
        session_ttl: i64,
    ) -> Console {
        let mut templates = Environment::new();
        for (name, text) in TEMPLATES {
            templates
                .add_template(name, text)
                .unwrap_or_else(|e| panic!("console template {name}: {e}"));
        }
        Console {
            api,
            registry,
            templates,
            session_ttl,
            configs: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(2_000).expect("non-zero"),
            )),
            sign_ins: crate::limits::RateLimiter::new(SIGN_INS),
            tag_lists: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(64).expect("non-zero"),
            )),
            tag_list_builds: tokio::sync::Semaphore::new(2),
        }
    }

    pub async fn handle(&self, req: &Request, body: &mut dyn RequestBody) -> Reply {
        let visitor = self.visitor(req);
        let reply = match self.route(req, body, &visitor).await {
            Ok(r) => r,
            Err(e) => self.error_page(req, &visitor, &e),
        };
        let mut reply = reply.header("Content-Security-Policy", PAGE_CSP);
        if req.is_head() {
            if let Body::Bytes(b) = &reply.body {
                reply.body = Body::HeadOnly(b.len() as u64);
            }
        }
        match reply.has_header("cache-control") {
            true => reply,
            false => reply.header("Cache-Control", "no-store"),
        }
    }

    /// Who is asking: the session's subject, or anonymous (told so when a cookie named a
    /// session that no longer holds).
    fn visitor(&self, req: &Request) -> Visitor {
        let anonymous = |ended| Visitor {
            caller: crate::auth::Caller::anonymous(),
            session: None,
            session_ended: ended,
        };
        let Some(token) = session::cookie(req, session::SESSION_COOKIE) else {
            return anonymous(false);
        };
        match self.api.auth.session(token) {
            Ok((caller, claims)) => Visitor {
                caller,
                session: Some(session::Session {
                    csrf: session::csrf_of(token),
                    token: token.to_string(),
                    claims,
                }),
                session_ended: false,
            },
            Err(_) => anonymous(true),
        }
    }

    async fn route(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        v: &Visitor,
    ) -> ApiResult<Reply> {
        let path = req.path.as_str();
        if path == "/ui" {
            return Ok(redirect("/ui/"));
        }
        let rest = path.strip_prefix("/ui/").unwrap_or("");
        let get = req.method == Method::GET || req.method == Method::HEAD;
        let post = req.method == Method::POST;
        if !get && !post {
            return Err(ApiError::new(
                Code::MethodNotAllowed,
                format!("{} is not allowed on {path}", req.method),
            )
            .header("Allow", "GET, POST"));
        }
        let form = if post {
            actions::read_form(req, body).await?
        } else {
            Vec::new()
        };
        let segs: Vec<&str> = rest.split('/').collect();
        // Every form of a signed-in visitor carries the session's CSRF token, checked here
        // before any handler runs. Signing in has its own (there is no session yet);
        // signing out checks it when there is a session to end.
        if post && !matches!(segs.as_slice(), ["sign-in"] | ["sign-out"]) {
            v.check_csrf(&form)?;
        }
        match (post, segs.as_slice()) {
            (false, [""]) => self.namespaces(req, v).await,
            (false, ["static", "console.css"]) => Ok(asset("text/css", STYLE)),
            (false, ["static", "console.js"]) => Ok(asset("text/javascript", SCRIPT)),
            (false, ["sign-in"]) => self.sign_in_page(req, v, None),
            (true, ["sign-in"]) => self.sign_in(req, v, &form).await,
            (true, ["sign-out"]) => self.sign_out(req, v, &form).await,
            (false, ["n", ns]) => self.namespace(req, v, ns).await,
            (false, ["n", ns, "-", "settings"]) => self.settings(req, v, ns, None).await,
            (true, ["n", ns, "-", "settings"]) => self.save_settings(req, v, ns, &form).await,
            (true, ["n", ns, "-", "retention-preview"]) => self.preview_retention(req, v, ns).await,
            (false, ["n", ns, "-", "access"]) => self.access(req, v, ns).await,
            (false, ["credentials"]) => self.credentials(req, v).await,
            (true, ["credentials"]) => self.create_credential(req, v, &form).await,
            (true, ["credentials", id, "revoke"]) => self.revoke(req, v, id).await,
            (true, ["credentials", id, "pull-secret"]) => self.pull_secret(req, v, id, &form).await,
            (false, ["admin", "region"]) => self.region(req, v).await,
            (false, ["admin", "people"]) => self.people(req, v).await,
            (_, ["r", _, ..]) => {
                let repo = rest.strip_prefix("r/").unwrap_or_default();
                self.repository_route(req, v, post, repo).await
            }
            _ => Err(not_found(path)),
        }
    }

    /// `/ui/r/REPO`, `/ui/r/REPO/@DIGEST[/delete]`, `/ui/r/REPO/-/delete-tag/TAG`.
    async fn repository_route(
        &self,
        req: &Request,
        v: &Visitor,
        post: bool,
        rest: &str,
    ) -> ApiResult<Reply> {
        let rest = percent_encoding::percent_decode_str(rest)
            .decode_utf8()
            .map_err(|_| not_found(&req.path))?;
        if let Some((repo, tag)) = rest.split_once("/-/delete-tag/") {
            return match post {
                false => self.confirm_delete_tag(req, v, repo, tag).await,
                true => self.delete_tag(req, v, repo, tag).await,
            };
        }
        if let Some((repo, artifact)) = rest.split_once("/@") {
            return match (post, artifact.strip_suffix("/delete")) {
                (false, None) => self.artifact(req, v, repo, artifact).await,
                (false, Some(digest)) => self.confirm_delete_manifest(req, v, repo, digest).await,
                (true, Some(digest)) => self.delete_manifest(req, v, repo, digest).await,
                (true, None) => Err(not_found(&req.path)),
            };
        }
        match post {
            false => self.repository(req, v, rest.trim_end_matches('/')).await,
            true => Err(not_found(&req.path)),
        }
    }

    /// What every page's layout needs.
    fn base(&self, req: &Request, v: &Visitor, title: &str) -> Value {
        let who = match &v.caller.subject {
            Subject::User(u) => u.clone(),
            Subject::Credential { owner, .. } => format!("{owner} (credential)"),
            Subject::Federated {
                service_account, ..
            } => service_account.clone(),
            Subject::Anonymous => String::new(),
        };
        let admin = v.signed_in() && self.api.auth.require_cluster_admin(&v.caller).is_ok();
        context! {
            title => title,
            signed_in => v.signed_in(),
            who => who,
            csrf => v.csrf(),
            admin => admin,
            registry => self.registry_host(req),
            path => req.path.clone(),
        }
    }

    /// The registry's `host[:port]` as clients name it in image addresses.
    fn registry_host(&self, req: &Request) -> String {
        let url = self.api.auth.public_url(req);
        url.split_once("://")
            .map_or(url.as_str(), |(_, h)| h)
            .to_string()
    }

    /// Whether clients reach the registry over TLS (pull commands need no insecure flags).
    fn registry_secure(&self, req: &Request) -> bool {
        self.api.auth.public_url(req).starts_with("https://")
    }

    fn render(&self, status: StatusCode, name: &str, ctx: Value) -> ApiResult<Reply> {
        let html = self
            .templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| ApiError::internal("rendering a console page", format!("{e:#}")))?;
        Ok(Reply::new(status)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(Body::Bytes(html.into())))
    }

    /// An error as a page. A page that needs a session sends the visitor to sign in (and
    /// back afterwards); a form posted without one too.
    fn error_page(&self, req: &Request, v: &Visitor, e: &ApiError) -> Reply {
        // A visitor whose session just ended is sent to sign in again rather than told that
        // what they were looking at is gone.
        let ended = v.session_ended && e.code == Code::NotFound;
        let get = req.method == Method::GET || req.method == Method::HEAD;
        if (e.code == Code::Unauthorized || ended) && !v.signed_in() && get {
            let back: String =
                form_urlencoded::byte_serialize(req_target(req).as_bytes()).collect();
            return redirect(&format!("/ui/sign-in?next={back}"));
        }
        let status = e.status();
        let (title, hint) = match status.as_u16() {
            401 => (
                "Sign in needed",
                "Your session has ended or you are not signed in.",
            ),
            403 => (
                "Not allowed",
                "Your roles do not allow this. Ask an owner of the namespace.",
            ),
            404 => ("Not found", "It does not exist, or you may not see it."),
            405 => ("Not allowed here", "This page does not take that request."),
            429 => ("Too many attempts", "Wait a little and try again."),
            s if s >= 500 => (
                "Something went wrong",
                "The registry could not answer. Try again shortly.",
            ),
            _ => ("That did not work", "Check what you entered and try again."),
        };
        let ctx = context! {
            ..self.base(req, v, title),
            ..context! { status => status.as_u16(), message => e.message.clone(), hint => hint },
        };
        let mut reply = self
            .render(status, "error.html", ctx)
            .unwrap_or_else(|e| Reply::error(&e));
        for (k, val) in &e.headers {
            if *k == "Retry-After" || *k == "Allow" || *k == "Set-Cookie" {
                reply = reply.header(k, val.clone());
            }
        }
        reply
    }
}

/// The path and query a request asked for (to come back to after signing in).
fn req_target(req: &Request) -> String {
    if req.query.is_empty() {
        return req.path.clone();
    }
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(req.query.iter())
        .finish();
    format!("{}?{q}", req.path)
}

fn redirect(to: &str) -> Reply {
    Reply::new(StatusCode::SEE_OTHER).header("Location", to.to_string())
}

fn asset(content_type: &'static str, text: &'static str) -> Reply {
    Reply::new(StatusCode::OK)
        .header("Content-Type", content_type)
        .header("Cache-Control", "public, max-age=300")
        .body(Body::Bytes(text.as_bytes().to_vec().into()))
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(Code::NotFound, format!("there is no page at {path}"))
}
