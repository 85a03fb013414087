//! No single point of failure with the S3 backend: two `shoal-origin` processes serve one
//! bucket (a real S3-compatible server, moto), and the node is given both
//! (`--origin A,B`). Twenty clients push and pull while each origin in turn is killed with
//! `kill -9`: every push completes (a client retries a push that got a retryable error, as
//! docker does), every acknowledged blob is there afterwards, and no pull fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::blocking::Client;
use shoal_tests::moto::{Moto, CREDENTIALS};
use shoal_tests::oci::noise;
use shoal_tests::{basic, origin_reads, sha256, tempdir, Node, Origin, ADMIN_PASSWORD};

const SECRET: &str = "region-secret-0123456789";
const PUSHERS: u64 = 10;
const PULLERS: u64 = 10;
/// Tries a client gives one blob push before the test calls it failed.
const PUSH_TRIES: usize = 6;

/// A chunked push as docker does it: POST, one PATCH, PUT with the digest. `Ok(())` on 201;
/// `Err` with what went wrong otherwise (the caller retries from the start).
fn push(http: &Client, base: &str, auth: &str, repo: &str, blob: &[u8]) -> Result<(), String> {
    let digest = sha256(blob);
    let r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .header("Authorization", auth)
        .send()
        .map_err(|e| format!("POST: {e}"))?;
    if r.status() != 202 {
        return Err(format!("POST: {}", r.status()));
    }
    let loc = r.headers()["Location"].to_str().unwrap().to_string();
    let r = http
        .patch(format!("{base}{loc}"))
        .header("Authorization", auth)
        .header("Content-Type", "application/octet-stream")
        .body(blob.to_vec())
        .send()
        .map_err(|e| format!("PATCH: {e}"))?;
    if r.status() != 202 {
        return Err(format!(
            "PATCH: {} {}",
            r.status(),
            r.text().unwrap_or_default()
        ));
    }
    let loc = r.headers()["Location"].to_str().unwrap().to_string();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = http
        .put(format!("{base}{loc}{sep}digest={digest}"))
        .header("Authorization", auth)
        .send()
        .map_err(|e| format!("PUT: {e}"))?;
    match r.status().as_u16() {
        201 => Ok(()),
        s => Err(format!("PUT: {s} {}", r.text().unwrap_or_default())),
    }
}

#[test]
fn two_origins_on_one_bucket_survive_the_death_of_either() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("shared");
    let dir = tempdir();
    let s3 = ["--s3-endpoint", moto.url.as_str(), "--s3-bucket", "shared"];
    let mut a = Origin::start_args(&s3, &dir.path().join("a.log"), SECRET, &CREDENTIALS);
    let mut b = Origin::start_args(&s3, &dir.path().join("b.log"), SECRET, &CREDENTIALS);
    let origins = format!("{},{}", a.url, b.url);
    // A cache too small for the pulled blobs, so pulls keep going to the origins.
    let node = Node::start_env(
        &dir.path().join("n"),
        &["--origin", &origins, "--cache-max-bytes", "3MiB"],
        &[("SHOAL_ORIGIN_SECRET", SECRET)],
    );
    let reg = node.registry();
    reg.create_namespace("acme");
    let pulled: Vec<Vec<u8>> = (0..6).map(|i| noise(500 + i, 2_000_000)).collect();
    let pulled_digests: Vec<String> = pulled
        .iter()
        .map(|b| reg.push_blob("acme/pull", b))
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, Vec<u8>)>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for k in 0..PUSHERS + PULLERS {
        let base = node.url.clone();
        let (stop, acknowledged, failures) = (stop.clone(), acknowledged.clone(), failures.clone());
        let (pulled, pulled_digests) = (pulled.clone(), pulled_digests.clone());
        clients.push(std::thread::spawn(move || {
            let http = Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let auth = basic("admin", ADMIN_PASSWORD);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if k < PUSHERS {
                    let blob = noise(10_000 * k + n, 1_000_000 + (n as usize % 7) * 100_000);
                    let mut tries = Vec::new();
                    while tries.len() < PUSH_TRIES {
                        match push(&http, &base, &auth, "acme/push", &blob) {
                            Ok(()) => break,
                            Err(e) => {
                                tries.push(e);
                                std::thread::sleep(Duration::from_millis(200));
                            }
                        }
                    }
                    if tries.len() == PUSH_TRIES {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("push kept failing: {tries:?}"));
                        return;
                    }
                    acknowledged.lock().unwrap().push((sha256(&blob), blob));
                } else {
                    let i = (k + n) as usize % pulled.len();
                    let url = format!("{base}/v2/acme/pull/blobs/{}", pulled_digests[i]);
                    let got = http
                        .get(&url)
                        .header("Authorization", &auth)
                        .send()
                        .and_then(|r| r.error_for_status())
                        .and_then(|r| r.bytes());
                    match got {
                        Ok(bytes) if bytes[..] == pulled[i][..] => {}
                        Ok(bytes) => failures.lock().unwrap().push(format!(
                            "pull of {} returned {} wrong bytes",
                            pulled_digests[i],
                            bytes.len()
                        )),
                        Err(e) => failures
                            .lock()
                            .unwrap()
                            .push(format!("pull of {} failed: {e}", pulled_digests[i])),
                    }
                }
            }
        }));
    }

    let reads = |o: &Origin| -> usize { pulled_digests.iter().map(|d| origin_reads(o, d)).sum() };
    std::thread::sleep(Duration::from_millis(1500));
    a.kill();
    let b_before = reads(&b);
    std::thread::sleep(Duration::from_millis(2500));
    let b_served = reads(&b) - b_before;
    a.restart();
    std::thread::sleep(Duration::from_millis(1000));
    let a_before = reads(&a);
    b.kill();
    std::thread::sleep(Duration::from_millis(2500));
    let a_served = reads(&a) - a_before;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }

    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
    // Each origin carried the pulls while the other was dead: the failover was exercised.
    assert!(b_served > 0, "origin B served no pull after A died");
    assert!(a_served > 0, "origin A served no pull after B died");
    let acknowledged = acknowledged.lock().unwrap();
    assert!(
        acknowledged.len() >= PUSHERS as usize,
        "too few pushes to say anything: {}",
        acknowledged.len()
    );
    // Every acknowledged blob is in the bucket, whole, through the origin still running.
    for (digest, blob) in acknowledged.iter() {
        let got = reg
            .get(&format!("/v2/acme/push/blobs/{digest}"))
            .bytes()
            .unwrap();
        assert!(
            got[..] == blob[..],
            "acknowledged blob {digest} came back whole"
        );
    }
    eprintln!(
        "origin failover: {} pushes acknowledged; origin B served {b_served} pulls while A was dead, A {a_served} while B was",
        acknowledged.len()
    );
}
