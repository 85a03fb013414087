//! Workload identity federation: a CI job (GitHub Actions, GitLab CI, …) presents the OIDC
//! token its platform gave it and gets registry access without a stored secret.
//!
//! The catalogue holds each trusted identity (`FederationRecord`: issuer, audience, claim
//! conditions, the service account it acts as, scope, namespace). A token is accepted only
//! if it is signed with an asymmetric algorithm by a key of its issuer's JWKS, its `iss` is
//! exactly a trusted issuer, one of its `aud` is that identity's audience, it is within its
//! lifetime, and every condition matches. The first identity (by name) that matches wins.
//!
//! The JWKS is found through `<issuer>/.well-known/openid-configuration` and fetched with
//! reqwest; it is kept `FRESH` and fetched again early only for a key id it does not hold,
//! at most once per `REFETCH_GAP` (10 s), so a stream of tokens with made-up key ids cannot turn
//! the node into a load generator against the issuer. Issuers and JWKS must be `https`,
//! except on loopback (local test issuers).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde_json::Value;
use shoal_raft::{Catalog, FederationRecord};

use crate::errors::{ApiError, ApiResult, Code};

const FRESH: Duration = Duration::from_secs(600);
const REFETCH_GAP: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest discovery document or JWKS read.
const MAX_DOCUMENT: usize = 256 * 1024;
/// Largest OIDC token looked at.
const MAX_TOKEN: usize = 16 * 1024;
const LEEWAY: u64 = 30;

/// Algorithms a federated token may be signed with: public-key ones only, so neither
/// `none` nor a shared-secret HMAC can ever pass.
const ALLOWED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

struct Fetched {
    keys: Arc<JwkSet>,
    at: Instant,
}

/// The JWKS of every issuer seen, fetched on demand.
pub struct Issuers {
    http: reqwest::Client,
    cache: Mutex<HashMap<String, Fetched>>,
    /// One fetch at a time: a burst of tokens arriving when the keys went stale waits for
    /// one fetch instead of sending one each.
    fetching: tokio::sync::Mutex<()>,
}

impl Default for Issuers {
    fn default() -> Issuers {
        Issuers {
            http: reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a reqwest client with a timeout builds"),
            cache: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }
}

fn unauthorized(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::Unauthorized, msg)
}

/// `https://…`, or `http://` on a loopback host.
pub fn check_issuer_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(format!("{url:?} names no host")),
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "{url:?} must be https (plain http only on loopback)"
        )),
    }
}

/// Whether `value` matches `pattern`, where `*` stands for any run of characters.
pub fn matches(pattern: &str, value: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(value)
}

/// A claim as the text conditions are matched against; objects and arrays never match.
fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn audience_holds(claims: &Value, audience: &str) -> bool {
    match &claims["aud"] {
        Value::String(s) => s == audience,
        Value::Array(a) => a.iter().any(|x| x.as_str() == Some(audience)),
        _ => false,
    }
}

/// Whether a token's verified claims satisfy federated identity `f`.
pub fn accepts(f: &FederationRecord, claims: &Value) -> bool {
    audience_holds(claims, &f.audience)
        && f.conditions.iter().all(|(claim, pattern)| {
            claims
                .get(claim)
                .and_then(claim_text)
                .is_some_and(|v| matches(pattern, &v))
        })
}

/// The unverified `iss` of a token, only to choose whose keys to check it with.
pub(crate) fn claimed_issuer(token: &str) -> ApiResult<String> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| unauthorized("the OIDC token is not a JWT"))?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| unauthorized("the OIDC token is not a JWT"))?;
    let v: Value =
        serde_json::from_slice(&raw).map_err(|_| unauthorized("the OIDC token is not a JWT"))?;
    v["iss"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| unauthorized("the OIDC token names no issuer"))
}

