//! Who is looking at the console: the session cookie, the CSRF tokens its forms carry, and
//! the cookies the console sets.
//!
//! - `shoal_session`: the session token (`auth::session`), `HttpOnly`, `SameSite=Strict`,
//!   `Path=/ui`, `Secure` when the client reached us over TLS.
//! - Every form of a signed-in visitor carries `csrf`, a digest of the session token: a
//!   page of another site can neither read the cookie nor compute it, and the server checks
//!   it on every POST before anything else (`Visitor::check_csrf`).
//! - The sign-in form, shown before any session exists, carries a random `shoal_csrf`
//!   cookie's value instead (a double submit), so no other site can sign a browser in as
//!   someone else.

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::token::Claims;
use crate::auth::Caller;
use crate::errors::{ApiError, ApiResult, Code};
use crate::wire::Request;

pub const SESSION_COOKIE: &str = "shoal_session";
pub const SIGN_IN_COOKIE: &str = "shoal_csrf";

/// The value of cookie `name` in `req`, if sent.
pub fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Whether the client reached us over TLS (directly, or as a trusted proxy says).
pub fn over_tls(req: &Request) -> bool {
    req.header("x-forwarded-proto") == Some("https")
}

/// A `Set-Cookie` value for the console's cookie `name`; `max_age` 0 deletes it.
pub fn set_cookie(req: &Request, name: &str, value: &str, max_age: i64) -> String {
    let secure = if over_tls(req) { "; Secure" } else { "" };
    format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// The CSRF token of a session: a digest of its token, which only its holder knows.
pub fn csrf_of(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"shoal console csrf\0");
    h.update(session_token.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Whether two tokens are equal, in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The person behind a console request.
pub struct Visitor {
    pub caller: Caller,
    /// The session, when signed in.
    pub session: Option<Session>,
    /// A cookie that named a session no longer valid (expired, signed out): the visitor is
    /// anonymous and is told why.
    pub session_ended: bool,
}

pub struct Session {
    pub token: String,
    pub claims: Claims,
    pub csrf: String,
}

impl Visitor {
    pub fn signed_in(&self) -> bool {
        self.session.is_some()
    }

    pub fn csrf(&self) -> &str {
        self.session.as_ref().map_or("", |s| s.csrf.as_str())
    }

    /// 403 unless the form's `csrf` field is this session's token.
    pub fn check_csrf(&self, form: &[(String, String)]) -> ApiResult<()> {
        let sent = field(form, "csrf").unwrap_or("");
        match &self.session {
            Some(s) if same_token(sent, &s.csrf) => Ok(()),
            Some(_) => Err(ApiError::new(
                Code::Denied,
                "the form's CSRF token is missing or wrong; reload the page and try again",
            )),
            None => Err(ApiError::new(Code::Unauthorized, "sign in to do this")),
        }
    }
}

/// The value of form field `name`.
pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cookies: &[&str]) -> Request {
        let mut headers = http::HeaderMap::new();
        for c in cookies {
            headers.append("cookie", c.parse().unwrap());
        }
        Request::new(http::Method::GET, "/ui/", headers)
    }

    #[test]
    fn cookies_are_found_among_others() {
        let r = req(&["a=1; shoal_session=tok; b=2", "c=3"]);
        assert_eq!(cookie(&r, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&r, "c"), Some("3"));
        assert_eq!(cookie(&r, "shoal"), None);
        assert_eq!(cookie(&req(&["shoal_session="]), SESSION_COOKIE), None);
    }

    #[test]
    fn cookies_are_strict_http_only_and_secure_over_tls() {
        let plain = req(&[]);
        let v = set_cookie(&plain, SESSION_COOKIE, "t", 60);
        assert_eq!(
            v,
            "shoal_session=t; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        let mut tls = req(&[]);
        tls.headers
            .insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(set_cookie(&tls, SESSION_COOKIE, "t", 60).ends_with("; Secure"));
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_exactly() {
        let a = csrf_of("session-a");
        assert_eq!(a.len(), 32);
        assert_ne!(a, csrf_of("session-b"));
        assert!(same_token(&a, &csrf_of("session-a")));
        assert!(!same_token(&a, &a[..31]));
        assert!(!same_token(&a, ""));
    }
}
