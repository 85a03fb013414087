//! The one conformance suite every `BlobStore` backend must pass (distribution's
//! `driver/testsuites`). Backends call `run_all` from their own tests; the suite panics with
//! the name of the first behaviour that does not hold.
//!
//! Times are checked against this machine's clock with `CLOCK_SLACK`, since a store keeps its
//! own (a file system's, an S3 service's); purges are asked for with ages far from that
//! slack, a century or zero seconds seen from an hour ahead, never with a wait.

use std::time::SystemTime;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::digest::Algorithm;
use crate::store::{unix_secs, BlobEntry, BlobStore, ByteRange, UploadEntry, UploadId};
use crate::{Digest, Error};

/// How far a store's time of a write just made may be from this machine's clock.
const CLOCK_SLACK: i64 = 300;
/// An age no session of a test reaches.
const CENTURY: i64 = 100 * 365 * 86_400;

/// Runs every check against `store`, which must start empty.
pub async fn run_all(store: &dyn BlobStore) {
    missing_blob(store).await;
    chunked_upload_roundtrip(store).await;
    ranged_reads(store).await;
    wrong_offset_is_rejected(store).await;
    abandoned_append_leaves_no_bytes(store).await;
    concurrent_append_is_refused(store).await;
    digest_mismatch_stores_nothing(store).await;
    sha512_upload(store).await;
    empty_blob(store).await;
    cancel_and_unknown_uploads(store).await;
    delete_and_list(store).await;
    recommit_same_content(store).await;
    stat_gives_size_and_time(store).await;
    list_pages(store).await;
    open_sessions_are_listed(store).await;
    stale_sessions_are_purged(store).await;
    held_session_is_not_purged(store).await;
    adopted_file_is_a_blob_or_left_alone(store).await;
}

fn now() -> i64 {
    unix_secs(SystemTime::now())
}

fn assert_recent(t: i64, what: &str) {
    let now = now();
    assert!(
        (now - CLOCK_SLACK..=now + CLOCK_SLACK).contains(&t),
        "{what}: modified at {t}, now is {now}"
    );
}

/// The whole blob listing, read in pages of `limit`, each checked to hold at most that.
async fn all_blobs(store: &dyn BlobStore, limit: usize) -> Vec<BlobEntry> {
    let mut all: Vec<BlobEntry> = Vec::new();
    loop {
        let page = store.list(all.last().map(|e| &e.digest), limit).await;
        let page = page.expect("list");
        assert!(
            page.len() <= limit,
            "a page of {limit} holds {}",
            page.len()
        );
        let last = page.len() < limit;
        all.extend(page);
        if last {
            return all;
        }
    }
}

/// The whole upload listing, read as `all_blobs` reads blobs.
async fn all_uploads(store: &dyn BlobStore, limit: usize) -> Vec<UploadEntry> {
    let mut all: Vec<UploadEntry> = Vec::new();
    loop {
        let page = store.list_uploads(all.last().map(|e| &e.id), limit).await;
        let page = page.expect("list_uploads");
        assert!(
            page.len() <= limit,
            "a page of {limit} holds {}",
            page.len()
        );
        let last = page.len() < limit;
        all.extend(page);
        if last {
            return all;
        }
    }
}

/// `names` (a listing's keys as strings) strictly ascending.
fn assert_ascending(names: &[String], what: &str) {
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "{what} in ascending order without repeats: {names:?}"
    );
}

async fn upload(store: &dyn BlobStore, parts: &[&[u8]]) -> crate::UploadId {
    let id = store.create_upload().await.expect("create_upload");
    let mut offset = 0;
    for part in parts {
        let mut w = store.append(&id, offset).await.expect("append");
        w.write(Bytes::copy_from_slice(part)).await.expect("write");
        offset = w.finish().await.expect("finish");
    }
    id
}

async fn read_all(store: &dyn BlobStore, d: &Digest, range: Option<ByteRange>) -> Vec<u8> {
    let r = store.read(d, range).await.expect("read");
    let len = r.range.len();
    let mut out = Vec::new();
    r.into_async_read()
        .read_to_end(&mut out)
        .await
        .expect("read body");
    assert_eq!(out.len() as u64, len, "body length equals range");
    out
}

async fn missing_blob(store: &dyn BlobStore) {
    let d = Digest::sha256_of(b"never stored");
    assert_eq!(
        store.stat(&d).await.unwrap(),
        None,
        "stat of a missing blob"
    );
    assert!(
        matches!(store.read(&d, None).await, Err(Error::BlobNotFound(_))),
        "read of a missing blob"
    );
}

