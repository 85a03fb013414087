//! Registry bearer tokens (Docker token auth): ES256 JWTs signed with the newest key in the
//! replicated metadata, so any node issues them and every node verifies them. Older keys stay
//! in the catalogue, so a token signed before a rotation verifies until it expires.
//!
//! Claims follow Distribution's token server: `iss`, `sub`, `aud` (the service, `shoal`),
//! `exp`, `nbf`, `iat`, `jti`, and `access`, the list of granted
//! `{type, name, actions}`. The subject is `user:<name>`, `credential:<id>` or `anonymous`;
//! the node re-checks it on every request, so revoking a credential also stops its tokens.
//!
//! An ES256 signature check costs tens of microseconds, more than answering a manifest GET,
//! and Docker and containerd send the same token with every request. So a token that
//! verified is remembered (by the sha256 of its text) with its claims; a remembered token is
//! accepted only while it is within its lifetime and its key is still in the catalogue, the
//! same conditions a full check would apply. Nothing about the subject is remembered.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use shoal_raft::SigningKey;

use crate::errors::{ApiError, ApiResult, Code};

pub const SERVICE: &str = "shoal";
/// The audience of a console session (`ui::session`): such a token is never a registry
/// token, nor a registry token a session, since each check insists on its own audience.
pub const CONSOLE: &str = "shoal-console";
/// Lifetime of a token, in seconds.
pub const TOKEN_TTL: i64 = 300;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<Access>,
    /// The `uid` of the token's user or federated identity: a namesake made after a deletion
    /// has another, so a token of the old one does not act as it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl Claims {
    /// Whether the token grants `action` on `kind`/`name` (`*` grants every action).
    pub fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|a| {
            a.kind == kind && a.name == name && a.actions.iter().any(|x| x == action || x == "*")
        })
    }
}

/// A new ECDSA P-256 key pair for signing tokens.
pub fn new_signing_key(now: i64) -> SigningKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .expect("P-256 key generation does not fail");
    SigningKey {
        kid: super::secrets::generate(16),
        private_pem: pair.serialize_pem(),
        public_pem: pair.public_key_pem(),
        created_at: now,
    }
}

/// Who a token is for and how long it lives.
struct Audience {
    aud: &'static str,
    ttl: i64,
}

/// A freshly signed token.
pub struct Issued {
    pub token: String,
    pub issued_at: i64,
    pub expires_in: i64,
}

/// Tokens whose signature was checked, remembered at most.
const REMEMBERED_TOKENS: usize = 10_000;
/// Leeway on `exp` and `nbf`, in seconds, for remembered and fresh checks alike.
pub(super) const LEEWAY: i64 = 5;

/// Parsed keys by id (a key never changes under its id, so entries stay valid), and tokens
/// that verified.
pub struct Keys {
    decoding: Mutex<HashMap<String, Arc<DecodingKey>>>,
    encoding: Mutex<Option<(String, Arc<EncodingKey>)>>,
    verified: Mutex<lru::LruCache<[u8; 32], (String, Claims)>>,
}

impl Default for Keys {
    fn default() -> Keys {
        Keys {
            decoding: Mutex::new(HashMap::new()),
            encoding: Mutex::new(None),
            verified: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(REMEMBERED_TOKENS).expect("non-zero"),
            )),
        }
    }
}

/// What a verified token is remembered by: the sha256 of its text.
fn token_id(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

fn unauthorized(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::Unauthorized, msg)
}

impl Keys {
    /// Signs a token for `sub` (a user or federated identity whose uid is `sid`, see
    /// `Claims::sid`) with the newest of `keys`, valid from now for `TOKEN_TTL` but not past
    /// `until` (when the identity behind it ends). Returns the token, when it was issued and
    /// its lifetime in seconds.
    pub fn issue(
        &self,
        keys: &[SigningKey],
        sub: &str,
        sid: Option<String>,
        access: Vec<Access>,
        until: Option<i64>,
    ) -> ApiResult<Issued> {
        let now = chrono::Utc::now().timestamp();
        let to = Audience {
            aud: SERVICE,
            ttl: TOKEN_TTL,
        };
        self.issue_at(keys, sub, sid, access, now, until, to)
    }

    /// Signs a console session for `sub` (see `issue`), for `ttl` seconds, with the
    /// `CONSOLE` audience.
    pub fn issue_session(
        &self,
        keys: &[SigningKey],
        sub: &str,
        sid: Option<String>,
        ttl: i64,
    ) -> ApiResult<Issued> {
        let now = chrono::Utc::now().timestamp();
        let to = Audience { aud: CONSOLE, ttl };
        self.issue_at(keys, sub, sid, Vec::new(), now, None, to)
    }

