//! The collector against a busy region: pushes through every node, some re-uploading
//! digests the collector is condemning at that moment, while it runs every second with a
//! short grace period (the soak); and a run cut short by a `kill -9` of the leader, which
//! the next leader finishes. Afterwards every image that got 201 pulls whole and
//! byte-identical: nothing referenced was ever collected.
//!
//! The soak runs `SHOAL_GC_SOAK_SECS` seconds (15 by default, as in CI; the full form in
//! the note ran 60).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::oci::{self, noise};
use shoal_tests::region::Region;
use shoal_tests::{sha256, tempdir, Registry};

/// A small deterministic generator per thread (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// Sends `f` until it is not a retryable refusal (503, as for a digest being collected), as
/// a client retries; how many retries it took.
fn retrying(
    what: &str,
    mut f: impl FnMut() -> reqwest::blocking::Response,
) -> (reqwest::blocking::Response, u64) {
    for retries in 0..100 {
        let r = f();
        if r.status() != 503 {
            return (r, retries);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: still 503 after 100 tries");
}

fn push_blob(reg: &Registry, repo: &str, bytes: &[u8], retries: &AtomicU64) -> String {
    let d = sha256(bytes);
    let (r, n) = retrying("blob", || {
        reg.http
            .post(reg.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .unwrap()
    });
    retries.fetch_add(n, Ordering::Relaxed);
    assert_eq!(r.status(), 201, "push {d}");
    d
}

/// Checks that `repo:tag` is exactly `bytes` and every blob it lists reads back whole.
fn intact(reg: &Registry, repo: &str, tag: &str, bytes: &[u8]) {
    let r = reg.get(&format!("/v2/{repo}/manifests/{tag}"));
    assert_eq!(r.status(), 200, "{repo}:{tag}");
    assert_eq!(
        r.bytes().unwrap().as_ref(),
        bytes,
        "{repo}:{tag} byte-identical"
    );
    let m: Value = serde_json::from_slice(bytes).unwrap();
    let mut listed = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    for l in m["layers"].as_array().unwrap() {
        listed.push(l["digest"].as_str().unwrap().to_string());
    }
    for d in listed {
        let blob = reg.get(&format!("/v2/{repo}/blobs/{d}")).bytes().unwrap();
        assert_eq!(sha256(&blob), d, "{repo}:{tag} blob {d} whole");
    }
}

fn metric(reg: &Registry, name: &str) -> u64 {
    let text = reg.get("/metrics").text().unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn collection_never_races_pushes_through_a_region() {
    let secs: u64 = std::env::var("SHOAL_GC_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let dir = tempdir();
    let region = Region::start_with(
        dir.path(),
        3,
        3,
        // A pause between condemning and deleting widens the window in which a push of a
        // condemned digest must be refused.
        &[
            "--gc-interval",
            "1s",
            "--gc-grace",
            "2s",
            "--gc-pause",
            "50ms",
            "--retention-interval",
            "off",
        ],
    );
    region.node(1).registry().create_namespace("soak");
    // Enough layers that most are often referenced by no live image, and so collected, then
    // uploaded again by a later push.
    let layers: Vec<Vec<u8>> = (0..60)
        .map(|i| noise(i + 1, 40_000 + i as usize * 997))
        .collect();
    let retries = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let live: Vec<BTreeMap<String, (String, Vec<u8>)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (1..=3u64)
            .map(|id| {
                let (layers, retries) = (&layers, &retries);
                let reg = region.node(id).registry();
                s.spawn(move || {
                    let mut rng = Rng(id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
                    let mut live: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        n += 1;
                        let repo = format!("soak/r{}", rng.next(3));
                        let config = format!("{{\"writer\":{id},\"n\":{n}}}").into_bytes();
                        let c = push_blob(&reg, &repo, &config, retries);
                        let mut descs = Vec::new();
                        for _ in 0..2 {
                            let layer = &layers[rng.next(layers.len() as u64) as usize];
                            descs.push((push_blob(&reg, &repo, layer, retries), layer.len()));
                        }
                        descs.sort();
                        descs.dedup();
                        let refs: Vec<(&str, usize)> =
                            descs.iter().map(|(d, l)| (d.as_str(), *l)).collect();
                        let m = oci::image_manifest(&c, config.len(), &refs, None);
                        let tag = format!("w{id}-{n}");
                        let (r, k) = retrying("manifest", || {
                            reg.put_manifest(&repo, &tag, oci::OCI_MANIFEST, &m)
                        });
                        retries.fetch_add(k, Ordering::Relaxed);
                        assert_eq!(
                            r.status(),
                            201,
                            "{repo}:{tag}: {}",
                            r.text().unwrap_or_default()
                        );
                        live.insert(format!("{repo}:{tag}"), (repo.clone(), m));
                        // Untag an older image once a writer holds more than a few:
                        // garbage for the collector, whose layers later pushes upload again.
                        if live.len() > 4 {
                            let victim = live
                                .keys()
                                .nth(rng.next(live.len() as u64) as usize)
                                .unwrap()
                                .clone();
                            let (vrepo, _) = live.remove(&victim).unwrap();
                            let vtag = victim.rsplit(':').next().unwrap();
                            let r = reg
                                .http
                                .delete(reg.url(&format!("/v2/{vrepo}/manifests/{vtag}")))
                                .send()
                                .unwrap();
                            assert_eq!(r.status(), 202);
                        }
                    }
                    live
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    // Let the collector take what the last untagging left, then check everything.
    std::thread::sleep(Duration::from_secs(4));
    let readers: Vec<Registry> = (1..=3).map(|id| region.node(id).registry()).collect();
    let mut images = 0;
    for (i, image) in live.iter().flatten().enumerate() {
        let (key, (repo, bytes)) = image;
        let tag = key.rsplit(':').next().unwrap();
        intact(&readers[i % 3], repo, tag, bytes);
        images += 1;
    }
    let deleted: u64 = readers
        .iter()
        .map(|r| metric(r, "shoal_gc_blobs_deleted_total"))
        .sum();
    let runs: u64 = readers
        .iter()
        .map(|r| metric(r, "shoal_gc_runs_total"))
        .sum();
    eprintln!(
        "soak: {secs} s, {images} live images intact, {runs} collector runs, {deleted} blobs deleted, {} retried pushes",
        retries.load(Ordering::Relaxed)
    );
    // The collector paces itself (a fifth of the time working), so under the load of a
    // whole test suite a run takes seconds; it must still have run again and again.
    assert!(runs >= 3, "the collector ran ({runs} runs)");
    assert!(
        deleted > 0,
        "the collector deleted garbage while pushes went on"
    );
}

#[test]
fn a_run_cut_short_by_a_leader_kill_is_finished_by_the_next_leader() {
    let dir = tempdir();
    let mut region = Region::start_with(
        dir.path(),
        3,
        3,
        &[
            "--gc-interval",
            "off",
            "--gc-grace",
            "1s",
            "--gc-pause",
            "300ms",
            "--retention-interval",
            "off",
        ],
    );
    let admin = region.node(1).registry();
    admin.create_namespace("junk");
    admin.create_namespace("keep");
    let (_, kept) = admin.push_image("keep/app", "v1", &noise(90, 30_000));
    // One untagged image in each of 24 repositories: 24 commands, 300 ms apart.
    for i in 0..24 {
        let repo = format!("junk/r{i:02}");
        admin.push_image(&repo, "t", &noise(100 + i, 20_000));
        let r = admin
            .http
            .delete(admin.url(&format!("/v2/{repo}/manifests/t")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // Leases and the run's clock are whole seconds: with a 1 s grace, a lease written in
    // second S is collectable from second S + 2, so 1.5 s after fast pushes left most of
    // them protected (seen: the run collected 3 of 24 and ended).
    std::thread::sleep(Duration::from_millis(2500));
    let r = admin.http.post(admin.url("/api/v1/gc")).send().unwrap();
    assert_eq!(r.status(), 202);
    let manifests_left = |reg: &Registry| -> usize {
        (0..24)
            .filter(|i| {
                let v: Value = reg
                    .get(&format!("/api/v1/repositories/junk%2Fr{i:02}"))
                    .json()
                    .unwrap_or(Value::Null);
                v["manifests"].as_u64().unwrap_or(0) > 0
            })
            .count()
    };
    let leader = region.leader();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = manifests_left(&admin);
        if left < 20 {
            assert!(left > 0, "the run ended before the kill; make it longer");
            break;
        }
        assert!(Instant::now() < deadline, "the run made no progress");
        std::thread::sleep(Duration::from_millis(100));
    }
    region.kill(leader);
    let survivor = region.running().next().unwrap().1.registry();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: Value = survivor.get("/api/v1/gc").json().unwrap_or(Value::Null);
        if status["running"].is_null()
            && status["last"]["phase"] == "done"
            && manifests_left(&survivor) == 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the next leader never finished the run: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (_, node) in region.running() {
        let reg = node.registry();
        let r = reg.get("/v2/keep/app/manifests/v1");
        assert_eq!(r.bytes().unwrap().as_ref(), kept.as_slice());
        intact(&reg, "keep/app", "v1", &kept);
    }
    // Every junk layer is gone from the origin's disk, keep's are there.
    let on_disk = |d: &str| {
        let hex = &d["sha256:".len()..];
        dir.path()
            .join("origin/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .exists()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while (0..24).any(|i| on_disk(&sha256(&noise(100 + i, 20_000)))) {
        assert!(Instant::now() < deadline, "junk layers left on disk");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(on_disk(&sha256(&noise(90, 30_000))));
}
