//! Maps a `/v2/...` path to a `Route`, validating the repository name on the way.
//!
//! Repository names may contain `/` and even segments named `blobs` or `manifests`, so the
//! path is read from the right: the API suffix is matched first and everything before it is
//! the name. Each segment is percent-decoded before validation, so an encoded `..` is still
//! refused by the name rules.

use percent_encoding::percent_decode_str;

use crate::errors::{ApiError, ApiResult, Code};
use crate::names::RepoName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    TagsList(RepoName),
    Manifest(RepoName, String),
    Blob(RepoName, String),
    UploadStart(RepoName),
    Upload(RepoName, String),
    Referrers(RepoName, String),
}

pub fn parse(path: &str) -> ApiResult<Route> {
    let not_found = || {
        ApiError::new(
            Code::NotFound,
            format!("no such API endpoint: {}", shown(path)),
        )
    };
    let rest = path.strip_prefix("/v2").ok_or_else(not_found)?;
    if rest.is_empty() || rest == "/" {
        return Ok(Route::Base);
    }
    let rest = rest.strip_prefix('/').ok_or_else(not_found)?;
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let segs: Vec<String> = rest
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let n = segs.len();
    let at = |i: usize| segs.get(i).map(String::as_str);
    let name = |upto: usize| -> ApiResult<RepoName> {
        if upto == 0 {
            return Err(not_found());
        }
        Ok(RepoName::parse(&segs[..upto].join("/"))?)
    };
    if n >= 3 && at(n - 3) == Some("blobs") && at(n - 2) == Some("uploads") {
        let id = &segs[n - 1];
        return if id.is_empty() {
            Ok(Route::UploadStart(name(n - 3)?))
        } else {
            Ok(Route::Upload(name(n - 3)?, id.clone()))
        };
    }
    if n >= 2 && at(n - 2) == Some("blobs") && at(n - 1) == Some("uploads") {
        return Ok(Route::UploadStart(name(n - 2)?));
    }
    if n >= 2 && at(n - 2) == Some("tags") && at(n - 1) == Some("list") {
        return Ok(Route::TagsList(name(n - 2)?));
    }
    if n >= 2 && !segs[n - 1].is_empty() {
        let last = segs[n - 1].clone();
        match at(n - 2) {
            Some("manifests") => return Ok(Route::Manifest(name(n - 2)?, last)),
            Some("blobs") => return Ok(Route::Blob(name(n - 2)?, last)),
            Some("referrers") => return Ok(Route::Referrers(name(n - 2)?, last)),
            _ => {}
        }
    }
    Err(not_found())
}

fn shown(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    fn check(path: &str, expected: Result<Route, Code>) {
        match (parse(path), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{path}"),
            (Err(got), Err(want)) => assert_eq!(got.code, want, "{path}: {}", got.message),
            (got, want) => panic!("{path}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn routes() {
        check("/v2/", Ok(Route::Base));
        check("/v2", Ok(Route::Base));
        check("/v2/_catalog", Ok(Route::Catalog));
        check(
            "/v2/acme/api/tags/list",
            Ok(Route::TagsList(repo("acme/api"))),
        );
        check(
            "/v2/acme/api/manifests/v1",
            Ok(Route::Manifest(repo("acme/api"), "v1".into())),
        );
        check(
            "/v2/acme/blobs/manifests/latest",
            Ok(Route::Manifest(repo("acme/blobs"), "latest".into())),
        );
        check(
            "/v2/acme/a/b/c/blobs/sha256:ab",
            Ok(Route::Blob(repo("acme/a/b/c"), "sha256:ab".into())),
        );
        check(
            "/v2/acme/x/blobs/uploads/",
            Ok(Route::UploadStart(repo("acme/x"))),
        );
        check(
            "/v2/acme/x/blobs/uploads",
            Ok(Route::UploadStart(repo("acme/x"))),
        );
        check(
            "/v2/acme/x/blobs/uploads/abc-def",
            Ok(Route::Upload(repo("acme/x"), "abc-def".into())),
        );
        check(
            "/v2/acme/x/referrers/sha256:00",
            Ok(Route::Referrers(repo("acme/x"), "sha256:00".into())),
        );
        check("/v2/../etc/manifests/x", Err(Code::NameInvalid));
        check("/v2/acme/%2e%2e/manifests/x", Err(Code::NameInvalid));
        check("/v2/Acme/x/manifests/x", Err(Code::NameInvalid));
        check("/v2/acme//x/manifests/x", Err(Code::NameInvalid));
        check("/v2/manifests/x", Err(Code::NotFound));
        check("/v2/acme/x/unknown/y", Err(Code::NotFound));
        check("/v2/acme/x/manifests/", Err(Code::NotFound));
        check("/v3/acme", Err(Code::NotFound));
    }
}
