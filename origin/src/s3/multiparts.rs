//! Incomplete multipart uploads in the bucket: listing them and aborting them.
//!
//! A process that dies in an append or a commit leaves a multipart upload that was neither
//! completed nor aborted; S3 keeps (and bills) its parts until someone aborts it. object_store
//! can abort an upload given its id (`MultipartStore`) but cannot list them, so this sends
//! S3's ListMultipartUploads itself: presigned by object_store's own signer
//! (`Signer::signed_url_opts`), so that credentials, region, endpoint and addressing style
//! are the ones the rest of the backend uses, and its small XML answer read with quick-xml.
//! It sits behind a trait because object_store's `InMemory` (the tests' bucket) has no such
//! listing, and needs none: its unfinished uploads vanish with their writer.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use object_store::aws::AmazonS3;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::signer::{Method, SignedUrlOptions, Signer};
use serde::Deserialize;

use super::storage;
use crate::{Error, Result};

/// How long a presigned listing request stays valid; it is sent at once.
const SIGNED_FOR: Duration = Duration::from_secs(60);

/// One incomplete multipart upload, as the bucket reports it. `key` is the bucket's word,
/// not yet checked to be one of ours.
#[derive(Debug)]
pub(crate) struct Incomplete {
    pub key: String,
    pub upload_id: String,
    /// Unix seconds of its initiation.
    pub initiated: i64,
}

#[async_trait]
pub(crate) trait Multiparts: Send + Sync {
    /// Every incomplete multipart upload whose key starts with `prefix`.
    async fn incomplete(&self, prefix: &str) -> Result<Vec<Incomplete>>;
    /// Aborts one; one already gone (completed or aborted meanwhile) is not an error.
    async fn abort(&self, key: &Path, upload_id: &str) -> Result<()>;
}

/// `Multiparts` of a real S3-compatible bucket.
pub(crate) struct S3Multiparts {
    s3: Arc<AmazonS3>,
    http: reqwest::Client,
}

impl S3Multiparts {
    pub fn new(s3: Arc<AmazonS3>) -> Result<S3Multiparts> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        Ok(S3Multiparts { s3, http })
    }
}

/// The part of a ListMultipartUploadsResult we read.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Listing {
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<Upload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Upload {
    key: String,
    upload_id: String,
    initiated: chrono::DateTime<chrono::Utc>,
}

fn listing_failed(msg: String) -> Error {
    Error::Io(std::io::Error::other(format!(
        "listing multipart uploads: {msg}"
    )))
}

#[async_trait]
impl Multiparts for S3Multiparts {
    async fn incomplete(&self, prefix: &str) -> Result<Vec<Incomplete>> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![("uploads", ""), ("prefix", prefix)];
            if let Some((key, upload)) = &markers {
                query.extend([("key-marker", key.as_str()), ("upload-id-marker", upload)]);
            }
            let options = SignedUrlOptions::new().with_query(query);
            // The bucket itself (an empty path) is what ListMultipartUploads is sent to.
            let url = self
                .s3
                .signed_url_opts(Method::GET, &Path::default(), SIGNED_FOR, &options)
                .await
                .map_err(storage)?;
            let resp = self.http.get(url.as_str()).send().await;
            let resp = resp.map_err(|e| listing_failed(e.to_string()))?;
            let status = resp.status();
            let body = resp
                .text()
                .await
                .map_err(|e| listing_failed(e.to_string()))?;
            if !status.is_success() {
                let excerpt: String = body.chars().take(300).collect();
                return Err(listing_failed(format!("{status}: {excerpt}")));
            }
            let page: Listing =
                quick_xml::de::from_str(&body).map_err(|e| listing_failed(e.to_string()))?;
            out.extend(page.uploads.into_iter().map(|u| Incomplete {
                key: u.key,
                upload_id: u.upload_id,
                initiated: u.initiated.timestamp(),
            }));
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(key), Some(upload)) => markers = Some((key, upload)),
                _ => return Ok(out),
            }
        }
    }

    async fn abort(&self, key: &Path, upload_id: &str) -> Result<()> {
        match self.s3.abort_multipart(key, &upload_id.to_string()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_listing_page() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
            <ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
              <NextKeyMarker>blobs/sha256/ab</NextKeyMarker>
              <NextUploadIdMarker>u2</NextUploadIdMarker>
              <MaxUploads>1000</MaxUploads><IsTruncated>true</IsTruncated>
              <Upload><Key>blobs/sha256/aa</Key><UploadId>u1</UploadId>
                <Initiator><ID>x</ID></Initiator><StorageClass>STANDARD</StorageClass>
                <Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>
              <Upload><Key>blobs/sha256/ab</Key><UploadId>u2</UploadId>
                <Initiated>2010-11-10T20:48:34Z</Initiated></Upload>
            </ListMultipartUploadsResult>"#;
        let page: Listing = quick_xml::de::from_str(xml).unwrap();
        assert!(page.is_truncated);
        assert_eq!(page.next_upload_id_marker.as_deref(), Some("u2"));
        let got: Vec<(String, String, i64)> = page
            .uploads
            .into_iter()
            .map(|u| (u.key, u.upload_id, u.initiated.timestamp()))
            .collect();
        assert_eq!(
            got,
            [
                ("blobs/sha256/aa".into(), "u1".into(), 1289422113),
                ("blobs/sha256/ab".into(), "u2".into(), 1289422114),
            ]
        );
        let empty: Listing = quick_xml::de::from_str(
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>",
        )
        .unwrap();
        assert!(empty.uploads.is_empty() && !empty.is_truncated);
    }
}
