//! Parsing and validating a pushed manifest into a `ManifestRecord`.
//!
//! Shoal stores the exact bytes it was sent and only reads the fields it must act on:
//! the media type (checked against `Content-Type`), the blobs and child manifests that must
//! already be in the repository, the subject (for the referrers API) and the artifact type.
//! `serde_json::Value` is used rather than strict typed structs so unknown fields and future
//! extensions pass through untouched, as the spec requires.

use serde_json::Value;
use shoal_origin::Digest;
use shoal_raft::ManifestRecord;

use crate::errors::{ApiError, ApiResult, Code};

pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

const SUPPORTED: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// Layers that clients never push (their bytes live elsewhere), so they are not required.
fn is_foreign_layer(media_type: &str) -> bool {
    media_type.contains("foreign") || media_type.contains("nondistributable")
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::ManifestInvalid, msg)
}

/// The largest size a descriptor may give: OCI sizes are int64.
const MAX_SIZE: u64 = i64::MAX as u64;

/// A descriptor's digest and size: the digest valid, the size a whole number from 0 to
/// 2^63 - 1 (not negative, not fractional, not missing).
fn descriptor(d: &Value, what: &str) -> ApiResult<(Digest, u64)> {
    let s = d
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what} has no digest")))?;
    let digest = s
        .parse::<Digest>()
        .map_err(|e| invalid(format!("{what} digest: {e}")))?;
    let size = d
        .get("size")
        .and_then(Value::as_u64)
        .filter(|n| *n <= MAX_SIZE)
        .ok_or_else(|| {
            invalid(format!(
                "{what} size must be a whole number from 0 to 2^63-1, got {}",
                d.get("size").map_or("nothing".into(), Value::to_string)
            ))
        })?;
    Ok((digest, size))
}

/// A parsed, validated manifest, ready to be committed.
pub struct Parsed {
    pub record: ManifestRecord,
    /// The size each referenced blob's descriptor gives (config and layers, foreign ones
    /// excepted), to be held against the blobs the repository has.
    pub blob_sizes: Vec<(String, u64)>,
    /// The size each child manifest's descriptor gives (an index).
    pub child_sizes: Vec<(String, u64)>,
}

