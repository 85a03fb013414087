//! `/auth/token`: the Docker token endpoint, and the OAuth 2 forms of it.
//!
//! - `GET` with Basic credentials (or none, for anonymous pulls of public repositories):
//!   Docker's token flow. The login may be `oidc` with a CI job's OIDC token as password.
//! - `POST` with a form (`application/x-www-form-urlencoded`):
//!   - `grant_type=password` with `username`/`password` (what containerd and Docker send
//!     with an identity token configured);
//!   - `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` with `subject_token`
//!     (an OIDC JWT) and `subject_token_type` `…:id_token` or `…:jwt` (RFC 8693): workload
//!     identity federation for CI.
//!
//! Either way a short-lived JWT comes out that grants, for each requested scope, only the
//! actions the caller may do (Distribution's behaviour: asking for more is not an error, the
//! token just holds less). Wrong credentials are 401.

use http::{Method, StatusCode};
use serde_json::json;

use super::token::Access;
use super::{basic_credentials, place, Action, Caller, Gate, Subject};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::RepoName;
use crate::wire::{read_limited, Reply, Request, RequestBody};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const SUBJECT_TYPES: &[&str] = &[
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:jwt",
];
const MAX_FORM: usize = 32 * 1024;

impl Gate {
    pub async fn token(&self, req: &Request, body: &mut dyn RequestBody) -> Reply {
        let answer = match req.method {
            Method::GET => self.token_get(req).await,
            Method::POST => self.token_post(req, body).await,
            _ => Err(ApiError::new(
                Code::MethodNotAllowed,
                "the token endpoint takes GET with Basic credentials, or POST with a form",
            )),
        };
        match answer {
            Ok(r) => r,
            Err(e) => Reply::error(&e.header("WWW-Authenticate", "Basic realm=\"shoal\"")),
        }
    }

    async fn token_get(&self, req: &Request) -> ApiResult<Reply> {
        let caller = match req.header("authorization") {
            None => Caller::anonymous(),
            Some(h) => {
                let (login, secret) = basic_credentials(h).ok_or_else(|| {
                    ApiError::new(
                        Code::Unauthorized,
                        "the token endpoint takes Basic credentials",
                    )
                })?;
                self.login(&login, &secret, req).await?
            }
        };
        let scopes: Vec<&str> = req
            .query
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str())
            .collect();
        let issued = self.sign(req, &caller, &scopes).await?;
        Ok(Reply::json(StatusCode::OK, &issued))
    }

    async fn token_post(&self, req: &Request, body: &mut dyn RequestBody) -> ApiResult<Reply> {
        let ct = req.header("content-type").unwrap_or("");
        if ct.split(';').next().map(str::trim) != Some("application/x-www-form-urlencoded") {
            return Err(ApiError::new(
                Code::Unsupported,
                "POST /auth/token takes an application/x-www-form-urlencoded form",
            ));
        }
        let raw = read_limited(body, MAX_FORM)
            .await?
            .ok_or_else(|| ApiError::new(Code::SizeInvalid, "the form is larger than 32 KiB"))?;
        let form: Vec<(String, String)> = form_urlencoded::parse(&raw).into_owned().collect();
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let caller = match field("grant_type") {
            Some("password") => {
                let (Some(u), Some(p)) = (field("username"), field("password")) else {
                    return Err(ApiError::new(
                        Code::BadRequest,
                        "grant_type=password needs username and password",
                    ));
                };
                self.login(u, p, req).await?
            }
            Some(TOKEN_EXCHANGE) => {
                if !field("subject_token_type").is_some_and(|t| SUBJECT_TYPES.contains(&t)) {
                    return Err(ApiError::new(
                        Code::BadRequest,
                        format!("subject_token_type must be one of {SUBJECT_TYPES:?}"),
                    ));
                }
                let token = field("subject_token").ok_or_else(|| {
                    ApiError::new(Code::BadRequest, "token exchange needs subject_token")
                })?;
                self.federated(token)
                    .await
                    .inspect_err(|e| self.failed_sign_in(req, super::OIDC_LOGIN, e))?
            }
            other => {
                return Err(ApiError::new(
                    Code::BadRequest,
                    format!("grant_type must be password or {TOKEN_EXCHANGE}, got {other:?}"),
                ))
            }
        };
        // OAuth joins scopes with spaces in one field; Docker repeats the field.
        let scopes: Vec<&str> = form
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str())
            .collect();
        let mut issued = self.sign(req, &caller, &scopes).await?;
        issued["token_type"] = json!("Bearer");
        issued["issued_token_type"] = json!("urn:ietf:params:oauth:token-type:access_token");
        Ok(Reply::json(StatusCode::OK, &issued))
    }

    /// The token answer for `caller` holding what it may do of `scopes`; a token for a
    /// principal is recorded in the audit log with the access it grants.
    async fn sign(
        &self,
        req: &Request,
        caller: &Caller,
        scopes: &[&str],
    ) -> ApiResult<serde_json::Value> {
        let mut access = Vec::new();
        for field in scopes {
            for scope in field.split(' ').filter(|s| !s.is_empty()) {
                access.extend(self.grant(caller, scope).await?);
            }
        }
        if let Some(actor) = caller.principal() {
            let granted: Vec<String> = access
                .iter()
                .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
                .collect();
            self.audit().record(
                req,
                crate::audit::NodeEvent {
                    action: "token.issue",
                    actor: Some(actor),
                    via: caller.via(),
                    access: &granted,
                    result: "ok",
                    ..Default::default()
                },
            );
        }
        let catalog = self.meta().catalog();
        let keys = catalog.signing_keys()?;
        let sid = match &caller.subject {
            Subject::User(name) => catalog.principal(name)?.map(|p| p.uid),
            Subject::Federated { federation, .. } => catalog.federation(federation)?.map(|f| f.uid),
            Subject::Anonymous | Subject::Credential { .. } => None,
        };
        let issued = self.keys().issue(
            &keys,
            &caller.subject.claim(),
            sid,
            access,
            caller.expires_at,
        )?;
        let issued_at = chrono::DateTime::from_timestamp(issued.issued_at, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        Ok(json!({
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": issued_at,
        }))
    }

    /// What `caller` gets of one requested scope `type:name:actions`; unknown types and
    /// invalid names get nothing.
    async fn grant(&self, caller: &Caller, scope: &str) -> ApiResult<Option<Access>> {
        let Some((kind, rest)) = scope.split_once(':') else {
            return Ok(None);
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            return Ok(None);
        };
        let granted: Vec<String> = match kind {
            "registry" if name == "catalog" && !caller.is_anonymous() => vec!["*".into()],
            "repository" => {
                let Ok(repo) = RepoName::parse(name) else {
                    return Ok(None);
                };
                let place =
                    place::repository(self.meta(), repo.namespace().as_str(), repo.as_str())
                        .await?;
                actions
                    .split(',')
                    .filter(|a| {
                        let action = match *a {
                            "pull" => Action::Pull,
                            "push" => Action::Push,
                            "delete" => Action::Delete,
                            _ => return false,
                        };
                        caller.may(action, &place)
                    })
                    .map(str::to_string)
                    .collect()
            }
            _ => Vec::new(),
        };
        Ok((!granted.is_empty()).then(|| Access {
            kind: kind.into(),
            name: name.into(),
            actions: granted,
        }))
    }
}
