//! The registry client: one `Registry` per simulated client, each with its own connection
//! pool (a Kubernetes node does not share sockets with its neighbours), bound to one of the
//! targets round-robin.
//!
//! Authentication works against any registry:
//! - Basic credentials straight on `/v2` (Shoal takes them) when `--auth basic` and
//!   credentials are given;
//! - Docker's token flow: a 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`
//!   makes the client ask the realm for a token (with Basic credentials if it has them,
//!   else anonymously), keep it per scope until it expires, and retry once. With
//!   `--auth token` the client first pings `/v2/` to learn the realm, as Docker does, so it
//!   asks for a token before its first real request and never streams a large body into a
//!   401.
//!
//! A request is given as a closure that builds it, because a retry needs a fresh body and
//! generated bodies can be made again at no cost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::args::{AuthMode, TargetArgs};

/// The targets of a run and how to sign in to them.
#[derive(Clone, Debug)]
pub struct Targets {
    urls: Vec<String>,
    pids: Vec<u32>,
    auth: Arc<AuthConfig>,
}

#[derive(Debug)]
struct AuthConfig {
    /// `username:password`, when given.
    credentials: Option<(String, String)>,
    mode: AuthMode,
}

impl Targets {
    pub fn new(args: &TargetArgs) -> anyhow::Result<Targets> {
        args.check()?;
        if let Some(pem) = &args.ca_cert {
            crate::tls::trust_file(pem)?;
        }
        Ok(Targets {
            urls: args
                .targets
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            pids: args.pids.clone(),
            auth: Arc::new(AuthConfig {
                credentials: args.username.clone().zip(args.password.clone()),
                mode: args.auth,
            }),
        })
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Server processes to watch (`--pid`).
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// A new client with a connection pool of its own, on target `i % targets`.
    pub fn client(&self, i: usize) -> anyhow::Result<Registry> {
        self.client_of(&self.urls[i % self.urls.len()])
    }

    /// A new client of registry `base` (not necessarily a target: the upstream a target
    /// mirrors), signing in the same way.
    pub fn client_of(&self, base: &str) -> anyhow::Result<Registry> {
        let base = base.trim_end_matches('/').to_string();
        let http = crate::tls::client()
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()
            .context("building an HTTP client")?;
        Ok(Registry {
            base,
            http,
            auth: self.auth.clone(),
            state: Arc::new(Mutex::new(AuthState::default())),
        })
    }
}

/// What a repository request needs: `repository:<repo>:pull` or `…:pull,push`.
#[derive(Clone, Copy, Debug)]
pub enum Access<'a> {
    Pull(&'a str),
    Push(&'a str),
    /// `GET /v2/_catalog`.
    Catalog,
}

impl Access<'_> {
    fn scope(&self) -> String {
        match self {
            Access::Pull(repo) => format!("repository:{repo}:pull"),
            Access::Push(repo) => format!("repository:{repo}:pull,push"),
            Access::Catalog => "registry:catalog:*".to_string(),
        }
    }
}

/// One simulated client. Clones share the pool and the tokens.
#[derive(Clone)]
pub struct Registry {
    pub base: String,
    http: reqwest::Client,
    auth: Arc<AuthConfig>,
    state: Arc<Mutex<AuthState>>,
}

#[derive(Default)]
struct AuthState {
    /// Whether `/v2/` was pinged (token mode).
    pinged: bool,
    /// The Bearer realm and service, once a challenge named them.
    bearer: Option<(String, Option<String>)>,
    /// Tokens by scope, with when they stop being used.
    tokens: HashMap<String, (String, Instant)>,
}

impl Registry {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The username and password this client signs in with, if given.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth
            .credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// `METHOD /api/v1/PATH` on this target's management API, with the Basic credentials
    /// (the management API takes no tokens).
    pub async fn api(&self, method: Method, path: &str) -> anyhow::Result<Response> {
        let mut req = self
            .http
            .request(method.clone(), self.url(&format!("/api/v1/{path}")));
        if let Some((u, p)) = &self.auth.credentials {
            req = req.basic_auth(u, Some(p));
        }
        req.send()
            .await
            .with_context(|| format!("{method} /api/v1/{path}"))
    }

    /// The plain HTTP client (for `/metrics` and absolute URLs outside `/v2`).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends `method url` built by `build`, authenticated for `access`; on a 401 with a
    /// challenge it can answer, authenticates and sends it once more.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        access: Access<'_>,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> anyhow::Result<Response> {
        let scope = access.scope();
        if self.auth.mode == AuthMode::Token && !self.lock().pinged {
            self.ping().await?;
        }
        let mut token = self.token_for(&scope).await?;
        let mut tried_again = false;
        loop {
            let mut req = self.http.request(method.clone(), url);
            req = match (&token, &self.auth.credentials, self.auth.mode) {
                (Some(t), _, _) => req.bearer_auth(t),
                (None, Some((u, p)), AuthMode::Basic) => req.basic_auth(u, Some(p)),
                _ => req,
            };
            let resp = build(req)
                .send()
                .await
                .with_context(|| format!("{method} {url}"))?;
            if resp.status() != StatusCode::UNAUTHORIZED || tried_again {
                return Ok(resp);
            }
            let Some(Challenge::Bearer {
                realm,
                service,
                scope: asked,
            }) = challenge_of(&resp)
            else {
                return Ok(resp);
            };
            self.lock().bearer = Some((realm, service));
            // The scope the server names wins: it knows what the request needs.
            let asked = asked.unwrap_or_else(|| scope.clone());
            let fresh = self.fetch_token(&asked).await?;
            self.lock().tokens.insert(scope.clone(), fresh.clone());
            token = Some(fresh.0);
            tried_again = true;
        }
    }

