//! The request and reply types handlers work with, free of Pingora types so that
//! `registry` and `api` can be tested and read without knowing the HTTP server.

use std::borrow::Cow;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use shoal_origin::ByteChunks;

use crate::errors::{ApiError, ApiResult};

/// A request head, already read off the connection.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// The path without the query string, as sent.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    /// This request's id (`X-Request-Id`), carried into the Raft commands it proposes.
    pub id: String,
    /// The client's address as the limits count it (behind trusted proxies, the client
    /// they forwarded for); `None` when unknown (tests, Unix sockets).
    pub client: Option<std::net::IpAddr>,
    /// The TCP peer is a trusted proxy: its forwarding headers may be believed.
    pub via_trusted_proxy: bool,
    /// A console session token: set only by `ui` (from its cookie) on the requests it
    /// hands to the management API; the gate then acts for the session's subject.
    pub session: Option<String>,
}

impl Request {
    pub fn new(method: Method, path_and_query: &str, headers: HeaderMap) -> Request {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Request {
            method,
            path: path.to_string(),
            query: form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
            headers,
            id: String::new(),
            client: None,
            via_trusted_proxy: false,
            session: None,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }
}

/// The request body, read piece by piece; an error means the client sent less than it
/// announced or the connection broke.
#[async_trait]
pub trait RequestBody: Send {
    async fn next(&mut self) -> ApiResult<Option<Bytes>>;
}

/// A request body already held in memory (tests, empty bodies).
pub struct BytesBody(pub Option<Bytes>);

#[async_trait]
impl RequestBody for BytesBody {
    async fn next(&mut self) -> ApiResult<Option<Bytes>> {
        Ok(self.0.take().filter(|b| !b.is_empty()))
    }
}

/// Reads a whole body of at most `limit` bytes; `Ok(None)` if it is longer.
pub async fn read_limited(body: &mut dyn RequestBody, limit: usize) -> ApiResult<Option<Vec<u8>>> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await? {
        if out.len() + chunk.len() > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

pub enum Body {
    Empty,
    Bytes(Bytes),
    /// `len` bytes read from `reader`, streamed in large writes.
    /// Exactly `len` bytes in chunks; a stream that errors or ends early drops the connection.
    Stream {
        len: u64,
        chunks: ByteChunks,
        /// The same bytes as a local file range, for a zero-copy send.
        file: Option<LocalFile>,
    },
    /// The answer to a HEAD: announces `Content-Length` but sends nothing.
    HeadOnly(u64),
}

/// `chunks` of a `Body::Stream` as a range of a local file, starting at `offset`.
pub struct LocalFile {
    pub file: std::fs::File,
    pub offset: u64,
    /// `None`: the file holds the whole range now. Else the file is still being written (a
    /// cache fill's) and this says when it holds every byte: a sender may switch to it then.
    pub whole: Option<shoal_origin::Whole>,
}

/// Told how many body bytes went out, once a reply was sent whole.
pub type SentHook = Box<dyn FnOnce(u64) + Send>;

pub struct Reply {
    pub status: StatusCode,
    /// Fixed values (security headers, content types) are borrowed, not allocated per reply.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    pub body: Body,
    /// Run after the whole reply was handed to the connection (never for one cut off), so
    /// what it counts was delivered, not merely announced.
    pub when_sent: Option<SentHook>,
}

impl Reply {
    pub fn new(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Empty,
            when_sent: None,
        }
    }

    /// Adds `hook` to what runs once the reply went out whole (after any added before).
    pub fn when_sent(mut self, hook: impl FnOnce(u64) + Send + 'static) -> Reply {
        self.when_sent = Some(match self.when_sent.take() {
            None => Box::new(hook),
            Some(first) => Box::new(move |bytes| {
                first(bytes);
                hook(bytes)
            }),
        });
        self
    }

    /// Whether the reply already sets header `name` (any case).
    pub fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    pub fn header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Body) -> Reply {
        self.body = body;
        self
    }

    /// A JSON answer: a `Value`, or a typed view that serialises to one.
    pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Reply {
        let bytes = serde_json::to_vec(value).expect("views serialise to JSON");
        Reply::new(status)
            .header("Content-Type", "application/json")
            .body(Body::Bytes(bytes.into()))
    }

    pub fn error(err: &ApiError) -> Reply {
        let mut r = Reply::new(err.status())
            .header("Content-Type", "application/json")
            .body(Body::Bytes(err.body().into()));
        r.headers
            .extend(err.headers.iter().map(|(k, v)| (*k, Cow::Owned(v.clone()))));
        r
    }

    pub fn content_length(&self) -> u64 {
        match &self.body {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::Stream { len, .. } | Body::HeadOnly(len) => *len,
        }
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply::error(&e)
    }
}

pub fn status_only(status: StatusCode) -> Reply {
    Reply::new(status)
}
