//! Authentication and authorisation: the one seam every `/v2`, `/api` and `/auth` request
//! passes before a handler runs. A request states what it needs (`Need`); `Gate::authorize`
//! finds out who is calling (`Caller`: anonymous, a user by password, a credential, or a CI
//! job by its OIDC token; by Basic auth or by a bearer token) and decides with the pure
//! `policy` on the request's `place`.
//!
//! - `policy`: the permission matrix (roles, credential limits, public repositories);
//! - `place`: where an action happens (organisation, project, namespace, visibility);
//! - `secrets`: argon2 hashing, secret generation, the memory of recent logins;
//! - `token`: ES256 registry tokens, keys from the replicated metadata;
//! - `oidc`: workload identity federation (OIDC tokens checked against the issuer's JWKS);
//! - `service`: `/auth/token`, the Docker token endpoint and the OAuth token exchange;
//! - `bootstrap`: the first start of a new cluster (organisation, admin, signing key).
//!
//! Answers, as Distribution and Docker clients expect them:
//! - no credentials where some are needed: 401 `UNAUTHORIZED` with a challenge
//!   (`Bearer realm=…/auth/token,service="shoal",scope=…` on `/v2`, `Basic` on `/api`);
//! - wrong credentials, a bad, expired or foreign token: 401 `UNAUTHORIZED`;
//! - a valid token that lacks the action while its subject may do it: 401 with
//!   `error="insufficient_scope"` and the scope to ask for, so the client fetches a wider
//!   token (skopeo deletes with a `delete` token, then needs `pull`);
//! - a caller who may not do it: 403 `DENIED`.

pub mod bootstrap;
pub mod oidc;
pub mod place;
pub mod policy;
pub mod secrets;
pub mod service;
pub mod token;

use std::sync::Arc;

use base64::Engine;
use shoal_raft::{Catalog, CredentialRecord, FederationRecord, Metadata};

use crate::errors::{ApiError, ApiResult, Code};
use crate::names::RepoName;
use crate::wire::Request;
pub use place::Place;
pub use policy::{Action, Grants, Limit, Target};
use secrets::VerifiedLogins;
use token::{Claims, Keys, SERVICE};

/// The Basic username under which a CI job presents its OIDC token as the password
/// (`docker login -u oidc --password-stdin`).
pub const OIDC_LOGIN: &str = "oidc";

/// What a request needs to be allowed to do. Management requests say `SignedIn` and
/// check the action on the place their body names with `Gate::require`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Health, readiness, the cluster status joining nodes read.
    Open,
    /// `GET /v2/`: a signed-in caller (anonymous callers get the challenge that starts login).
    Ping,
    Pull(RepoName),
    Push(RepoName),
    Delete(RepoName),
    /// `_catalog`: a signed-in caller; the handler lists only what the caller may list.
    Catalog,
    /// Any signed-in principal.
    SignedIn,
}

/// Who the caller is.
#[derive(Clone, Debug, PartialEq)]
pub enum Subject {
    Anonymous,
    User(String),
    Credential {
        id: String,
        owner: String,
    },
    /// A CI job whose OIDC token matched federated identity `federation`.
    Federated {
        federation: String,
        service_account: String,
    },
}

