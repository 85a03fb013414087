//! The node's edge blob cache seen from outside: real `shoal` nodes in front of a real
//! `shoal-origin`, judged by what clients receive, the origin's log of blob reads, each
//! node's `/metrics` and the files in its cache directory (`<data>/cache/blobs/sha256/<hex>`,
//! fills under `<data>/cache/tmp/`).
//!
//! What is guarded: a pull storm costs the origin one read (single flight per node, the
//! digest's home node deciding which node reads the origin for the region); `Range` requests are served from a fill in
//! flight; a small budget evicts the least recently used blob; a restart keeps the cache and
//! clears half-written fills; a corrupt origin, a dying origin or a dying peer never gives a
//! client a complete-looking wrong body; an origin outage keeps warm blobs and manifests
//! served and misses recover when it returns; a delete empties every node's cache.
//!
//! Where a fill must still be running at a given moment, a test freezes its source with
//! SIGSTOP instead of racing it with sleeps: a frozen process keeps its sockets, so the fill
//! stalls where it is. The test then looks whether the blob had already landed in the cache
//! before deciding what the client must have seen, so a fast machine cannot make it flaky.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::Response;
use sha2::{Digest as _, Sha256};
use shoal_tests::oci::noise;
use shoal_tests::region::{Region, SECRET};
use shoal_tests::{
    error_code, eventually, metric, origin_reads, sha256, signal, tempdir, Node, Origin, Registry,
};

const MIB: usize = 1 << 20;

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

fn blob_path(repo: &str, digest: &str) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

/// Where `node` keeps a complete cached blob (default `--cache-dir`).
fn cache_file(node: &Node, digest: &str) -> PathBuf {
    node.data.join("cache/blobs/sha256").join(hex(digest))
}

/// Where the embedded filesystem origin under `root` keeps a blob (origin/src/paths.rs).
fn origin_file(root: &Path, digest: &str) -> PathBuf {
    let h = hex(digest);
    root.join("blobs/sha256").join(&h[..2]).join(h)
}

/// Every file under `dir` with its size; a missing directory has none. Files evicted while
/// the walk runs are skipped.
fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        match e.metadata() {
            Ok(m) if m.is_dir() => out.extend(files_under(&e.path())),
            Ok(m) => out.push((e.path(), m.len())),
            Err(_) => {}
        }
    }
    out
}

/// The origin's read count of `digest` once at least `n` reads are logged and a moment has
/// passed for any straggler to show up, so "exactly n" can be asserted.
fn settled_origin_reads(origin: &Origin, digest: &str, n: usize) -> usize {
    eventually(&format!("the origin logs {n} read(s) of {digest}"), || {
        origin_reads(origin, digest) >= n
    });
    thread::sleep(Duration::from_millis(500));
    origin_reads(origin, digest)
}