/// Validates `bytes` sent with `content_type`; `digest_ref` is the digest the client used
/// as reference, if it pushed by digest.
pub fn parse(
    bytes: &[u8],
    content_type: Option<&str>,
    digest_ref: Option<&Digest>,
    now: i64,
) -> ApiResult<Parsed> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ApiError::new(
            Code::ManifestTooLarge,
            format!(
                "manifest is {} bytes; the limit is {MAX_MANIFEST_BYTES}",
                bytes.len()
            ),
        ));
    }
    let digest = match digest_ref {
        Some(d) => {
            let actual = Digest::of(d.algorithm(), bytes);
            if &actual != d {
                return Err(ApiError::new(
                    Code::DigestInvalid,
                    format!("manifest digest is {actual}, not {d}"),
                ));
            }
            actual
        }
        None => Digest::sha256_of(bytes),
    };
    let json: Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    super::strict_json::check_unique_keys(bytes)
        .map_err(|e| invalid(format!("manifest names a key twice: {e}")))?;
    let obj = json
        .as_object()
        .ok_or_else(|| invalid("manifest is not a JSON object"))?;
    if obj.get("schemaVersion").and_then(Value::as_i64) != Some(2) {
        return Err(invalid(
            "schemaVersion must be 2 (schema 1 manifests are not supported)",
        ));
    }
    let declared = obj.get("mediaType").and_then(Value::as_str);
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| !c.is_empty());
    let media_type = match (declared, content_type) {
        (Some(d), Some(c)) if d != c => {
            return Err(invalid(format!(
                "Content-Type {c:?} does not match the manifest's mediaType {d:?}"
            )))
        }
        (Some(d), _) => d.to_string(),
        (None, Some(c)) => c.to_string(),
        (None, None) if obj.contains_key("manifests") => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };
    if !SUPPORTED.contains(&media_type.as_str()) {
        return Err(ApiError::new(
            Code::ManifestInvalid,
            format!(
                "unsupported manifest media type {media_type:?}; supported: {}",
                SUPPORTED.join(", ")
            ),
        ));
    }

    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    let mut blob_sizes = Vec::new();
    let mut child_sizes = Vec::new();
    let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
    let mut artifact_type = obj
        .get("artifactType")
        .and_then(Value::as_str)
        .map(String::from);
    if is_index {
        let list = obj
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("an index needs a \"manifests\" array"))?;
        for (i, m) in list.iter().enumerate() {
            let (d, size) = descriptor(m, &format!("manifests[{i}]"))?;
            manifests.push(d.to_string());
            child_sizes.push((d.to_string(), size));
        }
    } else {
        let config = obj
            .get("config")
            .filter(|c| c.is_object())
            .ok_or_else(|| invalid("an image manifest needs a \"config\" descriptor"))?;
        let (d, size) = descriptor(config, "config")?;
        blobs.push(d.to_string());
        blob_sizes.push((d.to_string(), size));
        if artifact_type.is_none() {
            artifact_type = config
                .get("mediaType")
                .and_then(Value::as_str)
                .map(String::from);
        }
        let layers = obj
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("an image manifest needs a \"layers\" array"))?;
        for (i, l) in layers.iter().enumerate() {
            let (d, size) = descriptor(l, &format!("layers[{i}]"))?;
            let mt = l.get("mediaType").and_then(Value::as_str).unwrap_or("");
            if !is_foreign_layer(mt) {
                blobs.push(d.to_string());
                blob_sizes.push((d.to_string(), size));
            }
        }
    }
    blobs.sort();
    blobs.dedup();
    manifests.sort();
    manifests.dedup();
    let subject = match obj.get("subject") {
        None | Some(Value::Null) => None,
        Some(s) => Some(descriptor(s, "subject")?.0.to_string()),
    };
    // Only a referrer's descriptor (`subject` set) shows its annotations; the manifest's own
    // bytes hold them for everything else, so they are not kept twice.
    let annotations = obj
        .get("annotations")
        .filter(|a| a.is_object() && subject.is_some())
        .map(|a| a.to_string());
    Ok(Parsed {
        record: ManifestRecord {
            digest: digest.to_string(),
            media_type,
            bytes: bytes.to_vec(),
            blobs,
            manifests,
            subject,
            artifact_type,
            annotations,
            pushed_at: now,
        },
        blob_sizes,
        child_sizes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> String {
        Digest::sha256_of(s.as_bytes()).to_string()
    }

    fn image(extra: Value) -> Value {
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d("c"), "size": 1},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d("l"), "size": 1}],
        });
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    }

    fn check(body: &Value, ct: Option<&str>, expected: Result<(&[String], Option<&str>), Code>) {
        let bytes = serde_json::to_vec(body).unwrap();
        match (parse(&bytes, ct, None, 0), expected) {
            (Ok(p), Ok((blobs, artifact))) => {
                assert_eq!(p.record.blobs, blobs);
                assert_eq!(p.record.artifact_type.as_deref(), artifact);
            }
            (Err(e), Err(code)) => assert_eq!(e.code, code, "{}", e.message),
            (Ok(_), Err(code)) => panic!("accepted, wanted {code:?}: {body}"),
            (Err(e), Ok(_)) => panic!("rejected: {}", e.message),
        }
    }

    #[test]
    fn manifests() {
        let mut both = vec![d("c"), d("l")];
        both.sort();
        let cfg = Some("application/vnd.oci.image.config.v1+json");
        check(&image(json!({})), Some(OCI_MANIFEST), Ok((&both, cfg)));
        check(&image(json!({})), None, Ok((&both, cfg)));
        check(
            &image(json!({})),
            Some(DOCKER_MANIFEST),
            Err(Code::ManifestInvalid),
        );
        check(
            &image(json!({"mediaType": "application/x-foo"})),
            None,
            Err(Code::ManifestInvalid),
        );
        check(
            &image(json!({"schemaVersion": 1})),
            None,
            Err(Code::ManifestInvalid),
        );
        check(
            &image(json!({"layers": "x"})),
            None,
            Err(Code::ManifestInvalid),
        );
        check(
            &image(json!({"config": {"digest": "sha256:nothex"}})),
            None,
            Err(Code::ManifestInvalid),
        );
        check(
            &image(json!({"artifactType": "application/x-sbom"})),
            None,
            Ok((&both, Some("application/x-sbom"))),
        );
        let foreign = json!({"layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": d("f"), "size": 1}]});
        check(&image(foreign), None, Ok((&[d("c")], cfg)));
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"digest": d("m"), "size": 1, "mediaType": OCI_MANIFEST}]});
        check(&index, Some(OCI_INDEX), Ok((&[], None)));
        check(&json!([1, 2]), None, Err(Code::ManifestInvalid));
    }

    #[test]
    fn bad_bytes_and_digests() {
        assert_eq!(
            parse(b"{not json", None, None, 0).err().unwrap().code,
            Code::ManifestInvalid
        );
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert_eq!(
            parse(&big, None, None, 0).err().unwrap().code,
            Code::ManifestTooLarge
        );
        let bytes = serde_json::to_vec(&image(json!({}))).unwrap();
        let wrong = Digest::sha256_of(b"other");
        assert_eq!(
            parse(&bytes, None, Some(&wrong), 0).err().unwrap().code,
            Code::DigestInvalid
        );
        let right = Digest::of(shoal_origin::Algorithm::Sha512, &bytes);
        assert_eq!(
            parse(&bytes, None, Some(&right), 0).unwrap().record.digest,
            right.to_string()
        );
    }

    /// Regression: a manifest naming `layers` twice was checked on the last copy while the
    /// stored bytes kept the first.
    #[test]
    fn repeated_keys_are_refused() {
        let l = d("l");
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"{c}","size":1}},"layers":[{{"mediaType":"x","digest":"{l}","size":1}}],"layers":[]}}"#,
            c = d("c"),
        );
        let e = parse(doc.as_bytes(), None, None, 0).err().unwrap();
        assert_eq!(e.code, Code::ManifestInvalid);
        assert!(e.message.contains("layers"), "{}", e.message);
    }

    /// Regression: negative, fractional, huge and missing sizes were accepted.
    #[test]
    fn descriptor_sizes_are_whole_int64_numbers() {
        for size in [
            json!(-1),
            json!(1.5),
            json!(9223372036854775808u64),
            json!("1"),
            Value::Null,
        ] {
            let layer = json!({"layers": [{"mediaType": "x", "digest": d("l"), "size": size}]});
            check(&image(layer), None, Err(Code::ManifestInvalid));
            let config = json!({"config": {"mediaType": "x", "digest": d("c"), "size": size}});
            check(&image(config), None, Err(Code::ManifestInvalid));
            let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"digest": d("m"), "size": size, "mediaType": OCI_MANIFEST}]});
            check(&index, None, Err(Code::ManifestInvalid));
        }
        let max = json!({"layers": [{"mediaType": "x", "digest": d("l"), "size": 9223372036854775807u64}]});
        let p = parse(&serde_json::to_vec(&image(max)).unwrap(), None, None, 0).unwrap();
        assert!(p.blob_sizes.contains(&(d("l"), 9223372036854775807)));
    }

    #[test]
    fn subject_is_recorded() {
        let subject = json!({"subject": {"mediaType": OCI_MANIFEST, "digest": d("s"), "size": 3}});
        let bytes = serde_json::to_vec(&image(subject)).unwrap();
        assert_eq!(
            parse(&bytes, None, None, 0).unwrap().record.subject,
            Some(d("s"))
        );
    }
}
