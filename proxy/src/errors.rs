//! Every error a client can see, and the one table that maps it to an OCI error code and an
//! HTTP status (distribution's `errcode/register.go`). Handlers return `ApiError` built from a
//! `Code`; they never pick a status themselves. Conversions from the origin's and the
//! metadata's errors live here too, so the mapping is read in one place.

use http::StatusCode;
use serde_json::{json, Value};

use crate::names::NameError;

/// OCI error codes (distribution spec §error-codes) plus the few extra ones Distribution uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    ManifestTooLarge,
    NameInvalid,
    NameUnknown,
    NamespaceExists,
    /// A management object with that name or id exists already.
    Conflict,
    SizeInvalid,
    RangeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    MethodNotAllowed,
    TooManyRequests,
    Unavailable,
    NotFound,
    BadRequest,
    TagInvalid,
    PaginationInvalid,
    Internal,
}

/// The table: code → (wire name, HTTP status).
const TABLE: &[(Code, &str, StatusCode)] = &[
    (Code::BlobUnknown, "BLOB_UNKNOWN", StatusCode::NOT_FOUND),
    (
        Code::BlobUploadInvalid,
        "BLOB_UPLOAD_INVALID",
        StatusCode::BAD_REQUEST,
    ),
    (
        Code::BlobUploadUnknown,
        "BLOB_UPLOAD_UNKNOWN",
        StatusCode::NOT_FOUND,
    ),
    (
        Code::DigestInvalid,
        "DIGEST_INVALID",
        StatusCode::BAD_REQUEST,
    ),
    (
        Code::ManifestBlobUnknown,
        "MANIFEST_BLOB_UNKNOWN",
        StatusCode::BAD_REQUEST,
    ),
    (
        Code::ManifestInvalid,
        "MANIFEST_INVALID",
        StatusCode::BAD_REQUEST,
    ),
    (
        Code::ManifestUnknown,
        "MANIFEST_UNKNOWN",
        StatusCode::NOT_FOUND,
    ),
    (
        Code::ManifestTooLarge,
        "SIZE_INVALID",
        StatusCode::PAYLOAD_TOO_LARGE,
    ),
    (Code::NameInvalid, "NAME_INVALID", StatusCode::BAD_REQUEST),
    (Code::NameUnknown, "NAME_UNKNOWN", StatusCode::NOT_FOUND),
    (
        Code::NamespaceExists,
        "NAMESPACE_EXISTS",
        StatusCode::CONFLICT,
    ),
    (Code::Conflict, "CONFLICT", StatusCode::CONFLICT),
    (Code::SizeInvalid, "SIZE_INVALID", StatusCode::BAD_REQUEST),
    (
        Code::RangeInvalid,
        "RANGE_INVALID",
        StatusCode::RANGE_NOT_SATISFIABLE,
    ),
    (Code::Unauthorized, "UNAUTHORIZED", StatusCode::UNAUTHORIZED),
    (Code::Denied, "DENIED", StatusCode::FORBIDDEN),
    (
        Code::Unsupported,
        "UNSUPPORTED",
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    ),
    (
        Code::MethodNotAllowed,
        "UNSUPPORTED",
        StatusCode::METHOD_NOT_ALLOWED,
    ),
    (
        Code::TooManyRequests,
        "TOOMANYREQUESTS",
        StatusCode::TOO_MANY_REQUESTS,
    ),
    (
        Code::Unavailable,
        "UNAVAILABLE",
        StatusCode::SERVICE_UNAVAILABLE,
    ),
    (Code::NotFound, "NOT_FOUND", StatusCode::NOT_FOUND),
    (Code::BadRequest, "BAD_REQUEST", StatusCode::BAD_REQUEST),
    (Code::TagInvalid, "TAG_INVALID", StatusCode::BAD_REQUEST),
    (
        Code::PaginationInvalid,
        "PAGINATION_NUMBER_INVALID",
        StatusCode::BAD_REQUEST,
    ),
    (Code::Internal, "UNKNOWN", StatusCode::INTERNAL_SERVER_ERROR),
];

impl Code {
    fn entry(self) -> (&'static str, StatusCode) {
        TABLE
            .iter()
            .find(|(c, _, _)| *c == self)
            .map(|(_, name, status)| (*name, *status))
            .expect("every code is in the table")
    }

    pub fn name(self) -> &'static str {
        self.entry().0
    }

    pub fn status(self) -> StatusCode {
        self.entry().1
    }
}

