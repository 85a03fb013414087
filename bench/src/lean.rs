//! A bare HTTP/1.1 connection for request-rate scenarios: one TCP connection, one request at
//! a time, headers built once. On this 2-core machine the load generator shares the CPU with
//! the server it measures; reqwest's pool, redirect and middleware layers cost a client more
//! CPU per small request than a fast registry spends answering it, so `manifest-rps`
//! through reqwest measured the client (~18k requests/s against a server that answers
//! ~30k/s to wrk). This keeps the client's share small and equal for every target.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{handshake, SendRequest};
use hyper::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, HOST};
use hyper_util::rt::TokioIo;

pub struct Connection {
    sender: SendRequest<Empty<Bytes>>,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Connection {
    /// Connects to the origin of `url` for GETs of its path, sending `accept` and
    /// `authorization` with every request.
    pub async fn open(
        url: &str,
        accept: &str,
        authorization: Option<&str>,
    ) -> anyhow::Result<Connection> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
        if parsed.scheme() != "http" {
            bail!("the lean client speaks plain http only, not {url}");
        }
        let host = parsed
            .host_str()
            .context("the URL names no host")?
            .to_string();
        let port = parsed.port_or_known_default().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("connecting to {host}:{port}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut path = parsed.path().to_string();
        if let Some(q) = parsed.query() {
            path = format!("{path}?{q}");
        }
        let mut headers = vec![
            (HOST, HeaderValue::from_str(&format!("{host}:{port}"))?),
            (ACCEPT, HeaderValue::from_str(accept)?),
        ];
        if let Some(a) = authorization {
            headers.push((AUTHORIZATION, HeaderValue::from_str(a)?));
        }
        Ok(Connection {
            sender,
            path,
            headers,
        })
    }

    /// One GET; the body is read whole (it is small) and its length returned. Anything but
    /// 200 is an error.
    pub async fn get(&mut self) -> anyhow::Result<usize> {
        let mut req = hyper::Request::get(self.path.as_str()).body(Empty::<Bytes>::new())?;
        for (k, v) in &self.headers {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if status != hyper::StatusCode::OK {
            bail!(
                "GET {} answered {status}: {}",
                self.path,
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body.len())
    }
}
