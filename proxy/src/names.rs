//! Validated names: a value of these types cannot hold an invalid or dangerous name, so code
//! past the parser never re-checks them (and never builds a path or key from raw input).
//!
//! Grammar (OCI distribution spec, plus the namespace rules of the product):
//! - path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
//! - repository: components joined by `/`, at most `MAX_REPO_LEN` bytes; the first
//!   component is the namespace
//! - namespace: one component of 1–255 bytes (lowercase ASCII, no spaces)
//! - tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
//! - slug (organisation, project, principal, federated identity): one component of 1–63
//!   bytes, so it never holds `/`, `:` or `\0` and can sit inside a key or a token subject

use std::fmt;

pub const MAX_NAMESPACE_LEN: usize = 255;
pub const MAX_REPO_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("namespace names are 1 to 255 characters of lowercase letters and digits, separated by single '.', '_' or '__', or runs of '-'; got {0:?}")]
    Namespace(String),
    #[error("repository names are lowercase path components ([a-z0-9] separated by '.', '_', '__' or '-') joined by '/', at most {MAX_REPO_LEN} characters; got {0:?}")]
    Repository(String),
    #[error("tags match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}; got {0:?}")]
    Tag(String),
    #[error("{0} names are 1 to 63 characters of lowercase letters and digits, separated by single '.', '_' or '__', or runs of '-'; got {1:?}")]
    Slug(&'static str, String),
}

fn shown(s: &str) -> String {
    s.chars().take(300).collect()
}

/// Checks one path component against `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceName(String);

impl NamespaceName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.len() > MAX_NAMESPACE_LEN || !is_component(s) {
            return Err(NameError::Namespace(shown(s)));
        }
        Ok(NamespaceName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = s.len() <= MAX_REPO_LEN
            && s.split('/').all(is_component)
            && s.split('/')
                .next()
                .is_some_and(|ns| ns.len() <= MAX_NAMESPACE_LEN);
        if !ok {
            return Err(NameError::Repository(shown(s)));
        }
        Ok(RepoName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn namespace(&self) -> NamespaceName {
        NamespaceName(self.0.split('/').next().unwrap_or(&self.0).to_string())
    }
}

/// The name of an organisation, project, principal or federated identity.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug(String);

pub const MAX_SLUG_LEN: usize = 63;

impl Slug {
    /// `what` names the kind of thing in the error ("organisation", "project", …).
    pub fn parse(what: &'static str, s: &str) -> Result<Self, NameError> {
        if s.len() > MAX_SLUG_LEN || !is_component(s) {
            return Err(NameError::Slug(what, shown(s)));
        }
        Ok(Slug(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        let first = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let rest = |c: u8| first(c) || c == b'.' || c == b'-';
        let ok = !b.is_empty() && b.len() <= 128 && first(b[0]) && b[1..].iter().all(|&c| rest(c));
        if !ok {
            return Err(NameError::Tag(shown(s)));
        }
        Ok(Tag(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! show_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
    )*};
}
show_as_str!(NamespaceName, RepoName, Tag, Slug);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, namespace: bool, repo: bool, tag: bool) {
        assert_eq!(
            NamespaceName::parse(input).is_ok(),
            namespace,
            "namespace {input:?}"
        );
        assert_eq!(RepoName::parse(input).is_ok(), repo, "repository {input:?}");
        assert_eq!(Tag::parse(input).is_ok(), tag, "tag {input:?}");
        let slug = namespace && input.len() <= MAX_SLUG_LEN;
        assert_eq!(Slug::parse("x", input).is_ok(), slug, "slug {input:?}");
    }

    #[test]
    fn name_rules() {
        check("acme", true, true, true);
        check("acme-platform", true, true, true);
        check("a.b_c__d---e", true, true, true);
        check("acme/api", false, true, false);
        check("acme/team/api-server", false, true, false);
        check("Acme", false, false, true);
        check("acme/API", false, false, false);
        check("../etc", false, false, false);
        check("acme/../x", false, false, false);
        check("acme//x", false, false, false);
        check("/acme", false, false, false);
        check("acme/", false, false, false);
        check("", false, false, false);
        check("a b", false, false, false);
        check("a..b", false, false, true);
        check("a___b", false, false, true);
        check("-a", false, false, false);
        check("a-", false, false, true);
        check("_a", false, false, true);
        check("v1.2.0", true, true, true);
        check(&"a".repeat(63), true, true, true);
        check(&"a".repeat(64), true, true, true);
        check(&"a".repeat(255), true, true, false);
        check(&"a".repeat(256), false, false, false);
        check(
            &format!("{}/{}", "a".repeat(255), "b".repeat(256)),
            false,
            true,
            false,
        );
        check(&format!("a/{}", "b".repeat(511)), false, false, false);
        check("naïve", false, false, false);
    }

    #[test]
    fn namespace_of_repository() {
        let r = RepoName::parse("acme/team/api").unwrap();
        assert_eq!(r.namespace().as_str(), "acme");
    }
}
