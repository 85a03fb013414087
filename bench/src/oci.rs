//! The Distribution API calls the scenarios are made of: manifest and blob GETs the way
//! containerd sends them, the three forms of blob upload, and manifest PUTs.
//!
//! Bodies are streamed both ways: uploads are generated chunk by chunk as the socket takes
//! them, downloads are counted and dropped as they arrive (hashed only under `--verify`).
//! Every transfer adds its bytes to the run's `Timeline` as they move, so throughput over
//! time shows the bytes of a long transfer where they happened rather than at its end.

use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::ValueEnum;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, Response};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::image::{Blob, Image, OCI_MANIFEST};
use crate::stats::Timeline;
use crate::target::{Access, Registry};

/// What containerd accepts when it resolves a tag.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json, */*;q=0.5";

const OCTETS: &str = "application/octet-stream";

/// How a blob is uploaded.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UploadMode {
    /// One `POST ?digest=` carrying the body. A registry that answers 202 instead (the spec
    /// lets it) gets the body again with a `PUT ?digest=` to the upload it opened.
    Monolithic,
    /// `POST`, then one `PUT ?digest=` carrying the body (what every registry takes).
    PostPut,
    /// `POST`, `PATCH` chunks of `--chunk-size` with `Content-Range`, then `PUT ?digest=`.
    Chunked,
}

/// Fails with the server's answer unless its status is one of `want`.
pub async fn expect(resp: Response, want: &[u16], what: &str) -> anyhow::Result<Response> {
    if want.contains(&resp.status().as_u16()) {
        return Ok(resp);
    }
    let status = resp.status();
    let mut text = resp.text().await.unwrap_or_default();
    text.truncate(300);
    bail!("{what}: {status} {}", text.trim());
}

/// The absolute URL of a response's `Location` (registries may answer with a path).
pub fn location(reg: &Registry, resp: &Response) -> anyhow::Result<String> {
    let loc = resp
        .headers()
        .get("location")
        .context("no Location header")?
        .to_str()?;
    Ok(if loc.starts_with('/') {
        reg.url(loc)
    } else {
        loc.to_string()
    })
}

fn with_digest(url: &str, digest: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={digest}")
}

/// A manifest as fetched.
pub struct Manifest {
    pub media_type: String,
    pub bytes: Bytes,
}

/// What a manifest points at: an image's blobs, or (an index) the manifest to follow.
#[derive(Debug, PartialEq)]
pub enum Refs {
    Image {
        config: (String, u64),
        layers: Vec<(String, u64)>,
    },
    Index {
        child: String,
    },
}

pub async fn get_manifest(reg: &Registry, repo: &str, reference: &str) -> anyhow::Result<Manifest> {
    let url = reg.url(&format!("/v2/{repo}/manifests/{reference}"));
    let resp = reg
        .send(Method::GET, &url, Access::Pull(repo), |r| {
            r.header(ACCEPT, MANIFEST_ACCEPT)
        })
        .await?;
    let resp = expect(resp, &[200], &format!("GET manifest {repo}:{reference}")).await?;
    let media_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok(Manifest {
        media_type,
        bytes: resp.bytes().await.context("manifest body")?,
    })
}

/// Whether `repo:reference` answers a manifest HEAD with 200.
pub async fn manifest_exists(reg: &Registry, repo: &str, reference: &str) -> anyhow::Result<bool> {
    let url = reg.url(&format!("/v2/{repo}/manifests/{reference}"));
    let resp = reg
        .send(Method::HEAD, &url, Access::Pull(repo), |r| {
            r.header(ACCEPT, MANIFEST_ACCEPT)
        })
        .await?;
    Ok(resp.status() == 200)
}

/// The references of a manifest; an index leads to its linux/amd64 entry (else its first),
/// as a node of that platform would choose.
pub fn refs(manifest: &[u8]) -> anyhow::Result<Refs> {
    let v: serde_json::Value = serde_json::from_slice(manifest).context("manifest JSON")?;
    let desc = |d: &serde_json::Value| -> anyhow::Result<(String, u64)> {
        Ok((
            d["digest"]
                .as_str()
                .context("descriptor without digest")?
                .to_string(),
            d["size"].as_u64().context("descriptor without size")?,
        ))
    };
    if let Some(list) = v["manifests"].as_array() {
        let amd64 = list
            .iter()
            .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64");
        let child = amd64
            .or(list.first())
            .context("an index without manifests")?;
        return Ok(Refs::Index {
            child: desc(child)?.0,
        });
    }
    let layers = v["layers"]
        .as_array()
        .context("a manifest without layers")?
        .iter()
        .map(desc)
        .collect::<anyhow::Result<_>>()?;
    Ok(Refs::Image {
        config: desc(&v["config"])?,
        layers,
    })
}

