//! Every key prefix of the catalogue tree, named once. The layout each prefix holds is drawn
//! in the doc of the module that reads it (`catalog`, `access`, `tenancy`, `federation`,
//! `repos`, `uploads`, `mirror`, `sessions`, `audit`).
//!
//! No prefix is a prefix of another (tested below), so a scan of one never sees another's
//! keys; names never contain `\0`, so `key` joins parts unambiguously. The Raft bookkeeping
//! (`~applied`, `~membership`) starts with `~`, which no prefix does.

pub const NAMESPACE: &str = "n/";
pub const REPOSITORY: &str = "r/";
pub const REPOSITORY_VISIBILITY: &str = "v/";
pub const USAGE: &str = "q/";
pub const BLOB_LINK: &str = "b/";
pub const MANIFEST: &str = "m/";
pub const TAG: &str = "t/";
pub const REFERRER: &str = "s/";
pub const PRINCIPAL: &str = "u/";
pub const CREDENTIAL: &str = "c/";
pub const LOGIN: &str = "l/";
pub const BINDING: &str = "g/";
pub const SIGNING_KEY: &str = "k/";
pub const ORGANISATION: &str = "o/";
pub const PROJECT: &str = "p/";
pub const FEDERATION: &str = "f/";
pub const UPLOAD: &str = "x/";
pub const UPLOAD_BY_OWNER: &str = "y/";
/// Reverse indexes and lifecycle facts (drawn in `lifecycle`'s doc).
pub const LINKED_IN: &str = "d/";
pub const REFERENCED_BY: &str = "e/";
pub const TAGGED_AS: &str = "a/";
pub const TAG_TIMES: &str = "i/";
pub const MANIFEST_PULLED: &str = "w/";
pub const LEASE: &str = "h/";
pub const TOMBSTONE: &str = "j/";
pub const RETENTION: &str = "z/";
/// Mirrors of upstream registries (drawn in `mirror`'s doc).
pub const UPSTREAM: &str = "U/";
pub const PROMISED_BLOB: &str = "P/";
pub const TAG_CHECKED: &str = "F/";
/// Console sessions signed out before their expiry (drawn in `sessions`' doc).
pub const ENDED_SESSION: &str = "E/";
pub const ENDED_BY_EXPIRY: &str = "W/";
/// The audit trail of metadata changes (drawn in `audit`'s doc).
pub const AUDIT: &str = "A/";

/// Raft bookkeeping, written by the state machine in the same batch as each entry.
pub const APPLIED: &[u8] = b"~applied";
pub const MEMBERSHIP: &[u8] = b"~membership";
/// The garbage collector's state (`lifecycle::GcStatus`): a single record, not a prefix.
pub const GC_STATUS: &[u8] = b"~gc";

/// The prefixes whose keys start with a repository name: what goes with a repository (the
/// reverse link index `LINKED_IN`, keyed by digest, is removed link by link).
pub const REPOSITORY_CONTENT: [&str; 13] = [
    REPOSITORY,
    REPOSITORY_VISIBILITY,
    BLOB_LINK,
    MANIFEST,
    TAG,
    REFERRER,
    REFERENCED_BY,
    TAGGED_AS,
    TAG_TIMES,
    MANIFEST_PULLED,
    LEASE,
    PROMISED_BLOB,
    TAG_CHECKED,
];

/// Every prefix above.
pub const ALL: &[&str] = &[
    NAMESPACE,
    REPOSITORY,
    REPOSITORY_VISIBILITY,
    USAGE,
    BLOB_LINK,
    MANIFEST,
    TAG,
    REFERRER,
    PRINCIPAL,
    CREDENTIAL,
    LOGIN,
    BINDING,
    SIGNING_KEY,
    ORGANISATION,
    PROJECT,
    FEDERATION,
    UPLOAD,
    UPLOAD_BY_OWNER,
    LINKED_IN,
    REFERENCED_BY,
    TAGGED_AS,
    TAG_TIMES,
    MANIFEST_PULLED,
    LEASE,
    TOMBSTONE,
    RETENTION,
    UPSTREAM,
    PROMISED_BLOB,
    TAG_CHECKED,
    ENDED_SESSION,
    ENDED_BY_EXPIRY,
    AUDIT,
];

/// `prefix` followed by `parts` joined with `\0`.
pub fn key(prefix: &str, parts: &[&str]) -> Vec<u8> {
    let mut k = prefix.as_bytes().to_vec();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

/// `key(prefix, parts)` and a `\0`: the prefix of every key under those parts.
pub fn under(prefix: &str, parts: &[&str]) -> Vec<u8> {
    let mut k = key(prefix, parts);
    k.push(0);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_prefix_is_a_prefix_of_another() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(!a.starts_with('~'), "{a} would meet the bookkeeping keys");
            for (j, b) in ALL.iter().enumerate() {
                if i != j {
                    assert!(!b.starts_with(a), "{a} is a prefix of {b}");
                }
            }
        }
    }

    #[test]
    fn keys_join_parts_with_nul() {
        assert_eq!(key(TAG, &["acme/app", "v1"]), b"t/acme/app\0v1".to_vec());
        assert_eq!(under(TAG, &["acme/app"]), b"t/acme/app\0".to_vec());
        assert_eq!(key(NAMESPACE, &[]), b"n/".to_vec());
    }
}