async fn chunked_upload_roundtrip(store: &dyn BlobStore) {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let id = upload(
        store,
        &[&data[..1000], &data[1000..200_000], &data[200_000..]],
    )
    .await;
    assert_eq!(store.upload_size(&id).await.unwrap(), data.len() as u64);
    let d = Digest::sha256_of(&data);
    let size = store.commit_upload(&id, &d).await.expect("commit");
    assert_eq!(size, data.len() as u64);
    assert_eq!(store.stat(&d).await.unwrap().map(|i| i.size), Some(size));
    assert_eq!(read_all(store, &d, None).await, data, "roundtrip bytes");
    assert!(
        matches!(store.upload_size(&id).await, Err(Error::UploadNotFound(_))),
        "a committed upload session is gone"
    );
}

async fn ranged_reads(store: &dyn BlobStore) {
    let data = b"0123456789abcdef".to_vec();
    let d = Digest::sha256_of(&data);
    let id = upload(store, &[&data]).await;
    store.commit_upload(&id, &d).await.unwrap();
    let r = |start, end| Some(ByteRange { start, end });
    assert_eq!(read_all(store, &d, r(2, 5)).await, b"234");
    assert_eq!(
        read_all(store, &d, r(10, 100)).await,
        b"abcdef",
        "end clamps"
    );
    let past = store.read(&d, r(16, 20)).await;
    assert!(
        matches!(past, Err(Error::RangeNotSatisfiable { size: 16 })),
        "start past the end: {past:?}"
    );
    let got = store.read(&d, r(3, 9)).await.unwrap();
    assert_eq!((got.size, got.range), (16, ByteRange { start: 3, end: 9 }));
}

async fn wrong_offset_is_rejected(store: &dyn BlobStore) {
    let id = upload(store, &[b"abc"]).await;
    for bad in [0, 2, 4] {
        let got = store.append(&id, bad).await.err();
        assert!(
            matches!(got, Some(Error::UploadOffset { expected: 3, got }) if got == bad),
            "append at {bad}: {got:?}"
        );
    }
    store.cancel_upload(&id).await.unwrap();
}

async fn abandoned_append_leaves_no_bytes(store: &dyn BlobStore) {
    let id = upload(store, &[b"keep "]).await;
    let mut w = store.append(&id, 5).await.unwrap();
    w.write(Bytes::from_static(b"torn bytes")).await.unwrap();
    drop(w);
    assert_eq!(
        store.upload_size(&id).await.unwrap(),
        5,
        "torn append not counted"
    );
    let mut w = store.append(&id, 5).await.unwrap();
    w.write(Bytes::from_static(b"this")).await.unwrap();
    w.finish().await.unwrap();
    let d = Digest::sha256_of(b"keep this");
    assert_eq!(store.commit_upload(&id, &d).await.unwrap(), 9);
    assert_eq!(read_all(store, &d, None).await, b"keep this");
}

async fn concurrent_append_is_refused(store: &dyn BlobStore) {
    let id = upload(store, &[]).await;
    let w = store.append(&id, 0).await.unwrap();
    assert!(matches!(store.append(&id, 0).await, Err(Error::UploadBusy)));
    drop(w);
    store
        .append(&id, 0)
        .await
        .expect("free again once the writer is gone");
    store.cancel_upload(&id).await.unwrap();
}

async fn digest_mismatch_stores_nothing(store: &dyn BlobStore) {
    let id = upload(store, &[b"actual content"]).await;
    let claimed = Digest::sha256_of(b"other content");
    let got = store.commit_upload(&id, &claimed).await;
    assert!(
        matches!(&got, Err(Error::DigestMismatch { actual, .. }) if *actual == Digest::sha256_of(b"actual content")),
        "{got:?}"
    );
    assert_eq!(store.stat(&claimed).await.unwrap(), None);
    assert_eq!(
        store
            .stat(&Digest::sha256_of(b"actual content"))
            .await
            .unwrap(),
        None
    );
}

async fn sha512_upload(store: &dyn BlobStore) {
    let id = upload(store, &[b"five", b" twelve"]).await;
    let d = Digest::of(Algorithm::Sha512, b"five twelve");
    assert_eq!(store.commit_upload(&id, &d).await.unwrap(), 11);
    assert_eq!(read_all(store, &d, None).await, b"five twelve");
}

async fn empty_blob(store: &dyn BlobStore) {
    let id = upload(store, &[]).await;
    let d = Digest::sha256_of(b"");
    assert_eq!(store.commit_upload(&id, &d).await.unwrap(), 0);
    assert_eq!(read_all(store, &d, None).await, b"");
}