    /// The `Authorization` value this client sends for `access` (Basic credentials, or a
    /// token from the realm after the same challenge `send` answers), for callers that
    /// speak HTTP themselves (`lean`). `None`: the registry asks for nothing.
    pub async fn authorization(
        &self,
        url: &str,
        access: Access<'_>,
    ) -> anyhow::Result<Option<String>> {
        let scope = access.scope();
        // One request through the usual path learns the realm and caches a token if needed.
        self.send(Method::HEAD, url, access, |r| r).await?;
        if let Some(token) = self.token_for(&scope).await? {
            return Ok(Some(format!("Bearer {token}")));
        }
        Ok(match (&self.auth.credentials, self.auth.mode) {
            (Some((u, p)), AuthMode::Basic) => {
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                Some(format!("Basic {raw}"))
            }
            _ => None,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.state.lock().expect("auth state lock")
    }

    /// Docker's first request: `GET /v2/` without credentials, to learn the realm.
    async fn ping(&self) -> anyhow::Result<()> {
        let resp = self
            .http
            .get(self.url("/v2/"))
            .send()
            .await
            .with_context(|| format!("GET {}/v2/", self.base))?;
        let mut state = self.lock();
        state.pinged = true;
        if let Some(Challenge::Bearer { realm, service, .. }) = challenge_of(&resp) {
            state.bearer = Some((realm, service));
        }
        Ok(())
    }

    /// A cached token for `scope`, or a new one when a realm is known.
    async fn token_for(&self, scope: &str) -> anyhow::Result<Option<String>> {
        {
            let state = self.lock();
            if let Some((t, until)) = state.tokens.get(scope) {
                if Instant::now() < *until {
                    return Ok(Some(t.clone()));
                }
            }
            if state.bearer.is_none() {
                return Ok(None);
            }
        }
        let fresh = self.fetch_token(scope).await?;
        self.lock().tokens.insert(scope.to_string(), fresh.clone());
        Ok(Some(fresh.0))
    }

    /// `GET realm?service=…&scope=…`, with Basic credentials when the client has them.
    async fn fetch_token(&self, scope: &str) -> anyhow::Result<(String, Instant)> {
        let (realm, service) = self
            .lock()
            .bearer
            .clone()
            .context("no Bearer realm known")?;
        let mut query = vec![("scope", scope.to_string())];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let mut req = self.http.get(&realm).query(&query);
        if let Some((u, p)) = &self.auth.credentials {
            req = req.basic_auth(u, Some(p));
        }
        let asked = Instant::now();
        let resp = req.send().await.with_context(|| format!("GET {realm}"))?;
        if !resp.status().is_success() {
            bail!(
                "token realm {realm} answered {} for scope {scope}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        let body: serde_json::Value = resp.json().await.context("token response")?;
        let token = body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .context("the token response holds no token")?
            .to_string();
        // Distribution's default lifetime is 60 s when the answer names none; stop using a
        // token a little before the server does.
        let lifetime = body["expires_in"].as_u64().unwrap_or(60).max(10);
        Ok((token, asked + Duration::from_secs(lifetime - 5)))
    }
}

#[derive(Debug, PartialEq)]
enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Other,
}

fn challenge_of(resp: &Response) -> Option<Challenge> {
    let h = resp.headers().get(reqwest::header::WWW_AUTHENTICATE)?;
    parse_challenge(h.to_str().ok()?)
}

/// Parses `Bearer realm="…",service="…",scope="…"`; quoted values may hold commas
/// (`pull,push`).
fn parse_challenge(h: &str) -> Option<Challenge> {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Some(Challenge::Other);
    }
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let check =
            |h: &str, want: Option<Challenge>| assert_eq!(parse_challenge(h), want, "{h:?}");
        let bearer = |realm: &str, service: Option<&str>, scope: Option<&str>| {
            Some(Challenge::Bearer {
                realm: realm.into(),
                service: service.map(Into::into),
                scope: scope.map(Into::into),
            })
        };
        check(
            r#"Bearer realm="http://127.0.0.1:5000/auth/token",service="shoal",scope="repository:bench/x:pull,push""#,
            bearer(
                "http://127.0.0.1:5000/auth/token",
                Some("shoal"),
                Some("repository:bench/x:pull,push"),
            ),
        );
        check(
            r#"bearer realm="https://auth.example/token", service="registry.example""#,
            bearer("https://auth.example/token", Some("registry.example"), None),
        );
        check(
            r#"Bearer realm="r",scope="a:b:pull",error="insufficient_scope""#,
            bearer("r", None, Some("a:b:pull")),
        );
        check(r#"Basic realm="shoal""#, Some(Challenge::Other));
        check(r#"Bearer service="x""#, None);
    }

    #[test]
    fn scopes() {
        assert_eq!(Access::Pull("bench/a").scope(), "repository:bench/a:pull");
        assert_eq!(
            Access::Push("bench/a").scope(),
            "repository:bench/a:pull,push"
        );
    }

    #[test]
    fn clients_go_round_robin() {
        let targets = Targets::new(&TargetArgs::new(&["http://a:1/", "http://b:2"])).unwrap();
        let bases: Vec<_> = (0..4).map(|i| targets.client(i).unwrap().base).collect();
        assert_eq!(
            bases,
            ["http://a:1", "http://b:2", "http://a:1", "http://b:2"]
        );
    }
}