/// What a blob GET received.
pub struct Fetched {
    pub bytes: u64,
    /// `sha256:<hex>` of the bytes, when asked to hash.
    pub digest: Option<String>,
}

/// GETs a blob (or `[start, end)` of it), counting its bytes into `timeline` as they arrive.
pub async fn get_blob(
    reg: &Registry,
    repo: &str,
    digest: &str,
    range: Option<(u64, u64)>,
    timeline: &Timeline,
    hash: bool,
) -> anyhow::Result<Fetched> {
    let url = reg.url(&format!("/v2/{repo}/blobs/{digest}"));
    let what = format!("blob {digest}");
    get_url(reg, &url, Access::Pull(repo), &what, range, timeline, hash).await
}

/// GETs any URL (or `[start, end)` of it) the way `get_blob` does; a static file server
/// such as nginx is read with it. `what` names the body in errors.
pub async fn get_url(
    reg: &Registry,
    url: &str,
    access: Access<'_>,
    what: &str,
    range: Option<(u64, u64)>,
    timeline: &Timeline,
    hash: bool,
) -> anyhow::Result<Fetched> {
    let resp = reg
        .send(Method::GET, url, access, |r| match range {
            Some((a, b)) => r.header(RANGE, format!("bytes={a}-{}", b - 1)),
            None => r,
        })
        .await?;
    let want = if range.is_some() { 206 } else { 200 };
    let mut resp = expect(resp, &[want], &format!("GET {what}")).await?;
    // Read before the body: reqwest's figure is what remains of it.
    let announced = resp.content_length();
    let mut hasher = hash.then(Sha256::new);
    let mut got = 0u64;
    while let Some(chunk) = resp
        .chunk()
        .await
        .with_context(|| format!("body of {what}"))?
    {
        got += chunk.len() as u64;
        timeline.bytes(chunk.len() as u64);
        if let Some(h) = &mut hasher {
            h.update(&chunk);
        }
    }
    let expected = range.map(|(a, b)| b - a);
    if let Some(n) = expected.or(announced) {
        if got != n {
            bail!("{what}: {got} bytes received, {n} expected");
        }
    }
    Ok(Fetched {
        bytes: got,
        digest: hasher.map(|h| format!("sha256:{}", hex::encode(h.finalize()))),
    })
}

/// The size of a blob, from a HEAD.
pub async fn blob_size(reg: &Registry, repo: &str, digest: &str) -> anyhow::Result<u64> {
    let url = reg.url(&format!("/v2/{repo}/blobs/{digest}"));
    url_size(reg, &url, Access::Pull(repo), &format!("blob {digest}")).await
}

/// The size of what `url` serves, from a HEAD.
pub async fn url_size(
    reg: &Registry,
    url: &str,
    access: Access<'_>,
    what: &str,
) -> anyhow::Result<u64> {
    let resp = reg.send(Method::HEAD, url, access, |r| r).await?;
    let resp = expect(resp, &[200], &format!("HEAD {what}")).await?;
    resp.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .with_context(|| format!("HEAD {what} without Content-Length"))
}

/// A streamed body of `blob[start, end)`, generated as it is sent; bytes are counted into
/// `timeline` when handed to the connection.
fn body(blob: &Blob, start: u64, end: u64, timeline: Option<Arc<Timeline>>) -> reqwest::Body {
    let chunks = blob.chunks(start, end).map(move |c| {
        if let Some(t) = &timeline {
            t.bytes(c.len() as u64);
        }
        Ok::<_, std::io::Error>(c)
    });
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

/// How an upload went: whether a monolithic POST had to be completed with a PUT.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pushed {
    pub fallback: bool,
}