async fn cancel_and_unknown_uploads(store: &dyn BlobStore) {
    let id = upload(store, &[b"to be cancelled"]).await;
    store.cancel_upload(&id).await.unwrap();
    assert!(matches!(
        store.upload_size(&id).await,
        Err(Error::UploadNotFound(_))
    ));
    assert!(matches!(
        store.append(&id, 0).await.err(),
        Some(Error::UploadNotFound(_))
    ));
    assert!(matches!(
        store.cancel_upload(&id).await,
        Err(Error::UploadNotFound(_))
    ));
    let d = Digest::sha256_of(b"to be cancelled");
    assert!(matches!(
        store.commit_upload(&id, &d).await,
        Err(Error::UploadNotFound(_))
    ));
}

async fn delete_and_list(store: &dyn BlobStore) {
    let id = upload(store, &[b"deletable"]).await;
    let d = Digest::sha256_of(b"deletable");
    store.commit_upload(&id, &d).await.unwrap();
    let listed = |all: Vec<BlobEntry>| all.iter().any(|e| e.digest == d);
    assert!(listed(all_blobs(store, 100).await));
    assert!(store.delete(&d).await.unwrap());
    assert!(
        !store.delete(&d).await.unwrap(),
        "second delete finds nothing"
    );
    assert!(!listed(all_blobs(store, 100).await));
    assert_eq!(store.stat(&d).await.unwrap(), None);
}

async fn recommit_same_content(store: &dyn BlobStore) {
    let d = Digest::sha256_of(b"twice");
    for _ in 0..2 {
        let id = upload(store, &[b"twice"]).await;
        assert_eq!(store.commit_upload(&id, &d).await.unwrap(), 5);
    }
    assert_eq!(read_all(store, &d, None).await, b"twice");
}

/// A verified file handed to `adopt_file` is either a committed blob after it (and gone
/// from its place), or untouched with nothing stored.
async fn adopted_file_is_a_blob_or_left_alone(store: &dyn BlobStore) {
    let content = b"adopt me";
    let d = Digest::sha256_of(content);
    let path = std::env::temp_dir().join(format!("shoal-adopt-{}", crate::UploadId::new()));
    std::fs::write(&path, content).unwrap();
    if store.adopt_file(&path, &d).await.unwrap() {
        assert!(!path.exists(), "an adopted file stays at its old place");
        assert_eq!(read_all(store, &d, None).await, content);
        let info = store.stat(&d).await.unwrap().expect("adopted blob");
        assert_recent(info.modified, "adopted blob");
        assert!(store.delete(&d).await.unwrap());
    } else {
        assert_eq!(std::fs::read(&path).unwrap(), content);
        assert_eq!(store.stat(&d).await.unwrap(), None);
        std::fs::remove_file(&path).unwrap();
    }
}

async fn stat_gives_size_and_time(store: &dyn BlobStore) {
    for content in [&b"stat me"[..], b""] {
        let d = Digest::sha256_of(content);
        let id = upload(store, &[content]).await;
        store.commit_upload(&id, &d).await.unwrap();
        let info = store
            .stat(&d)
            .await
            .unwrap()
            .expect("stat of a committed blob");
        assert_eq!(info.size, content.len() as u64, "size of {d}");
        assert_recent(info.modified, "a blob just committed");
    }
}

/// Pages of any size add up to the whole listing, and `after` may be any digest.
async fn list_pages(store: &dyn BlobStore) {
    let contents: [&[u8]; 4] = [b"page one", b"page two", b"page 3", b"page four!"];
    for content in contents {
        let id = upload(store, &[content]).await;
        store
            .commit_upload(&id, &Digest::sha256_of(content))
            .await
            .unwrap();
    }
    let all = all_blobs(store, 1000).await;
    let names: Vec<String> = all.iter().map(|e| e.digest.to_string()).collect();
    assert_ascending(&names, "blobs");
    for content in contents {
        let d = Digest::sha256_of(content);
        let e = all
            .iter()
            .find(|e| e.digest == d)
            .expect("a committed blob is listed");
        assert_eq!(e.size, content.len() as u64, "listed size of {d}");
        assert_recent(e.modified, "a listed blob");
    }
    for limit in [1, 2, 3] {
        assert_eq!(all_blobs(store, limit).await, all, "pages of {limit}");
    }
    for (i, e) in all.iter().enumerate() {
        let want = &all[i + 1..(i + 3).min(all.len())];
        let got = store.list(Some(&e.digest), 2).await.unwrap();
        assert_eq!(got, want, "two after {}", e.digest);
    }
    let absent = Digest::sha256_of(b"never stored either");
    let want: Vec<BlobEntry> = all
        .iter()
        .filter(|e| e.digest.to_string() > absent.to_string())
        .take(3)
        .cloned()
        .collect();
    assert_eq!(
        store.list(Some(&absent), 3).await.unwrap(),
        want,
        "after an absent digest"
    );
    assert!(store.list(None, 0).await.unwrap().is_empty(), "a page of 0");
}

