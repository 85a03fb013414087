//! Console sessions: what a browser holds after signing in (`ui`), as the gate sees them.
//!
//! A session is an ES256 token of audience `token::CONSOLE`, signed with the region's
//! signing key like registry tokens, so any node of the region accepts it and none stores
//! it while it lives. Its expiry is in the signed claims and checked by the server (the
//! cookie's own lifetime is only a hint to the browser). Each request re-resolves its
//! subject, as for registry tokens: a deleted user or a revoked credential ends its sessions
//! at once. Signing out commits `EndSession` through Raft, so every node refuses the token
//! from then on.
//!
//! A credential's session also names a digest of the credential's secret hash (`sid`), so
//! a new secret ends it.
//!
//! A session token is accepted only from the console's cookie (`Request::session`, which
//! only `ui` sets); as a bearer token it fails the registry's audience check.

use shoal_raft::Command;

use super::token::{Claims, Issued, CONSOLE};
use super::{Caller, Gate, Subject};
use crate::errors::{ApiError, ApiResult, Code};
use crate::wire::Request;

/// What a credential's session remembers of the secret it signed in with: a digest of its
/// hash, so giving the credential a new secret (a pull secret does) ends its sessions.
pub(super) fn secret_fingerprint(secret_hash: &str) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(secret_hash.as_bytes());
    format!("secret:{}", hex::encode(&d[..12]))
}

impl Gate {
    /// A session for `caller`, signed in just now with a password or credential, valid for
    /// `ttl` seconds (no longer than the identity itself).
    pub fn start_session(&self, caller: &Caller, ttl: i64) -> ApiResult<Issued> {
        let catalog = self.meta.catalog();
        let sid = match &caller.subject {
            Subject::User(name) => catalog.principal(name)?.map(|p| p.uid),
            Subject::Credential { id, .. } => catalog
                .credential(id)?
                .map(|c| secret_fingerprint(&c.secret_hash)),
            Subject::Anonymous | Subject::Federated { .. } => {
                return Err(ApiError::new(
                    Code::Unauthorized,
                    "the console signs in users and access credentials only",
                ))
            }
        };
        let keys = catalog.signing_keys()?;
        let ttl = match caller.expires_at {
            Some(end) => ttl.min(end - chrono::Utc::now().timestamp()),
            None => ttl,
        };
        self.keys
            .issue_session(&keys, &caller.subject.claim(), sid, ttl)
    }

    /// The caller a session token stands for, with its claims: 401 for a token that does
    /// not verify, has expired, was signed out, or whose subject is gone.
    pub fn session(&self, token: &str) -> ApiResult<(Caller, Claims)> {
        let catalog = self.meta.catalog();
        let keys = catalog.signing_keys()?;
        let claims = self.keys.verify_for(&keys, token, CONSOLE)?;
        if catalog.session_ended(&claims.jti)? {
            return Err(ApiError::new(
                Code::Unauthorized,
                "the session was signed out",
            ));
        }
        let caller = self.subject_of(&claims.sub, claims.sid.as_deref())?;
        if caller.is_anonymous() {
            return Err(ApiError::new(Code::Unauthorized, "not a session"));
        }
        Ok((caller, claims))
    }

    /// Ends the session `claims` describe on every node of the region.
    pub async fn end_session(
        &self,
        caller: &Caller,
        claims: &Claims,
        req: &Request,
    ) -> ApiResult<()> {
        let cmd = Command::EndSession {
            id: claims.jti.clone(),
            until: claims.exp + super::token::LEEWAY,
            at: chrono::Utc::now().timestamp(),
        };
        crate::errors::commit(&self.meta, caller, req, cmd).await
    }
}