impl Subject {
    /// The `sub` claim of a token for this subject.
    fn claim(&self) -> String {
        match self {
            Subject::Anonymous => "anonymous".into(),
            Subject::User(u) => format!("user:{u}"),
            Subject::Credential { id, .. } => format!("credential:{id}"),
            Subject::Federated { federation, .. } => format!("federation:{federation}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Caller {
    pub subject: Subject,
    pub grants: Grants,
    /// When the identity itself ends (a federated CI job's OIDC token); tokens issued to it
    /// expire no later.
    pub expires_at: Option<i64>,
}

impl Caller {
    fn anonymous() -> Caller {
        Caller {
            subject: Subject::Anonymous,
            grants: Grants::anonymous(),
            expires_at: None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.subject == Subject::Anonymous
    }

    /// The user or service account acting, if any.
    pub fn principal(&self) -> Option<&str> {
        match &self.subject {
            Subject::Anonymous => None,
            Subject::User(u) => Some(u),
            Subject::Credential { owner, .. } => Some(owner),
            Subject::Federated {
                service_account, ..
            } => Some(service_account),
        }
    }

    pub fn may(&self, action: Action, place: &Place) -> bool {
        self.grants.permits(action, place.target())
    }
}

pub struct Gate {
    meta: Arc<Metadata>,
    logins: VerifiedLogins,
    keys: Keys,
    oidc: oidc::Issuers,
}

impl Gate {
    pub fn new(meta: Arc<Metadata>) -> Gate {
        Gate {
            meta,
            logins: VerifiedLogins::default(),
            keys: Keys::default(),
            oidc: oidc::Issuers::default(),
        }
    }

    pub async fn authorize(&self, req: &Request, need: &Need) -> ApiResult<Caller> {
        if *need == Need::Open {
            return Ok(Caller::anonymous());
        }
        let api = !req.path.starts_with("/v2");
        let (caller, claims) = self
            .identify(req, api)
            .await
            .map_err(|e| challenge(req, e, None))?;
        let (action, repo, verb) = match need {
            Need::Open => unreachable!("answered before identifying the caller"),
            Need::Ping | Need::SignedIn if caller.is_anonymous() => {
                return Err(challenge(req, signin_required(), None))
            }
            Need::Ping | Need::SignedIn => return Ok(caller),
            Need::Catalog => {
                if caller.is_anonymous() {
                    return Err(challenge(
                        req,
                        signin_required(),
                        Some("registry:catalog:*"),
                    ));
                }
                if claims
                    .as_ref()
                    .is_some_and(|c| !c.grants("registry", "catalog", "*"))
                {
                    return Err(insufficient(req, "registry:catalog:*"));
                }
                return Ok(caller);
            }
            Need::Pull(r) => (Action::Pull, r, "pull"),
            Need::Push(r) => (Action::Push, r, "push"),
            Need::Delete(r) => (Action::Delete, r, "delete"),
        };
        let place = place::repository(&self.meta, repo.namespace().as_str(), repo.as_str()).await?;
        let permitted = caller.may(action, &place);
        // As Distribution: a push challenge asks for pull too, since pushing reads blobs.
        let scope = match verb {
            "push" => format!("repository:{repo}:pull,push"),
            v => format!("repository:{repo}:{v}"),
        };
        match &claims {
            Some(c) if permitted && !c.grants("repository", repo.as_str(), verb) => {
                Err(insufficient(req, &scope))
            }
            _ if permitted => Ok(caller),
            _ if caller.is_anonymous() => Err(challenge(req, signin_required(), Some(&scope))),
            _ => Err(denied(&caller, action)),
        }
    }

    /// 403 `DENIED` unless `caller` may do `action` at `place`.
    pub fn require(&self, caller: &Caller, action: Action, place: &Place) -> ApiResult<()> {
        if caller.may(action, place) {
            Ok(())
        } else {
            Err(denied(caller, action))
        }
    }

    /// `require` on the home organisation: running the cluster itself.
    pub fn require_cluster_admin(&self, caller: &Caller) -> ApiResult<()> {
        let home = place::home(self.meta.catalog())?;
        self.require(caller, Action::ManageAccess, &Place::organisation(&home))
    }

    /// The caller named by the request's `Authorization` header, and the token's claims
    /// when it carried one. `/api` takes Basic credentials only.
    async fn identify(&self, req: &Request, api: bool) -> ApiResult<(Caller, Option<Claims>)> {
        let Some(auth) = req.header("authorization") else {
            return Ok((Caller::anonymous(), None));
        };
        if let Some((login, secret)) = basic_credentials(auth) {
            return Ok((self.login(&login, &secret).await?, None));
        }
        match auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
        {
            Some(_) if api => Err(ApiError::new(
                Code::Unauthorized,
                "the management API takes Basic credentials (SHOAL_USERNAME/SHOAL_PASSWORD)",
            )),
            Some(token) => {
                let keys = self.meta.catalog().signing_keys()?;
                let claims = self.keys.verify(&keys, token.trim())?;
                let caller = self.subject_of(&claims.sub, claims.sct)?;
                Ok((caller, Some(claims)))
            }
            None => Err(ApiError::new(
                Code::Unauthorized,
                "unsupported Authorization scheme; use Basic or Bearer",
            )),
        }
    }

    /// Checks a login (a credential's username, a user's name, or `oidc` with a CI job's
    /// OIDC token) and its secret.
    pub async fn login(&self, login: &str, secret: &str) -> ApiResult<Caller> {
        let catalog = self.meta.catalog();
        let bad = || ApiError::new(Code::Unauthorized, "invalid username or password");
        if login == OIDC_LOGIN {
            return self.federated(secret).await;
        }
        if let Some(c) = catalog.credential_by_login(login)? {
            if !self.logins.check(login, secret, &c.secret_hash).await {
                return Err(bad());
            }
            return credential_caller(catalog, c);
        }
        let Some(user) = catalog.principal(login)? else {
            return Err(bad());
        };
        let Some(phc) = &user.password_hash else {
            return Err(bad());
        };
        if !self.logins.check(login, secret, phc).await {
            return Err(bad());
        }
        Ok(Caller {
            grants: grants_of(catalog, &user.name, None)?,
            subject: Subject::User(user.name),
            expires_at: None,
        })
    }

    /// The caller a CI job's OIDC token stands for, through the first federated identity
    /// (by name) whose issuer, audience and conditions it matches.
    pub async fn federated(&self, oidc_token: &str) -> ApiResult<Caller> {
        let catalog = self.meta.catalog();
        let (federation, expires_at) = self.oidc.exchange(catalog, oidc_token.trim()).await?;
        let mut caller = federated_caller(catalog, federation)?;
        caller.expires_at = Some(expires_at);
        Ok(caller)
    }

    /// The caller a token's subject stands for today: a revoked credential, a deleted user
    /// or a removed federated identity no longer acts, whatever the token says; nor does a
    /// token of a user or federated identity that was deleted and made again under the same
    /// name (`sct`, its creation time, differs). A credential needs no such check: a new one
    /// gets a new id.
    fn subject_of(&self, sub: &str, sct: Option<i64>) -> ApiResult<Caller> {
        let catalog = self.meta.catalog();
        let gone = || ApiError::new(Code::Unauthorized, "the token's subject no longer exists");
        let same = |created_at: i64| (sct == Some(created_at)).then_some(()).ok_or_else(gone);
        if sub == "anonymous" {
            return Ok(Caller::anonymous());
        }
        if let Some(name) = sub.strip_prefix("user:") {
            same(catalog.principal(name)?.ok_or_else(gone)?.created_at)?;
            return Ok(Caller {
                grants: grants_of(catalog, name, None)?,
                subject: Subject::User(name.into()),
                expires_at: None,
            });
        }
        if let Some(id) = sub.strip_prefix("credential:") {
            return credential_caller(catalog, catalog.credential(id)?.ok_or_else(gone)?);
        }
        if let Some(name) = sub.strip_prefix("federation:") {
            let f = catalog.federation(name)?.ok_or_else(gone)?;
            same(f.created_at)?;
            return federated_caller(catalog, f);
        }
        Err(gone())
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn meta(&self) -> &Arc<Metadata> {
        &self.meta
    }
}

fn denied(caller: &Caller, action: Action) -> ApiError {
    ApiError::new(
        Code::Denied,
        format!("{} may not {} here", caller.subject.claim(), action.name()),
    )
}

fn credential_caller(catalog: &Catalog, c: CredentialRecord) -> ApiResult<Caller> {
    if !c.usable_at(chrono::Utc::now().timestamp()) {
        return Err(ApiError::new(
            Code::Unauthorized,
            "the credential is revoked or expired",
        ));
    }
    let limit = Limit {
        scope: c.scope,
        namespace: c.namespace.clone(),
    };
    Ok(Caller {
        grants: grants_of(catalog, &c.owner, Some(limit))?,
        subject: Subject::Credential {
            id: c.id,
            owner: c.owner,
        },
        expires_at: c.expires_at,
    })
}

fn federated_caller(catalog: &Catalog, f: FederationRecord) -> ApiResult<Caller> {
    if catalog.principal(&f.service_account)?.is_none() {
        return Err(ApiError::new(
            Code::Unauthorized,
            "the federated identity's service account no longer exists",
        ));
    }
    let limit = Limit {
        scope: f.scope,
        namespace: f.namespace.clone(),
    };
    Ok(Caller {
        grants: grants_of(catalog, &f.service_account, Some(limit))?,
        subject: Subject::Federated {
            federation: f.name,
            service_account: f.service_account,
        },
        expires_at: None,
    })
}

fn grants_of(catalog: &Catalog, principal: &str, limit: Option<Limit>) -> ApiResult<Grants> {
    Ok(Grants {
        authenticated: true,
        bindings: catalog.bindings_of(principal)?,
        limit,
    })
}

/// `(login, secret)` from `Basic base64(login:secret)`.
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    let b64 = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (login, secret) = text.split_once(':')?;
    Some((login.to_string(), secret.to_string()))
}

fn signin_required() -> ApiError {
    ApiError::new(Code::Unauthorized, "authentication required")
}

/// The token endpoint clients are sent to, on the host they used.
pub fn realm(req: &Request) -> String {
    let scheme = req.header("x-forwarded-proto").unwrap_or("http");
    let host = req.header("host").unwrap_or("localhost");
    format!("{scheme}://{host}/auth/token")
}

/// Adds the `WWW-Authenticate` challenge to a 401.
fn challenge(req: &Request, err: ApiError, scope: Option<&str>) -> ApiError {
    if err.code != Code::Unauthorized {
        return err;
    }
    let value = if req.path.starts_with("/v2") {
        let mut v = format!("Bearer realm=\"{}\",service=\"{SERVICE}\"", realm(req));
        if let Some(s) = scope {
            v.push_str(&format!(",scope=\"{s}\""));
        }
        v
    } else {
        "Basic realm=\"shoal\"".to_string()
    };
    err.header("WWW-Authenticate", value)
}

fn insufficient(req: &Request, scope: &str) -> ApiError {
    let err = ApiError::new(
        Code::Unauthorized,
        format!("the token does not grant {scope}; ask the token endpoint for it"),
    );
    let value = format!(
        "Bearer realm=\"{}\",service=\"{SERVICE}\",scope=\"{scope}\",error=\"insufficient_scope\"",
        realm(req)
    );
    err.header("WWW-Authenticate", value)
}