/// Open sessions are listed with their sizes, in id order; finished ones are not.
async fn open_sessions_are_listed(store: &dyn BlobStore) {
    let open: [&[&[u8]]; 3] = [&[], &[b"one"], &[b"thr", b"ee"]];
    let mut sessions: Vec<(UploadId, u64)> = Vec::new();
    for parts in open {
        sessions.push((upload(store, parts).await, parts.concat().len() as u64));
    }
    let committed = upload(store, &[b"committed"]).await;
    let d = Digest::sha256_of(b"committed");
    store.commit_upload(&committed, &d).await.unwrap();
    let cancelled = upload(store, &[b"cancelled"]).await;
    store.cancel_upload(&cancelled).await.unwrap();

    let listed = all_uploads(store, 2).await;
    let names: Vec<String> = listed.iter().map(|e| e.id.to_string()).collect();
    assert_ascending(&names, "upload sessions");
    for (id, size) in &sessions {
        let e = listed
            .iter()
            .find(|e| &e.id == id)
            .expect("an open session is listed");
        assert_eq!(e.size, *size, "listed size of {id}");
        assert_recent(e.modified, "a session just written");
    }
    for gone in [&committed, &cancelled] {
        assert!(
            !listed.iter().any(|e| &e.id == gone),
            "{gone} is not listed"
        );
    }
    for (i, e) in listed.iter().enumerate() {
        let want = &listed[i + 1..(i + 2).min(listed.len())];
        assert_eq!(store.list_uploads(Some(&e.id), 1).await.unwrap(), want);
    }
    for (id, _) in sessions {
        store.cancel_upload(&id).await.unwrap();
    }
}

async fn stale_sessions_are_purged(store: &dyn BlobStore) {
    let stale = [upload(store, &[b"abc"]).await, upload(store, &[]).await];
    let kept = store.purge_stale(CENTURY, now()).await.unwrap();
    assert_eq!((kept.removed.len(), kept.skipped.len()), (0, 0), "{kept:?}");
    for id in &stale {
        assert!(store.upload_size(id).await.is_ok(), "{id} survives");
    }
    let purged = store.purge_stale(0, now() + 3600).await.unwrap();
    for id in &stale {
        assert!(purged.removed.contains(id), "{id} removed: {purged:?}");
        assert!(
            matches!(store.upload_size(id).await, Err(Error::UploadNotFound(_))),
            "size of purged {id}"
        );
        assert!(
            matches!(
                store.append(id, 0).await.err(),
                Some(Error::UploadNotFound(_))
            ),
            "append to purged {id}"
        );
    }
    assert!(purged.bytes_freed >= 3, "{purged:?}");
    assert!(all_uploads(store, 100).await.is_empty(), "nothing left");
}

async fn held_session_is_not_purged(store: &dyn BlobStore) {
    let id = upload(store, &[b"held "]).await;
    let mut w = store.append(&id, 5).await.unwrap();
    w.write(Bytes::from_static(b"open")).await.unwrap();
    let report = store.purge_stale(0, now() + 3600).await.unwrap();
    assert!(
        report.skipped.contains(&id) && !report.removed.contains(&id),
        "{report:?}"
    );
    assert_eq!(
        w.finish().await.unwrap(),
        9,
        "the append outlives the purge"
    );
    let d = Digest::sha256_of(b"held open");
    assert_eq!(store.commit_upload(&id, &d).await.unwrap(), 9);
}

/// An upload begun through `before` continues through `after`, a fresh instance of the same
/// backend over the same storage (a restarted origin): its size is recovered, appending
/// resumes at it, and the commit verifies the whole content.
pub async fn upload_resumes_after_restart(before: &dyn BlobStore, after: &dyn BlobStore) {
    let id = upload(before, &[b"hello "]).await;
    assert_eq!(after.upload_size(&id).await.unwrap(), 6, "size recovered");
    let mut w = after.append(&id, 6).await.unwrap();
    w.write(Bytes::from_static(b"world")).await.unwrap();
    w.finish().await.unwrap();
    let d = Digest::sha256_of(b"hello world");
    assert_eq!(after.commit_upload(&id, &d).await.unwrap(), 11);
    assert_eq!(after.stat(&d).await.unwrap().map(|i| i.size), Some(11));
}
