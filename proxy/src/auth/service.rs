//! `GET /auth/token`: the Docker token endpoint. Basic credentials (or none, for anonymous
//! pulls of public namespaces) in; a short-lived JWT out that grants, for each requested
//! scope, only the actions the caller may do (Distribution's behaviour: asking for more is
//! not an error, the token just holds less). Wrong credentials are 401.

use http::StatusCode;
use serde_json::json;

use super::token::{Access, TOKEN_TTL};
use super::{basic_credentials, target_of, Action, Caller, Gate, Target};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::RepoName;
use crate::wire::{Reply, Request};

impl Gate {
    pub async fn token(&self, req: &Request) -> Reply {
        match self.issue_token(req).await {
            Ok(r) => r,
            Err(e) => Reply::error(&e.header("WWW-Authenticate", "Basic realm=\"shoal\"")),
        }
    }

    async fn issue_token(&self, req: &Request) -> ApiResult<Reply> {
        if req.method != http::Method::GET {
            return Err(ApiError::new(
                Code::MethodNotAllowed,
                "the token endpoint takes GET with Basic credentials",
            ));
        }
        let caller = match req.header("authorization") {
            None => Caller::anonymous(),
            Some(h) => {
                let (login, secret) = basic_credentials(h).ok_or_else(|| {
                    ApiError::new(
                        Code::Unauthorized,
                        "the token endpoint takes Basic credentials",
                    )
                })?;
                self.login(&login, &secret).await?
            }
        };
        let mut access = Vec::new();
        for (k, v) in &req.query {
            if k == "scope" {
                for scope in v.split(' ').filter(|s| !s.is_empty()) {
                    access.extend(self.grant(&caller, scope)?);
                }
            }
        }
        let keys = self.meta().catalog().signing_keys()?;
        let (token, issued) = self.keys().issue(&keys, &caller.subject.claim(), access)?;
        let issued_at = chrono::DateTime::from_timestamp(issued, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        Ok(Reply::json(
            StatusCode::OK,
            &json!({
                "token": token,
                "access_token": token,
                "expires_in": TOKEN_TTL,
                "issued_at": issued_at,
            }),
        ))
    }

    /// What `caller` gets of one requested scope `type:name:actions`; unknown types and
    /// invalid names get nothing.
    fn grant(&self, caller: &Caller, scope: &str) -> ApiResult<Option<Access>> {
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
                let ns = repo.namespace();
                let target = Target {
                    namespace: ns.as_str(),
                    visibility: target_of(self.meta().catalog(), ns.as_str())?,
                };
                actions
                    .split(',')
                    .filter(|a| {
                        let action = match *a {
                            "pull" => Action::Pull,
                            "push" => Action::Push,
                            "delete" => Action::Delete,
                            _ => return false,
                        };
                        caller.grants.permits(action, Some(target))
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