/// Uploads `blob` to `repo` in `mode` (`chunk_size` for chunked uploads).
pub async fn push_blob(
    reg: &Registry,
    repo: &str,
    blob: &Blob,
    mode: UploadMode,
    chunk_size: u64,
    timeline: Option<Arc<Timeline>>,
) -> anyhow::Result<Pushed> {
    let uploads = reg.url(&format!("/v2/{repo}/blobs/uploads/"));
    let access = Access::Push(repo);
    let whole = |r: reqwest::RequestBuilder| {
        r.header(CONTENT_TYPE, OCTETS)
            .header(CONTENT_LENGTH, blob.size)
            .body(body(blob, 0, blob.size, timeline.clone()))
    };
    let empty = |r: reqwest::RequestBuilder| r.header(CONTENT_LENGTH, 0).body(Vec::new());
    let what = |step: &str| format!("{step} of blob {} to {repo}", blob.digest);

    if mode == UploadMode::Monolithic {
        let url = with_digest(&uploads, &blob.digest);
        let resp = reg.send(Method::POST, &url, access, whole).await?;
        let resp = expect(resp, &[201, 202], &what("monolithic POST")).await?;
        if resp.status() == 201 {
            return Ok(Pushed::default());
        }
        let put = with_digest(&location(reg, &resp)?, &blob.digest);
        let resp = reg.send(Method::PUT, &put, access, whole).await?;
        expect(resp, &[201], &what("PUT after a POST answered 202")).await?;
        return Ok(Pushed { fallback: true });
    }

    let resp = reg.send(Method::POST, &uploads, access, empty).await?;
    let resp = expect(resp, &[202], &what("POST")).await?;
    let mut loc = location(reg, &resp)?;
    if mode == UploadMode::PostPut {
        let resp = reg
            .send(Method::PUT, &with_digest(&loc, &blob.digest), access, whole)
            .await?;
        expect(resp, &[201], &what("PUT")).await?;
        return Ok(Pushed::default());
    }
    let step = chunk_size.max(1);
    let mut at = 0;
    while at < blob.size {
        let end = (at + step).min(blob.size);
        let resp = reg
            .send(Method::PATCH, &loc, access, |r| {
                r.header(CONTENT_TYPE, OCTETS)
                    .header(CONTENT_LENGTH, end - at)
                    .header(CONTENT_RANGE, format!("{at}-{}", end - 1))
                    .body(body(blob, at, end, timeline.clone()))
            })
            .await?;
        let resp = expect(resp, &[202], &what(&format!("PATCH {at}-{}", end - 1))).await?;
        loc = location(reg, &resp)?;
        at = end;
    }
    let resp = reg
        .send(Method::PUT, &with_digest(&loc, &blob.digest), access, empty)
        .await?;
    expect(resp, &[201], &what("PUT")).await?;
    Ok(Pushed::default())
}

/// `PUT /v2/<repo>/manifests/<reference>`.
pub async fn put_manifest(
    reg: &Registry,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &Bytes,
) -> anyhow::Result<()> {
    let url = reg.url(&format!("/v2/{repo}/manifests/{reference}"));
    let resp = reg
        .send(Method::PUT, &url, Access::Push(repo), |r| {
            r.header(CONTENT_TYPE, media_type).body(bytes.clone())
        })
        .await?;
    expect(resp, &[201], &format!("PUT manifest {repo}:{reference}")).await?;
    Ok(())
}

/// Pushes every blob of `image` (untimed setup: post-put, one after another) and tags it.
pub async fn push_image(
    reg: &Registry,
    repo: &str,
    tag: &str,
    image: &Image,
) -> anyhow::Result<()> {
    for blob in image.blobs() {
        push_blob(reg, repo, blob, UploadMode::PostPut, 0, None).await?;
    }
    put_manifest(reg, repo, tag, OCI_MANIFEST, &image.manifest).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_and_indexes() {
        let image = Image::generate(1, 2, 10);
        let Refs::Image { config, layers } = refs(&image.manifest).unwrap() else {
            panic!("an image manifest");
        };
        assert_eq!(config, (image.config.digest.clone(), image.config.size));
        assert_eq!(layers[1], (image.layers[1].digest.clone(), 10));

        let index = br#"{"manifests":[
            {"digest":"sha256:aa","size":1,"platform":{"os":"linux","architecture":"arm64"}},
            {"digest":"sha256:bb","size":2,"platform":{"os":"linux","architecture":"amd64"}}]}"#;
        assert_eq!(
            refs(index).unwrap(),
            Refs::Index {
                child: "sha256:bb".into()
            }
        );
        let other = br#"{"manifests":[{"digest":"sha256:cc","size":1}]}"#;
        assert_eq!(
            refs(other).unwrap(),
            Refs::Index {
                child: "sha256:cc".into()
            }
        );
        assert!(refs(b"{}").is_err());
        assert!(refs(b"not json").is_err());
    }

    #[test]
    fn digests_join_the_query() {
        assert_eq!(
            with_digest("http://h/u/1", "sha256:x"),
            "http://h/u/1?digest=sha256:x"
        );
        assert_eq!(
            with_digest("http://h/u/1?_state=a", "sha256:x"),
            "http://h/u/1?_state=a&digest=sha256:x"
        );
    }
}
