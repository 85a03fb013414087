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
//! - `bootstrap`: the first start of a new cluster (organisation, admin, signing key);
//! - `session`: console sessions (signed tokens of their own audience, ended through Raft).
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
mod decisions;
pub mod oidc;
pub mod place;
pub mod policy;
pub mod secrets;
pub mod service;
mod session;
pub mod token;

use std::sync::Arc;

use base64::Engine;
use shoal_raft::{Catalog, CredentialRecord, FederationRecord, Metadata, SigningKey};

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
    pub fn anonymous() -> Caller {
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

    /// The credential or federated identity the principal acts through, if any.
    pub fn via(&self) -> Option<&str> {
        match &self.subject {
            Subject::Credential { id, .. } => Some(id),
            Subject::Federated { federation, .. } => Some(federation),
            Subject::User(_) | Subject::Anonymous => None,
        }
    }

    /// Who a command this caller proposes is recorded as.
    pub fn actor(&self) -> shoal_raft::Actor {
        match self.principal() {
            None => shoal_raft::Actor::System("anonymous".into()),
            Some(name) => shoal_raft::Actor::Principal {
                name: name.into(),
                via: self.via().map(str::to_string),
            },
        }
    }

    pub fn may(&self, action: Action, place: &Place) -> bool {
        self.grants.permits(action, place.target())
    }
}

/// What the gate needs to know about the node.
#[derive(Clone, Debug)]
pub struct GateConfig {
    /// The URL clients reach the registry at, as configured (`--public-url`).
    pub public_url: Option<String>,
    /// The node's own URL (`--advertise-url`, else the bound address): the public URL when
    /// none is configured and no trusted proxy says how the client reached it.
    pub own_url: String,
    /// Wrong passwords checked per (client IP, login) and window; `None`: unlimited.
    pub failed_sign_ins: Option<crate::limits::RateSpec>,
    /// Where failed sign-ins and issued tokens are recorded.
    pub audit: crate::audit::AuditLog,
}

pub struct Gate {
    meta: Arc<Metadata>,
    logins: VerifiedLogins,
    decisions: decisions::Decisions,
    /// The region's token signing keys and the catalogue version they were read at: every
    /// request with a token needs them, and they change only with the catalogue.
    signing: crate::memo::Memo<(), Arc<Vec<SigningKey>>>,
    keys: Keys,
    oidc: oidc::Issuers,
    public_url: Option<String>,
    own_url: String,
    audit: crate::audit::AuditLog,
}

impl Gate {
    pub fn new(meta: Arc<Metadata>, config: GateConfig) -> Gate {
        Gate {
            meta,
            logins: VerifiedLogins::new(config.failed_sign_ins),
            decisions: Default::default(),
            signing: crate::memo::Memo::new(1),
            keys: Keys::default(),
            oidc: oidc::Issuers::default(),
            public_url: config
                .public_url
                .map(|u| u.trim_end_matches('/').to_string()),
            own_url: config.own_url.trim_end_matches('/').to_string(),
            audit: config.audit,
        }
    }

    /// The node's audit log (sign-ins, tokens, pulls).
    pub fn audit(&self) -> &crate::audit::AuditLog {
        &self.audit
    }

    /// Whether `req` acts for a principal, as the anonymous rate limit counts: Basic
    /// credentials (wrong ones meet the sign-in limit), or a bearer token that verifies and
    /// names one. An anonymous token, or one that does not verify, does not.
    pub fn acts_for_principal(&self, req: &Request) -> bool {
        if let Some(token) = crate::ui::session_cookie(req) {
            return self.session(token).is_ok();
        }
        let Some(auth) = req.header("authorization") else {
            return false;
        };
        if basic_credentials(auth).is_some() {
            return true;
        }
        let Some(token) = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
        else {
            return false;
        };
        let Ok(keys) = self.signing_keys() else {
            return false;
        };
        self.keys
            .verify(&keys, token.trim())
            .is_ok_and(|c| c.sub != Subject::Anonymous.claim())
    }

