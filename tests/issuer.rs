//! A small OIDC issuer for the federation tests, standing in for GitHub Actions or GitLab
//! CI: it serves its discovery document and JWKS on a loopback port (tiny_http, one thread)
//! and signs ES256 tokens with keys only it holds. It counts JWKS fetches, so a test can
//! see that the node caches them, and can publish a new key mid-test (a rotation).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// One signing key: its id, its private half, its public half as a JWK.
pub struct IssuerKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl IssuerKey {
    /// A fresh P-256 key named `kid`.
    pub fn generate(kid: &str) -> IssuerKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        assert!(
            point.len() == 65 && point[0] == 4,
            "an uncompressed P-256 point"
        );
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        IssuerKey {
            kid: kid.to_string(),
            encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                "x": b64(&point[1..33]), "y": b64(&point[33..]),
            }),
        }
    }

    /// Signs `claims` as an ES256 JWT with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

pub struct Issuer {
    /// `http://127.0.0.1:PORT`, also the `iss` of its tokens.
    pub url: String,
    published: Arc<Mutex<Vec<Value>>>,
    jwks_fetches: Arc<AtomicUsize>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Issuer {
    /// Starts serving, publishing `keys`.
    pub fn start(keys: &[&IssuerKey]) -> Issuer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let published = Arc::new(Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect()));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (server, published, fetches, url) = (
                server.clone(),
                published.clone(),
                jwks_fetches.clone(),
                url.clone(),
            );
            std::thread::spawn(move || {
                for req in server.incoming_requests() {
                    let body = match req.url() {
                        "/.well-known/openid-configuration" => {
                            json!({"issuer": url, "jwks_uri": format!("{url}/jwks")})
                        }
                        "/jwks" => {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            json!({"keys": *published.lock().unwrap()})
                        }
                        _ => {
                            let _ = req.respond(tiny_http::Response::empty(404));
                            continue;
                        }
                    };
                    let header =
                        tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
                    let _ = req.respond(
                        tiny_http::Response::from_string(body.to_string()).with_header(header),
                    );
                }
            })
        };
        Issuer {
            url,
            published,
            jwks_fetches,
            server,
            thread: Some(thread),
        }
    }

    /// Adds `key` to the JWKS.
    pub fn publish(&self, key: &IssuerKey) {
        self.published.lock().unwrap().push(key.jwk.clone());
    }

    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
