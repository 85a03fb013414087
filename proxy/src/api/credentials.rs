//! `/api/v1/credentials`: access credentials (generated username + secret) for a user or a
//! service account, scoped `containerRegistry` (push and pull) or `containerRegistry:pull`,
//! optionally limited to one namespace and to a lifetime, revocable. The secret is in the
//! creation answer only; the catalogue keeps its argon2 hash.
//!
//! A pull secret (`POST /api/v1/credentials/ID/pull-secret`) is a Kubernetes `Secret` of type
//! `kubernetes.io/dockerconfigjson` for a credential. Since only the secret's hash is kept,
//! making one gives the credential a fresh secret: the old one stops working.
//!
//! Anyone signed in with a password manages their own credentials. Listing and revoking
//! another principal's needs access management over it (its organisation's admins);
//! creating one for it, or a pull secret from one of its credentials, needs access
//! management wherever it holds a role too (`Api::may_act_for`): a credential acts with all
//! of its owner's roles, so minting it is acting there. A credential cannot create
//! credentials, so a leaked one cannot outlive its revocation.

use base64::Engine;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_raft::{Command, CredentialRecord, CredentialScope};

use super::{json_body, time, Api};
use crate::auth::{secrets, Caller, Need, Subject};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::NamespaceName;
use crate::wire::{Reply, Request, RequestBody};

/// The last second RFC 3339 spells (9999-12-31T23:59:59Z): a longer lifetime ends there, so
/// `expires_at` is always a valid timestamp.
const LATEST_EXPIRY: i64 = 253_402_300_799;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCredential {
    name: String,
    scope: String,
    #[serde(default)]
    namespace: Option<String>,
    /// A lifetime such as `24h` or `30d`.
    #[serde(default)]
    expires: Option<String>,
    /// The principal the credential acts for (default: the caller).
    #[serde(default)]
    owner: Option<String>,
}

pub(super) fn parse_scope(s: &str) -> ApiResult<CredentialScope> {
    match s {
        "containerRegistry" | "containerRegistry:all" => Ok(CredentialScope::All),
        "containerRegistry:pull" => Ok(CredentialScope::Pull),
        other => Err(ApiError::new(
            Code::BadRequest,
            format!("scope must be containerRegistry, containerRegistry:all or containerRegistry:pull, got {other:?}"),
        )),
    }
}

pub(super) fn scope_name(s: CredentialScope) -> &'static str {
    match s {
        CredentialScope::All => "containerRegistry",
        CredentialScope::Pull => "containerRegistry:pull",
    }
}

fn view(c: &CredentialRecord) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "username": c.login,
        "owner": c.owner,
        "scope": scope_name(c.scope),
        "namespace": c.namespace,
        "expires_at": time(c.expires_at),
        "revoked_at": time(c.revoked_at),
        "created_at": time(Some(c.created_at)),
    })
}

/// A fresh credential secret and its argon2 hash (made on the blocking pool).
async fn new_secret() -> ApiResult<(String, String)> {
    let secret = secrets::generate(40);
    let s = secret.clone();
    let hash = tokio::task::spawn_blocking(move || secrets::hash(&s))
        .await
        .map_err(|e| ApiError::internal("hashing a secret", e))?;
    Ok((secret, hash))
}

/// The password-signed-in user behind `caller`; credentials may not manage credentials.
fn signed_in_user(caller: &Caller) -> ApiResult<&str> {
    match &caller.subject {
        Subject::User(u) => Ok(u),
        _ => Err(ApiError::new(
            Code::Denied,
            "credentials are managed by a user signed in with a password, not by a credential",
        )),
    }
}