    #[allow(clippy::too_many_arguments)]
    fn issue_at(
        &self,
        keys: &[SigningKey],
        sub: &str,
        sid: Option<String>,
        access: Vec<Access>,
        now: i64,
        until: Option<i64>,
        to: Audience,
    ) -> ApiResult<Issued> {
        let newest = keys
            .last()
            .ok_or_else(|| ApiError::internal("issuing a token", "no signing key yet"))?;
        let key = {
            let mut cached = self.encoding.lock();
            match &*cached {
                Some((kid, k)) if *kid == newest.kid => k.clone(),
                _ => {
                    let k = EncodingKey::from_ec_pem(newest.private_pem.as_bytes())
                        .map_err(|e| ApiError::internal("loading the signing key", e))?;
                    let k = Arc::new(k);
                    *cached = Some((newest.kid.clone(), k.clone()));
                    k
                }
            }
        };
        let exp = until.map_or(now + to.ttl, |u| u.min(now + to.ttl));
        if exp <= now {
            return Err(unauthorized("the identity has expired"));
        }
        let claims = Claims {
            iss: SERVICE.into(),
            sub: sub.into(),
            aud: to.aud.into(),
            exp,
            nbf: now - 5,
            iat: now,
            jti: super::secrets::generate(20),
            access,
            sid,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(newest.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key)
            .map_err(|e| ApiError::internal("signing a token", e))?;
        Ok(Issued {
            token,
            issued_at: now,
            expires_in: exp - now,
        })
    }

    /// Checks signature (ES256 only: `none` and HMAC tokens are refused), issuer, audience
    /// and lifetime. Any failure is 401 `UNAUTHORIZED`.
    pub fn verify(&self, keys: &[SigningKey], token: &str) -> ApiResult<Claims> {
        self.verify_for(keys, token, SERVICE)
    }

    /// `verify` for a token of audience `aud` (`SERVICE` or `CONSOLE`).
    pub fn verify_for(&self, keys: &[SigningKey], token: &str, aud: &str) -> ApiResult<Claims> {
        let id = token_id(token);
        let now = chrono::Utc::now().timestamp();
        if let Some((kid, claims)) = self.verified.lock().get(&id) {
            if claims.aud != aud {
                return Err(unauthorized("the token is not meant for this service"));
            }
            let live = now < claims.exp + LEEWAY && claims.nbf <= now + LEEWAY;
            if live && keys.iter().any(|k| k.kid == *kid) {
                return Ok(claims.clone());
            }
        }
        let (kid, claims) = self.verify_fully(keys, token, aud)?;
        self.verified.lock().put(id, (kid, claims.clone()));
        Ok(claims)
    }

    fn verify_fully(
        &self,
        keys: &[SigningKey],
        token: &str,
        aud: &str,
    ) -> ApiResult<(String, Claims)> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| unauthorized(format!("malformed token: {e}")))?;
        if header.alg != Algorithm::ES256 {
            return Err(unauthorized("tokens must be signed with ES256"));
        }
        let kid = header
            .kid
            .ok_or_else(|| unauthorized("the token names no signing key"))?;
        let key = self.decoding_key(keys, &kid)?;
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[aud]);
        v.set_issuer(&[SERVICE]);
        v.leeway = LEEWAY as u64;
        v.validate_nbf = true;
        jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map(|d| (kid, d.claims))
            .map_err(|e| unauthorized(format!("invalid token: {e}")))
    }

    /// The parsed key `kid`, only while it is among `keys`.
    fn decoding_key(&self, keys: &[SigningKey], kid: &str) -> ApiResult<Arc<DecodingKey>> {
        let stored = keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| unauthorized("the token was signed by an unknown key"))?;
        if let Some(k) = self.decoding.lock().get(kid) {
            return Ok(k.clone());
        }
        let key = DecodingKey::from_ec_pem(stored.public_pem.as_bytes())
            .map_err(|e| ApiError::internal("loading a verification key", e))?;
        let key = Arc::new(key);
        self.decoding.lock().insert(kid.to_string(), key.clone());
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(name: &str) -> Vec<Access> {
        vec![Access {
            kind: "repository".into(),
            name: name.into(),
            actions: vec!["pull".into()],
        }]
    }

    #[test]
    fn tokens_verify_only_while_valid_and_under_a_known_key() {
        let keys = Keys::default();
        let old = new_signing_key(1);
        let new = new_signing_key(2);
        let t = keys
            .issue(
                std::slice::from_ref(&old),
                "user:a",
                None,
                access("a/b"),
                None,
            )
            .unwrap()
            .token;
        let claims = keys.verify(&[old.clone(), new.clone()], &t).unwrap();
        assert_eq!(claims.sub, "user:a");
        assert!(claims.grants("repository", "a/b", "pull"));
        assert!(!claims.grants("repository", "a/c", "pull"));
        assert!(!claims.grants("repository", "a/b", "push"));
        // After a rotation the old key's tokens still verify; without the key they do not.
        assert!(keys.verify(std::slice::from_ref(&new), &t).is_err());

        let now = chrono::Utc::now().timestamp();
        let expired = keys
            .issue_at(
                std::slice::from_ref(&new),
                "user:a",
                None,
                vec![],
                now - TOKEN_TTL - 60,
                None,
                Audience {
                    aud: SERVICE,
                    ttl: TOKEN_TTL,
                },
            )
            .unwrap()
            .token;
        let err = keys
            .verify(std::slice::from_ref(&new), &expired)
            .unwrap_err();
        assert_eq!(err.code, Code::Unauthorized);

        let good = keys
            .issue(std::slice::from_ref(&new), "user:a", None, vec![], None)
            .unwrap()
            .token;
        let mut forged = good.clone();
        forged.pop();
        forged.push(if good.ends_with('A') { 'B' } else { 'A' });
        assert!(keys.verify(std::slice::from_ref(&new), &forged).is_err());
        let (header, rest) = good.split_once('.').unwrap();
        let none = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            rest.split('.').next().unwrap()
        );
        assert!(keys.verify(std::slice::from_ref(&new), &none).is_err());
        assert!(!header.is_empty());
    }

    #[test]
    fn a_remembered_token_still_needs_its_key_and_its_lifetime() {
        let keys = Keys::default();
        let key = new_signing_key(1);
        let t = keys
            .issue(
                std::slice::from_ref(&key),
                "user:a",
                None,
                access("a/b"),
                None,
            )
            .unwrap()
            .token;
        assert!(keys.verify(std::slice::from_ref(&key), &t).is_ok());
        assert!(
            keys.verify(std::slice::from_ref(&key), &t).is_ok(),
            "remembered"
        );
        let other = new_signing_key(2);
        assert!(
            keys.verify(std::slice::from_ref(&other), &t).is_err(),
            "its key was retired"
        );
        let now = chrono::Utc::now().timestamp();
        let old = keys
            .issue_at(
                std::slice::from_ref(&key),
                "user:a",
                None,
                vec![],
                now - TOKEN_TTL - 60,
                None,
                Audience {
                    aud: SERVICE,
                    ttl: TOKEN_TTL,
                },
            )
            .unwrap()
            .token;
        // Planted as if it had verified earlier: the lifetime check still refuses it.
        let id = token_id(&old);
        let claims = Claims {
            iss: SERVICE.into(),
            sub: "user:a".into(),
            aud: SERVICE.into(),
            exp: now - 60,
            nbf: now - TOKEN_TTL - 65,
            iat: now - TOKEN_TTL - 60,
            jti: "x".into(),
            access: vec![],
            sid: None,
        };
        keys.verified.lock().put(id, (key.kid.clone(), claims));
        assert!(keys.verify(std::slice::from_ref(&key), &old).is_err());
    }

    #[test]
    fn tokens_end_with_the_identity_behind_them() {
        let keys = Keys::default();
        let key = new_signing_key(1);
        let now = chrono::Utc::now().timestamp();
        let short = keys
            .issue(
                std::slice::from_ref(&key),
                "federation:ci",
                None,
                vec![],
                Some(now + 30),
            )
            .unwrap();
        assert!(short.expires_in <= 30, "{}", short.expires_in);
        let long = keys
            .issue(
                std::slice::from_ref(&key),
                "user:a",
                None,
                vec![],
                Some(now + 86_400),
            )
            .unwrap();
        assert_eq!(long.expires_in, TOKEN_TTL);
        let gone = keys.issue(
            std::slice::from_ref(&key),
            "federation:ci",
            None,
            vec![],
            Some(now - 1),
        );
        assert!(gone.is_err(), "an expired identity gets no token");
    }

    /// A console session is never a registry token and a registry token never a session,
    /// fresh or remembered.
    #[test]
    fn sessions_and_registry_tokens_do_not_stand_in_for_each_other() {
        let keys = Keys::default();
        let key = std::slice::from_ref(&new_signing_key(1)).to_vec();
        let session = keys
            .issue_session(&key, "user:a", None, 3600)
            .unwrap()
            .token;
        let token = keys
            .issue(&key, "user:a", None, vec![], None)
            .unwrap()
            .token;
        for _ in 0..2 {
            assert!(keys.verify_for(&key, &session, CONSOLE).is_ok());
            assert!(keys.verify(&key, &session).is_err());
            assert!(keys.verify(&key, &token).is_ok());
            assert!(keys.verify_for(&key, &token, CONSOLE).is_err());
        }
        let claims = keys.verify_for(&key, &session, CONSOLE).unwrap();
        assert_eq!(claims.exp - claims.iat, 3600);
    }
}