/// An error answered to a client as an OCI error body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub detail: Value,
    /// Extra response headers (e.g. `Range` on a 416 for an upload).
    pub headers: Vec<(&'static str, String)>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            detail: Value::Null,
            headers: Vec::new(),
        }
    }

    pub fn detail(mut self, detail: Value) -> ApiError {
        self.detail = detail;
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// `{"errors":[{"code","message","detail"}]}`
    pub fn body(&self) -> Vec<u8> {
        let body = json!({"errors": [{
            "code": self.code.name(),
            "message": self.message,
            "detail": self.detail,
        }]});
        serde_json::to_vec(&body).expect("error bodies serialise")
    }

    pub fn internal(context: &str, err: impl std::fmt::Display) -> ApiError {
        tracing::error!(%err, "{context}");
        ApiError::new(Code::Internal, format!("internal error: {context}"))
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> ApiError {
        ApiError::new(Code::NameInvalid, e.to_string())
    }
}

impl From<shoal_origin::Error> for ApiError {
    fn from(e: shoal_origin::Error) -> ApiError {
        use shoal_origin::Error as E;
        let msg = e.to_string();
        match e {
            E::InvalidDigest(_) => ApiError::new(Code::DigestInvalid, msg),
            E::UnsupportedDigest(_) => ApiError::new(Code::DigestInvalid, msg),
            E::BlobNotFound(_) => ApiError::new(Code::BlobUnknown, msg),
            E::UploadNotFound(_) => ApiError::new(Code::BlobUploadUnknown, msg),
            E::UploadOffset { expected, .. } => ApiError::new(Code::RangeInvalid, msg)
                .header("Range", format!("0-{}", expected.saturating_sub(1))),
            E::UploadBusy => ApiError::new(Code::BlobUploadInvalid, msg),
            E::DigestMismatch { expected, actual } => ApiError::new(Code::DigestInvalid, msg)
                .detail(json!({"expected": expected.to_string(), "actual": actual.to_string()})),
            E::RangeNotSatisfiable { size } => ApiError::new(Code::RangeInvalid, msg)
                .header("Content-Range", format!("bytes */{size}")),
            E::Io(err) => ApiError::internal("origin storage failed", err),
            E::Unavailable(m) => {
                tracing::warn!(reason = %m, "origin unavailable");
                ApiError::new(
                    Code::Unavailable,
                    format!("the origin store is unavailable: {m}"),
                )
            }
        }
    }
}

impl From<shoal_raft::Rejection> for ApiError {
    fn from(r: shoal_raft::Rejection) -> ApiError {
        use shoal_raft::Rejection as R;
        let msg = r.to_string();
        match r {
            R::NamespaceExists(_) => ApiError::new(Code::NamespaceExists, msg),
            R::NamespaceUnknown(ns) => ApiError::new(
                Code::NameUnknown,
                format!("namespace {ns:?} does not exist; create it first with `shoal namespace create {ns}`"),
            ),
            R::BlobUnknown(d) => ApiError::new(Code::BlobUnknown, msg).detail(json!({"digest": d})),
            R::ManifestUnknown(d) => ApiError::new(Code::ManifestUnknown, msg).detail(json!({"digest": d})),
            R::ReferencedBlobUnknown(d) | R::ReferencedManifestUnknown(d) => {
                ApiError::new(Code::ManifestBlobUnknown, msg).detail(json!({"digest": d}))
            }
            R::TagUnknown(_) => ApiError::new(Code::ManifestUnknown, msg),
            R::RepositoryUnknown(_) => ApiError::new(Code::NameUnknown, msg),
            R::AlreadyInitialised
            | R::PrincipalExists(_)
            | R::CredentialExists(_)
            | R::CredentialRevoked(_)
            | R::OrganisationExists(_)
            | R::ProjectExists(_)
            | R::ProjectNotEmpty(_)
            | R::OrganisationNotEmpty(_)
            | R::HomeOrganisation(_)
            | R::FederationExists(_)
            | R::UpstreamExists(_)
            | R::LastOwner(_) => ApiError::new(Code::Conflict, msg),
            R::PrincipalUnknown(_)
            | R::CredentialUnknown(_)
            | R::ScopeUnknown(_)
            | R::BindingUnknown
            | R::OrganisationUnknown(_)
            | R::ProjectUnknown(_)
            | R::FederationUnknown(_)
            | R::UpstreamUnknown(_) => ApiError::new(Code::NotFound, msg),
            R::NotAMirror(_) => ApiError::new(Code::BadRequest, msg),
            R::NotAServiceAccount(_) => ApiError::new(Code::BadRequest, msg),
            R::TooManyUploads(_) => ApiError::new(Code::TooManyRequests, msg),
            R::ImmutableTag { tag, rule } => {
                ApiError::new(Code::Denied, msg).detail(json!({"tag": tag, "rule": rule}))
            }
            // The bytes are being deleted this moment: pushing them again shortly succeeds.
            R::BlobBeingCollected(d) => ApiError::new(Code::Unavailable, msg)
                .detail(json!({"digest": d}))
                .header("Retry-After", "5"),
        }
    }
}

/// Commits `cmd` through Raft as proposed by `by` in request `req`, and turns a rejection
/// into the client's error.
pub async fn commit(
    meta: &shoal_raft::Metadata,
    by: &crate::auth::Caller,
    req: &crate::wire::Request,
    cmd: shoal_raft::Command,
) -> ApiResult<()> {
    let proposal =
        shoal_raft::Proposal::new(by.actor(), req.id.clone(), cmd).from_client(req.client);
    match meta.write(proposal).await? {
        shoal_raft::Outcome::Done => Ok(()),
        shoal_raft::Outcome::Rejected(r) => Err(r.into()),
    }
}

impl From<shoal_raft::Error> for ApiError {
    fn from(e: shoal_raft::Error) -> ApiError {
        if let shoal_raft::Error::Membership(m) = &e {
            return ApiError::new(Code::BadRequest, m.clone());
        }
        if e.retryable() {
            tracing::warn!(err = %e, "metadata write failed");
            ApiError::new(Code::Unavailable, format!("metadata is unavailable: {e}"))
        } else {
            ApiError::internal("metadata failed", e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_row() {
        for (code, _, _) in TABLE {
            assert_eq!(
                TABLE.iter().filter(|(c, _, _)| c == code).count(),
                1,
                "{code:?}"
            );
        }
    }

    #[test]
    fn error_body_shape() {
        let e = ApiError::new(Code::BlobUnknown, "gone");
        let v: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
        assert_eq!(v["errors"][0]["message"], "gone");
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
    }
}