impl Api {
    pub(super) async fn create_credential(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
    ) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let user = signed_in_user(&caller)?.to_string();
        let input: CreateCredential = json_body(req, body).await?;
        let owner = input.owner.unwrap_or_else(|| user.clone());
        if owner != user && !self.may_act_for(&caller, &owner).await? {
            return Err(ApiError::new(
                Code::Denied,
                format!(
                    "a credential for {owner} needs access management over it and wherever it holds a role"
                ),
            ));
        }
        if input.name.is_empty()
            || input.name.chars().count() > 128
            || input.name.chars().any(char::is_control)
        {
            return Err(ApiError::new(
                Code::BadRequest,
                "a credential name is 1 to 128 printable characters",
            ));
        }
        let scope = parse_scope(&input.scope)?;
        let namespace = input
            .namespace
            .map(|n| NamespaceName::parse(&n).map(|n| n.to_string()))
            .transpose()?;
        let now = chrono::Utc::now().timestamp();
        let expires_at = match input.expires {
            None => None,
            Some(e) => {
                let d = humantime::parse_duration(&e).map_err(|err| {
                    ApiError::new(
                        Code::BadRequest,
                        format!("expires must be a duration such as 24h or 30d, got {e:?}: {err}"),
                    )
                })?;
                let end = now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                Some(end.min(LATEST_EXPIRY))
            }
        };
        let (secret, secret_hash) = new_secret().await?;
        let record = CredentialRecord {
            id: format!("cred-{}", secrets::generate(16).to_lowercase()),
            name: input.name,
            login: format!("shoal-{}", secrets::generate(16).to_lowercase()),
            secret_hash,
            owner,
            scope,
            namespace,
            expires_at,
            revoked_at: None,
            created_at: now,
        };
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::CreateCredential {
                credential: record.clone(),
            },
        )
        .await?;
        let mut out = view(&record);
        out["password"] = json!(secret);
        Ok(Reply::json(StatusCode::CREATED, &out)
            .header("Location", format!("/api/v1/credentials/{}", record.id)))
    }

    /// The caller's own credentials, and those of the principals it manages.
    pub(super) async fn list_credentials(&self, req: &Request) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let me = caller.principal().unwrap_or_default().to_string();
        let mut list = Vec::new();
        for c in self.meta.catalog().credentials()? {
            if c.owner == me || self.manages_principal(&caller, &c.owner)? {
                list.push(view(&c));
            }
        }
        Ok(Reply::json(StatusCode::OK, &json!({"credentials": list})))
    }

    /// The credential `id` if the caller may manage it (its owner, or an admin); others get
    /// the same answer as for a credential that does not exist.
    async fn manageable(&self, req: &Request, id: &str) -> ApiResult<(Caller, CredentialRecord)> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let user = signed_in_user(&caller)?;
        let unknown = || ApiError::new(Code::NotFound, format!("credential {id:?} does not exist"));
        let c = self.meta.catalog().credential(id)?.ok_or_else(unknown)?;
        if c.owner != user && !self.manages_principal(&caller, &c.owner)? {
            return Err(unknown());
        }
        Ok((caller, c))
    }

    pub(super) async fn revoke_credential(&self, req: &Request, id: &str) -> ApiResult<Reply> {
        let (caller, _) = self.manageable(req, id).await?;
        let unknown = || ApiError::new(Code::NotFound, format!("credential {id:?} does not exist"));
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::RevokeCredential {
                id: id.to_string(),
                revoked_at: chrono::Utc::now().timestamp(),
            },
        )
        .await?;
        let c = self.meta.catalog().credential(id)?.ok_or_else(unknown)?;
        Ok(Reply::json(StatusCode::OK, &view(&c)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PullSecret {
    /// The Kubernetes namespace the Secret is for.
    namespace: String,
    /// The Secret's name (default `shoal-<credential name>` made DNS-safe).
    #[serde(default)]
    name: Option<String>,
}

/// A Kubernetes object name: a DNS-1123 label (lowercase alphanumerics and `-`, at most 63).
fn check_k8s_name(what: &str, s: &str) -> ApiResult<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::BadRequest,
            format!("{what} must be a DNS-1123 label (a-z, 0-9, '-', at most 63), got {s:?}"),
        ))
    }
}

impl Api {
    pub(super) async fn pull_secret(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
        id: &str,
    ) -> ApiResult<Reply> {
        let (caller, c) = self.manageable(req, id).await?;
        // A pull secret hands out the credential's fresh secret: the same as minting one.
        if caller.principal() != Some(c.owner.as_str())
            && !self.may_act_for(&caller, &c.owner).await?
        {
            return Err(ApiError::new(
                Code::Denied,
                format!(
                    "a pull secret for {}'s credential needs access management wherever it holds a role",
                    c.owner
                ),
            ));
        }
        let input: PullSecret = json_body(req, body).await?;
        check_k8s_name("namespace", &input.namespace)?;
        let name = input.name.unwrap_or_else(|| {
            let base: String = c
                .name
                .to_ascii_lowercase()
                .chars()
                .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
                .collect();
            format!("shoal-{}", base.trim_matches('-'))
                .chars()
                .take(63)
                .collect::<String>()
                .trim_end_matches('-')
                .to_string()
        });
        check_k8s_name("name", &name)?;
        // The registry as clients reach it (never the request's own Host header).
        let public = self.auth.public_url(req);
        let host = public
            .split_once("://")
            .map_or(public.as_str(), |(_, rest)| rest)
            .to_string();
        let (secret, secret_hash) = new_secret().await?;
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::RotateCredentialSecret {
                id: c.id.clone(),
                secret_hash,
            },
        )
        .await?;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let config = json!({"auths": {host: {
            "username": c.login,
            "password": secret,
            "auth": b64(&format!("{}:{secret}", c.login)),
        }}});
        let out = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": input.namespace},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": b64(&config.to_string())},
        });
        Ok(Reply::json(StatusCode::CREATED, &out))
    }
}
