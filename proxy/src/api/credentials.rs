//! `/api/v1/credentials`: access credentials (generated username + secret) for a user or a
//! service account, scoped `containerRegistry` (push and pull) or `containerRegistry:pull`,
//! optionally limited to one namespace and to a lifetime, revocable. The secret is in the
//! creation answer only; the catalogue keeps its argon2 hash.
//!
//! Anyone signed in with a password manages their own credentials; managing another
//! principal's needs the access-management permission. A credential cannot create
//! credentials, so a leaked one cannot outlive its revocation.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_raft::{Command, CredentialRecord, CredentialScope};

use super::{json_body, Api};
use crate::auth::{secrets, Action, Caller, Need, Subject};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::NamespaceName;
use crate::wire::{Reply, Request, RequestBody};

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

fn parse_scope(s: &str) -> ApiResult<CredentialScope> {
    match s {
        "containerRegistry" | "containerRegistry:all" => Ok(CredentialScope::All),
        "containerRegistry:pull" => Ok(CredentialScope::Pull),
        other => Err(ApiError::new(
            Code::BadRequest,
            format!("scope must be containerRegistry, containerRegistry:all or containerRegistry:pull, got {other:?}"),
        )),
    }
}

fn scope_name(s: CredentialScope) -> &'static str {
    match s {
        CredentialScope::All => "containerRegistry",
        CredentialScope::Pull => "containerRegistry:pull",
    }
}

fn time(t: Option<i64>) -> Value {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or(Value::Null, |t| json!(t.to_rfc3339()))
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
        if owner != user && !caller.grants.permits(Action::ManageAccess, None) {
            return Err(ApiError::new(
                Code::Denied,
                "only an admin creates credentials for another principal",
            ));
        }
        if input.name.is_empty()
            || input.name.len() > 128
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
                Some(now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
            }
        };
        let secret = secrets::generate(40);
        let secret_hash = {
            let s = secret.clone();
            tokio::task::spawn_blocking(move || secrets::hash(&s))
                .await
                .map_err(|e| ApiError::internal("hashing a secret", e))?
        };
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
        self.commit(Command::CreateCredential {
            credential: record.clone(),
        })
        .await?;
        let mut out = view(&record);
        out["password"] = json!(secret);
        Ok(Reply::json(StatusCode::CREATED, &out)
            .header("Location", format!("/api/v1/credentials/{}", record.id)))
    }

    /// The caller's own credentials, or every credential for an admin.
    pub(super) async fn list_credentials(&self, req: &Request) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let admin = caller.grants.permits(Action::ManageAccess, None);
        let me = caller.principal().unwrap_or_default().to_string();
        let list: Vec<Value> = self
            .meta
            .catalog()
            .credentials()?
            .iter()
            .filter(|c| admin || c.owner == me)
            .map(view)
            .collect();
        Ok(Reply::json(StatusCode::OK, &json!({"credentials": list})))
    }

    pub(super) async fn revoke_credential(&self, req: &Request, id: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let user = signed_in_user(&caller)?;
        let unknown = || ApiError::new(Code::NotFound, format!("credential {id:?} does not exist"));
        let c = self.meta.catalog().credential(id)?.ok_or_else(unknown)?;
        if c.owner != user && !caller.grants.permits(Action::ManageAccess, None) {
            return Err(unknown());
        }
        self.commit(Command::RevokeCredential {
            id: id.to_string(),
            revoked_at: chrono::Utc::now().timestamp(),
        })
        .await?;
        let c = self.meta.catalog().credential(id)?.ok_or_else(unknown)?;
        Ok(Reply::json(StatusCode::OK, &view(&c)))
    }
}
