//! Property-based fuzzing of the parsers that take untrusted input: manifests and indexes,
//! repository names, tags, digests, routes, `Range` and `Content-Range`, JSON key checks,
//! tokens and OIDC claim patterns (the config file's is in `main.rs`, beside its command).
//!
//! Coverage-guided fuzzing (`cargo fuzz`) needs a nightly toolchain, which this machine
//! cannot install, so these are `proptest` properties: inputs shaped like the real thing,
//! then mutated, plus arbitrary text. None may panic, and where an independent oracle
//! exists (the distribution specification's regular expressions, arithmetic on ranges, a
//! token this node signed) the parser must agree with it. Each property runs
//! `SHOAL_FUZZ_CASES` cases: 1 000 by default, so CI stays quick; the long job in the
//! README runs 100 000 each. A failure found here becomes a named regression test beside
//! the parser.

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::names::{NamespaceName, RepoName, Tag};
use crate::registry::{manifest, range, routes, strict_json};

fn cases() -> u32 {
    std::env::var("SHOAL_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The distribution specification's grammar for repository names.
const REPO: &str = r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$";
const COMPONENT: &str = r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$";
const TAG: &str = r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$";

fn matches(pattern: &str, s: &str) -> bool {
    regex::Regex::new(pattern).unwrap().is_match(s)
}

/// `bytes` with a few of its bytes replaced, removed or duplicated, chosen by `edits`.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, kind, value) in edits {
        if bytes.is_empty() {
            bytes.push(value);
            continue;
        }
        let at = at % bytes.len();
        match kind % 4 {
            0 => bytes[at] = value,
            1 => {
                bytes.remove(at);
            }
            2 => bytes.insert(at, value),
            _ => bytes.truncate(at),
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..6)
}

/// Any u64, often at the edges where arithmetic overflows.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u64>(), 0u64..4, u64::MAX - 3..=u64::MAX]
}

fn digest() -> impl Strategy<Value = String> {
    "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}"))
}

fn descriptor(media_type: &'static str) -> impl Strategy<Value = Value> {
    (digest(), 0u64..1 << 40)
        .prop_map(move |(d, size)| json!({"mediaType": media_type, "digest": d, "size": size}))
}