impl Issuers {
    /// The federated identity `token` stands for, and when the token expires.
    pub async fn exchange(
        &self,
        catalog: &Catalog,
        token: &str,
    ) -> ApiResult<(FederationRecord, i64)> {
        if token.len() > MAX_TOKEN {
            return Err(unauthorized("the OIDC token is too large"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| unauthorized(format!("malformed OIDC token: {e}")))?;
        if !ALLOWED.contains(&header.alg) {
            return Err(unauthorized(format!(
                "OIDC tokens must be signed with a public-key algorithm, not {:?}",
                header.alg
            )));
        }
        let issuer = claimed_issuer(token)?;
        let trusted: Vec<FederationRecord> = catalog
            .federations()?
            .into_iter()
            .filter(|f| f.issuer == issuer)
            .collect();
        if trusted.is_empty() {
            return Err(unauthorized(format!(
                "no federated identity trusts the issuer {issuer:?}"
            )));
        }
        let key = self.key(&issuer, header.kid.as_deref()).await?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&issuer]);
        v.validate_aud = false; // each identity checks its own audience below
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.validate_nbf = true;
        v.leeway = LEEWAY;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|e| unauthorized(format!("invalid OIDC token: {e}")))?
            .claims;
        let exp = claims["exp"]
            .as_i64()
            .ok_or_else(|| unauthorized("the OIDC token's exp is not a number"))?;
        trusted
            .into_iter()
            .find(|f| accepts(f, &claims))
            .map(|f| (f, exp))
            .ok_or_else(|| {
                unauthorized(
                    "the OIDC token matches no federated identity's audience and conditions",
                )
            })
    }

    /// The cached keys of `issuer` if they can answer for `kid`: fresh and holding it, or
    /// fetched too recently to fetch again.
    fn cached(&self, issuer: &str, kid: Option<&str>) -> Option<Arc<JwkSet>> {
        let cache = self.cache.lock();
        let f = cache.get(issuer)?;
        let age = f.at.elapsed();
        let usable = (age < FRESH && find(&f.keys, kid).is_some()) || age < REFETCH_GAP;
        usable.then(|| f.keys.clone())
    }

    /// The issuer's key `kid` (or its only key, for a token without `kid`).
    async fn key(&self, issuer: &str, kid: Option<&str>) -> ApiResult<DecodingKey> {
        let keys = match self.cached(issuer, kid) {
            Some(keys) => keys,
            None => {
                let _one = self.fetching.lock().await;
                // Another request may have fetched while this one waited.
                match self.cached(issuer, kid) {
                    Some(keys) => keys,
                    None => {
                        let keys = Arc::new(self.fetch(issuer).await?);
                        self.cache.lock().insert(
                            issuer.to_string(),
                            Fetched {
                                keys: keys.clone(),
                                at: Instant::now(),
                            },
                        );
                        keys
                    }
                }
            }
        };
        let jwk = find(&keys, kid).ok_or_else(|| {
            unauthorized("the OIDC token was signed by a key its issuer does not publish")
        })?;
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            return Err(unauthorized(
                "the issuer publishes a symmetric key; refused",
            ));
        }
        DecodingKey::from_jwk(jwk)
            .map_err(|e| unauthorized(format!("the issuer's key is unusable: {e}")))
    }

    async fn fetch(&self, issuer: &str) -> ApiResult<JwkSet> {
        let unavailable = |what: &str, e: String| {
            tracing::warn!(issuer, error = %e, "fetching {what} failed");
            ApiError::new(
                Code::Unavailable,
                format!("cannot fetch the {what} of OIDC issuer {issuer}: {e}"),
            )
        };
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc = self
            .get_json(&discovery)
            .await
            .map_err(|e| unavailable("discovery document", e))?;
        let jwks_uri = doc["jwks_uri"]
            .as_str()
            .ok_or_else(|| unavailable("discovery document", "it has no jwks_uri".into()))?;
        check_issuer_url(jwks_uri).map_err(|e| unavailable("JWKS", e))?;
        let jwks = self
            .get_json(jwks_uri)
            .await
            .map_err(|e| unavailable("JWKS", e))?;
        serde_json::from_value(jwks).map_err(|e| unavailable("JWKS", e.to_string()))
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .error_for_status()
            .map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(format!("larger than {MAX_DOCUMENT} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
    }
}

fn find<'a>(keys: &'a JwkSet, kid: Option<&str>) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(k) => keys.find(k),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn federation(audience: &str, conditions: &[(&str, &str)]) -> FederationRecord {
        FederationRecord {
            name: "ci".into(),
            issuer: "https://issuer.example".into(),
            audience: audience.into(),
            conditions: conditions
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            service_account: "builder".into(),
            scope: shoal_raft::CredentialScope::All,
            namespace: None,
            created_at: 1,
            uid: "uid-ci".into(),
        }
    }

    fn check(f: &FederationRecord, claims: Value, expected: bool) {
        assert_eq!(accepts(f, &claims), expected, "{claims}");
    }

    #[test]
    fn conditions_and_audience() {
        let f = federation(
            "shoal",
            &[("repository", "acme/*"), ("ref", "refs/heads/main")],
        );
        let good =
            serde_json::json!({"aud": "shoal", "repository": "acme/api", "ref": "refs/heads/main"});
        check(&f, good.clone(), true);
        let mut listed = good.clone();
        listed["aud"] = serde_json::json!(["other", "shoal"]);
        check(&f, listed, true);
        let mut wrong_aud = good.clone();
        wrong_aud["aud"] = serde_json::json!("other");
        check(&f, wrong_aud, false);
        let mut other_repo = good.clone();
        other_repo["repository"] = serde_json::json!("evil/acme");
        check(&f, other_repo, false);
        let mut branch = good.clone();
        branch["ref"] = serde_json::json!("refs/heads/feature");
        check(&f, branch, false);
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("ref");
        check(&f, missing, false);
        let mut object = good;
        object["repository"] = serde_json::json!({"name": "acme/api"});
        check(&f, object, false);
        check(
            &federation("shoal", &[("run_attempt", "1")]),
            serde_json::json!({"aud": "shoal", "run_attempt": 1}),
            true,
        );
    }

    #[test]
    fn issuer_urls() {
        for (url, ok) in [
            ("https://token.actions.githubusercontent.com", true),
            ("http://127.0.0.1:8080", true),
            ("http://localhost:1/x", true),
            ("http://[::1]:9", true),
            ("http://issuer.example", false),
            ("ftp://issuer.example", false),
            ("not a url", false),
        ] {
            assert_eq!(check_issuer_url(url).is_ok(), ok, "{url}");
        }
    }
}