/// The origin's log lines about `digest`, for failure messages.
fn origin_lines(origin: &Origin, digest: &str) -> String {
    origin
        .log_text()
        .lines()
        .filter(|l| l.contains(hex(digest)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A response body hashed as it is read, possibly in several steps: what arrived
/// and whether it ended cleanly.
struct Pull {
    resp: Response,
    status: u16,
    length: Option<u64>,
    hasher: Sha256,
    /// Bytes read so far.
    len: u64,
    error: Option<String>,
}

impl Pull {
    fn new(resp: Response) -> Pull {
        Pull {
            status: resp.status().as_u16(),
            length: resp.content_length(),
            resp,
            hasher: Sha256::new(),
            len: 0,
            error: None,
        }
    }

    /// Reads up to `n` more bytes (fewer at the end of the body or on an error).
    fn read(&mut self, n: u64) {
        if self.error.is_none() {
            let mut part = std::io::Read::take(&mut self.resp, n);
            match std::io::copy(&mut part, &mut self.hasher) {
                Ok(n) => self.len += n,
                Err(e) => self.error = Some(e.to_string()),
            }
        }
    }

    /// Reads to the end of the body.
    fn finish(mut self) -> Pull {
        self.read(u64::MAX);
        self
    }

    /// The body ended without an error and at its Content-Length, if it had one: what a
    /// client takes for a whole blob.
    /// `sha256:<hex>` of what was read so far.
    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    fn complete(&self) -> bool {
        self.error.is_none() && self.length.is_none_or(|l| l == self.len)
    }

    fn describe(&self) -> String {
        format!(
            "status {}, Content-Length {:?}, {} bytes read, {}, error {:?}",
            self.status,
            self.length,
            self.len,
            self.digest(),
            self.error
        )
    }

    fn assert_blob(&self, digest: &str, size: u64) {
        assert!(
            self.status == 200 && self.complete() && self.len == size && self.digest() == digest,
            "expected the whole blob {digest} ({size} bytes); got {}",
            self.describe()
        );
    }
}

/// GETs `path` until one whole, correct blob arrives (15 s at most), for misses right after
/// the origin comes back: a failed attempt is allowed, a complete wrong body never.
/// Returns the number of attempts.
fn pull_until_whole(reg: &Registry, path: &str, digest: &str, size: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let pull = Pull::new(reg.get(path)).finish();
        if pull.status == 200 && pull.complete() {
            pull.assert_blob(digest, size);
            return attempts;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never came back whole; last attempt: {}",
            pull.describe()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// A single node with its own origin process and namespace `acme`.
fn single_node(dir: &Path, extra: &[&str]) -> (Origin, Node) {
    let origin = Origin::start(&dir.join("origin"), SECRET);
    let node = origin.node_with(&dir.join("node"), extra);
    node.registry().create_namespace("acme");
    (origin, node)
}

/// Pushes a small image through node 1 and waits until every node serves its manifest: the
/// Raft log applies in order, so every earlier write (a blob link) is then visible everywhere.
fn wait_replicated(region: &Region, repo: &str) {
    let reg = region.node(1).registry();
    reg.push_image(repo, "barrier", b"replication barrier");
    for (id, node) in region.running() {
        let reg = node.registry();
        let path = format!("/v2/{repo}/manifests/barrier");
        eventually(&format!("node {id} serves {path}"), || {
            reg.get(&path).status() == 200
        });
    }
}

/// The peer `node` streams the digest from, as its log names it (`peer fetch … peer=<id>`),
/// or `None` once `node` is seen filling from the origin itself (it is the home, or the home
/// lent it the fill).
fn source_peer(node: &Node, digest: &str) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = node.log_text();
        let line = log
            .lines()
            .find(|l| l.contains("peer fetch") && l.contains(hex(digest)));
        if let Some(line) = line {
            let id: String = line
                .split("peer=")
                .nth(1)
                .unwrap_or_default()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            return Some(
                id.parse()
                    .unwrap_or_else(|_| panic!("no peer=<id> in {line:?}")),
            );
        }
        if metric(node, "shoal_origin_fetches_total") >= 1.0 {
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "the node fetched {digest} neither from a peer nor from the origin:\n{log}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Guards single flight across a region: fifty-odd clients on three nodes pulling one cold
/// blob cost the origin exactly one read, and every client gets the same bytes.
#[test]
fn a_pull_storm_across_a_region_reads_the_origin_once() {
    let dir = tempdir();
    let region = Region::start(dir.path(), 3, 3);
    let reg = region.node(1).registry();
    reg.create_namespace("storm");
    let data = Arc::new(noise(101, 24 * MIB));
    let size = data.len() as u64;
    let digest = reg.push_blob("storm/app", &data);
    drop(data);
    wait_replicated(&region, "storm/app");

    const CLIENTS: usize = 54;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let id = 1 + (i % 3) as u64;
            let (url, path, barrier) = (
                region.api_url(id),
                blob_path("storm/app", &digest),
                barrier.clone(),
            );
            thread::spawn(move || {
                let reg = Registry::new(&url);
                barrier.wait();
                let pull = Pull::new(reg.get(&path)).finish();
                (id, pull)
            })
        })
        .collect();
    for client in clients {
        let (id, pull) = client.join().unwrap();
        assert!(
            pull.status == 200 && pull.complete(),
            "a client of node {id}: {}",
            pull.describe()
        );
        assert_eq!(pull.digest(), digest, "a client of node {id}");
        assert_eq!(pull.len, size, "a client of node {id}");
    }

    let reads = settled_origin_reads(&region.origin, &digest, 1);
    assert_eq!(
        reads,
        1,
        "the origin read the blob more than once:\n{}",
        origin_lines(&region.origin, &digest)
    );
    let total = |series: &str| -> f64 { region.running().map(|(_, n)| metric(n, series)).sum() };
    assert_eq!(total("shoal_origin_fetches_total"), 1.0, "origin fetches");
    assert_eq!(
        total("shoal_peer_fetches_total"),
        2.0,
        "each node but the one that read the origin fetches once from a peer"
    );
}

/// Guards the one-hop cold pull: the first node to miss a blob reads the origin itself,
/// whether or not it is the digest's home (the home lends it the fill), and later misses
/// elsewhere in the region stream from it instead of reading the origin again.
#[test]
fn a_cold_miss_reads_the_origin_from_the_node_asked_and_the_region_follows_it() {
    let dir = tempdir();
    let region = Region::start(dir.path(), 3, 3);
    let reg = region.node(1).registry();
    reg.create_namespace("lend");
    let data = noise(57, 8 * MIB);
    let size = data.len() as u64;
    let digest = reg.push_blob("lend/app", &data);
    wait_replicated(&region, "lend/app");
    let path = blob_path("lend/app", &digest);
    let total = |series: &str| -> f64 { region.running().map(|(_, n)| metric(n, series)).sum() };

    Pull::new(region.node(1).registry().get(&path))
        .finish()
        .assert_blob(&digest, size);
    assert_eq!(settled_origin_reads(&region.origin, &digest, 1), 1);
    let first = region.node(1);
    assert_eq!(
        metric(first, "shoal_origin_fetches_total"),
        1.0,
        "node 1 read the origin"
    );
    assert_eq!(
        metric(first, "shoal_peer_fetches_total"),
        0.0,
        "and no peer"
    );
    let lent = total("shoal_fill_leases_total");
    assert!(lent <= 1.0, "at most the home lent the fill: {lent}");
    assert_eq!(metric(first, "shoal_fill_leases_total"), 0.0);

    for id in [2u64, 3] {
        Pull::new(region.node(id).registry().get(&path))
            .finish()
            .assert_blob(&digest, size);
        let node = region.node(id);
        assert_eq!(metric(node, "shoal_peer_fetches_total"), 1.0, "node {id}");
        assert_eq!(metric(node, "shoal_origin_fetches_total"), 0.0, "node {id}");
    }
    // Node 2 streams from node 1 whoever the home is: node 1 holds the blob, or was lent it.
    assert_eq!(source_peer(region.node(2), &digest), Some(1));
    assert_eq!(settled_origin_reads(&region.origin, &digest, 1), 1);
    assert_eq!(total("shoal_origin_fetches_total"), 1.0);
}

/// Guards "Range requests are served from in-flight fills": ranges asked while the fill is
/// stalled get 206 with the right bytes and Content-Range, and the origin is read once.
#[test]
fn range_requests_during_a_fill_are_served_from_it() {
    let dir = tempdir();
    let (origin, node) = single_node(dir.path(), &[]);
    let reg = node.registry();
    let data = Arc::new(noise(22, 64 * MIB));
    let size = data.len() as u64;
    let digest = reg.push_blob("acme/ranges", &data);
    let path = blob_path("acme/ranges", &digest);

    let mut full = Pull::new(reg.get(&path));
    assert_eq!(full.status, 200, "{}", full.describe());
    full.read(MIB as u64);
    origin.signal("STOP");
    let ranges = [
        ("bytes=0-1023".to_string(), 0..1024),
        (
            format!("bytes={}-{}", 32 * MIB, 32 * MIB + 4095),
            32 * MIB..32 * MIB + 4096,
        ),
        ("bytes=-1000".to_string(), 64 * MIB - 1000..64 * MIB),
    ];
    let askers: Vec<_> = ranges
        .iter()
        .map(|(range, _)| {
            let (url, path, range) = (node.url.clone(), path.clone(), range.clone());
            thread::spawn(move || {
                let reg = Registry::new(&url);
                let r = reg
                    .http
                    .get(reg.url(&path))
                    .header("Range", range)
                    .send()
                    .unwrap();
                let status = r.status().as_u16();
                let content_range = r
                    .headers()
                    .get("Content-Range")
                    .map(|v| v.to_str().unwrap().to_string());
                (status, content_range, r.bytes().map(|b| b.to_vec()))
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let landed = cache_file(&node, &digest).exists();
    let in_flight = metric(&node, "shoal_cache_fills_in_flight");
    origin.signal("CONT");
    if landed {
        eprintln!(
            "the 64 MiB fill finished before the origin was frozen; ranges came from the cache"
        );
    } else {
        assert_eq!(
            in_flight, 1.0,
            "one fill is in flight while the origin is frozen"
        );
    }

    for ((range, want), asker) in ranges.iter().zip(askers) {
        let (status, content_range, body) = asker.join().unwrap();
        assert_eq!(status, 206, "{range}");
        let expected = format!("bytes {}-{}/{size}", want.start, want.end - 1);
        assert_eq!(content_range.as_deref(), Some(expected.as_str()), "{range}");
        let body = body.unwrap_or_else(|e| panic!("{range}: reading the body: {e}"));
        assert!(body == data[want.clone()], "{range}: wrong bytes");
    }
    full.finish().assert_blob(&digest, size);
    assert_eq!(
        settled_origin_reads(&origin, &digest, 1),
        1,
        "one origin read serves the full GET and every range:\n{}",
        origin_lines(&origin, &digest)
    );
    eventually("the fill is no longer counted in flight", || {
        metric(&node, "shoal_cache_fills_in_flight") == 0.0
    });
}

/// Guards `--cache-max-bytes`: past the budget the least recently used blob is evicted, on
/// disk and in the gauges, and pulling it again goes back to the origin.
#[test]
fn a_small_cache_budget_evicts_the_least_recently_used_blob() {
    const BUDGET: u64 = 3 * MIB as u64;
    let dir = tempdir();
    let (origin, node) = single_node(dir.path(), &["--cache-max-bytes", "3MiB"]);
    let reg = node.registry();
    // Two of them fit with room to spare for any small bookkeeping file; three do not.
    let blobs: Vec<Vec<u8>> = (0..3).map(|i| noise(30 + i, 1_500_000)).collect();
    let digests: Vec<String> = blobs
        .iter()
        .map(|b| reg.push_blob("acme/small", b))
        .collect();
    for (blob, digest) in blobs.iter().zip(&digests) {
        let path = blob_path("acme/small", digest);
        Pull::new(reg.get(&path))
            .finish()
            .assert_blob(digest, blob.len() as u64);
        eventually(&format!("{digest} lands in the cache"), || {
            cache_file(&node, digest).exists()
        });
    }

    eventually("an eviction is counted", || {
        metric(&node, "shoal_cache_evictions_total") >= 1.0
    });
    eventually("the oldest blob leaves the disk", || {
        !cache_file(&node, &digests[0]).exists()
    });
    let cache_dir = node.data.join("cache");
    eventually(
        "the cache is within its budget, by gauge and on disk",
        || {
            let on_disk: u64 = files_under(&cache_dir).iter().map(|(_, len)| len).sum();
            metric(&node, "shoal_cache_bytes") <= BUDGET as f64 && on_disk <= BUDGET
        },
    );
    assert!(
        metric(&node, "shoal_cache_entries") <= 2.0,
        "at most two 1.5 MB blobs fit in 3 MiB"
    );
    assert_eq!(origin_reads(&origin, &digests[0]), 1);

    let path = blob_path("acme/small", &digests[0]);
    Pull::new(reg.get(&path))
        .finish()
        .assert_blob(&digests[0], blobs[0].len() as u64);
    assert_eq!(
        settled_origin_reads(&origin, &digests[0], 2),
        2,
        "the evicted blob is read from the origin again:\n{}",
        origin_lines(&origin, &digests[0])
    );
}

/// Guards the rebuild of the cache index from its directory: after a restart the node serves
/// a cached blob with the origin down, and a half-written fill left in `tmp/` is cleared.
#[test]
fn a_restarted_node_serves_its_cache_without_the_origin() {
    let dir = tempdir();
    let (mut origin, node) = single_node(dir.path(), &[]);
    let data_dir = node.data.clone();
    let reg = node.registry();
    let blob = noise(44, 4 * MIB);
    let size = blob.len() as u64;
    let digest = reg.push_blob("acme/warm", &blob);
    let path = blob_path("acme/warm", &digest);
    Pull::new(reg.get(&path))
        .finish()
        .assert_blob(&digest, size);
    eventually("the blob lands in the cache", || {
        cache_file(&node, &digest).exists()
    });
    assert!(node.stop().success());

    let tmp = data_dir.join("cache/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let garbage = tmp.join("left-by-a-crash");
    std::fs::write(&garbage, noise(45, 100_000)).unwrap();
    let node = origin.node(&data_dir);
    origin.kill();

    let reg = node.registry();
    Pull::new(reg.get(&path))
        .finish()
        .assert_blob(&digest, size);
    eventually("start-up clears the cache's tmp/", || !garbage.exists());
    assert!(
        metric(&node, "shoal_cache_hits_total") >= 1.0,
        "a cache hit"
    );
    assert!(
        metric(&node, r#"shoal_blob_bytes_total{source="cache"}"#) >= size as f64,
        "the bytes came from the cache"
    );
    assert_eq!(metric(&node, "shoal_cache_entries"), 1.0, "rebuilt index");
    assert_eq!(
        metric(&node, "shoal_cache_bytes"),
        size as f64,
        "rebuilt index"
    );
}

/// Guards digest verification on every fill: an origin file with the right length and wrong
/// bytes never reaches a client as a complete body, nor the cache; the fix is picked up.
#[test]
fn a_corrupt_origin_blob_never_reaches_a_client_or_the_cache() {
    let dir = tempdir();
    let (_origin, node) = single_node(dir.path(), &[]);
    let reg = node.registry();
    let blob = noise(55, 8 * MIB);
    let size = blob.len() as u64;
    let digest = reg.push_blob("acme/bad", &blob);
    let path = blob_path("acme/bad", &digest);

    let stored = origin_file(&dir.path().join("origin"), &digest);
    let aside = stored.with_extension("good");
    std::fs::rename(&stored, &aside).unwrap();
    std::fs::write(&stored, noise(56, blob.len())).unwrap();

    let pull = Pull::new(reg.get(&path)).finish();
    assert!(
        !(pull.status == 200 && pull.complete()),
        "a body that fails its digest looked complete: {}",
        pull.describe()
    );
    eventually("the mismatch is counted", || {
        metric(&node, "shoal_cache_digest_mismatches_total") >= 1.0
    });
    let cache_dir = node.data.join("cache");
    assert!(!cache_file(&node, &digest).exists(), "nothing is cached");
    assert_eq!(files_under(&cache_dir.join("blobs")), vec![]);
    eventually("the failed fill's temporary file is gone", || {
        files_under(&cache_dir.join("tmp")).is_empty()
    });

    std::fs::rename(&aside, &stored).unwrap();
    Pull::new(reg.get(&path))
        .finish()
        .assert_blob(&digest, size);
}

/// Guards the cache's worth during an origin outage: warm blobs and all manifests are served,
/// a cold blob answers 503 UNAVAILABLE, and misses work again once the origin is back on its
/// address, without touching the node.
#[test]
fn an_origin_outage_keeps_warm_blobs_and_manifests_and_misses_recover() {
    let dir = tempdir();
    let (mut origin, node) = single_node(dir.path(), &[]);
    let reg = node.registry();
    let warm = noise(61, 3 * MIB);
    let warm_digest = reg.push_blob("acme/out", &warm);
    let warm_path = blob_path("acme/out", &warm_digest);
    Pull::new(reg.get(&warm_path))
        .finish()
        .assert_blob(&warm_digest, warm.len() as u64);
    eventually("the warm blob lands in the cache", || {
        cache_file(&node, &warm_digest).exists()
    });
    let cold = noise(62, 3 * MIB);
    let cold_digest = sha256(&cold);
    let (manifest_digest, manifest) = reg.push_image("acme/out", "v1", &cold);

    origin.kill();
    Pull::new(reg.get(&warm_path))
        .finish()
        .assert_blob(&warm_digest, warm.len() as u64);
    let r = reg.get("/v2/acme/out/manifests/v1");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), &manifest[..]);
    assert_eq!(
        reg.get(&format!("/v2/acme/out/manifests/{manifest_digest}"))
            .status(),
        200
    );
    let cold_path = blob_path("acme/out", &cold_digest);
    assert_eq!(error_code(reg.get(&cold_path)), (503, "UNAVAILABLE".into()));

    origin.restart();
    let attempts = pull_until_whole(&reg, &cold_path, &cold_digest, cold.len() as u64);
    eprintln!("the cold blob came whole on attempt {attempts} after the origin's restart");
}

/// Guards the fill's failure path: when the origin dies in the middle of a fill, the client's
/// response ends short instead of looking complete, and a later pull succeeds.
#[test]
fn an_origin_killed_mid_fill_cuts_the_response_short() {
    let dir = tempdir();
    let (mut origin, node) = single_node(dir.path(), &[]);
    let reg = node.registry();
    let data = Arc::new(noise(77, 128 * MIB));
    let size = data.len() as u64;
    let digest = reg.push_blob("acme/cut", &data);
    drop(data);
    let path = blob_path("acme/cut", &digest);

    let mut pull = Pull::new(reg.get(&path));
    assert_eq!(pull.status, 200, "{}", pull.describe());
    pull.read(MIB as u64);
    origin.signal("STOP");
    thread::sleep(Duration::from_millis(500));
    let landed = cache_file(&node, &digest).exists();
    origin.kill();
    let pull = pull.finish();
    if landed {
        eprintln!("the 128 MiB fill finished before the origin was frozen; nothing was cut");
        pull.assert_blob(&digest, size);
    } else {
        assert!(
            !pull.complete() && pull.len < size,
            "the origin died mid-fill, yet the response looked complete: {}",
            pull.describe()
        );
        assert!(
            !cache_file(&node, &digest).exists(),
            "a cut fill entered the cache"
        );
    }

    origin.restart();
    pull_until_whole(&reg, &path, &digest, size);
}

/// Guards the peer path's fallback: when the peer a node streams the blob from (its home, or
/// the node the home lent the fill) is killed mid-stream, that node finishes the same fill from the origin at the offset
/// reached, and its client gets one whole, correct body.
#[test]
fn a_peer_killed_mid_fetch_is_finished_from_the_origin() {
    let dir = tempdir();
    let mut region = Region::start(dir.path(), 3, 3);
    let reg = region.node(1).registry();
    reg.create_namespace("peer");
    let data = Arc::new(noise(81, 128 * MIB));
    let size = data.len() as u64;
    let digest = reg.push_blob("peer/big", &data);
    drop(data);
    wait_replicated(&region, "peer/big");
    let path = blob_path("peer/big", &digest);

    // The first requester reads the origin itself (it is the home, or the home lends it the
    // fill); a second requester then streams from it, or from the home.
    for a in [1u64, 2] {
        let others: Vec<u64> = (1..=3).filter(|id| *id != a).collect();
        let mut pull = Pull::new(region.node(a).registry().get(&path));
        assert_eq!(pull.status, 200, "node {a}: {}", pull.describe());
        pull.read(MIB as u64);
        for o in &others {
            signal(region.node(*o).pid(), "STOP");
        }
        let Some(home) = source_peer(region.node(a), &digest) else {
            for o in &others {
                signal(region.node(*o).pid(), "CONT");
            }
            pull.finish().assert_blob(&digest, size);
            eprintln!("node {a} read {digest} from the origin; asking another node");
            continue;
        };
        assert!(others.contains(&home), "node {a} names home {home}");
        thread::sleep(Duration::from_millis(500));
        let landed = cache_file(region.node(a), &digest).exists();
        region.kill(home);
        for o in others.iter().filter(|o| **o != home) {
            signal(region.node(*o).pid(), "CONT");
        }

        let pull = pull.finish();
        pull.assert_blob(&digest, size);
        let requester = region.node(a);
        let failures = metric(requester, "shoal_peer_fetch_failures_total");
        let from_peer = metric(requester, r#"shoal_blob_bytes_total{source="peer"}"#);
        let from_origin = metric(requester, r#"shoal_blob_bytes_total{source="origin"}"#);
        eprintln!(
            "node {a} fetched from peer {home}: {from_peer} bytes from the peer, \
             {from_origin} from the origin, {failures} peer failure(s)"
        );
        if landed {
            eprintln!("the peer fetch finished before the home was frozen; no fallback ran");
            return;
        }
        assert!(failures >= 1.0, "the dead peer counts as a failed fetch");
        assert!(from_peer > 0.0, "part of the blob came from the peer");
        assert!(
            from_origin > 0.0 && from_origin < size as f64,
            "the origin supplied the rest from the offset reached, not the whole blob again"
        );
        eventually("the finished fill lands in the requester's cache", || {
            cache_file(region.node(a), &digest).exists()
        });
        return;
    }
    panic!("neither node 1 nor node 2 fetched {digest} from a peer");
}

/// Guards "the cache never holds a blob the metadata says is deleted": a DELETE through one
/// node removes the cached file on every node.
#[test]
fn a_deleted_blob_leaves_every_nodes_cache() {
    let dir = tempdir();
    let region = Region::start(dir.path(), 3, 3);
    let reg = region.node(1).registry();
    reg.create_namespace("gone");
    let blob = noise(99, 2 * MIB);
    let digest = reg.push_blob("gone/app", &blob);
    wait_replicated(&region, "gone/app");
    let path = blob_path("gone/app", &digest);
    for (id, node) in region.running() {
        Pull::new(node.registry().get(&path))
            .finish()
            .assert_blob(&digest, blob.len() as u64);
        eventually(&format!("node {id} caches the blob"), || {
            cache_file(node, &digest).exists()
        });
    }

    let r = reg.http.delete(reg.url(&path)).send().unwrap();
    assert_eq!(r.status(), 202);
    for (id, node) in region.running() {
        eventually(&format!("node {id} drops the cached file"), || {
            !cache_file(node, &digest).exists()
        });
        let reg = node.registry();
        eventually(&format!("node {id} no longer serves the blob"), || {
            reg.get(&path).status() == 404
        });
        assert_eq!(error_code(reg.get(&path)), (404, "BLOB_UNKNOWN".into()));
    }
}