/// An image manifest or an index, with optional subject and annotations.
fn manifest_json() -> impl Strategy<Value = Value> {
    let layers = prop::collection::vec(
        descriptor("application/vnd.oci.image.layer.v1.tar+gzip"),
        0..5,
    );
    let children = prop::collection::vec(
        descriptor("application/vnd.oci.image.manifest.v1+json"),
        0..4,
    );
    let annotations = prop::option::of(prop::collection::btree_map(
        "[a-z.]{1,12}",
        "\\PC{0,20}",
        0..3,
    ));
    (
        any::<bool>(),
        descriptor("application/vnd.oci.image.config.v1+json"),
        layers,
        children,
        prop::option::of(descriptor("application/vnd.oci.image.manifest.v1+json")),
        annotations,
    )
        .prop_map(|(index, config, layers, children, subject, annotations)| {
            let mut m = if index {
                json!({"schemaVersion": 2,
                       "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": children})
            } else {
                json!({"schemaVersion": 2,
                       "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": config, "layers": layers})
            };
            if let Some(s) = subject {
                m["subject"] = s;
            }
            if let Some(a) = annotations {
                m["annotations"] = json!(a);
            }
            m
        })
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn media_type(m: &Value) -> Option<&str> {
    m["mediaType"].as_str()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn repository_names_follow_the_specification(s in "[a-z0-9._/A-Z-]{0,70}") {
        let expected = s.len() <= crate::names::MAX_REPO_LEN
            && matches(REPO, &s)
            && s.split('/').next().is_some_and(|ns| ns.len() <= crate::names::MAX_NAMESPACE_LEN);
        prop_assert_eq!(RepoName::parse(&s).is_ok(), expected, "{:?}", s);
        prop_assert_eq!(NamespaceName::parse(&s).is_ok(), matches(COMPONENT, &s), "{:?}", s);
    }

    #[test]
    fn names_and_tags_never_panic_on_any_text(s in "\\PC{0,600}") {
        let _ = RepoName::parse(&s);
        let _ = NamespaceName::parse(&s);
        prop_assert_eq!(Tag::parse(&s).is_ok(), matches(TAG, &s), "{:?}", s);
    }

    #[test]
    fn tags_follow_the_specification(s in "[a-zA-Z0-9._:/-]{0,130}") {
        prop_assert_eq!(Tag::parse(&s).is_ok(), matches(TAG, &s), "{:?}", s);
    }

    #[test]
    fn digests_parse_only_when_well_formed_and_print_back(
        s in "(sha256|sha512|sha384|md5|)(:|)[0-9a-fA-F]{0,130}|\\PC{0,80}"
    ) {
        if let Ok(d) = s.parse::<shoal_origin::Digest>() {
            prop_assert_eq!(d.to_string(), s.clone());
            let (alg, hex) = s.split_once(':').unwrap();
            let len = if alg == "sha256" { 64 } else { 128 };
            prop_assert_eq!(hex.len(), len);
            prop_assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
    }

    #[test]
    fn routes_never_panic(
        path in "/v2/[a-z0-9/._-]{0,40}(/manifests/|/blobs/|/blobs/uploads/|/tags/list|/referrers/|/_catalog)?[a-zA-Z0-9:._%/-]{0,80}|\\PC{0,120}"
    ) {
        let _ = routes::parse(&path);
    }

    #[test]
    fn ranges_agree_with_arithmetic(a in number(), b in number(), size in prop::option::of(number())) {
        let header = format!("bytes={a}-{b}");
        match range::parse_range(Some(&header), size) {
            Ok(Some(r)) => {
                prop_assert!(a <= b);
                prop_assert_eq!(r.start, a);
                prop_assert_eq!(r.end, b.saturating_add(1));
            }
            other => prop_assert!(a > b, "{header}: {other:?}"),
        }
        match range::parse_content_range(&format!("{a}-{b}")) {
            Some(r) => {
                prop_assert!(a <= b && b < u64::MAX);
                prop_assert_eq!((r.start, r.end), (a, b + 1));
            }
            None => prop_assert!(a > b || b == u64::MAX),
        }
    }

    #[test]
    fn range_headers_never_panic(
        h in "(bytes=|bytes |)[0-9 ]{0,25}-?[0-9 ]{0,25}(/[0-9*]{0,5})?(,[0-9-]{0,5})?|\\PC{0,60}",
        size in prop::option::of(any::<u64>()),
    ) {
        if let Ok(Some(r)) = range::parse_range(Some(&h), size) {
            prop_assert!(r.start <= r.end, "{h:?}: {r:?}");
        }
        if let Some(r) = range::parse_content_range(&h) {
            prop_assert!(r.start < r.end, "{h:?}: {r:?}");
        }
    }

    #[test]
    fn repeated_json_keys_are_found(m in manifest_json(), key in "[a-z]{1,8}") {
        let text = serde_json::to_string(&m).unwrap();
        prop_assert!(strict_json::check_unique_keys(text.as_bytes()).is_ok());
        let doubled = format!("{{\"{key}\":1,{}", &text[1..]).replacen('{', &format!("{{\"{key}\":2,"), 1);
        prop_assert!(strict_json::check_unique_keys(doubled.as_bytes()).is_err(), "{doubled}");
    }

    #[test]
    fn json_key_checks_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), m in manifest_json(), e in edits()) {
        let _ = strict_json::check_unique_keys(&bytes);
        let _ = strict_json::check_unique_keys(&mutate(serde_json::to_vec(&m).unwrap(), &e));
    }

    #[test]
    fn well_formed_manifests_parse_and_mutated_ones_never_panic(m in manifest_json(), e in edits()) {
        let bytes = serde_json::to_vec(&m).unwrap();
        let parsed = manifest::parse(&bytes, media_type(&m), None, 0);
        let parsed = parsed.map_err(|e| format!("{e:?}"));
        prop_assert!(parsed.is_ok(), "{}: {:?}", m, parsed.err());
        let record = parsed.unwrap().record;
        prop_assert_eq!(record.digest, shoal_origin::Digest::sha256_of(&bytes).to_string());
        prop_assert_eq!(record.subject.is_some(), m.get("subject").is_some());
        let mutated = mutate(bytes, &e);
        let _ = manifest::parse(&mutated, media_type(&m), None, 0);
        let _ = manifest::parse(&mutated, None, None, 0);
    }

    #[test]
    fn manifest_parsing_never_panics_on_any_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        content_type in prop::option::of("\\PC{0,60}"),
    ) {
        let _ = manifest::parse(&bytes, content_type.as_deref(), None, 0);
    }

    #[test]
    fn claim_patterns_never_panic_and_plain_ones_match_only_themselves(
        pattern in "[a-z*?:/]{0,30}|\\PC{0,40}",
        value in "[a-z:/]{0,30}|\\PC{0,40}",
    ) {
        let got = crate::auth::oidc::matches(&pattern, &value);
        if !pattern.contains(['*', '?']) {
            prop_assert_eq!(got, pattern == value);
        }
        prop_assert!(crate::auth::oidc::matches("*", &value));
    }
}