    /// The token endpoint clients are sent to, on the public URL.
    pub fn realm(&self, req: &Request) -> String {
        format!("{}/auth/token", self.public_url(req))
    }

    /// The URL clients reach the registry at: the configured `--public-url`; else, for a
    /// request a trusted proxy passed on, the scheme and host it says the client used
    /// (`X-Forwarded-Proto`, `X-Forwarded-Host` or `Host`); else the node's own URL. A
    /// client's own `Host` never names it: a realm pointing elsewhere would send clients'
    /// passwords there.
    pub fn public_url(&self, req: &Request) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        if req.via_trusted_proxy {
            let host = req
                .header("x-forwarded-host")
                .or_else(|| req.header("host"))
                .filter(|h| is_host(h));
            if let Some(host) = host {
                let scheme = match req.header("x-forwarded-proto") {
                    Some("https") => "https",
                    _ => "http",
                };
                return format!("{scheme}://{host}");
            }
        }
        self.own_url.clone()
    }

    #[tracing::instrument(name = "authorize", level = "debug", skip_all)]
    pub async fn authorize(&self, req: &Request, need: &Need) -> ApiResult<Caller> {
        if *need == Need::Open {
            return Ok(Caller::anonymous());
        }
        let api = !req.path.starts_with("/v2");
        // Read before deciding: a change applied meanwhile makes the answer stale.
        // A console session is identified by the session, not the header the key hashes.
        let memo = self
            .meta
            .catalog()
            .version()
            .filter(|_| req.session.is_none())
            .map(|v| (v, decisions::key(req.header("authorization"), api, need)));
        if let Some(caller) = memo.as_ref().and_then(|(v, k)| self.decisions.get(k, *v)) {
            return Ok(caller);
        }
        let (caller, keep) = self.decide(req, need, api).await?;
        if let Some((v, k)) = memo.filter(|_| !signs_in_with_oidc(req)) {
            self.decisions.put(k, v, &caller, keep);
        }
        Ok(caller)
    }

    /// The region's signing keys, read from the catalogue again only once it changed.
    fn signing_keys(&self) -> ApiResult<Arc<Vec<SigningKey>>> {
        let catalog = self.meta.catalog();
        self.signing.get_or_read(
            catalog.version(),
            &(),
            || Ok(Arc::new(catalog.signing_keys()?)),
            |_| true,
        )
    }

    /// `authorize` worked out from the catalogue: the caller, and whether and how long the
    /// answer may be remembered.
    async fn decide(
        &self,
        req: &Request,
        need: &Need,
        api: bool,
    ) -> ApiResult<(Caller, decisions::Keep)> {
        let (caller, claims) = self
            .identify(req, api)
            .await
            .map_err(|e| self.challenge(req, e, None))?;
        let ends = [caller.expires_at, claims.as_ref().map(|c| c.exp)];
        let keep = decisions::Keep::Until(ends.into_iter().flatten().min());
        let (action, repo, verb) = match need {
            Need::Open => unreachable!("answered before identifying the caller"),
            Need::Ping | Need::SignedIn if caller.is_anonymous() => {
                return Err(self.challenge(req, signin_required(), None))
            }
            Need::Ping | Need::SignedIn => return Ok((caller, keep)),
            Need::Catalog => {
                if caller.is_anonymous() {
                    return Err(self.challenge(req, signin_required(), Some("registry:catalog:*")));
                }
                if claims
                    .as_ref()
                    .is_some_and(|c| !c.grants("registry", "catalog", "*"))
                {
                    return Err(self.insufficient(req, "registry:catalog:*"));
                }
                return Ok((caller, keep));
            }
            Need::Pull(r) => (Action::Pull, r, "pull"),
            Need::Push(r) => (Action::Push, r, "push"),
            Need::Delete(r) => (Action::Delete, r, "delete"),
        };
        let (place, found) =
            place::repository_found(&self.meta, repo.namespace().as_str(), repo.as_str()).await?;
        // A namespace this replica has not seen is placed in the home organisation; the
        // region may make it elsewhere before this replica hears of it.
        let keep = if found { keep } else { decisions::Keep::No };
        let permitted = caller.may(action, &place);
        // As Distribution: a push challenge asks for pull too, since pushing reads blobs.
        let scope = match verb {
            "push" => format!("repository:{repo}:pull,push"),
            v => format!("repository:{repo}:{v}"),
        };
        match &claims {
            Some(c) if permitted && !c.grants("repository", repo.as_str(), verb) => {
                Err(self.insufficient(req, &scope))
            }
            _ if permitted => Ok((caller, keep)),
            _ if caller.is_anonymous() => Err(self.challenge(req, signin_required(), Some(&scope))),
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

    /// A caller with any role on the home organisation (who may read the node's metrics):
    /// 401 with a Basic challenge without credentials, 403 with a role nowhere there.
    pub async fn operator(&self, req: &Request) -> ApiResult<Caller> {
        let caller = self.authorize(req, &Need::SignedIn).await?;
        let home = place::home(self.meta.catalog())?;
        self.require(&caller, Action::List, &Place::organisation(&home))?;
        Ok(caller)
    }

    /// `require` on the home organisation: running the cluster itself.
    pub fn require_cluster_admin(&self, caller: &Caller) -> ApiResult<()> {
        let home = place::home(self.meta.catalog())?;
        self.require(caller, Action::ManageAccess, &Place::organisation(&home))
    }

    /// The caller named by the request's `Authorization` header, and the token's claims
    /// when it carried one. `/api` takes Basic credentials only.
    async fn identify(&self, req: &Request, api: bool) -> ApiResult<(Caller, Option<Claims>)> {
        if let Some(token) = &req.session {
            return Ok((self.session(token)?.0, None));
        }
        let Some(auth) = req.header("authorization") else {
            return Ok((Caller::anonymous(), None));
        };
        if let Some((login, secret)) = basic_credentials(auth) {
            return Ok((self.login(&login, &secret, req).await?, None));
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
                let keys = self.signing_keys()?;
                let claims = self.keys.verify(&keys, token.trim())?;
                let caller = self.subject_of(&claims.sub, claims.sid.as_deref())?;
                Ok((caller, Some(claims)))
            }
            None => Err(ApiError::new(
                Code::Unauthorized,
                "unsupported Authorization scheme; use Basic or Bearer",
            )),
        }
    }

    /// Checks a login (a credential's username, a user's name, or `oidc` with a CI job's
    /// OIDC token) and its secret, from `client`. Every path runs one password check (a
    /// dummy one for a login that does not exist), under the failed sign-in limit.
    /// The caller `login` with `secret` signs in as; a failure is recorded in the audit
    /// log with the login name tried.
    pub async fn login(&self, login: &str, secret: &str, req: &Request) -> ApiResult<Caller> {
        let signed_in = self.check_login(login, secret, req.client).await;
        if let Err(e) = &signed_in {
            self.failed_sign_in(req, login, e);
        }
        signed_in
    }

    /// Records that signing in as `login` failed with `e`.
    pub fn failed_sign_in(&self, req: &Request, login: &str, e: &ApiError) {
        self.audit.record(
            req,
            crate::audit::NodeEvent {
                action: "signin.failed",
                login: Some(login),
                result: &e.message,
                ..Default::default()
            },
        );
    }

    async fn check_login(
        &self,
        login: &str,
        secret: &str,
        client: Option<std::net::IpAddr>,
    ) -> ApiResult<Caller> {
        let catalog = self.meta.catalog();
        if login == OIDC_LOGIN {
            return self.federated(secret).await;
        }
        let credential = catalog.credential_by_login(login)?;
        let user = match &credential {
            Some(_) => None,
            None => catalog.principal(login)?,
        };
        let phc = match (&credential, &user) {
            (Some(c), _) => Some(c.secret_hash.as_str()),
            (None, Some(u)) => u.password_hash.as_deref(),
            (None, None) => None,
        };
        match self.logins.check(login, secret, phc, client).await {
            secrets::Checked::Match => {}
            secrets::Checked::Mismatch => {
                return Err(ApiError::new(
                    Code::Unauthorized,
                    "invalid username or password",
                ))
            }
            secrets::Checked::Limited(wait) => {
                let secs = crate::edge::retry_after(wait);
                return Err(ApiError::new(
                    Code::TooManyRequests,
                    format!("too many failed sign-ins as {login:?}; retry in {secs} s"),
                )
                .header("Retry-After", secs.to_string()));
            }
        }
        if let Some(c) = credential {
            return credential_caller(catalog, c);
        }
        let user = user.expect("a password matched, so the user exists");
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
    /// name (`sid`, its uid, differs). A credential gets a new id when made again; a console
    /// session of one names its secret (`sid`) and ends when the secret changes.
    fn subject_of(&self, sub: &str, sid: Option<&str>) -> ApiResult<Caller> {
        let catalog = self.meta.catalog();
        let gone = || ApiError::new(Code::Unauthorized, "the token's subject no longer exists");
        let same = |uid: &str| (sid == Some(uid)).then_some(()).ok_or_else(gone);
        if sub == "anonymous" {
            return Ok(Caller::anonymous());
        }
        if let Some(name) = sub.strip_prefix("user:") {
            same(&catalog.principal(name)?.ok_or_else(gone)?.uid)?;
            return Ok(Caller {
                grants: grants_of(catalog, name, None)?,
                subject: Subject::User(name.into()),
                expires_at: None,
            });
        }
        if let Some(id) = sub.strip_prefix("credential:") {
            let c = catalog.credential(id)?.ok_or_else(gone)?;
            // A console session names the secret it signed in with (`session`).
            if sid.is_some_and(|s| s != session::secret_fingerprint(&c.secret_hash)) {
                return Err(gone());
            }
            return credential_caller(catalog, c);
        }
        if let Some(name) = sub.strip_prefix("federation:") {
            let f = catalog.federation(name)?.ok_or_else(gone)?;
            same(&f.uid)?;
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

/// Whether `req` signs in with a CI job's OIDC token (Basic with login `oidc`): its validity
/// rests on the issuer's keys, outside the catalogue, so the gate's answer is not kept.
fn signs_in_with_oidc(req: &Request) -> bool {
    req.header("authorization")
        .and_then(basic_credentials)
        .is_some_and(|(login, _)| login == OIDC_LOGIN)
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

/// Whether `s` is a plain `host[:port]` (no path, quotes or spaces) fit to put in a URL.
fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

impl Gate {
    /// Adds the `WWW-Authenticate` challenge to a 401.
    fn challenge(&self, req: &Request, err: ApiError, scope: Option<&str>) -> ApiError {
        if err.code != Code::Unauthorized {
            return err;
        }
        let value = if req.path.starts_with("/v2") {
            let mut v = format!("Bearer realm=\"{}\",service=\"{SERVICE}\"", self.realm(req));
            if let Some(s) = scope {
                v.push_str(&format!(",scope=\"{s}\""));
            }
            v
        } else {
            "Basic realm=\"shoal\"".to_string()
        };
        err.header("WWW-Authenticate", value)
    }

    fn insufficient(&self, req: &Request, scope: &str) -> ApiError {
        let err = ApiError::new(
            Code::Unauthorized,
            format!("the token does not grant {scope}; ask the token endpoint for it"),
        );
        let value = format!(
            "Bearer realm=\"{}\",service=\"{SERVICE}\",scope=\"{scope}\",error=\"insufficient_scope\"",
            self.realm(req)
        );
        err.header("WWW-Authenticate", value)
    }
}
