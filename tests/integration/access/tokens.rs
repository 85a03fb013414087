//! The Docker token endpoint: tokens grant only what was asked and allowed, and forged,
//! foreign-key, `alg: none`, expired and other-repository tokens fail.

use base64::Engine;
use serde_json::{json, Value};
use shoal_tests::{error_code, Registry};

use super::{attempt, expect, setup, token_for, Op, DENIED, PASSWORD, UNAUTHORIZED};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn tokens_grant_only_what_was_asked_and_allowed_and_bad_tokens_fail() {
    let s = setup();
    let admin = Some(("admin", shoal_tests::ADMIN_PASSWORD));
    let bearer = |t: &str| Registry::with_auth(&s.node.url, Some(&format!("Bearer {t}")));

    // The token flow a client follows: challenge, token, retry.
    let anon = Registry::anonymous(&s.node.url);
    let r = anon.get("/v2/priv/app/manifests/v1");
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer realm=\"http://")
            && challenge.contains("/auth/token\"")
            && challenge.contains("scope=\"repository:priv/app:pull\""),
        "{challenge}"
    );
    let pull = token_for(&s.node, admin, "repository:priv/app:pull");
    expect(
        &s,
        &bearer(&pull),
        "tokenpull",
        "priv",
        Op::Pull,
        true,
        DENIED,
    );
    // Not asked for: push. Allowed to the admin, so 401 with an insufficient_scope
    // challenge naming the scope to fetch.
    let r = bearer(&pull)
        .http
        .post(format!("{}/v2/priv/app/blobs/uploads/", s.node.url))
        .send()
        .unwrap();
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"repository:priv/app:pull,push\""),
        "{challenge}"
    );
    assert_eq!(error_code(r), (401, "UNAUTHORIZED".to_string()));
    // A token for one repository used on another.
    s.admin.push_image("priv/other", "v1", b"other layer");
    let r = bearer(&pull).get("/v2/priv/other/manifests/v1");
    assert_eq!(error_code(r), (401, "UNAUTHORIZED".to_string()));

    // The reader asks for push and gets a token without it; pushing with it is denied.
    let rdr = token_for(
        &s.node,
        Some(("rdr", PASSWORD)),
        "repository:priv/app:pull,push",
    );
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(rdr.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "priv/app", "actions": ["pull"]}])
    );
    expect(
        &s,
        &bearer(&rdr),
        "rdrtoken",
        "priv",
        Op::Push,
        false,
        DENIED,
    );
    // Anonymous tokens carry public pulls only.
    let anon_token = token_for(
        &s.node,
        None,
        "repository:pub/app:pull repository:priv/app:pull",
    );
    expect(
        &s,
        &bearer(&anon_token),
        "anontoken",
        "pub",
        Op::Pull,
        true,
        UNAUTHORIZED,
    );
    expect(
        &s,
        &bearer(&anon_token),
        "anontoken",
        "priv",
        Op::Pull,
        false,
        UNAUTHORIZED,
    );
    // Wrong credentials at the token endpoint are 401.
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/auth/token?service=shoal", s.node.url))
        .basic_auth("admin", Some("wrong"))
        .send()
        .unwrap();
    assert_eq!(error_code(r), (401, "UNAUTHORIZED".to_string()));

    // Forged tokens: a changed payload, a foreign key under the real key id, alg none, HS256.
    let (header, rest) = pull.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let mut widened = claims.clone();
    widened["sub"] = json!("user:admin");
    widened["access"] =
        json!([{"type": "repository", "name": "priv/app", "actions": ["pull", "push", "delete"]}]);
    let payload = b64(widened.to_string().as_bytes());
    let kid: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    let foreign = {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = kid["kid"].as_str().map(str::to_string);
        let mut c = widened.clone();
        c["exp"] = json!(chrono_now() + 300);
        jsonwebtoken::encode(&h, &c, &key).unwrap()
    };
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &widened,
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    let none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    let expired = {
        let mut c = widened.clone();
        c["exp"] = json!(chrono_now() - 3600);
        format!("{header}.{}.{signature}", b64(c.to_string().as_bytes()))
    };
    for (name, t) in [
        ("changed payload", format!("{header}.{payload}.{signature}")),
        ("foreign key", foreign),
        ("alg none", none),
        ("hs256", hs256),
        ("expired", expired),
        ("garbage", "not.a.token".to_string()),
    ] {
        let case = name.replace(' ', "");
        for op in [Op::Pull, Op::Push] {
            let (status, code) = attempt(
                &s,
                &bearer(&t),
                op,
                "priv",
                &format!("{case}{op:?}").to_lowercase(),
            );
            assert_eq!((status, code.as_str()), UNAUTHORIZED, "{name} {op:?}");
        }
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