proptest! {
    #![proptest_config(config())]

    /// An OIDC token's unverified issuer is read from any text without a panic, and found in
    /// a well-formed token; any claims are held against a federation without a panic.
    #[test]
    fn oidc_tokens_and_claims_never_panic(claims in json_value(), junk in "\\PC{0,200}", iss in "\\PC{0,30}") {
        use base64::Engine;
        use crate::auth::oidc::{accepts, claimed_issuer};
        let f = shoal_raft::FederationRecord {
            name: "gha".into(),
            issuer: "https://issuer.example".into(),
            audience: "shoal".into(),
            conditions: [("sub".to_string(), "repo:team/*".to_string())].into(),
            service_account: "ci".into(),
            scope: shoal_raft::CredentialScope::Pull,
            namespace: None,
            created_at: 0,
            uid: "u".into(),
        };
        let _ = accepts(&f, &claims);
        let mut holding = claims.clone();
        if holding.is_object() {
            holding["aud"] = json!(["other", "shoal"]);
            holding["sub"] = json!("repo:team/app");
            prop_assert!(accepts(&f, &holding));
            holding["sub"] = json!("repo:other/app");
            prop_assert!(!accepts(&f, &holding));
        }
        let _ = claimed_issuer(&junk);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!("{}.{}.sig", b64.encode("{}"), b64.encode(json!({"iss": iss}).to_string()));
        prop_assert_eq!(claimed_issuer(&token).ok(), Some(iss));
    }
}

mod tokens {
    use super::*;
    use crate::auth::token::{new_signing_key, Access, Keys};

    fn issued() -> (Keys, Vec<shoal_raft::SigningKey>, String) {
        let now = chrono::Utc::now().timestamp();
        let keys = vec![new_signing_key(now)];
        let signer = Keys::default();
        let access = vec![Access {
            kind: "repository".into(),
            name: "team/app".into(),
            actions: vec!["pull".into()],
        }];
        let token = signer
            .issue(
                &keys,
                "alice",
                Some("uid-1".into()),
                access,
                Some(now + 3600),
            )
            .unwrap()
            .token;
        (signer, keys, token)
    }

    proptest! {
        #![proptest_config(config())]

        /// A token this node signed verifies; the same token with any byte changed, or any
        /// other text, does not, and nothing panics.
        #[test]
        fn only_unaltered_tokens_verify(e in edits(), junk in "\\PC{0,300}") {
            let (_, keys, token) = issued();
            let fresh = Keys::default();
            prop_assert!(fresh.verify(&keys, &token).is_ok());
            let mutated = String::from_utf8_lossy(&mutate(token.clone().into_bytes(), &e)).into_owned();
            if mutated != token {
                prop_assert!(fresh.verify(&keys, &mutated).is_err(), "{mutated}");
            }
            prop_assert!(fresh.verify(&keys, &junk).is_err());
        }
    }
}
