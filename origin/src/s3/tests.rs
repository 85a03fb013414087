//! Tests of the S3 backend: the conformance suite on `InMemory` and on moto (a local S3
//! mock, started per test), and what only a real S3 API shows: parts of several MiB and the
//! incomplete multipart uploads a crash leaves.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;

use super::*;

#[tokio::test]
async fn s3_store_passes_conformance_in_memory() {
    let store = S3Store::from_store(Arc::new(InMemory::new()));
    crate::conformance::run_all(&store).await;
}

/// A restarted origin must find an upload's size from its part objects alone.
#[tokio::test]
async fn upload_survives_restart() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let before = S3Store::from_store(bucket.clone());
    let after = S3Store::from_store(bucket);
    crate::conformance::upload_resumes_after_restart(&before, &after).await;
}

/// Kills moto however the test ends, so a failed assertion leaves no server behind.
struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `moto_server` on a free port and returns it with its base URL, or `None` if
/// moto is not installed (a failure when `CI=true`).
fn start_moto() -> Option<(Moto, String)> {
    let spawned = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", "0"])
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("moto_server is not on PATH and CI=true: pip install 'moto[server]'");
            }
            eprintln!("!!!!! MOTO MISSING, test did not run (pip install 'moto[server]') !!!!!");
            return None;
        }
        Err(e) => panic!("starting moto_server: {e}"),
    };
    let (tx, rx) = mpsc::channel();
    // Both pipes are drained for moto's whole life: a full pipe would stall the server.
    let pipes: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    for pipe in pipes {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(|l| l.ok()) {
                if let Some(at) = line.find("Running on http://") {
                    let _ = tx.send(line[at + "Running on ".len()..].trim().to_string());
                }
            }
        });
    }
    let moto = Moto(child);
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("moto_server printed no address within 30 s");
    Some((moto, url))
}

#[tokio::test]
async fn s3_store_passes_conformance_against_moto() {
    let Some((_moto, url)) = start_moto() else {
        return;
    };
    let bucket = "shoal-conformance";
    let created = reqwest::Client::new()
        .put(format!("{url}/{bucket}"))
        .send()
        .await
        .expect("creating the bucket");
    assert!(created.status().is_success(), "create bucket: {created:?}");
    let cfg = S3Config {
        endpoint: Some(url),
        bucket: bucket.into(),
        region: Some("us-east-1".into()),
        allow_http: true,
    };
    // Credentials set on the builder rather than in the environment, which other tests
    // share: moto accepts any key but object_store insists on one to sign with.
    let s3 = || {
        S3Store::builder(&cfg)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap()
    };
    let store = S3Store::from_s3(s3()).unwrap();
    crate::conformance::run_all(&store).await;
    blob_of_several_parts(&store).await;
    cancel_aborts_what_a_crash_left(&store, &s3()).await;
    purge_aborts_stale_multiparts(&store, &s3()).await;
}

/// Appends and the commit span several 8 MiB parts, which a real S3 checks against its
/// 5 MiB minimum part size; the conformance suite's blobs all fit in one part.
async fn blob_of_several_parts(store: &S3Store) {
    let data: Vec<u8> = (0..20u32 << 20).map(|i| (i % 253) as u8).collect();
    let id = store.create_upload().await.unwrap();
    for (start, end) in [(0, 13 << 20), (13 << 20, data.len())] {
        let mut w = store.append(&id, start as u64).await.unwrap();
        for chunk in data[start..end].chunks(1 << 20) {
            w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        assert_eq!(w.finish().await.unwrap(), end as u64);
    }
    let d = Digest::sha256_of(&data);
    assert_eq!(store.commit_upload(&id, &d).await.unwrap(), 20 << 20);
    let range = ByteRange {
        start: (8 << 20) - 5,
        end: (13 << 20) + 5,
    };
    let r = store.read(&d, Some(range)).await.unwrap();
    let mut got = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut r.into_async_read(), &mut got)
        .await
        .unwrap();
    assert!(
        got == data[range.start as usize..range.end as usize],
        "range across parts"
    );
}

/// The incomplete multipart uploads under `prefix`, by key.
async fn incomplete(store: &S3Store, prefix: &str) -> Vec<String> {
    let multiparts = store
        .inner
        .multiparts
        .as_ref()
        .expect("a real bucket lists them");
    let found = multiparts.incomplete(prefix).await.unwrap();
    found.into_iter().map(|m| m.key).collect()
}

/// A commit and an append that died (their multipart uploads begun, never completed nor
/// aborted) leave nothing once the session is cancelled.
async fn cancel_aborts_what_a_crash_left(store: &S3Store, raw: &AmazonS3) {
    let id = store.create_upload().await.unwrap();
    let mut w = store.append(&id, 0).await.unwrap();
    w.write(Bytes::from_static(b"crashed")).await.unwrap();
    w.finish().await.unwrap();
    let d = Digest::sha256_of(b"crashed");
    raw.put(&commit_marker(&id), PutPayload::from(d.to_string()))
        .await
        .unwrap();
    raw.create_multipart(&blob_key(&d)).await.unwrap();
    raw.create_multipart(&part_key(&id, 7)).await.unwrap();
    let session = format!("{}/", upload_dir(&id));
    assert_eq!(incomplete(store, blob_key(&d).as_ref()).await.len(), 1);
    assert_eq!(incomplete(store, &session).await.len(), 1);
    store.cancel_upload(&id).await.unwrap();
    assert!(incomplete(store, blob_key(&d).as_ref()).await.is_empty());
    assert!(incomplete(store, &session).await.is_empty());
    assert!(store.upload_objects(&id).await.unwrap().is_empty());
}

/// A multipart upload of a blob key that no session names any more is aborted by a purge
/// once it is older than the purge's age, and not before. (moto dates every multipart upload
/// 2010-11-10, so "older" is any age below that.)
async fn purge_aborts_stale_multiparts(store: &S3Store, raw: &AmazonS3) {
    let d = Digest::sha256_of(b"orphan");
    raw.create_multipart(&blob_key(&d)).await.unwrap();
    let now = crate::store::unix_secs(std::time::SystemTime::now());
    let century = 100 * 365 * 86_400;
    let kept = store.purge_stale(century, now).await.unwrap();
    assert_eq!(kept.multiparts_aborted, 0, "{kept:?}");
    assert_eq!(incomplete(store, blob_key(&d).as_ref()).await.len(), 1);
    let purged = store.purge_stale(0, now + 60).await.unwrap();
    assert!(purged.multiparts_aborted >= 1, "{purged:?}");
    assert!(incomplete(store, "blobs/").await.is_empty());
}
