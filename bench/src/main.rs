//! shoal-bench: load generator for Shoal and other OCI registries.
//!
//! Two scenarios so far:
//! - `blob`: push one large generated blob through a streamed upload (POST, one chunked
//!   PATCH, PUT ?digest=) and read it back with GETs, reporting throughput;
//! - `tag-push`: push one small image, then re-tag it COUNT times one after another
//!   (manifest PUT by tag), reporting p50/p95/p99 latency. Through a follower this
//!   includes forwarding to the leader and waiting for the local replica.
//!
//! The data is generated on the fly from a seed and its digest is computed in a first pass
//! before the clock starts, so the client never holds the blob and never hashes while timed.
//! The pull-storm, manifest-rps and push scenarios and the side-by-side comparisons come with
//! the benchmark issue.

use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};

#[derive(Parser)]
#[command(name = "shoal-bench", about = "Load generator for OCI registries")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Push one blob of SIZE bytes with a streamed upload, then GET it back.
    Blob {
        /// Registry base URL, e.g. http://127.0.0.1:5000
        #[arg(long)]
        target: String,
        /// Repository to push into (its namespace must exist on Shoal).
        #[arg(long, default_value = "bench/blob")]
        repo: String,
        /// Blob size: bytes or a size with KiB/MiB/GiB.
        #[arg(long, default_value = "1GiB")]
        size: String,
        /// GETs of the pushed blob to time, run one after another.
        #[arg(long, default_value_t = 3)]
        gets: u32,
        /// Also print this process's peak RSS (VmHWM) of the given pid afterwards.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Re-tag one small image COUNT times and report manifest PUT latency percentiles.
    TagPush {
        #[arg(long)]
        target: String,
        #[arg(long, default_value = "bench/tags")]
        repo: String,
        #[arg(long, default_value_t = 200)]
        count: u32,
    },
}

const CHUNK: usize = 1 << 20;

/// An HTTP client that signs in with `SHOAL_USERNAME`/`SHOAL_PASSWORD` (Basic, which Shoal
/// takes on `/v2` directly) when they are set.
fn client() -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let (Ok(user), Ok(password)) = (
        std::env::var("SHOAL_USERNAME"),
        std::env::var("SHOAL_PASSWORD"),
    ) {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers.insert("authorization", format!("Basic {raw}").parse()?);
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("", 1),
    ]
    .iter()
    .find_map(|(suffix, m)| s.strip_suffix(suffix).map(|n| (n, *m)))
    .expect("the empty suffix always matches");
    let n: u64 = num
        .trim()
        .parse()
        .with_context(|| format!("bad size {s:?}"))?;
    Ok(n * mult)
}

/// The `i`-th 1 MiB chunk of the generated blob (xorshift keyed by the chunk index).
fn chunk(i: u64, len: usize) -> Bytes {
    let mut x = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = vec![0u8; len];
    for w in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes()[..w.len()]);
    }
    Bytes::from(out)
}

fn chunks(size: u64) -> impl Iterator<Item = Bytes> {
    let n = size.div_ceil(CHUNK as u64);
    (0..n).map(move |i| chunk(i, (size - i * CHUNK as u64).min(CHUNK as u64) as usize))
}

fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn peak_rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// Sends `req` and fails with the server's answer unless the status is `want`.
async fn expect(
    req: reqwest::RequestBuilder,
    want: u16,
    what: &str,
) -> anyhow::Result<reqwest::Response> {
    let r = req.send().await?;
    if r.status() != want {
        bail!(
            "{what}: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    Ok(r)
}

/// The absolute URL of a response's `Location` (registries may answer with a path).
fn location(base: &str, r: &reqwest::Response) -> anyhow::Result<String> {
    let loc = r
        .headers()
        .get("location")
        .context("no Location header")?
        .to_str()?;
    Ok(if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        loc.to_string()
    })
}

async fn blob(
    target: &str,
    repo: &str,
    size: u64,
    gets: u32,
    pid: Option<u32>,
) -> anyhow::Result<()> {
    let http = client()?;
    let base = target.trim_end_matches('/');
    let mut h = Sha256::new();
    for c in chunks(size) {
        h.update(&c);
    }
    let digest = format!("sha256:{}", hex::encode(h.finalize()));

    let started = Instant::now();
    let r = expect(
        http.post(format!("{base}/v2/{repo}/blobs/uploads/")),
        202,
        "POST upload",
    )
    .await?;
    let loc = location(base, &r)?;
    let body = reqwest::Body::wrap_stream(futures::stream::iter(
        chunks(size).map(Ok::<_, std::io::Error>),
    ));
    let r = expect(http.patch(&loc).body(body), 202, "PATCH").await?;
    let loc = location(base, &r)?;
    let sep = if loc.contains('?') { '&' } else { '?' };
    expect(http.put(format!("{loc}{sep}digest={digest}")), 201, "PUT").await?;
    let push = started.elapsed().as_secs_f64();
    println!(
        "push  {size} bytes  {push:.2} s  {:.0} MB/s",
        mb_s(size, push)
    );

    for i in 0..gets {
        let started = Instant::now();
        let r = expect(
            http.get(format!("{base}/v2/{repo}/blobs/{digest}")),
            200,
            "GET",
        )
        .await?;
        let mut stream = r.bytes_stream();
        let mut got = 0u64;
        while let Some(b) = stream.next().await {
            got += b?.len() as u64;
        }
        let t = started.elapsed().as_secs_f64();
        if got != size {
            bail!("GET {i} returned {got} bytes, expected {size}");
        }
        println!("get#{i} {size} bytes  {t:.2} s  {:.0} MB/s", mb_s(size, t));
    }
    if let Some(pid) = pid {
        match peak_rss_mib(pid) {
            Some(m) => println!("peak RSS of pid {pid}: {m} MiB"),
            None => println!("cannot read /proc/{pid}/status"),
        }
    }
    Ok(())
}

async fn push_blob(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    bytes: &[u8],
) -> anyhow::Result<String> {
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    let url = format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}");
    expect(
        http.post(url).body(bytes.to_vec()),
        201,
        "monolithic upload",
    )
    .await?;
    Ok(digest)
}

async fn tag_push(target: &str, repo: &str, count: u32) -> anyhow::Result<()> {
    let http = client()?;
    let base = target.trim_end_matches('/');
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = chunk(7, 4096);
    let c = push_blob(&http, base, repo, config).await?;
    let l = push_blob(&http, base, repo, &layer).await?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
    }))?;
    let mut times = Vec::with_capacity(count as usize);
    for i in 0..count {
        let started = Instant::now();
        let req = http
            .put(format!("{base}/v2/{repo}/manifests/t{i}"))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone());
        expect(req, 201, "manifest PUT").await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "tag-push {count} PUTs  p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        pct(0.50),
        pct(0.95),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::TagPush {
            target,
            repo,
            count,
        } => tag_push(&target, &repo, count).await,
        Scenario::Blob {
            target,
            repo,
            size,
            gets,
            pid,
        } => blob(&target, &repo, parse_size(&size)?, gets, pid).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("3 MiB").unwrap(), 3 << 20);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("1GB").is_err());
    }

    #[test]
    fn chunks_cover_the_size_exactly() {
        assert_eq!(
            chunks(CHUNK as u64 * 2 + 5).map(|c| c.len()).sum::<usize>(),
            CHUNK * 2 + 5
        );
        assert_eq!(chunks(0).count(), 0);
        assert_ne!(chunk(0, 64), chunk(1, 64), "chunks differ");
    }
}
