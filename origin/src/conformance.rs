//! The one conformance suite every `BlobStore` backend must pass (distribution's
//! `driver/testsuites`). Backends call `run_all` from their own tests; the suite panics with
//! the name of the first behaviour that does not hold.

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::digest::Algorithm;
use crate::store::{BlobStore, ByteRange};
use crate::{Digest, Error};

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
    assert_eq!(store.stat(&d).await.unwrap(), Some(size));
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
    assert!(store.list().await.unwrap().contains(&d));
    assert!(store.delete(&d).await.unwrap());
    assert!(
        !store.delete(&d).await.unwrap(),
        "second delete finds nothing"
    );
    assert!(!store.list().await.unwrap().contains(&d));
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
    assert_eq!(after.stat(&d).await.unwrap(), Some(11));
}
