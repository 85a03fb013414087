//! `/api/v1/federations`: trusted OIDC issuers for CI (workload identity federation). Each
//! names the issuer, the audience its tokens must carry, claim conditions (`*` wildcards)
//! that must all match, the service account the exchanged token acts as, and a credential
//! scope and optional namespace that narrow it. Managed by the admins of the service
//! account's organisation.
//!
//! At least one condition is required: a public issuer such as GitHub's signs tokens for
//! every repository on it, so an identity without conditions would trust all of them.

use std::collections::BTreeMap;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_raft::{Command, FederationRecord, PrincipalKind};

use super::credentials::{parse_scope, scope_name};
use super::{json_body, time, Api};
use crate::auth::{oidc, Action, Need, Place};
use crate::errors::{ApiError, ApiResult, Code};
use crate::names::{NamespaceName, Slug};
use crate::wire::{Reply, Request, RequestBody};

const MAX_CONDITIONS: usize = 32;
const MAX_TEXT: usize = 512;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateFederation {
    name: String,
    issuer: String,
    audience: String,
    conditions: BTreeMap<String, String>,
    service_account: String,
    scope: String,
    #[serde(default)]
    namespace: Option<String>,
}

fn view(f: &FederationRecord) -> Value {
    json!({
        "name": f.name,
        "issuer": f.issuer,
        "audience": f.audience,
        "conditions": f.conditions,
        "service_account": f.service_account,
        "scope": scope_name(f.scope),
        "namespace": f.namespace,
        "created_at": time(Some(f.created_at)),
    })
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::BadRequest, msg)
}

fn check_text(what: &str, s: &str) -> ApiResult<()> {
    if s.is_empty() || s.chars().count() > MAX_TEXT || s.chars().any(char::is_control) {
        return Err(bad(format!(
            "{what} must be 1 to {MAX_TEXT} characters of printable text"
        )));
    }
    Ok(())
}

impl Api {
    /// Whether `caller` manages federated identity `f` (it manages its service account).
    fn manages_federation(
        &self,
        caller: &crate::auth::Caller,
        f: &FederationRecord,
    ) -> ApiResult<bool> {
        self.manages_principal(caller, &f.service_account)
    }

    pub(super) async fn list_federations(&self, req: &Request) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let mut list = Vec::new();
        for f in self.meta.catalog().federations()? {
            if self.manages_federation(&caller, &f)? {
                list.push(view(&f));
            }
        }
        Ok(Reply::json(StatusCode::OK, &json!({"federations": list})))
    }

    pub(super) async fn create_federation(
        &self,
        req: &Request,
        body: &mut dyn RequestBody,
    ) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let input: CreateFederation = json_body(req, body).await?;
        let name = Slug::parse("federated identity", &input.name)?;
        let account = Slug::parse("principal", &input.service_account)?;
        let sa = self
            .meta
            .catalog()
            .principal(account.as_str())?
            .ok_or_else(|| {
                ApiError::new(
                    Code::NotFound,
                    format!("service account {account} does not exist"),
                )
            })?;
        self.auth.require(
            &caller,
            Action::ManageAccess,
            &Place::organisation(&sa.organisation),
        )?;
        // The identity acts with all of the service account's roles, wherever they are.
        if !self.may_act_for(&caller, account.as_str()).await? {
            return Err(ApiError::new(
                Code::Denied,
                format!("{account} holds roles where you do not manage access"),
            ));
        }
        if sa.kind != PrincipalKind::ServiceAccount {
            return Err(bad(format!(
                "{account} is a user; federated identities act as service accounts"
            )));
        }
        check_text("issuer", &input.issuer)?;
        oidc::check_issuer_url(&input.issuer).map_err(bad)?;
        check_text("audience", &input.audience)?;
        if input.conditions.is_empty() {
            return Err(bad(
                "give at least one claim condition (e.g. repository=acme/*): an issuer signs tokens for everyone on it",
            ));
        }
        if input.conditions.len() > MAX_CONDITIONS {
            return Err(bad(format!("at most {MAX_CONDITIONS} conditions")));
        }
        for (claim, pattern) in &input.conditions {
            check_text("a condition's claim", claim)?;
            check_text("a condition's pattern", pattern)?;
        }
        let namespace = input
            .namespace
            .map(|n| NamespaceName::parse(&n).map(|n| n.to_string()))
            .transpose()?;
        let record = FederationRecord {
            name: name.to_string(),
            // Exactly as given: it must equal the tokens' `iss`, trailing slash and all.
            issuer: input.issuer,
            audience: input.audience,
            conditions: input.conditions,
            service_account: account.to_string(),
            scope: parse_scope(&input.scope)?,
            namespace,
            created_at: chrono::Utc::now().timestamp(),
            uid: crate::auth::secrets::new_uid(),
        };
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::CreateFederation {
                federation: record.clone(),
            },
        )
        .await?;
        Ok(Reply::json(StatusCode::CREATED, &view(&record))
            .header("Location", format!("/api/v1/federations/{name}")))
    }

    pub(super) async fn delete_federation(&self, req: &Request, name: &str) -> ApiResult<Reply> {
        let caller = self.auth.authorize(req, &Need::SignedIn).await?;
        let name = Slug::parse("federated identity", name)?;
        let unknown = || {
            ApiError::new(
                Code::NotFound,
                format!("federated identity {name} does not exist"),
            )
        };
        let f = self
            .meta
            .catalog()
            .federation(name.as_str())?
            .ok_or_else(unknown)?;
        if !self.manages_federation(&caller, &f)? {
            return Err(unknown());
        }
        crate::errors::commit(
            &self.meta,
            &caller,
            req,
            Command::DeleteFederation {
                name: name.to_string(),
            },
        )
        .await?;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }
}
